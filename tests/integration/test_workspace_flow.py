"""The whole workspace flow through the real CLI: seed on apply, sync, final sync on delete."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_agentctl

pytestmark = pytest.mark.podman


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def write_fleet(path: Path, name: str, extra: str) -> None:
    """A one-agent fleet (swarm-dev-000) with ``extra`` top-level YAML lines."""
    path.write_text(
        "apiVersion: agentctl.io/v1\nkind: Fleet\n"
        f"metadata: {{name: {name}}}\ndefaults: {{grace_seconds: 3}}\n{extra}"
        'agents:\n  - role: dev\n    command: [sh, -c, "sleep infinity"]\n'
    )


def wait_for_workspace(backend, name: str) -> str:
    """HEAD and branch of the container's workspace, once the supervisor has prepared it."""
    for _ in range(50):
        probe = backend.exec(
            name, ["git", "-C", "/workspace", "rev-parse", "HEAD", "--abbrev-ref", "HEAD"]
        )
        if probe.exit_code == 0:
            return probe.stdout.decode()
        time.sleep(0.2)
    raise AssertionError(f"{name}: workspace never became a git repo")


@pytest.fixture
def host_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("project\n")
    git(repo, "add", "README.md")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    return repo


def test_seed_sync_and_final_sync_on_delete(
    tmp_path, host_repo, fleet_name, agent_image, podman_backend
) -> None:
    fleet = tmp_path / "fleet.yaml"
    write_fleet(fleet, fleet_name, "repo: {path: project, branch: main}\n")
    base = git(host_repo, "rev-parse", "main")
    run_agentctl("apply", "-f", str(fleet), check=True)
    name = f"{fleet_name}-swarm-dev-000"

    # seeded: the workspace is a clone of the host repo on the agent's work branch
    head = ""
    for _ in range(50):
        probe = podman_backend.exec(
            name, ["git", "-C", "/workspace", "rev-parse", "HEAD", "--abbrev-ref", "HEAD"]
        )
        head = probe.stdout.decode()
        if probe.exit_code == 0:
            break
        __import__("time").sleep(0.2)
    assert head.split() == [base, "swarm/swarm-dev-000/work"]

    # the agent commits; one sync brings it out
    podman_backend.exec(
        name,
        ["sh", "-c", "cd /workspace && echo one > a.txt && git add a.txt && git commit -qm one"],
    )
    run_agentctl("sync", "-f", str(fleet), "--once", check=True)
    first = git(host_repo, "rev-parse", "refs/heads/swarm/swarm-dev-000/work")
    assert git(host_repo, "log", "-1", "--format=%s", first) == "one"

    # more work, never synced by the daemon: delete must bring it out before removing
    podman_backend.exec(
        name,
        ["sh", "-c", "cd /workspace && echo two > b.txt && git add b.txt && git commit -qm two"],
    )
    podman_backend.exec(name, ["sh", "-c", "cd /workspace && echo draft > notes.txt"])
    run_agentctl("delete", "-f", str(fleet), check=True)
    assert podman_backend.list_owned(fleet_name) == []
    assert (
        git(host_repo, "log", "-1", "--format=%s", "refs/heads/swarm/swarm-dev-000/work") == "two"
    )
    assert "notes.txt" in git(
        host_repo, "ls-tree", "--name-only", "refs/heads/swarm/swarm-dev-000/wip"
    )
    assert git(host_repo, "rev-parse", "main") == base  # the user's branch is never touched
    subprocess.run(
        ["git", "-C", str(host_repo), "fsck", "--strict"], check=True, capture_output=True
    )


def test_failing_final_sync_keeps_the_container(
    tmp_path, host_repo, fleet_name, agent_image, podman_backend
) -> None:
    fleet = tmp_path / "fleet.yaml"
    into = tmp_path / "not-a-repo"
    into.mkdir()
    (into / "file").write_text("x")
    write_fleet(fleet, fleet_name, f"sync: {{into: {into}}}\n")
    run_agentctl("apply", "-f", str(fleet), check=True)
    proc = run_agentctl("delete", "-f", str(fleet))
    assert proc.returncode == 1
    assert "--force" in proc.stderr and "Traceback" not in proc.stderr
    assert len(podman_backend.list_owned(fleet_name)) == 1  # kept: nothing lost
    run_agentctl("delete", "-f", str(fleet), "--force", check=True)
    assert podman_backend.list_owned(fleet_name) == []


def test_synced_branches_are_pushed_to_the_fleets_remote(
    tmp_path, host_repo, fleet_name, agent_image, podman_backend
) -> None:
    remote = tmp_path / "review.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(host_repo, "remote", "add", "review", str(remote))
    fleet = tmp_path / "fleet.yaml"
    write_fleet(fleet, fleet_name, "repo: {path: project}\nsync: {push: {remote: review}}\n")
    run_agentctl("apply", "-f", str(fleet), check=True)
    name = f"{fleet_name}-swarm-dev-000"
    wait_for_workspace(podman_backend, name)
    podman_backend.exec(
        name,
        ["sh", "-c", "cd /workspace && echo r > r.txt && git add r.txt && git commit -qm reviewed"],
    )
    run_agentctl("sync", "-f", str(fleet), "--once", check=True)
    pushed = git(remote, "log", "-1", "--format=%s", "refs/heads/swarm/swarm-dev-000/work")
    assert pushed == "reviewed"
    status = run_agentctl("sync", "status", "-f", str(fleet), "-o", "json", check=True)
    assert "swarm-dev-000" in status.stdout


def test_missing_seed_repo_is_located_and_nothing_is_created(
    tmp_path, fleet_name, agent_image, podman_backend
) -> None:
    fleet = tmp_path / "fleet.yaml"
    write_fleet(fleet, fleet_name, "repo: {path: nowhere}\n")
    proc = run_agentctl("apply", "-f", str(fleet))
    assert proc.returncode == 2, proc.stderr
    assert f"{fleet}:5:14: repo.path:" in proc.stderr and "is not a git repository" in proc.stderr
    assert podman_backend.list_owned(fleet_name) == []
