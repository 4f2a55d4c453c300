"""`agentctl export kube|quadlet` as a user types them: output, files, errors, exit codes."""

from __future__ import annotations

from ruamel.yaml import YAML

from tests.conftest import run_agentctl
from tests.export.fleets import DEMO
from tests.export.test_kube import BAD


def test_export_kube_to_stdout_is_yaml_with_the_notes_on_top():
    proc = run_agentctl("export", "kube", "-f", str(DEMO), check=True, timeout=60)
    head = proc.stdout.split("---", 1)[0]
    assert head.startswith("# agentctl export kube --for kube: fleet 'demo'")
    assert "kubectl create secret generic agentctl-demo-builder" in head
    assert "# Not expressible here:" in head
    docs = [d for d in YAML(typ="safe").load_all(proc.stdout) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds.count("StatefulSet") == 1 and "Deployment" in kinds and "NetworkPolicy" in kinds
    assert "warning: " in proc.stderr  # what was lost is said on stderr as well


def test_export_kube_refuses_an_unexportable_fleet_with_locations(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    out = tmp_path / "out.yaml"
    proc = run_agentctl("export", "kube", "-f", str(bad), "-o", str(out), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}:11:" in proc.stderr and "host path '/srv/data'" in proc.stderr
    assert "5 problems exporting to Kubernetes; nothing was written" in proc.stderr
    assert not out.exists()


def test_export_kube_checks_its_options(tmp_path):
    proc = run_agentctl(
        "export", "kube", "-f", str(DEMO), "--workspace-size", "10GB", "-n", "Bad_NS",
        "--coordinator-id", "nope", timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    for word in ("--workspace-size '10GB'", "--namespace", "--coordinator-id nope"):
        assert word in proc.stderr


def test_export_quadlet_writes_units_and_names_stale_ones(tmp_path):
    fleet = tmp_path / "fleet.yaml"
    text = DEMO.read_text().replace("path: project", f"path: {DEMO.parent / 'project'}")
    fleet.write_text(text)
    units = tmp_path / "units"
    run_agentctl("export", "quadlet", "-f", str(fleet), "-d", str(units), check=True, timeout=60)
    names = sorted(p.name for p in units.iterdir())
    assert "demo-swarm-builder-001.container" in names and "README.agentctl" in names
    (units / "someone-elses.container").write_text("[Container]\nImage=x\n")
    fleet.write_text(text.replace("replicas: 2", "replicas: 1"))
    proc = run_agentctl(
        "export", "quadlet", "-f", str(fleet), "-d", str(units), check=True, timeout=60
    )
    stale = next(line for line in proc.stderr.splitlines() if "no longer has" in line)
    for unit in ("container", "state.volume", "workspace.volume"):
        assert f"demo-swarm-builder-001{'.' if unit == 'container' else '-'}{unit}" in stale
    assert "demo-swarm-builder-000" not in stale
    assert "someone-elses" not in proc.stderr
    assert (units / "demo-swarm-builder-001.container").exists()  # named, never deleted
