"""Without git on PATH, apply and delete refuse with the fix instead of running without
seeding or the final sync (which would lose an agent's work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_agentctl
from tests.integration.test_apply import write_fleet

pytestmark = pytest.mark.podman


def _no_git_path(tmp_path: Path) -> str:
    empty = tmp_path / "bin-without-git"
    empty.mkdir()
    return str(empty)


def test_apply_and_delete_refuse_without_git(
    tmp_path, fleet_name, agent_image, podman_backend
) -> None:
    fleet = write_fleet(tmp_path / "fleet.yaml", fleet_name, builders=1)
    no_git = {"PATH": _no_git_path(tmp_path)}

    refused = run_agentctl("apply", "-f", str(fleet), env=no_git)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "git is not installed" in refused.stderr
    assert "apt-get install git" in refused.stderr and "Traceback" not in refused.stderr
    assert podman_backend.list_owned(fleet_name) == []  # nothing was created

    run_agentctl("apply", "-f", str(fleet), check=True)
    before = {o.name for o in podman_backend.list_owned(fleet_name)}
    assert len(before) == 2

    refused = run_agentctl("delete", "-f", str(fleet), "--volumes", env=no_git)
    assert refused.returncode == 1 and "git is not installed" in refused.stderr
    assert {o.name for o in podman_backend.list_owned(fleet_name)} == before  # all kept
    assert podman_backend.list_volumes(fleet_name)  # and their work
