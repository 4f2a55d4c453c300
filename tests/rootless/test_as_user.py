"""Rootless Podman as a first-class mode, checked as a real non-root user (the CI user,
from scripts/test-rootless.sh) against its own Podman API service.

What is and is not checked here. On a host whose rootless Podman cannot apply
memory/CPU/pids limits (cgroup v1, or v2 without the controllers delegated; the CI
machines are cgroup v1) these tests check that `apply` refuses fleets with limits, names
the fleet lines and the fix, and creates nothing; that the opt-out runs them with a loud
warning and that Podman really did drop the limits; and that the doctor says all of it.
They do NOT check that limits are enforced rootless: that needs cgroup v2 with
delegation, which these machines do not have (tests/integration/test_apply.py checks the
limits wherever the engine can apply them, rootful or rootless).

Everything made here is removed afterwards: fleets by label (conftest's fleet_name), the
API services these tests start (by pid), and the throw-away Podman home of the storage
test (`podman system reset` in it).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentctl_swarm.podman.engine import EngineFacts
from agentctl_swarm.podman.host import parse_root_propagation, ping_socket
from tests.conftest import REPO, SETTINGS, run_agentctl
from tests.rootless.conftest import kill_pidfile, podman, run, stop_pid

AGENTCTL = str(Path(sys.executable).with_name("agentctl"))
OPT_OUT = "AGENTCTL_ALLOW_UNENFORCED_LIMITS"

pytestmark = [
    pytest.mark.podman,
    pytest.mark.skipif(os.geteuid() == 0, reason="runs as the CI user (scripts/test-rootless.sh)"),
]


@pytest.fixture(scope="module")
def facts(podman_backend) -> EngineFacts:
    engine = podman_backend.engine
    if not engine.rootless:
        pytest.skip(f"the engine at {SETTINGS.podman_url} is not rootless")
    return engine


@pytest.fixture
def unenforced(facts: EngineFacts) -> EngineFacts:
    if {"memory", "cpu", "pids"} <= facts.cgroup_controllers:
        pytest.skip("this host's rootless Podman enforces limits: nothing to refuse or warn")
    return facts


def doctor(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "COLUMNS": "200", **env}
    for key in [k for k, v in env.items() if v == ""]:
        full.pop(key)
    return run([AGENTCTL, "doctor", *args], env=full)


def fleet_file(path: Path, name: str, extra_defaults: str = "") -> Path:
    path.write_text(
        "apiVersion: agentctl.io/v1\n"
        "kind: Fleet\n"
        f"metadata: {{name: {name}}}\n"
        "defaults:\n"
        "  resources: {memory: 128m, cpus: 0.5, pids: 64}\n"
        f"{extra_defaults}"
        "agents:\n"
        "  - role: builder\n"
        '    command: [sh, -c, "sleep infinity"]\n'
    )
    return path


# -- limits -----------------------------------------------------------------------------


def test_limits_that_cannot_be_enforced_are_refused_with_the_lines_and_the_fix(
    tmp_path, fleet_name, agent_image, podman_backend, unenforced
):
    fleet = fleet_file(tmp_path / "fleet.yaml", fleet_name)
    r = run_agentctl("apply", "-f", str(fleet), env={OPT_OUT: "0"})
    assert r.returncode == 2, r.stdout + r.stderr
    for field, value, col in (("memory", "128m", 23), ("cpus", "0.5", 35), ("pids", "64", 46)):
        assert (
            f"{fleet}:5:{col}: defaults.resources.{field}: {field} {value} would not be enforced"
            in r.stderr
        ), r.stderr
    assert "rootless Podman on cgroup v1 cannot apply memory/CPU/pids limits" in r.stderr
    summary = r.stderr.strip().splitlines()[-1]
    assert summary.startswith("error: 3 problems in")
    assert "nothing was changed" in summary
    assert "cgroup v2" in summary and "Delegate=cpu cpuset io memory pids" in summary
    assert f"{OPT_OUT}=1" in summary
    assert podman_backend.list_owned(fleet_name) == []
    assert podman_backend.list_volumes(fleet_name) == []


def test_the_opt_out_runs_agents_without_limits_and_says_so(
    tmp_path, fleet_name, agent_image, podman_backend, unenforced
):
    fleet = fleet_file(tmp_path / "fleet.yaml", fleet_name)
    r = run_agentctl("apply", "-f", str(fleet), env={OPT_OUT: "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert (
        f"limits not enforced: {OPT_OUT}=1: creating containers WITHOUT their cpus/memory/pids limits"
        in r.stderr
    )
    # ... and Podman really dropped them (which is why the default is to refuse)
    host = podman_backend.inspect(f"{fleet_name}-swarm-builder-000")["HostConfig"]
    assert host["Memory"] == 0 and not host["PidsLimit"] and not host["CpuQuota"]
    # re-applying the unchanged fleet changes nothing and asks nothing
    again = run_agentctl("apply", "-f", str(fleet), env={OPT_OUT: "1"})
    assert again.returncode == 0 and "WITHOUT" not in again.stderr


def test_doctor_reports_unenforceable_limits_as_a_problem_unless_opted_out(unenforced):
    r = doctor("--check", "--no-probe", **{OPT_OUT: ""})
    assert r.returncode == 1, r.stdout
    line = next(x for x in r.stdout.splitlines() if " limits " in x)
    assert line.startswith("✗ limits   rootless Podman on cgroup v1 cannot apply")
    assert "`agentctl apply` refuses fleets with limits here" in line
    assert "Delegate=cpu cpuset io memory pids" in r.stdout and f"{OPT_OUT}=1" in r.stdout

    opted = doctor("--check", "--no-probe", **{OPT_OUT: "1"})
    assert "! limits   rootless Podman on cgroup v1" in opted.stdout
    assert "agents run WITHOUT limits" in opted.stdout
    assert opted.returncode == 0, opted.stdout  # warnings do not fail the doctor


# -- what else rootless needs -----------------------------------------------------------


def test_doctor_checks_what_rootless_podman_needs_from_the_host(facts):
    r = doctor("--check", "--no-probe", **{OPT_OUT: "1"})
    out = r.stdout
    assert f"✓ userns   {os.environ['USER']} has subordinate uid/gid ranges" in out
    assert "rundir" not in out  # /run/user/UID exists (scripts/setup.sh made it)
    assert "✓ storage  storage driver overlay" in out  # setup's doctor moved it off vfs
    propagation = parse_root_propagation(Path("/proc/self/mountinfo").read_text())
    if propagation == "shared":
        assert "✓ mounts" in out
    else:
        assert f"! mounts   `/` is a {propagation} mount, not shared" in out
        assert "sudo mount --make-rshared /" in out
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
        tun = True
    except OSError:
        tun = False
    if tun:
        assert "✓ network" in out or "slirp4netns is not installed" in out
    else:
        assert "! network  fleets with `network: bridge` will fail" in out
        assert "sudo chmod 0666 /dev/net/tun" in out


@pytest.fixture
def no_slirp_conf(tmp_path) -> Path:
    """A containers.conf (Podman then reads only it) whose slirp4netns does not exist."""
    conf = tmp_path / "containers.conf"
    conf.write_text('[engine]\nnetwork_cmd_path = "/nonexistent/slirp4netns"\n')
    return conf


@pytest.fixture
def service(tmp_path) -> Iterator[callable]:
    """Starts extra API services of this user (same store, own socket); stops them."""
    started: list[subprocess.Popen] = []

    def start(**env: str) -> str:
        sock = tmp_path / f"api-{len(started)}.sock"
        url = f"unix://{sock}"
        log = open(tmp_path / f"api-{len(started)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [podman(), "system", "service", "--time=0", url],
            env={**os.environ, **env}, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        started.append(proc)
        for _ in range(100):
            if ping_socket(url):
                return url
            time.sleep(0.1)
        raise AssertionError(f"the API service at {url} did not come up")

    yield start
    for proc in started:
        stop_pid(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def test_bridge_without_slirp4netns_is_a_doctor_warning_and_an_apply_refusal(
    tmp_path, fleet_name, facts, no_slirp_conf, service, podman_backend
):
    r = doctor("--check", "--no-probe", CONTAINERS_CONF=str(no_slirp_conf), **{OPT_OUT: "1"})
    assert (
        "! network  fleets with `network: bridge` will fail: slirp4netns is not installed"
        in r.stdout
    )
    assert "sudo apt-get install slirp4netns" in r.stdout

    url = service(CONTAINERS_CONF=str(no_slirp_conf))
    fleet = fleet_file(tmp_path / "fleet.yaml", fleet_name, "  network: bridge\n")
    r = run_agentctl("apply", "-f", str(fleet), env={OPT_OUT: "1", "AGENTCTL_PODMAN_URL": url})
    assert r.returncode == 2, r.stdout + r.stderr
    assert (
        f"{fleet}:6:12: defaults.network: rootless Podman needs slirp4netns for bridge "
        "networking and has none"
    ) in r.stderr, r.stderr
    assert "or use `network: host`" in r.stderr
    assert podman_backend.list_owned(fleet_name) == []


# -- storage --------------------------------------------------------------------------------


@pytest.fixture
def fresh_podman_home(tmp_path) -> Iterator[dict[str, str]]:
    """A Podman of this user that has never run: its own home, config, data and runtime
    directories (what a new user has). Reset and its processes stopped afterwards."""
    home = tmp_path / "home"
    run_dir = tmp_path / "run"
    for d in (home, run_dir):
        d.mkdir(mode=0o700)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_RUNTIME_DIR": str(run_dir),
        "AGENTCTL_PODMAN_URL": f"unix://{run_dir}/podman/podman.sock",
        "AGENTCTL_STATE_DIR": str(tmp_path / "state"),
        OPT_OUT: "1",
    }
    env.pop("CONTAINERS_CONF", None)
    env.pop("CONTAINERS_STORAGE_CONF", None)
    yield env
    run([podman(), "system", "reset", "--force"], env=env)
    kill_pidfile(run_dir / "libpod" / "tmp" / "pause.pid")


def test_an_empty_vfs_store_is_moved_to_overlay_and_a_chosen_one_only_gets_the_steps(
    tmp_path, facts, fresh_podman_home
):
    env = {**fresh_podman_home, "COLUMNS": "200"}
    # A vfs store the doctor must not reset: CONTAINERS_STORAGE_CONF chose it.
    own = tmp_path / "storage.conf"
    own.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path}/vfs-root"\n'
        f'runroot = "{tmp_path}/run/vfs-run"\n'
    )
    chosen = {**env, "CONTAINERS_STORAGE_CONF": str(own)}
    kept = run([AGENTCTL, "doctor", "--fix", "--no-probe"], env=chosen)
    pid = re.search(r"\(pid (\d+)\)", kept.stdout)
    if pid:
        stop_pid(int(pid.group(1)))
    assert "! storage  Podman uses the vfs storage driver" in kept.stdout, kept.stdout
    assert f"not changed automatically (CONTAINERS_STORAGE_CONF={own} is set)" in kept.stdout
    assert "it DELETES this user's containers, images and volumes" in kept.stdout
    assert "switched" not in kept.stdout
    run([podman(), "system", "reset", "--force"], env=chosen)

    # A new user's empty store (Debian's Podman picks vfs without a storage.conf).
    check = run([AGENTCTL, "doctor", "--check", "--no-probe"], env=env)
    assert "! storage  Podman uses the vfs storage driver" in check.stdout, check.stdout
    assert "podman system reset --force (the store is empty); overlay (native" in check.stdout
    fix = run([AGENTCTL, "doctor", "--fix", "--no-probe"], env=env)
    pid = re.search(r"\(pid (\d+)\)", fix.stdout)
    if pid:  # the doctor also started this home's API service
        stop_pid(int(pid.group(1)))
    assert "switched the empty store from vfs to overlay (native)" in fix.stdout, fix.stdout
    conf = Path(env["XDG_CONFIG_HOME"]) / "containers" / "storage.conf"
    assert 'driver = "overlay"' in conf.read_text()
    driver = run([podman(), "info", "--format", "{{.Store.GraphDriverName}}"], env=env)
    assert driver.stdout.strip() == "overlay"
    again = run([AGENTCTL, "doctor", "--check", "--no-probe"], env=env)
    assert "✓ storage  storage driver overlay" in again.stdout


# -- images -------------------------------------------------------------------------------


def test_a_users_build_without_the_base_names_the_root_step():
    r = run([AGENTCTL, "build", "--slim", "--base-image", "localhost/agentctl-base:bookworm-absent"],
            env={**os.environ, "COLUMNS": "200"}, cwd=str(REPO))  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    text = " ".join(r.stderr.split())
    assert "needs root (debootstrap), and it is not in your image store" in text
    assert f"sudo {AGENTCTL} build --base-only --for-user {os.environ.get('USER')}" in text


def test_for_user_as_a_user_says_it_needs_root():
    r = run([AGENTCTL, "build", "--base-only", "--for-user", os.environ["USER"]],
            env={**os.environ, "COLUMNS": "200"}, cwd=str(REPO))  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--for-user needs root" in r.stderr
    assert f"sudo {AGENTCTL} build --for-user" in " ".join(r.stderr.split())
