"""The commands when Podman itself does not answer: one line with the fix, exit 3, for
each of status, top and transcript (events needs no Podman)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_agentctl

FLEET = "apiVersion: agentctl.io/v1\nkind: Fleet\nmetadata: {name: f}\nagents: [{role: b, runtime: claude}]\n"


@pytest.mark.parametrize(
    "args", [["status"], ["top", "-n", "1"], ["transcript", "t-1"]], ids=lambda a: a[0]
)
def test_podman_unreachable_is_one_line_and_exit_3(tmp_path: Path, args: list[str]) -> None:
    file = tmp_path / "fleet.yaml"
    file.write_text(FLEET)
    env = {"AGENTCTL_PODMAN_URL": f"unix://{tmp_path}/none.sock",
           "AGENTCTL_STATE_DIR": str(tmp_path)}  # fmt: skip
    proc = run_agentctl(*args, "-f", str(file), env=env, timeout=60)
    assert proc.returncode == 3, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: cannot reach the Podman API at unix://")
    assert "agentctl doctor --fix" in line
