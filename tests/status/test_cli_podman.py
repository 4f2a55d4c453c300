"""The four commands' failure paths through the real CLI, on real Podman but with no
container (fast): a fleet nobody started, its server not running."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.conftest import run_agentctl

pytestmark = pytest.mark.podman


@pytest.fixture
def fleet_file(tmp_path: Path, podman_backend) -> Path:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    file = tmp_path / "fleet.yaml"
    file.write_text(
        "apiVersion: agentctl.io/v1\nkind: Fleet\nmetadata: {name: nobodyhome}\n"
        f"embedded: {{host: 127.0.0.1, port: {port}}}\n"
        "agents:\n  - role: builder\n    replicas: 2\n    runtime: claude\n"
    )
    return file


def _env(tmp_path: Path) -> dict[str, str]:
    return {"AGENTCTL_STATE_DIR": str(tmp_path / "state"), "AGENTCTL_SERVER_URL": ""}


def test_status_of_a_fleet_that_is_not_up(fleet_file: Path, tmp_path: Path) -> None:
    proc = run_agentctl("status", "-f", str(fleet_file), "-o", "json", env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [a["state"] for a in doc["agents"]] == ["missing", "missing"]
    assert doc["board"]["reachable"] is False
    (note,) = proc.stderr.splitlines()
    assert note.startswith("note: cannot read the task board at http://127.0.0.1:")
    assert note.endswith("showing what Podman knows")


def test_top_once_without_a_terminal_prints_one_frame(fleet_file: Path, tmp_path: Path) -> None:
    proc = run_agentctl("top", "-f", str(fleet_file), "-n", "1", env=_env(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "agentctl top · fleet nobodyhome" in proc.stdout
    assert "showing what Podman knows" in proc.stdout
    assert proc.stdout.count("missing") >= 2


def test_transcript_of_an_agent_that_has_no_container(fleet_file: Path, tmp_path: Path) -> None:
    proc = run_agentctl(
        "transcript", "swarm-builder-001", "-f", str(fleet_file), env=_env(tmp_path)
    )
    assert proc.returncode == 1
    assert (
        "agent swarm-builder-001 in fleet 'nobodyhome' has no container (deleted?)" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    both = run_agentctl(
        "transcript", "t-1", "-f", str(fleet_file), "--fleet", "x", env=_env(tmp_path)
    )
    assert both.returncode == 2 and "give the fleet once" in both.stderr
    task = run_agentctl("transcript", "t-1", "-f", str(fleet_file), env=_env(tmp_path))
    assert task.returncode == 1
    assert "no transcript of task 't-1' in the containers of fleet 'nobodyhome'" in task.stderr
    assert "note: cannot read the task board" in task.stderr  # why the containers were searched
