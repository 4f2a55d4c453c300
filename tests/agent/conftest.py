"""Helpers to run the real supervisor as a subprocess against a tmp state dir."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# A small agent stand-in. Modes: sleep, exit N, flaky N (exit 1 on the first N starts,
# then sleep), ignore-term, family (spawns a grandchild), grandchild.
# It records starts and SIGTERMs as files in $T_DIR.
CHILD = r"""
import os, signal, subprocess, sys, time
from pathlib import Path

d = Path(os.environ["T_DIR"])
mode = sys.argv[1]

def on_term(name):
    def handler(signum, frame):
        (d / f"{name}.term").write_text(str(os.getpid()))
        sys.exit(0)
    return handler

if mode != "grandchild":
    with open(d / "starts", "a") as f:
        f.write(f"{os.getpid()}\n")
print(f"hello from {mode}", flush=True)
if mode == "exit":
    sys.exit(int(sys.argv[2]))
if mode == "flaky" and len((d / "starts").read_text().split()) <= int(sys.argv[2]):
    sys.exit(1)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "family":
    signal.signal(signal.SIGTERM, on_term("child"))
    subprocess.Popen([sys.executable, __file__, "grandchild"])
if mode == "grandchild":
    signal.signal(signal.SIGTERM, on_term("grandchild"))
(d / f"{mode}.ready").write_text(str(os.getpid()))
while True:
    time.sleep(0.2)
"""

WAIT_LIMIT = 60.0  # generous: only reached when something is broken


class Sup:
    """One supervisor process under test."""

    def __init__(self, tmp: Path, mark: str) -> None:
        self.tmp = tmp
        self.mark = mark
        self.state_dir = tmp / "state"
        self.child_script = tmp / "child.py"
        self.child_script.write_text(CHILD)
        self.proc: subprocess.Popen[bytes] | None = None
        self.out_path = tmp / "out0.log"
        self.runs = 0

    def child(self, *args: str) -> list[str]:
        """argv of the stand-in agent."""
        return [sys.executable, str(self.child_script), *args]

    def start(
        self,
        cmd: list[str],
        *opts: str,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> Sup:
        self.runs += 1
        self.out_path = self.tmp / f"out{self.runs}.log"
        full_env = {**os.environ, "T_DIR": str(self.tmp), "T_MARK": self.mark, **(env or {})}
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "agentctl_swarm.agent.cli",
            "supervise",
            "--state-dir",
            str(self.state_dir),
            "--workspace",
            str(self.tmp / "ws"),
            "--poll-interval",
            "0.05",
            *opts,
            "--",
            *cmd,
        ]
        if "--prepare" not in opts:
            argv[argv.index("--poll-interval") : argv.index("--poll-interval")] = [
                "--prepare",
                "none",
            ]
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env)
        return self

    def run(self, cmd: list[str], *opts: str, env: dict[str, str] | None = None) -> int:
        """Start and wait for the supervisor to exit on its own."""
        self.start(cmd, *opts, env=env)
        return self.wait_exit()

    def wait_exit(self) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=WAIT_LIMIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"supervisor did not exit; output:\n{self.output()}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def host_pids(self, *words: str) -> list[int]:
        """Host PIDs of this test's Python processes whose argv contains all ``words``."""
        needle, found = f"T_MARK={self.mark}".encode(), []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if needle not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
                if argv[0] == sys.executable and all(w in argv for w in words):
                    found.append(int(entry.name))
        return found

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.state_dir / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def starts(self) -> list[int]:
        path = self.tmp / "starts"
        return [int(x) for x in path.read_text().split()] if path.exists() else []

    def wait_for(self, what: str, pred: Callable[[], Any]) -> Any:
        """Poll ``pred`` until truthy; fail with the output after a generous limit."""
        end = time.monotonic() + WAIT_LIMIT
        while time.monotonic() < end:
            value = pred()
            if value:
                return value
            if self.proc is not None and self.proc.poll() is not None and not pred():
                pytest.fail(
                    f"supervisor exited ({self.proc.returncode}) before {what}:\n{self.output()}"
                )
            time.sleep(0.02)
        pytest.fail(f"timed out waiting for {what}; output:\n{self.output()}")

    def wait_status(self, status: str, **match: Any) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            s = self.state()
            if s and s["status"] == status and all(s.get(k) == v for k, v in match.items()):
                return s
            return None

        return self.wait_for(f"status {status} {match}", check)


def _kill_marked(mark: str) -> None:
    """SIGKILL every process that carries this test's marker in its environment."""
    needle = f"T_MARK={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Sup]:
    """A supervisor harness; every process it started is killed afterwards."""
    mark = uuid.uuid4().hex
    harness = Sup(tmp_path, mark)
    try:
        yield harness
    finally:
        _kill_marked(mark)
        if harness.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                harness.proc.wait(timeout=10)
