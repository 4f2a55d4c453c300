"""A fleet over two real Podman hosts (issue 11): placement, parallel reconcile, a node
that goes away, sync from every node, delete everywhere.

The second "host" is a second Podman API service on this machine with its own storage
(``--root``/``--runroot``: its own containers, images, volumes and secrets) on its own
socket; nothing leaves loopback. It gets the agent image from this machine's store
(`podman save | podman load`, ~20 s), and the agents run a command that commits in
their workspace, so the sync-daemon has work to pull from both nodes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentctl_swarm.podman.backend import PodmanBackend
from tests.conftest import SETTINGS, cleanup_fleet, run_agentctl

pytestmark = pytest.mark.podman


WORK = (
    "cd /workspace && "
    "git -c user.email=a@example.com -c user.name=$AGENTCTL_AGENT commit -q --allow-empty "
    '-m "work of $AGENTCTL_AGENT"; exec sleep infinity'
)


class Node2:
    """A Podman API service with its own storage, on its own socket."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sock = root / "podman.sock"
        self.url = f"unix://{self.sock}"
        self.flags = ["--root", str(root / "storage"), "--runroot", str(root / "run"),
                      "--tmpdir", str(root / "tmp")]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["podman", *self.flags, "system", "service", "--time=0", self.url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        backend = PodmanBackend(self.url)
        deadline = time.monotonic() + 30
        while True:
            try:
                backend.ping()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            finally:
                backend.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def podman(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", *self.flags, *args], capture_output=True, text=True,
                              timeout=300, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def node2(tmp_path_factory, agent_image) -> Iterator[Node2]:
    node = Node2(Path(tmp_path_factory.mktemp("node2")))
    save = subprocess.Popen(["podman", "save", agent_image], stdout=subprocess.PIPE)
    loaded = node.podman("load", stdin=save.stdout)
    save.wait(timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    node.start()
    try:
        yield node
    finally:
        node.stop()
        node.podman("rm", "-af", "-t", "0")
        node.podman("system", "reset", "--force")
        # the overlay driver bind-mounts its directory on itself and `system reset` leaves
        # that mount: without this, every later pytest run warns it cannot remove it
        subprocess.run(["umount", "-l", str(node.root / "storage" / "overlay")],
                       capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(node.root, ignore_errors=True)


def _fleet(path: Path, name: str, node2: Node2, replicas: int, into: Path) -> None:
    path.write_text(
        f"""\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {{name: {name}}}
nodes:
  - {{name: one, url: "{SETTINGS.podman_url}", capacity: 3}}
  - {{name: two, url: "{node2.url}"}}
defaults:
  resources: {{memory: 128m, cpus: 0.5, pids: 64}}
  grace_seconds: 1
sync: {{into: {into}}}
agents:
  - role: w
    replicas: {replicas}
    command: [sh, -c, '{WORK}']
"""
    )


def _where(backend: PodmanBackend, fleet: str) -> set[str]:
    return {o.agent for o in backend.list_owned(fleet)}


def test_a_fleet_over_two_podman_hosts(tmp_path, fleet_name, podman_backend, node2) -> None:
    file, into = tmp_path / "fleet.yaml", tmp_path / "work.git"
    subprocess.run(["git", "init", "-q", "--bare", str(into)], check=True)
    other = PodmanBackend(node2.url)
    try:
        _fleet(file, fleet_name, node2, 3, into)
        r = run_agentctl("apply", "-f", str(file))
        assert r.returncode == 0, r.stdout + r.stderr
        # spread: one, two, one; both nodes were reconciled by the one apply
        assert _where(podman_backend, fleet_name) == {"swarm-w-000", "swarm-w-002"}
        assert _where(other, fleet_name) == {"swarm-w-001"}
        assert "on two" in r.stdout  # the plan says where
        got = run_agentctl("get", "-f", str(file), "-o", "json", check=True)
        assert '"node": "two"' in got.stdout
        # stable: re-applying (and diff) changes nothing
        assert run_agentctl("diff", "-f", str(file)).returncode == 0
        again = run_agentctl("apply", "-f", str(file), check=True)
        assert "plan: 3 unchanged" in again.stdout

        # the sync-daemon pulls from every node
        synced = run_agentctl("sync", "-f", str(file), "--once", timeout=300)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        branches = subprocess.run(["git", "-C", str(into), "branch", "--list", "swarm/*"],
                                  capture_output=True, text=True, check=True).stdout  # fmt: skip
        for agent in ("swarm-w-000", "swarm-w-001", "swarm-w-002"):
            assert f"swarm/{agent}/" in branches, branches

        # node two goes away: reported, exit 3, node one still reconciled; the new agent
        # goes to node one and its place is kept when two comes back
        node2.stop()
        _fleet(file, fleet_name, node2, 4, into)
        r = run_agentctl("apply", "-f", str(file))
        assert r.returncode == 3, r.stdout + r.stderr
        assert "node two does not answer" in r.stderr and "did not answer" in r.stderr
        assert _where(podman_backend, fleet_name) == {"swarm-w-000", "swarm-w-002", "swarm-w-003"}
        node2.start()
        back = run_agentctl("apply", "-f", str(file))
        assert back.returncode == 0, back.stdout + back.stderr
        assert "plan: 4 unchanged" in back.stdout
        assert _where(other, fleet_name) == {"swarm-w-001"}

        # delete removes the fleet from every node, volumes included
        gone = run_agentctl("delete", "-f", str(file), "--volumes", "--force", timeout=300)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert not podman_backend.list_owned(fleet_name) and not other.list_owned(fleet_name)
        assert not other.list_volumes(fleet_name)
    finally:
        with contextlib.suppress(Exception):
            cleanup_fleet(other, fleet_name)
        other.close()
