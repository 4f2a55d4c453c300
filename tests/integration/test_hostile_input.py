"""Hostile input and sharp edges, through the real CLI and real Podman (issue 8):
secrets stay per role and rotate; agents are no host user; mounts cannot sneak past the
sensitive-path check through symlinks; a refused create leaves nothing behind; `get`
tells the truth about a killed container."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import SETTINGS, run_agentctl

pytestmark = pytest.mark.podman

HEAD = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {{name: {name}}}
defaults:
  resources: {{memory: 128m, cpus: 0.5, pids: 64}}
  grace_seconds: 2
agents:
"""


def _fleet(tmp_path: Path, name: str, agents: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(HEAD.format(name=name) + agents)
    return path


def _secret(backend, container: str, file: str) -> str:
    res = backend.exec(container, ["cat", f"/run/secrets/{file}"], user="1000:1000")
    assert res.exit_code == 0, res.stderr
    return res.stdout.decode()


def test_same_secret_names_never_leak_across_roles_or_case(
    tmp_path, fleet_name, agent_image, podman_backend
) -> None:
    fleet = _fleet(
        tmp_path,
        fleet_name,
        """\
  - role: alpha
    command: [sleep, infinity]
    secrets:
      - {name: TOKEN, from_env: T_ALPHA}
      - {name: API_KEY, from_env: T_UPPER}
      - {name: api_key, from_env: T_LOWER}
  - role: beta
    command: [sleep, infinity]
    secrets:
      - {name: TOKEN, from_env: T_BETA}
""",
    )
    env = {"T_ALPHA": "alpha-1", "T_BETA": "beta-1", "T_UPPER": "upper", "T_LOWER": "lower"}
    run_agentctl("apply", "-f", str(fleet), check=True, env=env)
    alpha, beta = f"{fleet_name}-swarm-alpha-000", f"{fleet_name}-swarm-beta-000"
    assert _secret(podman_backend, alpha, "TOKEN") == "alpha-1"
    assert _secret(podman_backend, beta, "TOKEN") == "beta-1"
    assert _secret(podman_backend, alpha, "API_KEY") == "upper"
    assert _secret(podman_backend, alpha, "api_key") == "lower"


def test_a_rotated_secret_reaches_the_agent_by_a_plain_apply(
    tmp_path, fleet_name, agent_image, podman_backend
) -> None:
    fleet = _fleet(
        tmp_path,
        fleet_name,
        """\
  - role: alpha
    command: [sleep, infinity]
    secrets: [{name: TOKEN, from_env: T_ROT}]
""",
    )
    name = f"{fleet_name}-swarm-alpha-000"
    run_agentctl("apply", "-f", str(fleet), check=True, env={"T_ROT": "first-value"})
    assert _secret(podman_backend, name, "TOKEN") == "first-value"
    assert run_agentctl("diff", "-f", str(fleet), env={"T_ROT": "first-value"}).returncode == 0

    changed = run_agentctl("diff", "-f", str(fleet), env={"T_ROT": "second-value"})
    assert changed.returncode == 1 and "recreate" in changed.stdout
    run_agentctl("apply", "-f", str(fleet), check=True, env={"T_ROT": "second-value"})
    assert _secret(podman_backend, name, "TOKEN") == "second-value"

    # Neither value, nor a plain digest of it, is in a label or the container's config.
    import hashlib

    attrs = json.dumps(podman_backend.inspect(name))
    for value in ("first-value", "second-value"):
        assert value not in attrs
        assert hashlib.sha256(value.encode()).hexdigest()[:10] not in attrs
    # Only the current version of the secret is left in Podman.
    prefix = f"agentctl-{fleet_name}-"
    assert len(podman_backend.list_secrets(prefix)) == 1

    kept = run_agentctl("delete", "-f", str(fleet), check=True)
    assert "kept 2 volumes" in kept.stdout and "1 secrets" in kept.stdout
    assert podman_backend.list_secrets(prefix)
    run_agentctl("delete", "-f", str(fleet), "--volumes", check=True)
    assert podman_backend.list_secrets(prefix) == []


def _host_pid_of(backend, container: str, argv0: bytes) -> str:
    """The host pid of the container's process whose argv[0] is ``argv0``."""
    top = int(backend.inspect(container)["State"]["Pid"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        todo, seen = [str(top)], []
        while todo:
            pid = todo.pop()
            seen.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    todo += (task / "children").read_text().split()
                except OSError:
                    continue
        for pid in seen:
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == argv0:
                    return pid
            except OSError:
                continue
        time.sleep(0.2)
    raise AssertionError(f"no {argv0!r} process in {container}")


def test_agents_run_as_no_host_user(tmp_path, fleet_name, agent_image, podman_backend) -> None:
    """uid 1000 in the container is a subordinate id on the host: a host user with uid
    1000 cannot read the agent's environment (where a `runtime: command` agent's secrets
    are)."""
    if os.geteuid() != 0:
        pytest.skip("rootful Podman: rootless Podman is a user namespace by construction")
    fleet = _fleet(
        tmp_path,
        fleet_name,
        """\
  - role: alpha
    command: [sleep, infinity]
    secrets: [{name: TOKEN, from_env: T_UNS}]
""",
    )
    run_agentctl("apply", "-f", str(fleet), check=True, env={"T_UNS": "no-host-user-sees-this"})
    name = f"{fleet_name}-swarm-alpha-000"
    child = _host_pid_of(podman_backend, name, b"sleep")
    uids = next(
        line.split()[1:]
        for line in Path(f"/proc/{child}/status").read_text().splitlines()
        if line.startswith("Uid:")
    )
    assert int(uids[0]) >= 65536, uids  # a subordinate id, not a host user
    assert b"no-host-user-sees-this" in Path(f"/proc/{child}/environ").read_bytes()  # root can
    # ... but host uid 1000 (a real user on this machine) cannot.
    probe = subprocess.run(
        [
            "setpriv",
            "--reuid=1000",
            "--regid=1000",
            "--clear-groups",
            "cat",
            f"/proc/{child}/environ",
        ],
        capture_output=True,
    )
    assert probe.returncode != 0 and b"no-host-user-sees-this" not in probe.stdout


def test_a_symlink_to_a_sensitive_path_is_refused_at_apply(
    tmp_path, fleet_name, agent_image, podman_backend
) -> None:
    link = tmp_path / "innocent"
    link.symlink_to("/etc")
    state = tmp_path / "state-link"
    state.symlink_to(SETTINGS.state_dir)
    fleet = _fleet(
        tmp_path,
        fleet_name,
        f"""\
  - role: alpha
    command: [sleep, infinity]
    volumes:
      - {{source: {link}, target: /data}}
      - {{source: {state}, target: /more}}
""",
    )
    assert run_agentctl("validate", str(fleet)).returncode == 0  # lexically harmless
    proc = run_agentctl("apply", "-f", str(fleet))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{fleet}:11:18: agents[0].volumes[0].source:" in proc.stderr
    assert "resolves to /etc" in proc.stderr
    assert "agents[0].volumes[1].source" in proc.stderr and "Traceback" not in proc.stderr
    assert podman_backend.list_owned(fleet_name) == []


def test_a_refused_create_leaves_nothing_behind_and_names_the_line(
    tmp_path, fleet_name, agent_image, podman_backend
) -> None:
    """runc refuses to mount a file over a directory of the image: the create fails at
    start, and apply removes the created container and its fresh volumes."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    fleet = _fleet(
        tmp_path,
        fleet_name,
        f"""\
  - role: alpha
    command: [sleep, infinity]
    volumes: [{{source: {a_file}, target: /opt/agentctl}}]
""",
    )
    proc = run_agentctl("apply", "-f", str(fleet))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{fleet}:10:14: agents[0].volumes:" in proc.stderr, proc.stderr
    assert "not a directory" in proc.stderr and "Traceback" not in proc.stderr
    assert podman_backend.list_owned(fleet_name) == []
    assert podman_backend.list_volumes(fleet_name) == []


def test_get_tells_the_truth_about_a_killed_container(
    tmp_path, fleet_name, agent_image, podman_backend
) -> None:
    fleet = _fleet(
        tmp_path,
        fleet_name,
        """\
  - role: alpha
    command: [sleep, infinity]
    restart: "no"
""",
    )
    run_agentctl("apply", "-f", str(fleet), check=True)
    name = f"{fleet_name}-swarm-alpha-000"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = json.loads(run_agentctl("get", "-f", str(fleet), "-o", "json", check=True).stdout)
        if rows[0]["agent_status"] == "running":
            break
        time.sleep(0.3)
    assert rows[0]["agent_status"] == "running"
    podman_backend.client.containers.get(name).kill(signal="SIGKILL")
    rows = json.loads(run_agentctl("get", "-f", str(fleet), "-o", "json", check=True).stdout)
    assert rows[0]["state"] == "exited"
    assert rows[0]["agent_status"] == "killed (SIGKILL)"
