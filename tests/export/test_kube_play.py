"""The exported YAML really runs: `podman kube play` starts the chat server and two agents
from `agentctl export kube --for podman`, an agent takes a task through the server and
finishes it, and `podman kube down` (plus the volumes and secret) leaves nothing behind.

Host networking keeps every connection on 127.0.0.1. The task's command checks what the
export must get right inside the pod: the secret file, a literal `$` and `%` in the env.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import _unavailable, run_agentctl
from tests.export.fleets import TOKEN, runner_fleet
from tests.export.live import free_port, podman, run_task

pytestmark = pytest.mark.podman


def test_kube_play_runs_the_exported_fleet(tmp_path: Path, podman_backend, agent_image):
    if shutil.which("podman") is None:
        _unavailable("the podman command is not installed (kube play needs it)")
    name = f"kp{secrets.token_hex(3)}"
    port = free_port()
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(runner_fleet(name, port, agent_image))
    play = tmp_path / "play.yaml"
    run_agentctl("export", "kube", "-f", str(fleet), "--for", "podman", "-o", str(play), check=True)
    docs = [d for d in YAML(typ="safe").load_all(play.read_text()) if d]
    assert sorted(d["kind"] for d in docs) == ["Deployment", "Pod", "Pod"]
    volumes = sorted(
        {
            v["persistentVolumeClaim"]["claimName"]
            for d in docs
            for v in (d["spec"].get("template", {}).get("spec") or d["spec"])["volumes"]
            if "persistentVolumeClaim" in v
        }
    )
    secret = f"agentctl-{name}-worker"
    # A Podman secret holding a `kind: Secret` document: how kube play 4.3 reads Secret
    # volumes (it writes `data` values into the pod as written).
    doc = f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {secret}}}\ndata:\n  EXPORT_TOKEN: {TOKEN}\n"
    assert podman("secret", "create", secret, "-", input=doc).returncode == 0
    try:
        started = podman("kube", "play", str(play), timeout=180)
        if started.returncode != 0 and "catatonit" in started.stderr:
            _unavailable(
                "podman kube play needs catatonit for its pause container "
                "(apt-get install catatonit): " + started.stderr.strip()[-200:]
            )
        assert started.returncode == 0, started.stderr
        task = run_task(port)
        assert task["state"] == "done", task
        assert task["assignee"] in ("swarm-worker-000", "swarm-worker-001")

        inspect = json.loads(podman("inspect", f"{name}-swarm-worker-000-agent").stdout)[0]
        host = inspect["HostConfig"]
        assert inspect["Config"]["Labels"]["io.agentctl.agent"] == "swarm-worker-000"
        assert inspect["Config"]["Labels"]["io.agentctl.fleet"] == name
        assert inspect["Config"]["User"] == "1000:1000"
        assert host["ReadonlyRootfs"] is True
        assert "no-new-privileges" in host["SecurityOpt"]
        assert "CAP_CHOWN" in host["CapDrop"] and not host.get("CapAdd")
        assert host["Memory"] == 256 * 1024**2 and host["NanoCpus"] == 500_000_000
        assert host["NetworkMode"] == "host"
    finally:
        down = podman("kube", "down", str(play), timeout=120)
        podman("secret", "rm", secret)
        podman("volume", "rm", "-f", *volumes, secret)
        left = podman("ps", "-a", "--filter", f"label=io.agentctl.fleet={name}", "-q").stdout
        left_volumes = [v for v in podman("volume", "ls", "-q").stdout.split() if name in v]
    assert down.returncode == 0, down.stderr
    assert not left.strip() and not left_volumes, (left, left_volumes)
