"""kill -9 of a running `agentctl sync` at arbitrary moments never corrupts or loses work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentctl_swarm.fleet.model import RepoSpec
from agentctl_swarm.sync.hostrepo import HostRepo

from .conftest import git, write_fleet

pytestmark = pytest.mark.podman
AGENTCTL = str(Path(sys.executable).parent / "agentctl")


def test_kill_9_mid_sync_then_restart_is_consistent_and_complete(
    make_agent, host_repo: Path, tmp_path: Path
) -> None:
    agent = make_agent(repo=RepoSpec(path=str(host_repo)))
    a = agent.spec.agent
    fleet_file = write_fleet(tmp_path / "fleet.yaml", agent.spec.fleet, host_repo, host_repo)
    env = {**os.environ, "AGENTCTL_STATE_DIR": str(make_agent.state_dir), "PYTHONUNBUFFERED": "1"}
    messages = []
    # Kill at staggered moments after the daemon's first pass begins, so the kills land in
    # the export, the copy, the unpack or the ref update (a pass with 4 MB new takes ~0.4 s).
    for round_, delay in enumerate([0.05, 0.15, 0.25, 0.3, 0.35, 0.45]):
        msg = f"round {round_}"
        agent.sh(
            f"head -c 4000000 /dev/urandom > blob{round_}.bin"
            f" && git add . && git commit -qm '{msg}'"
            f" && echo wip{round_} > wip.txt"
        )
        messages.append(msg)
        proc = subprocess.Popen(
            [AGENTCTL, "sync", "-f", str(fleet_file), "--interval", "0.05"],
            env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / f"log{round_}").open("w"),
        )  # fmt: skip
        log = tmp_path / f"log{round_}"
        deadline = time.monotonic() + 60
        while "sync.start" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        code, out = HostRepo(host_repo).fsck()
        assert code == 0 and "error" not in out and "missing" not in out, out
    done = subprocess.run(
        [AGENTCTL, "sync", "-f", str(fleet_file), "--once", "-o", "json"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)[0]["ok"] is True
    head = agent.sh("git rev-parse HEAD").strip()
    assert git(host_repo, "rev-parse", f"swarm/{a}/work") == head
    log = git(host_repo, "log", "--format=%s", f"swarm/{a}/work").splitlines()
    assert all(m in log for m in messages)
    assert git(host_repo, "show", f"swarm/{a}/wip:wip.txt") == "wip5"
    code, out = HostRepo(host_repo).fsck()
    assert code == 0 and "error" not in out, out


def test_sigterm_stops_the_daemon_cleanly(make_agent, host_repo: Path, tmp_path: Path) -> None:
    agent = make_agent(repo=RepoSpec(path=str(host_repo)))
    fleet_file = write_fleet(tmp_path / "fleet.yaml", agent.spec.fleet, host_repo, host_repo)
    env = {**os.environ, "AGENTCTL_STATE_DIR": str(make_agent.state_dir), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "daemon.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [AGENTCTL, "sync", "-f", str(fleet_file), "--interval", "0.2"],
            env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while "sync.ok" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events[0] == "sync.start" and "sync.ok" in events and events[-1] == "sync.stop"
