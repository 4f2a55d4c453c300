"""The combining and rendering behind status, top, events and transcript stay pure:
importing them loads no I/O machinery (a fresh interpreter, checked from sys.modules)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

FORBIDDEN = ("podman", "websockets", "git", "urllib.request", "http.client", "subprocess",
             "agentctl_swarm.podman.backend", "agentctl_swarm.controller.status")  # fmt: skip


@pytest.mark.parametrize(
    "module", ["agentctl_swarm.controller.fleet_view", "agentctl_swarm.controller.transcript"]
)
def test_importing_loads_no_io(module: str) -> None:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    loaded = set(json.loads(proc.stdout))
    assert not [m for m in FORBIDDEN if m in loaded]
