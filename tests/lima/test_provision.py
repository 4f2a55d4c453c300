"""The Lima node provisioning, run for real in a Debian container with systemd.

There is no hypervisor here, so no Lima VM. The closest honest equivalent: a container
from the project's offline base image (Debian 12, the release the templates boot) plus
systemd, run with ``--systemd=always`` so that systemd is PID 1, with a user made the way
Lima makes one (its own name, uid 501 like a macOS host user, home ``/home/NAME.guest``).
The test then does what Lima does at boot, from the templates themselves: it places every
``mode: data`` file at its ``path`` with its permissions, fills the template variables of
the ``mode: system`` script and runs it as root. The clone is mounted read-only where the
templates mount it; Python packages come from a wheel directory built on the host
(``PIP_NO_INDEX``/``PIP_FIND_LINKS``: containers here cannot reach PyPI over TLS; a VM
uses PyPI the same way, through pip), apt packages from Debian over plain HTTP.

Checked: both roles provision to completion; a second run changes nothing (same files,
same packages, the server not restarted); the server unit answers ``GET /health`` and
runs as the user; the client's rootless Podman, API socket and doctor work for the user;
the client unit starts `agentctl up` once a fleet file is there and its output reaches the
journal; ``systemd-analyze verify`` passes every unit. Not checked here (see
lima/README.md): cgroup v2 delegation in effect (this host has cgroups v1, so the
container does too), the agent image build (``--images no``: minutes of debootstrap and
nested builds), Lima itself.

Containers and the image made here carry the label io.agentctl.test=lima-node and are
removed afterwards, also when a test fails. The containers use the host network (apt
needs it); the server listens on a free 127.0.0.1 port.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.podman

REPO = Path(__file__).resolve().parents[2]
LIMA = REPO / "lima"
BASE_IMAGE = os.environ.get("AGENTCTL_BASE_IMAGE", "localhost/agentctl-base:bookworm")
LABEL = "io.agentctl.test=lima-node"
TOKEN = secrets.token_hex(4)
USER, UID, HOME = "tester", 501, "/home/tester.guest"
SOURCE_MOUNT = "/mnt/agentctl-swarm"
WHEELS_MOUNT = "/mnt/agentctl-wheels"
# What a Debian cloud image has and the offline base lacks: systemd as init, and what
# Lima's own boot needs from it. Everything agentctl needs, node.sh installs itself.
NODE_IMAGE_PACKAGES = "systemd systemd-sysv dbus libpam-systemd procps"


def _unavailable(reason: str) -> None:
    if os.environ.get("AGENTCTL_REQUIRE_PODMAN") == "1":
        pytest.fail(f"Podman is required here but {reason}", pytrace=False)
    pytest.skip(reason)


def podman(
    *args: str, check: bool = True, timeout: float = 120, **kw
) -> subprocess.CompletedProcess:
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args[:3])} ... -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        )
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(script: str, params: dict[str, str]) -> str:
    """Fill the template variables Lima fills in a system script (and no others)."""
    values = {"User": USER, "UID": str(UID), "Home": HOME}

    def one(m: re.Match) -> str:
        if m[1] == "Param":
            return params[m[2]]
        return values[m[1]]

    out = re.sub(r"\{\{\s*\.([A-Za-z]+)(?:\.([A-Za-z0-9_]+))?\s*\}\}", one, script)
    assert "{{" not in out, out
    return out


# ---------------------------------------------------------------------------------------
# Fixtures: the wheel directory, the node image, the two nodes


@pytest.fixture(scope="module")
def podman_ready() -> None:
    if shutil.which("podman") is None:
        _unavailable("podman is not installed")
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        _unavailable(f"the base image {BASE_IMAGE} is missing (run `agentctl build`)")


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    """agentctl's dependencies (and its build backend) as wheels, built on the host.

    Cached under .cache/ by the hash of pyproject.toml and the Python version."""
    pyproject = (REPO / "pyproject.toml").read_bytes()
    key = hashlib.sha256(pyproject + sys.version.encode()).hexdigest()[:16]
    dest = REPO / ".cache" / "lima-test" / f"wheels-{key}"
    if (dest / ".complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "wheels"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, src / name)
        shutil.copytree(
            REPO / "agentctl_swarm",
            src / "agentctl_swarm",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--disable-pip-version-check",
                "-w",
                str(out),
                str(src),
                "setuptools>=68",
                "wheel",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
        if r.returncode != 0:
            _unavailable(f"building wheels on the host failed:\n{r.stderr[-2000:]}")
        for wheel in out.glob("agentctl_swarm-*.whl"):
            wheel.unlink()  # the node builds agentctl itself, from the clone
        (out / ".complete").touch()
        shutil.rmtree(dest, ignore_errors=True)
        out.rename(dest)
    return dest


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A still copy of the work tree, standing in for the user's clone on the host.

    (The work tree itself may change while the test runs; a user's clone does not change
    while its VM boots.)"""
    dest = tmp_path_factory.mktemp("clone") / "agentctl-swarm"
    top = {".git", ".venv", "build", "dist", ".cache"}
    anywhere = shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache")

    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = set(anywhere(directory, names))
        if Path(directory) == REPO:
            skip |= top & set(names)
        return skip

    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def node_image(podman_ready) -> Iterator[str]:
    image = f"localhost/agentctl-lima-node-test:{TOKEN}"
    with tempfile.TemporaryDirectory() as ctx:
        (Path(ctx) / "Containerfile").write_text(
            f"FROM {BASE_IMAGE}\n"
            "RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q"
            f" --no-install-recommends {NODE_IMAGE_PACKAGES} && apt-get clean\n"
            f"RUN useradd -m -d {HOME} -u {UID} -s /bin/bash {USER}\n"
            'STOPSIGNAL SIGRTMIN+3\nCMD ["/sbin/init"]\n'
        )
        podman(
            "build",
            "--network",
            "host",
            "--pull=never",
            "--label",
            LABEL,
            "-t",
            image,
            ctx,
            timeout=600,
        )
    try:
        yield image
    finally:
        podman("rmi", "-f", image, check=False)


@dataclass
class Node:
    """One container standing in for a Lima VM of ``role``."""

    role: str
    name: str
    port: int
    params: dict[str, str]
    runs: list[subprocess.CompletedProcess] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)

    def sh(
        self, script: str, *, check: bool = True, timeout: float = 120, env=()
    ) -> subprocess.CompletedProcess:
        envs = [a for k, v in env for a in ("-e", f"{k}={v}")]
        return podman("exec", *envs, self.name, "bash", "-c", script, check=check, timeout=timeout)

    def as_user(
        self, script: str, *, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        return self.sh(
            f"cd {HOME} && runuser -u {USER} -- env HOME={HOME} XDG_RUNTIME_DIR=/run/user/{UID} "
            f"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{UID}/bus bash -c {sh_quote(script)}",
            check=check,
            timeout=timeout,
        )

    def provision(self) -> subprocess.CompletedProcess:
        """What Lima's boot does with the template's provisioning, for this role."""
        tmpl = YAML(typ="safe").load((LIMA / f"{self.role}.yaml").read_text())
        for entry in tmpl["provision"]:
            if entry["mode"] == "data":
                perms = str(entry.get("permissions", "644"))
                self.sh(
                    f"install -D -m {perms} -o root -g root "
                    f"{SOURCE_MOUNT}/lima/{entry['file']} {entry['path']}"
                )
        (script,) = [p["script"] for p in tmpl["provision"] if p["mode"] == "system"]
        params = {**tmpl.get("param", {}), **self.params}
        podman(
            "exec",
            "-i",
            self.name,
            "bash",
            "-c",
            "cat > /root/lima-system-script && chmod 700 /root/lima-system-script",
            input=render(script, params),
        )
        # This host's cgroups are v1, so rootless Podman in the node cannot apply limits;
        # the client provisioning stops there unless told to accept that (a Lima VM boots
        # with cgroup v2 and needs no such setting). The opt-out lands in node.env.
        r = podman(
            "exec",
            "-e",
            "PIP_NO_INDEX=1",
            "-e",
            f"PIP_FIND_LINKS={WHEELS_MOUNT}",
            "-e",
            f"AGENTCTL_NODE_PORT={self.port}",
            "-e",
            "AGENTCTL_NODE_SOURCE_WAIT=10",
            "-e",
            "AGENTCTL_ALLOW_UNENFORCED_LIMITS=1",
            self.name,
            "/root/lima-system-script",
            check=False,
            timeout=900,
        )
        self.runs.append(r)
        # the whole output, for a look after a failure (the assertions show its tail)
        log = REPO / ".cache" / "lima-test" / f"{self.role}-run{len(self.runs)}.log"
        with contextlib.suppress(OSError):
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(output(r, tail=None))
        self.manifests.append(self.manifest())
        return r

    def manifest(self) -> str:
        """Everything the provisioning manages, as text: equal text means no change."""
        unit = "agentctl-server.service" if self.role == "server" else "agentctl-up.service"
        return self.sh(
            "set -u; cd /; for f in /etc/agentctl/node.env /etc/systemd/user/*.service"
            " /etc/systemd/system/user@.service.d/*.conf /etc/subuid /etc/subgid"
            " /opt/agentctl-swarm/venv/.agentctl-node-install /usr/local/lib/agentctl-node/*.sh;"
            ' do [ -e "$f" ] && sha256sum "$f"; done;'
            " stat -c '%n %i %Y %a %U' /opt/agentctl-swarm/src /opt/agentctl-swarm/venv"
            " /usr/local/bin/agentctl /usr/local/bin/agentctl-agent /var/lib/systemd/linger/*;"
            f" find {HOME}/.config -printf '%p %l %m %u\\n' | sort;"
            " dpkg-query -W -f='${Package} ${Version}\\n' | sort | sha256sum;"
            f" runuser -u {USER} -- env XDG_RUNTIME_DIR=/run/user/{UID}"
            f" systemctl --user show -p MainPID -p ActiveState -p NRestarts {unit}",
            check=False,
        ).stdout


def sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def start_node(
    image: str, role: str, clone: Path, wheels: Path, params: dict[str, str], caps=()
) -> Node:
    node = Node(role, f"agentctl-lima-test-{role}-{TOKEN}", free_port(), params)
    podman(
        "run",
        "-d",
        "--name",
        node.name,
        "--label",
        LABEL,
        "--systemd=always",
        "--network",
        "host",
        *[a for c in caps for a in ("--cap-add", c)],
        "-v",
        f"{clone}:{SOURCE_MOUNT}:ro",
        "-v",
        f"{wheels}:{WHEELS_MOUNT}:ro",
        "--pull=never",
        image,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = node.sh("systemctl is-system-running", check=False).stdout.strip()
        if state in {"running", "degraded"}:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"systemd in {node.name} did not come up: {state}")
    return node


def remove_node(node: Node) -> None:
    podman("rm", "-f", "-t", "0", node.name, check=False)


@pytest.fixture(scope="module")
def server(node_image, clone, wheelhouse) -> Iterator[Node]:
    node = start_node(node_image, "server", clone, wheelhouse, {})
    try:
        node.provision()
        if node.runs[0].returncode == 0:
            node.provision()
        yield node
    finally:
        remove_node(node)


@pytest.fixture(scope="module")
def client(node_image, clone, wheelhouse, server) -> Iterator[Node]:
    # Rootless Podman inside a container needs CAP_SYS_ADMIN (user namespaces, mounts);
    # a VM has no such limit. The client reports to the test's server node.
    node = start_node(
        node_image,
        "client",
        clone,
        wheelhouse,
        {"serverUrl": f"ws://127.0.0.1:{server.port}", "buildImages": "false"},
        caps=("SYS_ADMIN",),
    )
    try:
        node.provision()
        if node.runs[0].returncode == 0:
            node.provision()
        yield node
    finally:
        remove_node(node)


@pytest.fixture(scope="module", autouse=True)
def _sweep() -> Iterator[None]:
    yield
    for cid in podman("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split():
        podman("rm", "-f", "-t", "0", cid, check=False)


def output(r: subprocess.CompletedProcess, tail: int | None = 6000) -> str:
    out, err = (r.stdout, r.stderr) if tail is None else (r.stdout[-tail:], r.stderr[-tail:])
    return f"exit {r.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


# ---------------------------------------------------------------------------------------
# Server node


def test_server_provisioning_runs_to_completion(server):
    first = server.runs[0]
    assert first.returncode == 0, output(first)
    assert "provision: done:" in first.stdout
    assert "agentctl-server.service: started" in first.stdout
    assert f"agentctl-server answers GET http://127.0.0.1:{server.port}/health" in first.stdout


def test_server_answers_health_inside_the_node(server):
    r = server.sh(
        "python3 -c 'import json, urllib.request as u; "
        f'print(json.load(u.urlopen("http://127.0.0.1:{server.port}/health", timeout=5)))\''
    )
    assert "'status': 'healthy'" in r.stdout, r.stdout
    # and its log is where lima/README.md says, for the user
    log = server.as_user("journalctl --user-unit agentctl-server --no-pager -o cat").stdout
    assert f"127.0.0.1:{server.port}" in log, log


def test_server_runs_as_the_lima_user_with_its_state_in_its_home(server):
    pid = server.as_user("systemctl --user show -p MainPID --value agentctl-server").stdout.strip()
    assert pid.isdigit() and pid != "0"
    status = server.sh(f"cat /proc/{pid}/status; tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    assert re.search(rf"^Uid:\s+{UID}\s", status, re.M), status
    assert f"--data-dir {HOME}/.local/state/agentctl/server" in status
    assert f"--port {server.port}" in status and "--host 127.0.0.1" in status
    server.sh(f"test -d {HOME}/.local/state/agentctl/server")


def test_a_second_server_provisioning_changes_nothing(server):
    assert len(server.runs) == 2, "the first run failed"
    second = server.runs[1]
    assert second.returncode == 0, output(second)
    assert "provision: done: 0 change(s)" in second.stdout, second.stdout
    assert server.manifests[0] == server.manifests[1]
    assert "ActiveState=active" in server.manifests[1]


def test_server_node_env_says_where_things_are_and_holds_no_credential(server):
    env = server.sh("cat /etc/agentctl/node.env").stdout
    lines = [x for x in env.splitlines() if x and not x.startswith("#")]
    assert lines == ["AGENTCTL_NODE_ROLE=server", f"AGENTCTL_NODE_PORT={server.port}"]


# ---------------------------------------------------------------------------------------
# Client node


def test_client_provisioning_runs_to_completion(client):
    first = client.runs[0]
    assert first.returncode == 0, output(first)
    out = first.stdout
    assert "provision: done:" in out
    assert "podman.socket: enabled for tester" in out
    assert "agentctl doctor --fix (as tester)" in out
    assert "images: skipped (--images no)" in out
    assert "agentctl-up.service: waits for a fleet file" in out


def test_a_second_client_provisioning_changes_nothing(client):
    assert len(client.runs) == 2, "the first run failed"
    second = client.runs[1]
    assert second.returncode == 0, output(second)
    assert "provision: done: 0 change(s)" in second.stdout, second.stdout
    assert client.manifests[0] == client.manifests[1]


def test_client_user_has_rootless_podman_and_its_api_socket(client):
    info = client.as_user("podman info --format json").stdout
    assert '"rootless": true' in info
    ping = client.as_user(
        "python3 - <<'EOF'\n"
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect('/run/user/{UID}/podman/podman.sock')\n"
        "s.sendall(b'GET /_ping HTTP/1.0\\r\\nHost: d\\r\\n\\r\\n')\n"
        "print(s.recv(200).decode().splitlines()[0])\n"
        "EOF"
    ).stdout
    assert " 200 " in ping, ping
    subids = client.sh(f"grep '^{USER}:' /etc/subuid /etc/subgid").stdout
    assert subids.count(":65536") == 2, subids


def test_client_runtime_follows_the_cgroup_layout(client):
    # doctor's rule: crun cannot start containers on a cgroup v1/v2 hybrid host, runc can;
    # on cgroup v2 (a Lima VM) crun works and nothing is written.
    hybrid = client.sh("grep -qs ' /sys/fs/cgroup/unified cgroup2 ' /proc/self/mounts", check=False)
    dropin = f"{HOME}/.config/containers/containers.conf.d/50-agentctl.conf"
    runtime = client.as_user(
        "podman info --format json | python3 -c "
        '\'import json,sys; print(json.load(sys.stdin)["host"]["ociRuntime"]["name"])\''
    )
    # ... and the user's API service (what agentctl talks to) was restarted to use it
    api = client.as_user(
        f"podman --url unix:///run/user/{UID}/podman/podman.sock info --format json | python3 -c "
        '\'import json,sys; print(json.load(sys.stdin)["host"]["ociRuntime"]["name"])\''
    )
    if hybrid.returncode == 0:
        assert 'runtime = "runc"' in client.sh(f"cat {dropin}").stdout
        assert runtime.stdout.strip() == "runc"
        assert api.stdout.strip() == "runc"
        assert "cgroups hybrid in this container" in client.runs[0].stderr
    else:
        assert runtime.stdout.strip() in {"crun", "runc"}
        assert api.stdout.strip() == runtime.stdout.strip()


def test_a_rerun_by_hand_keeps_the_nodes_settings(client):
    # What lima/README.md tells users to run after `git pull` (without reboot).
    r = client.sh(
        '/usr/local/lib/agentctl-node/node.sh client --user "$(id -un 501)" --images no',
        env=[("PIP_NO_INDEX", "1"), ("PIP_FIND_LINKS", WHEELS_MOUNT)],
        check=False,
        timeout=300,
    )
    assert r.returncode == 0, output(r)
    assert "provision: done: 0 change(s)" in r.stdout, r.stdout
    assert (
        f"AGENTCTL_SERVER_URL={client.params['serverUrl']}"
        in client.sh("cat /etc/agentctl/node.env").stdout
    )


def test_client_delegates_cgroup_controllers_to_user_managers(client):
    r = client.sh(f"systemctl show -p Delegate -p DelegateControllers user@{UID}.service")
    assert "Delegate=yes" in r.stdout
    for controller in ("cpu", "cpuset", "io", "memory", "pids"):
        assert controller in r.stdout.split("DelegateControllers=")[1], r.stdout


def test_client_unit_starts_agentctl_up_once_a_fleet_is_there_and_logs(client):
    client.as_user(
        "cat > ~/.config/agentctl/fleet.yaml <<'EOF'\n"
        "apiVersion: agentctl.io/v1\nkind: Fleet\nmetadata:\n  name: limatest\n"
        # the test's server node: `up` must not start a server of its own (this container
        # shares the host's network)
        f"server: {client.params['serverUrl']}\n"
        "agents:\n  - role: idle\n    runtime: command\n    command: [sleep, infinity]\nEOF"
    )
    client.as_user("agentctl validate ~/.config/agentctl/fleet.yaml")  # the installed CLI works
    client.as_user("systemctl --user start agentctl-up")
    deadline = time.monotonic() + 60
    logged = ""
    while time.monotonic() < deadline:
        # lines the unit's own processes wrote (systemd's messages carry USER_UNIT instead)
        logged = client.sh(
            "journalctl --no-pager -o cat _SYSTEMD_USER_UNIT=agentctl-up.service", check=False
        ).stdout.strip()
        if logged:
            break
        time.sleep(1)
    assert logged, "agentctl up wrote nothing to the journal"
    # the command lima/README.md gives for the log (as the user) shows it too
    documented = client.as_user("journalctl --user-unit agentctl-up --no-pager -o cat").stdout
    assert logged.splitlines()[0] in documented
    show = client.as_user(
        "systemctl --user show -p ExecMainStartTimestamp -p ExecStart -p EnvironmentFiles agentctl-up"
    ).stdout
    assert "ExecMainStartTimestamp=" in show and "ExecMainStartTimestamp=\n" not in show, show
    assert f"{HOME}/.config/agentctl/fleet.yaml" in show
    assert "/etc/agentctl/node.env" in show
    env = client.sh("cat /etc/agentctl/node.env").stdout
    assert f"AGENTCTL_SERVER_URL={client.params['serverUrl']}" in env


# ---------------------------------------------------------------------------------------
# Both


@pytest.mark.parametrize("role", ["server", "client"])
def test_units_pass_systemd_analyze_verify(role, request):
    node: Node = request.getfixturevalue(role)
    unit = "agentctl-server.service" if role == "server" else "agentctl-up.service"
    r = node.as_user(f"systemd-analyze --user verify /etc/systemd/user/{unit}", check=False)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), output(r)
    if role == "client":
        # the delegation drop-in, as systemd reads it (no man pages in the image)
        r = node.sh(f"systemd-analyze verify --man=no user@{UID}.service", check=False)
        assert r.returncode == 0, output(r)
        assert "50-agentctl-delegate.conf" not in r.stdout + r.stderr, output(r)


@pytest.mark.parametrize("role", ["server", "client"])
def test_nothing_secret_lands_on_the_node(role, request):
    node: Node = request.getfixturevalue(role)
    text = node.sh(
        "cat /etc/agentctl/node.env /usr/local/lib/agentctl-node/*.sh"
        " /usr/local/lib/agentctl-node/*/* /etc/systemd/user/agentctl-*.service"
    ).stdout
    assert "AGENTCTL_NODE_ROLE" in text and "[Service]" in text
    assert not re.search(r"(?im)^[A-Z_]*(api_key|token|secret|password)[A-Z_]*\s*=\s*\S", text)
    r = node.sh(f"ls -A {HOME}/.config/agentctl")
    assert r.stdout.split() in ([], ["fleet.yaml"]), "the provisioning placed a file for the user"
