"""The real Claude Code binary against the scripted model: real tools, real HTTP.

Only the model is scripted; Claude Code runs its own Write/Edit tools, its own retry
loop and its own MCP client. The binary comes from `agentctl build`'s npm cache
(skipped on a developer machine without it, failed under CI).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from agentctl_swarm.agent.claude_stream import Outcome, StreamState, classify_lines
from agentctl_swarm.model import ScriptedModel
from tests.model.claude_harness import (
    argv_for,
    claude_env,
    require_claude,
    run_claude,
    start_claude,
)
from tests.model.record_streams import SCENARIOS, run_scenario

ACCEPT_EDITS = ("--permission-mode", "acceptEdits")


@pytest.fixture(scope="module")
def claude() -> Path:
    return require_claude()


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    cwd, home = tmp_path / "workspace", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    return cwd, home


WRITE_EDIT = """
turns:
  - text: Creating the file.
    tool_use:
      - Write: {file_path: "${cwd}/notes.md", content: "# Notes\\nfirst line\\n"}
  - tool_use:
      - Edit: {file_path: "${cwd}/notes.md", old_string: first line, new_string: edited line}
  - text: Done.
"""


def test_write_and_edit_change_files_for_real(claude: Path, dirs):
    cwd, home = dirs
    model = ScriptedModel.from_yaml(WRITE_EDIT)
    with model.serve() as url:
        run = run_claude(claude, url, "make notes", cwd=cwd, home=home, args=ACCEPT_EDITS)
    assert run.returncode == 0, run.describe()
    assert (cwd / "notes.md").read_text() == "# Notes\nedited line\n"
    end = classify_lines(run.lines, run.returncode)
    assert end.outcome is Outcome.SUCCESS and end.num_turns == 3
    calls = model.messages_requests()
    assert [r.turn for r in calls] == [0, 1, 2]
    results = calls[-1].tool_results()  # what Claude sent back: both tools ran fine
    assert len(results) == 2 and not any(r.get("is_error") for r in results)
    assert "notes.md" in str(results[0]["content"])


def test_auth_failure_without_retries_ends_at_once(claude: Path, dirs):
    cwd, home = dirs
    model = ScriptedModel.from_yaml("turns: [{error: authentication}]")
    with model.serve() as url:
        run = run_claude(claude, url, "hello", cwd=cwd, home=home)
    end = classify_lines(run.lines, run.returncode)
    assert (run.returncode, end.outcome, end.api_error_status) == (1, Outcome.AUTH, 401)
    assert len(model.messages_requests()) == 1  # CLAUDE_CODE_MAX_RETRIES=0: one call


def test_auth_failure_with_retries_is_stopped_at_the_first_retry(claude: Path, dirs):
    """The runner's way: Claude Code's default retries are on, the stream shows the 401
    at the first api_retry, and claude is killed there instead of retrying ten times."""
    cwd, home = dirs
    model = ScriptedModel.from_yaml("turns: [{error: authentication}]")
    with model.serve() as url:
        proc = start_claude(
            claude, url, "hello", cwd=cwd, home=home, env={"CLAUDE_CODE_MAX_RETRIES": "10"}
        )
        state = StreamState()
        assert proc.stdout is not None
        early = None
        for line in proc.stdout:
            state.feed(line)
            early = state.early_outcome()
            if early is not None:
                proc.send_signal(signal.SIGKILL)
                break
        proc.communicate(timeout=60)
    end = state.classify(proc.returncode, stopped_early=early)
    assert end.outcome is Outcome.AUTH and end.signal == "SIGKILL" and end.retries == 1
    assert len(model.messages_requests()) <= 2  # no retry storm


def test_rate_limit_is_quota(claude: Path, dirs):
    cwd, home = dirs
    model = ScriptedModel.from_yaml("turns: [{error: {kind: rate_limit, retry_after: 30}}]")
    with model.serve() as url:
        run = run_claude(claude, url, "hello", cwd=cwd, home=home)
    end = classify_lines(run.lines, run.returncode)
    assert (end.outcome, end.api_error_status) == (Outcome.QUOTA, 429)
    assert model.messages_requests()[0].reply == "429 rate_limit_error"


def test_a_transient_overload_recovers_inside_one_session(claude: Path, dirs):
    cwd, home = dirs
    model = ScriptedModel.from_yaml("turns: [{error: {kind: overloaded, times: 1}, text: Back.}]")
    with model.serve() as url:
        run = run_claude(
            claude, url, "hello", cwd=cwd, home=home, env={"CLAUDE_CODE_MAX_RETRIES": "1"}
        )
    state = StreamState().feed_all(run.lines)
    end = state.classify(run.returncode)
    assert end.outcome is Outcome.SUCCESS, end.reason
    assert [r.error_status for r in state.retries] == [529]
    assert [r.reply for r in model.messages_requests()] == ["529 overloaded_error", "200 stream"]


FLEET = """
conversations:
  - name: alpha
    match: {prompt: "^task alpha"}
    turns:
      - tool_use: [{Write: {file_path: "${cwd}/out.txt", content: "alpha\\n"}}]
      - {text: alpha done, delay: 0.2}
  - name: beta
    match: {prompt: "^task beta"}
    turns:
      - tool_use: [{Write: {file_path: "${cwd}/out.txt", content: "beta\\n"}}]
      - text: beta done
"""


def test_one_server_serves_two_concurrent_claudes_each_its_own_conversation(
    claude: Path, tmp_path: Path
):
    model = ScriptedModel.from_yaml(FLEET)
    runs = {}
    with model.serve() as url:

        def work(name: str) -> None:
            cwd, home = tmp_path / name / "workspace", tmp_path / name / "home"
            cwd.mkdir(parents=True)
            home.mkdir()
            runs[name] = run_claude(
                claude, url, f"task {name}", cwd=cwd, home=home, args=ACCEPT_EDITS
            )

        threads = [threading.Thread(target=work, args=(n,)) for n in ("alpha", "beta")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    for name in ("alpha", "beta"):
        run = runs[name]
        assert run.returncode == 0, run.describe()
        assert run.result is not None and run.result["result"] == f"{name} done"
        assert (tmp_path / name / "workspace" / "out.txt").read_text() == f"{name}\n"
    by_conversation: dict[str, list[int | None]] = {}
    sessions: dict[str, set[str]] = {}
    for request in model.messages_requests():
        assert request.conversation is not None
        by_conversation.setdefault(request.conversation, []).append(request.turn)
        sessions.setdefault(request.conversation, set()).add(
            request.headers.get("x-claude-code-session-id", "")
        )
    assert {k: sorted(v) for k, v in by_conversation.items()} == {  # type: ignore[type-var]
        "alpha": [0, 1],
        "beta": [0, 1],
    }
    assert len(sessions["alpha"] | sessions["beta"]) == 2


def test_resume_after_a_restart_continues_the_conversation(claude: Path, dirs):
    """Claude's state lives in CLAUDE_CONFIG_DIR (the state volume in the image), so a
    new process resumes the session: the model sees the earlier turns."""
    cwd, home = dirs
    session = str(uuid.uuid4())
    model = ScriptedModel.from_yaml("turns: [First answer., Second answer.]")
    with model.serve() as url:
        first = run_claude(claude, url, "hello", cwd=cwd, home=home, args=("--session-id", session))
        second = run_claude(claude, url, "go on", cwd=cwd, home=home, args=("--resume", session))
    assert first.result and first.result["result"] == "First answer."
    assert second.result and second.result["result"] == "Second answer.", second.describe()
    assert [r.turn for r in model.messages_requests()] == [0, 1]
    assert list((home / ".claude" / "projects").glob(f"*/{session}.jsonl"))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_a_fresh_run_of_each_recorded_scenario_classifies_the_same(
    claude: Path, tmp_path: Path, scenario
):
    """If this fails after a Claude Code upgrade, re-record the fixtures
    (python -m tests.model.record_streams) and look at what changed."""
    run = run_scenario(claude, scenario, tmp_path)
    end = classify_lines(run.lines, run.returncode)
    assert end.outcome == Outcome(scenario.expect), run.describe()


def test_claude_never_talks_to_anything_but_the_model(claude: Path, dirs):
    """With CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 the only connection is the model's."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    cwd, home = dirs
    model = ScriptedModel.from_yaml("turns: [Hi.]")
    trace = home / "trace.txt"
    with model.serve() as url:
        port = url.rsplit(":", 1)[1]
        argv = [strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace),
                *argv_for(claude, "hi")]  # fmt: skip
        result = subprocess.run(
            argv, cwd=cwd, env=claude_env(url, home), capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 0, result.stderr
    inet = [line for line in trace.read_text().splitlines() if "AF_INET" in line]
    assert inet, "no connection at all?"
    assert all(f"htons({port})" in line and "127.0.0.1" in line for line in inet), inet
