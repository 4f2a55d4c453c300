"""Helpers for driving a real fleet from outside, shared by the end-to-end tests
(tests/integration, tests/status, tests/chaos) and the benchmarks that run fleets
(bench/chaos, bench/recovery): free ports, polling with a bound, the `agentctl server`
process, the task board over HTTP, and finding or killing a process inside an agent's
container the way an operator would (real signals, real pids).

No pytest here: the benchmarks import it as plain Python.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentctl_swarm.model.server import ScriptedModel

REPO = Path(__file__).resolve().parents[2]
AGENTCTL = [sys.executable, "-m", "agentctl_swarm.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed_repo(path: Path) -> Path:
    """A host git repository with one commit on ``main``: what a fleet's ``repo:`` seeds
    the agents' workspaces from and where their synced work lands."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "README.md").write_text("# project\n")
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit",
         "-qm", "start"], check=True,
    )  # fmt: skip
    return path


def task_env(state_dir: Path) -> dict[str, str]:
    """The environment of every `agentctl` a task-running fleet test starts: its own
    state directory, the scripted model's key (a Podman secret of the fleet) and JSON logs."""
    return {
        **os.environ,
        "AGENTCTL_STATE_DIR": str(state_dir),
        "ANTHROPIC_API_KEY": "scripted-model-key",
        "AGENTCTL_LOG_FORMAT": "json",
    }


def wait(
    what: str, pred: Callable[[], object], timeout: float = 90, board: str | None = None
) -> object:
    """Poll ``pred`` until it returns something truthy (returned); AssertionError after
    ``timeout`` s, with the coordinator's board appended when ``board`` is given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.3)
    seen = ""
    if board:  # what the coordinator knew, to see why
        with urllib.request.urlopen(f"{board}/api/v1/tasks", timeout=10) as resp:
            seen = resp.read().decode()[-3000:]
        with urllib.request.urlopen(f"{board}/api/v1/agents", timeout=10) as resp:
            seen += "\n" + resp.read().decode()[-2000:]
    raise AssertionError(f"timed out waiting for {what}\n{seen}")


def start_server(args: list[str], env: dict[str, str], **popen: object) -> subprocess.Popen[bytes]:
    """`agentctl server ARGS` as a child process (its output discarded unless redirected)."""
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen([*AGENTCTL, "server", *args], cwd=REPO, env=env, **popen)  # type: ignore[call-overload]


def answers(http: str) -> bool:
    """Does the task board at ``http`` answer?"""
    try:
        with urllib.request.urlopen(f"{http}/api/v1/status", timeout=2):
            return True
    except OSError:
        return False


def host_pid(container: str, match: Callable[[list[bytes]], bool]) -> int:
    """The host pid of the first process in ``container`` whose argv ``match`` accepts,
    walking the container's process tree from its init through /proc (so a signal from
    the host reaches exactly that process)."""
    top = subprocess.run(
        ["podman", "inspect", "--format", "{{.State.Pid}}", container],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    todo = [top]
    while todo:
        pid = todo.pop()
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if pid != top and match(argv):
                return int(pid)
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += (task / "children").read_text().split()
        except OSError:  # it ended while we looked
            continue
    raise LookupError(f"no such process in {container}")


def is_runner(argv: list[bytes]) -> bool:
    """`agentctl-agent run` (the runner), not its supervisor."""
    return b"run" in argv and b"supervise" not in argv and any(b"agentctl-agent" in a for a in argv)


def is_supervisor(argv: list[bytes]) -> bool:
    return b"supervise" in argv and any(b"agentctl-agent" in a for a in argv)


def is_claude(argv: list[bytes]) -> bool:
    """Claude Code started by the runner (`claude -p --output-format stream-json`)."""
    return b"--output-format" in argv


@dataclass
class Fleet:
    """A running fleet as the tests see it: its file, chat server, board and model."""

    name: str
    file: Path
    url: str
    http: str
    model: ScriptedModel
    env: dict[str, str]
    server_args: list[str]
    server: subprocess.Popen[bytes]
    host_repo: Path

    def agentctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*AGENTCTL, *args], capture_output=True, text=True, cwd=REPO, env=self.env, timeout=120
        )
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def add(self, prompt: str, role: str = "builder") -> str:
        out = self.agentctl("task", "add", prompt, "--role", role, "--server", self.url)
        return out.stdout.strip().splitlines()[-1]

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.http}/api/v1/{path}", timeout=10) as resp:
            return json.loads(resp.read())

    def task(self, tid: str) -> dict:
        return self.get(f"tasks/{tid}")

    def container(self, agent: str) -> str:
        return f"{self.name}-{agent}"

    def runs(self, agent: str) -> list[dict]:
        """The runner's `runner.started` events (one per Claude Code process)."""
        logs = self.agentctl("logs", agent, "--fleet", self.name, "--raw").stdout
        out = []
        for line in logs.splitlines():
            if '"runner.started"' not in line:
                continue
            record = json.loads(line)
            out.append(json.loads(record["message"]) if "event" not in record else record)
        return out

    def kill_in(self, agent: str, needle: str) -> None:
        """SIGKILL the container's process whose argv contains ``needle`` (and not
        ``supervise``)."""
        script = (
            "import os, signal\n"
            "for p in os.listdir('/proc'):\n"
            "    if not p.isdigit(): continue\n"
            "    try: argv = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')\n"
            "    except OSError: continue\n"
            f"    line = b' '.join(argv)\n"
            f"    if {needle.encode()!r} in line and b'supervise' not in line:\n"
            "        os.kill(int(p), signal.SIGKILL); print(p)\n"
        )
        out = subprocess.run(
            ["podman", "exec", self.container(agent), "python3", "-c", script],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert out.stdout.strip(), f"no {needle!r} process in {agent}"

    def restart_server(self) -> None:
        self.server.kill()  # kill -9: no chance to flush anything
        self.server.wait(timeout=30)
        self.server = start_server(self.server_args, self.env)
        wait("the server again", lambda: answers(self.http), timeout=60)
