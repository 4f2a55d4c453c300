"""The Quadlet units' containers really run: each unit's `podman run` (as Quadlet 4.7
would write it, see quadlet_ref.py) started on this host's Podman without systemd, the
server and two agents come up, an agent takes a task and finishes it, and the fleet's
containers, volumes and secret are removed again.

Only the flags that need systemd around them (`--cidfile=%t/..`, `--cgroups=split`,
`--sdnotify=conmon`) are left out; everything the units say about the container is used
as written: user namespace, volumes with :U, the secret's mount, limits, labels.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from tests.conftest import _unavailable, cleanup_fleet, run_agentctl
from tests.export import quadlet_ref as ref
from tests.export.fleets import TOKEN, runner_fleet
from tests.export.live import free_port, podman, run_task

pytestmark = pytest.mark.podman

SYSTEMD_ONLY = ("--cidfile=", "--cgroups=split", "--sdnotify=conmon")


def _run_argv(unit: ref.Unit, names: dict[str, str]) -> list[str]:
    argv = ref.podman_argv(unit, names)
    argv = [w for w in argv if not w.startswith(SYSTEMD_ONLY)]
    return [ref.systemd_literal(w) for w in argv[1:]]  # argv[0] is /usr/bin/podman


def test_quadlet_units_run_on_podman(tmp_path: Path, podman_backend, agent_image):
    if shutil.which("podman") is None:
        _unavailable("the podman command is not installed")
    name = f"qd{secrets.token_hex(3)}"
    port = free_port()
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(runner_fleet(name, port, agent_image))
    out = tmp_path / "units"
    run_agentctl("export", "quadlet", "-f", str(fleet), "-d", str(out), check=True)
    units = {p.name: ref.parse_unit(p.name, p.read_text()) for p in sorted(out.iterdir())}
    names = {n: u.last("Volume", "VolumeName") for n, u in units.items() if n.endswith(".volume")}
    containers = [u for n, u in units.items() if n.endswith(".container")]
    secret_names = {
        ref.split_words(s)[0].split(",")[0]
        for u in containers
        for s in u.all("Container", "Secret")
    }
    assert len(secret_names) == 1
    try:
        for secret in secret_names:
            assert podman("secret", "create", secret, "-", input=TOKEN).returncode == 0
        for unit_name, unit in units.items():
            if unit_name.endswith(
                ".volume"
            ):  # what <name>-volume.service does (no --ignore on 4.3)
                labels = ref.key_values(unit.all("Volume", "Label"))
                flags = [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]
                created = podman("volume", "create", *flags, names[unit_name])
                assert created.returncode == 0, created.stderr
        # The server first, as the agents' units want it.
        for unit in sorted(containers, key=lambda u: "agentchat" not in u.name):
            started = podman(*_run_argv(unit, names), timeout=120)
            assert started.returncode == 0, (unit.name, started.stderr)
        task = run_task(port)
        assert task["state"] == "done", task
    finally:
        podman("rm", "-f", "-t", "2", f"{name}-agentchat")
        cleanup_fleet(podman_backend, name)
        for secret in secret_names:
            podman("secret", "rm", secret)
    assert not podman(
        "ps", "-a", "-q", "--filter", f"label=io.agentctl.fleet={name}"
    ).stdout.strip()
    assert not podman(
        "volume", "ls", "-q", "--filter", f"label=io.agentctl.fleet={name}"
    ).stdout.strip()
