"""The runner for real, on the host: a real `agentctl server` with its coordinator, the
real `claude` binary talking to the scripted model, a real git workspace, real signals.

(The same runner in containers, through `agentctl up`, is tests/integration/test_tasks.py;
this module covers the runner's own rules quickly, without Podman.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentctl_swarm.model.server import ScriptedModel
from tests.conftest import AGENTCTL, REPO
from tests.model.claude_harness import require_claude

SCRIPT = r"""
conversations:
  - name: probe
    match: {prompt: "Reply with the single word OK"}
    turns: ["OK"]
  - name: writer
    match: {prompt: '## Your task [^\n]*\nplease write (?P<file>[a-z0-9_]+\.txt)'}
    turns:
      - text: "Writing ${file}."
        tool_use:
          - Write: {file_path: "${cwd}/${file}", content: "written by the agent\n"}
      - "Wrote ${file}."
  - name: unauthorized
    match: {prompt: '## Your task [^\n]*\nthis needs credentials'}
    turns: [{error: authentication}]
  - name: quota
    match: {prompt: '## Your task [^\n]*\nwe are over quota'}
    turns: [{error: rate_limit}]
  - name: slow
    match: {prompt: '## Your task [^\n]*\ntake your time'}
    turns:
      - text: "Starting."
        tool_use:
          - Write: {file_path: "${cwd}/started.txt", content: "begun\n"}
      - {delay: 60, text: "Finished."}
"""
# the scripted model accepts any key; made up, split so secret scanners stay quiet
KEY = "sk-ant-" + "scripted-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class World:
    url: str
    model: ScriptedModel
    model_url: str
    tmp: Path
    claude: Path

    def agentctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*AGENTCTL, *args], capture_output=True, text=True, cwd=REPO, timeout=60
        )
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def add(self, prompt: str, *extra: str) -> str:
        out = self.agentctl(
            "task", "add", prompt, "--role", "builder", "--server", self.url, *extra
        )
        return out.stdout.strip().splitlines()[-1]

    def task(self, tid: str) -> dict:
        http = self.url.replace("ws://", "http://")
        with urllib.request.urlopen(f"{http}/api/v1/tasks/{tid}", timeout=10) as resp:
            return json.loads(resp.read())

    def board(self, what: str = "tasks") -> dict:
        http = self.url.replace("ws://", "http://")
        with urllib.request.urlopen(f"{http}/api/v1/{what}", timeout=10) as resp:
            return json.loads(resp.read())

    def wait(self, what: str, pred: Callable[[], object], timeout: float = 60) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = pred()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    claude = require_claude()
    port = _free_port()
    server = subprocess.Popen(
        [*AGENTCTL, "server", "--port", str(port), "--data-dir", str(tmp_path / "chat"),
         "--heartbeat-interval", "2", "--probe-interval", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    model = ScriptedModel.from_yaml(SCRIPT)
    try:
        with model.serve() as model_url:
            world = World(f"ws://127.0.0.1:{port}", model, model_url, tmp_path, claude)
            world.wait("the server", lambda: _answers(port), timeout=30)
            yield world
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/tasks", timeout=2):
            return True
    except OSError:
        return False


@dataclass
class Runner:
    proc: subprocess.Popen[bytes]
    state: Path
    workspace: Path
    log: Path

    def events(self) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def claude_pid(self) -> int | None:
        starts = [e for e in self.events() if e.get("event") == "runner.started"]
        return int(starts[-1]["pid"]) if starts else None


@pytest.fixture
def start_runner(world: World) -> Iterator[Callable[..., Runner]]:
    started: list[Runner] = []

    def start(name: str = "swarm-builder-000") -> Runner:
        base = world.tmp / name
        state, ws, secrets = base / "state", base / "ws", base / "secrets"
        for d in (state, ws, secrets):
            d.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(ws)], check=True)
        subprocess.run(
            ["git", "-C", str(ws), "-c", "user.name=t", "-c", "user.email=t@t", "commit",
             "-q", "--allow-empty", "-m", "start"], check=True,
        )  # fmt: skip
        (secrets / "ANTHROPIC_API_KEY").write_text(KEY)
        env = {
            **os.environ,
            "IS_SANDBOX": "1",  # root on the host; in containers the runner is uid 1000
            "AGENTCHAT_URL": world.url,
            "AGENTCTL_RUNNER_AGENT": name,
            "AGENTCTL_RUNNER_ROLE": "builder",
            "AGENTCTL_RUNNER_STATE_DIR": str(state),
            "AGENTCTL_RUNNER_WORKSPACE": str(ws),
            "AGENTCTL_RUNNER_SECRETS_DIR": str(secrets),
            "AGENTCTL_RUNNER_SECRET_ENV": "ANTHROPIC_API_KEY=ANTHROPIC_API_KEY",
            "AGENTCTL_RUNNER_BASE_URL": world.model_url,
            "AGENTCTL_RUNNER_CLAUDE": json.dumps([str(world.claude)]),
            "AGENTCTL_RUNNER_HEARTBEAT_INTERVAL": "1",
            "AGENTCTL_RUNNER_GRACE": "2",
            "AGENTCTL_RUNNER_CONTROL_SOCKET": str(base / "no-controller.sock"),
            "AGENTCTL_LOG_FORMAT": "json",
        }
        log = base / "runner.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentctl_swarm.agent.cli", "run"],
            stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env, cwd=REPO,
        )  # fmt: skip
        runner = Runner(proc, state, ws, log)
        world.wait("the runner to go idle", lambda: any(
            e.get("event") == "runner.idle" for e in runner.events()), timeout=30)  # fmt: skip
        started.append(runner)
        return runner

    yield start
    for runner in started:
        if runner.proc.poll() is None:
            runner.proc.kill()
            runner.proc.wait(timeout=10)


def test_a_task_is_claimed_run_committed_and_reported_done(world, start_runner) -> None:
    runner = start_runner()
    tid = world.add("please write notes.txt")
    task = world.wait("DONE", lambda: (t := world.task(tid))["state"] == "done" and t)
    assert task["assignee"] == "swarm-builder-000"
    assert task["tokens_in"] > 0 and task["tokens_out"] > 0
    # the work is committed on the task's branch, so the sync brings it out
    branch = f"task/{tid}"
    shown = subprocess.run(
        ["git", "-C", str(runner.workspace), "show", f"{branch}:notes.txt"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shown.stdout == "written by the agent\n"
    transcript = runner.state / "transcripts" / f"{tid}-1.jsonl"
    lines = transcript.read_text().splitlines()
    assert any(json.loads(line).get("type") == "result" for line in lines)
    assert KEY not in transcript.read_text()  # the API key never reaches a transcript
    notes = (runner.state / "context.md").read_text()
    assert f"Last task {tid}: success" in notes and "Wrote notes.txt" in notes
    # the key lives in no long-lived process's environment: not the runner's
    environ = Path(f"/proc/{runner.proc.pid}/environ").read_bytes()
    assert KEY.encode() not in environ
    # the next task's prompt quotes what the last one left in context.md
    tid2 = world.add("please write more.txt")
    world.wait("DONE 2", lambda: world.task(tid2)["state"] == "done")
    prompts = [json.dumps(r.body) for r in world.model.messages_requests()]
    assert any("Notes from your previous task" in p and tid in p for p in prompts)


def test_an_auth_failure_blocks_the_agent_at_once(world, start_runner) -> None:
    runner = start_runner()
    started = time.monotonic()
    tid = world.add("this needs credentials")
    world.wait("BLOCKED", lambda: any(
        a.get("blocked") for a in world.board("agents")["agents"]), timeout=30)  # fmt: skip
    assert time.monotonic() - started < 20  # a bound, not a benchmark: no retry storm
    ends = [e for e in runner.events() if e.get("event") == "runner.demoted"]
    assert ends and ends[-1]["end"] == "auth"
    assert world.task(tid)["state"] in {"queued", "assigned"}  # back for someone else
    # the agent claims nothing more until a person says RETRY agent=...
    before = len([e for e in runner.events() if e.get("event") == "runner.promoted"])
    world.add("please write other.txt")
    time.sleep(3)
    after = len([e for e in runner.events() if e.get("event") == "runner.promoted"])
    assert after == before


def test_killing_claude_fails_the_task_and_it_is_retried(world, start_runner) -> None:
    runner = start_runner()
    tid = world.add("take your time")
    pid = world.wait("claude to start", runner.claude_pid)
    world.wait("the first file", lambda: (runner.workspace / "started.txt").exists())
    os.kill(int(pid), signal.SIGKILL)
    world.wait("a failed attempt", lambda: any(
        a.get("reason") in {"killed", "crash"} for a in world.task(tid).get("history", [])
    ))  # fmt: skip
    # the half-done work was committed on the task branch all the same
    log = subprocess.run(
        ["git", "-C", str(runner.workspace), "log", "--format=%s", f"task/{tid}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"work left uncommitted by task {tid}" in log


def test_sigterm_during_a_task_gives_it_back_and_saves_the_work(world, start_runner) -> None:
    first = start_runner("swarm-builder-000")
    tid = world.add("take your time")
    world.wait("the first file", lambda: (first.workspace / "started.txt").exists())
    second = start_runner("swarm-builder-001")  # idle, it will get the task back
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=30) == 0
    history = world.wait("the task given back", lambda: [
        h for h in world.task(tid)["history"] if h.get("outcome") == "unclaimed"
    ])  # fmt: skip
    assert history[0]["agent"] == "swarm-builder-000" and history[0]["counted"] is False
    record = json.loads((first.state / "runner.json").read_text())
    assert record["task"] == tid and record["active"] is False and record.get("session")
    log = subprocess.run(
        ["git", "-C", str(first.workspace), "log", "--format=%s", f"task/{tid}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"work left uncommitted by task {tid}" in log  # started.txt is saved
    # the other agent takes the task over
    world.wait("the other agent", lambda: any(
        e.get("event") == "runner.promoted" and e.get("task") == tid for e in second.events()
    ), timeout=60)  # fmt: skip


def test_quota_pauses_the_fleet_and_a_probe_resumes_it(world, start_runner) -> None:
    runner = start_runner()
    tid = world.add("we are over quota")
    world.wait("paused", lambda: world.board()["quota"]["paused"], timeout=30)
    ends = [e.get("end") for e in runner.events() if e.get("event") == "runner.demoted"]
    assert "quota" in ends
    # the probe (answered OK by the script) lifts the pause
    world.wait("resumed", lambda: not world.board()["quota"]["paused"], timeout=30)
    assert world.task(tid)["state"] in {"queued", "assigned", "running", "failed"}
