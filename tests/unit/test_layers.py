"""The pure core stays pure: importing it loads no I/O machinery (checked in a fresh
interpreter, from ``sys.modules``), and the import-linter contracts hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PURE = [
    "agentctl_swarm.controller.planner",
    "agentctl_swarm.fleet.render",
    "agentctl_swarm.fleet.loader",
    "agentctl_swarm.core.backoff",
    "agentctl_swarm.chat.protocol",
]
# podman-py, the websockets transport, GitPython, and our own modules that run
# subprocesses or talk to Podman.
FORBIDDEN = [
    "podman",
    "websockets",
    "git",
    "agentctl_swarm.podman.backend",
    "agentctl_swarm.core.proc",
    "agentctl_swarm.sync.hostrepo",
    "agentctl_swarm.chat.server.transport",
]


@pytest.mark.parametrize("module", PURE)
def test_importing_a_pure_module_loads_no_io_machinery(module: str) -> None:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    loaded = set(json.loads(proc.stdout))
    assert sorted(m for m in FORBIDDEN if m in loaded) == []


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout
