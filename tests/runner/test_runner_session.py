"""Which Claude Code session a retried task resumes (found by the chaos suite: a runner
killed seconds into a task left a session id whose transcript Claude Code had not
written yet; the retry's `--resume` failed at once and spent an attempt on nothing)."""

from __future__ import annotations

import json
from pathlib import Path

from agentctl_swarm.agent.runner import Runner, RunnerSettings
from agentctl_swarm.agent.runner_core import Work
from agentctl_swarm.config import AgentChatSettings

SESSION = "0b6c4c9e-1d1a-4a57-9a59-6b1c2a7e3f10"


def _runner(state: Path, task: str = "t-1") -> Runner:
    cfg = RunnerSettings(agent="swarm-builder-000", role="builder", state_dir=state,
                         workspace=state / "workspace")  # fmt: skip
    runner = Runner(cfg, AgentChatSettings())
    record = {"task": task, "attempt": 1, "session": SESSION, "active": False}
    (state / "runner.json").write_text(json.dumps(record))
    return runner


def _transcript(state: Path) -> None:
    project = state / "claude" / "projects" / "-workspace"
    project.mkdir(parents=True)
    (project / f"{SESSION}.jsonl").write_text('{"type":"user"}\n')


def test_a_retry_resumes_the_session_claude_code_saved(tmp_path: Path) -> None:
    _transcript(tmp_path)
    assert _runner(tmp_path)._session_for(Work("t-1", "x", attempt=2)) == (SESSION, True)


def test_a_retry_starts_afresh_when_the_session_was_never_saved(tmp_path: Path) -> None:
    (tmp_path / "claude" / "projects" / "-workspace").mkdir(parents=True)  # other sessions
    session, resumed = _runner(tmp_path)._session_for(Work("t-1", "x", attempt=2))
    assert not resumed and session != SESSION


def test_another_task_never_resumes_the_session(tmp_path: Path) -> None:
    _transcript(tmp_path)
    session, resumed = _runner(tmp_path, task="t-0")._session_for(Work("t-1", "x"))
    assert not resumed and session != SESSION
