"""`agentctl doctor` on the real host: healthy means untouched; each failure is provoked.

The problems are provoked without breaking the machine: a PATH without podman, a
CONTAINERS_CONF that drops the ulimit fix (Podman then really fails to start containers),
and an API socket path where nothing listens yet.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentctl_swarm.podman.host import dropin_path, ping_socket

AGENTCTL = str(Path(sys.executable).with_name("agentctl"))


def run_doctor(
    *args: str, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [AGENTCTL, "doctor", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=180,
        cwd=cwd,
    )


def needs_podman() -> None:
    if shutil.which("podman") is None or not ping_socket("unix:///run/podman/podman.sock"):
        if os.environ.get("AGENTCTL_REQUIRE_PODMAN") == "1":
            pytest.fail("Podman and its API socket are required here", pytrace=False)
        pytest.skip("podman or its API socket is not available")


@pytest.mark.podman
def test_doctor_on_a_healthy_host_changes_nothing():
    needs_podman()
    dropin = dropin_path(os.geteuid() == 0)
    before = (dropin.stat().st_mtime_ns, dropin.read_text()) if dropin.exists() else None
    r = run_doctor()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "changed: nothing" in r.stdout
    assert "Podman API: unix://" in r.stdout
    after = (dropin.stat().st_mtime_ns, dropin.read_text()) if dropin.exists() else None
    assert after == before


def test_missing_podman_with_no_install_is_reported_and_nothing_installed():
    r = run_doctor("--no-install", env={"PATH": "/nonexistent"})
    assert r.returncode == 1
    assert "podman is not installed (--no-install was given)" in r.stdout
    assert "apt-get install -y podman" in r.stdout
    assert "Traceback" not in r.stderr


@pytest.mark.podman
def test_rlimit_problem_under_a_conf_override_is_found_and_not_patched_over():
    """With CONTAINERS_CONF Podman ignores drop-ins: doctor must say so, not write one."""
    needs_podman()
    if os.geteuid() != 0:
        pytest.skip("the rlimit problem only exists for rootful Podman")
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] >= 1_048_576:
        pytest.skip("this host's hard nofile limit is high enough; nothing to provoke")
    dropin = dropin_path(True)
    before = dropin.stat().st_mtime_ns if dropin.exists() else None
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
        conf.write("# empty: Podman's defaults\n")
        conf.flush()
        r = run_doctor("--fix", env={"CONTAINERS_CONF": conf.name})
    assert r.returncode == 1, r.stdout
    assert "✗ rlimits" in r.stdout
    assert f"CONTAINERS_CONF={conf.name}" in r.stdout
    assert "default_ulimits" in r.stdout
    assert (dropin.stat().st_mtime_ns if dropin.exists() else None) == before


@pytest.fixture
def spare_socket() -> Iterator[tuple[str, list[int]]]:
    """A socket URL where nothing listens; kills the service doctor starts there."""
    d = tempfile.mkdtemp(prefix="actl-sock-")
    url = f"unix://{d}/podman/podman.sock"
    pids: list[int] = []
    yield url, pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.podman
def test_doctor_starts_a_missing_api_socket_once(spare_socket):
    needs_podman()
    url, pids = spare_socket
    env = {"AGENTCTL_PODMAN_URL": url}

    check = run_doctor("--check", "--no-probe", env=env)
    assert check.returncode == 1
    assert "would change" in check.stdout and "podman system service" in check.stdout
    assert not ping_socket(url), "--check must not start anything"

    checkout = tempfile.mkdtemp(prefix="actl-cwd-")  # doctor run from a checkout ...
    fix = run_doctor("--no-probe", env=env, cwd=checkout)
    started = re.search(r"\(pid (\d+)\)", fix.stdout)
    if started:
        pids.append(int(started.group(1)))
    assert fix.returncode == 0, fix.stdout + fix.stderr
    assert started and f"started the Podman API service at {url}" in fix.stdout
    assert ping_socket(url)
    # ... that is deleted later: the service must not live in it (runc then fails every
    # container start with "write child: broken pipe")
    shutil.rmtree(checkout)
    assert os.readlink(f"/proc/{started.group(1)}/cwd") == "/"

    again = run_doctor("--no-probe", env=env)
    assert again.returncode == 0
    assert "changed: nothing" in again.stdout


@pytest.mark.podman
def test_a_private_root_mount_is_found_and_made_shared():
    """Provoked in a mount namespace of its own (unshare), so the host is not touched:
    private there, the doctor reports it and `--fix` makes it shared (there)."""
    needs_podman()
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a mount namespace of its own)")

    def in_namespace(propagation: str, script: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["unshare", "--mount", "--propagation", propagation, "sh", "-c", script],
            capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip

    check = in_namespace("private", f"{AGENTCTL} doctor --check --no-probe")
    assert "✗ mounts   `/` is a private mount, not shared" in check.stdout, check.stdout
    assert "device or resource busy" in check.stdout
    assert "  - mount --make-rshared /" in check.stdout  # under "would change"
    assert check.returncode == 1

    fix = in_namespace(
        "private",
        f"{AGENTCTL} doctor --fix --no-probe --no-install; findmnt -no PROPAGATION /",
    )
    assert "made `/` a shared mount (mount --make-rshared /)" in fix.stdout, fix.stdout
    assert "✓ mounts   `/` is a shared mount" in fix.stdout  # re-observed after the fix
    assert fix.stdout.strip().splitlines()[-1] == "shared"

    shared = in_namespace("shared", f"{AGENTCTL} doctor --check --no-probe")
    assert "✓ mounts   `/` is a shared mount" in shared.stdout
