"""Quadlet units: built from the rendered specs, only documented keys, quoting that survives
Quadlet's and systemd's parsers, and services systemd accepts.

This host has Podman 4.3 and no Quadlet generator, so the services are derived by
tests/export/quadlet_ref.py (Quadlet 4.7's rules for the keys used) and checked with
`systemd-analyze verify`; where the generator exists, its dry run is checked too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agentctl_swarm.export.quadlet import QuadletOptions, agent_server_url, export_quadlet
from agentctl_swarm.fleet.render import render_fleet
from tests.export import quadlet_ref as ref
from tests.export.fleets import CLAUDE, SENTINEL_ENV, SENTINEL_FILE, demo, loaded

HOME = Path("/home/exporter")
QUADLET = next(
    (p for p in ("/usr/libexec/podman/quadlet", "/usr/lib/podman/quadlet") if Path(p).exists()),
    None,
)
WITH_BIND = CLAUDE.replace(
    "      - {source: datasets, target: /data, read_only: true}\n    secrets:",
    "      - {source: datasets, target: /data, read_only: true}\n"
    "      - {source: ~/notes, target: /notes}\n    secrets:",
)


def _units(text: str = WITH_BIND, **options):
    result = export_quadlet(loaded(text).fleet, QuadletOptions(**options), home=HOME)
    return result, {u.name: ref.parse_unit(u.name, u.text()) for u in result.units}


def _volume_names(units: dict[str, ref.Unit]) -> dict[str, str]:
    return {
        name: unit.last("Volume", "VolumeName") or f"systemd-{name.removesuffix('.volume')}"
        for name, unit in units.items()
        if name.endswith(".volume")
    }


def test_one_container_and_two_volumes_per_agent_plus_the_server():
    _, units = _units()
    fleet = loaded(WITH_BIND).fleet
    specs = render_fleet(fleet, home=HOME, server_url=agent_server_url(fleet))
    for spec in specs:
        assert f"{spec.name}.container" in units
        assert f"{spec.workspace_volume}.volume" in units
        assert f"{spec.state_volume}.volume" in units
    assert "prod-agentchat.container" in units and "prod-agentchat-data.volume" in units
    assert "datasets.volume" in units  # the named volume the roles share: one unit
    containers = [n for n in units if n.endswith(".container")]
    assert len(containers) == len(specs) + 1
    assert len(units) == len(containers) + 2 * len(specs) + 2


def test_containers_are_hardened_like_apply():
    _, units = _units()
    unit = units["prod-swarm-builder-000.container"]
    c = "Container"
    assert unit.last(c, "ContainerName") == "prod-swarm-builder-000"
    assert unit.last(c, "HostName") == "swarm-builder-000"
    assert unit.last(c, "User") == "1000" and unit.last(c, "Group") == "1000"
    assert unit.all(c, "DropCapability") == ["ALL"]
    assert unit.last(c, "NoNewPrivileges") == "true"
    assert unit.last(c, "UserNS") == "auto:size=65536"
    assert unit.last(c, "Network") == "host"
    assert unit.last(c, "Tmpfs") == "/tmp:rw,size=256m,mode=1777"
    assert unit.last(c, "PidsLimit") == "512"
    assert ref.split_words(unit.last(c, "PodmanArgs")) == [
        "--memory=2147483648",
        "--cpus=1.5",
        "--stop-timeout=15",
    ]
    volumes = unit.all(c, "Volume")
    assert "prod-swarm-builder-000-workspace.volume:/workspace:U" in volumes
    assert "prod-swarm-builder-000-state.volume:/state:U" in volumes
    assert "datasets.volume:/data:ro,U" in volumes
    assert f"{HOME}/notes:/notes" in volumes  # a bind mount is fine on a Podman host
    assert "/sys:/sys:ro" in volumes  # host network in its own user namespace (as apply)
    assert unit.last("Service", "Restart") == "on-failure"
    assert unit.last("Unit", "StartLimitBurst") == "4"  # restart_retries 3, then give up
    assert unit.last("Unit", "StartLimitIntervalSec") == "300"
    assert unit.all("Unit", "Wants") == ["prod-agentchat.service"]
    reviewer = units["prod-swarm-reviewer-000.container"]
    assert reviewer.last("Service", "Restart") == "always"


def test_rootless_units_leave_the_user_namespace_to_podman():
    _, units = _units(rootless=True)
    unit = units["prod-swarm-builder-000.container"]
    assert unit.last("Container", "UserNS") is None
    assert "prod-swarm-builder-000-workspace.volume:/workspace" in unit.all("Container", "Volume")
    assert "/sys:/sys:ro" not in unit.all("Container", "Volume")


def test_secrets_by_name_never_by_value(monkeypatch, tmp_path):
    token = tmp_path / "gh-token"
    token.write_text(SENTINEL_FILE)
    monkeypatch.setenv("EXPORT_TEST_KEY", SENTINEL_ENV)
    result, units = _units(WITH_BIND.replace("/etc/agentctl/gh-token", str(token)))
    text = "".join(u.text() for u in result.units) + "\n".join(result.notes + result.warnings)
    assert SENTINEL_ENV not in text and SENTINEL_FILE not in text
    fleet = loaded(WITH_BIND).fleet
    spec = render_fleet(fleet, home=HOME, server_url=agent_server_url(fleet))[0]
    secrets = [
        ref.split_words(s) for s in units[f"{spec.name}.container"].all("Container", "Secret")
    ]
    assert secrets == [
        [f"{s.podman_name},type=mount,target={s.name},uid=1000,gid=1000,mode=0400"]
        for s in spec.secrets
    ]
    hints = next(n for n in result.notes if "podman secret create" in n)
    assert f'"$EXPORT_TEST_KEY" | podman secret create {spec.secrets[0].podman_name} -' in hints


def test_values_survive_quadlet_and_systemd_parsing():
    """Env, labels and argv come back exactly after Quadlet's unquoting and systemd's
    `$$`/`%%` unescaping: what the container gets is what the renderer said."""
    text = WITH_BIND.replace(
        'PRICE: "$5 or 50%"', 'PRICE: "$5 or 50%", QUOTES: "a \\"b\\" \'c\' \\\\d", TAB: "x\\ty"'
    )
    fleet = loaded(text).fleet
    result = export_quadlet(fleet, QuadletOptions(), home=HOME)
    units = {u.name: ref.parse_unit(u.name, u.text()) for u in result.units}
    names = _volume_names(units)
    for spec in render_fleet(fleet, home=HOME, server_url=agent_server_url(fleet)):
        argv = ref.podman_argv(units[f"{spec.name}.container"], names)
        # Past Quadlet's own `--cidfile=%t/%N.cid`, every $ and % must be an escaped one.
        argv = [w if "%t/%N" in w else ref.systemd_literal(w) for w in argv]
        env = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--env")
        labels = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--label")
        assert env == spec.env
        assert env["QUOTES"] == "a \"b\" 'c' \\d" and env["TAB"] == "x\ty"
        assert labels == {k: v for k, v in spec.labels.items() if k != "io.agentctl.spec-hash"}
        image = argv.index(spec.image)
        assert argv[image + 1 :] == spec.command
        assert f"--name={spec.name}" in argv
        assert f"{spec.workspace_volume}:/workspace:U" in argv  # VolumeName keeps apply's


def test_only_documented_quadlet_keys():
    for fleet_text in (WITH_BIND, None):
        fleet = loaded(fleet_text).fleet if fleet_text else demo().fleet
        for unit in export_quadlet(fleet, QuadletOptions(), home=HOME).units:
            parsed = ref.parse_unit(unit.name, unit.text())
            section = "Container" if unit.name.endswith(".container") else "Volume"
            allowed = ref.CONTAINER_KEYS if section == "Container" else ref.VOLUME_KEYS
            keys = {k for s, k, _ in parsed.entries if s == section}
            assert keys and keys <= allowed, (unit.name, keys - allowed)
            install = {k for s, k, _ in parsed.entries if s == "Install"}
            assert install <= ref.INSTALL_KEYS
            assert set(parsed.sections()) <= {"Unit", section, "Service", "Install"}


def test_repo_seeding_is_a_warning():
    result = export_quadlet(demo().fleet, QuadletOptions(), home=HOME)
    assert any("repo:" in w for w in result.warnings)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("rootless", [False, True])
def test_derived_services_pass_systemd_analyze_verify(tmp_path, rootless):
    _, units = _units(rootless=rootless)
    names = _volume_names(units)
    services = []
    for name, unit in units.items():
        if name.endswith(".container"):
            service = tmp_path / name.replace(".container", ".service")
            service.write_text(ref.container_service(unit, names))
        else:
            service = tmp_path / name.replace(".volume", "-volume.service")
            service.write_text(ref.volume_service(unit))
        services.append(str(service))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *services],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # verify exits 0 on unknown keys and unparsable values: any line about our units fails.
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if str(tmp_path) in line]
    assert not ours, "\n".join(ours)


def test_systemd_analyze_catches_a_bad_unit(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze")
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=/usr/bin/podman run x\nRestart=sometimes\n")
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(bad)], capture_output=True, text=True
    )
    assert str(bad) in proc.stderr  # the check above would have failed on it


@pytest.mark.skipif(QUADLET is None, reason="no Quadlet generator on this host (Podman < 4.4)")
def test_quadlet_generator_dry_run(tmp_path):
    result, _ = _units()
    for unit in result.units:
        (tmp_path / unit.name).write_text(unit.text())
    proc = subprocess.run(
        [QUADLET, "-dryrun"], capture_output=True, text=True, timeout=60,
        env={"QUADLET_UNIT_DIRS": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "prod-swarm-builder-000.service" in proc.stdout
    assert "--cap-drop=all" in proc.stdout and "--secret" in proc.stdout
