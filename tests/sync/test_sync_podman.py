"""End to end with real containers and real repos: seed, work inside, sync, find it on the host."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentctl_swarm.fleet.model import RepoSpec
from agentctl_swarm.sync.engine import sync_agent
from agentctl_swarm.sync.hostrepo import HostRepo
from agentctl_swarm.sync.state import SyncStateStore
from agentctl_swarm.sync.types import SyncLimits, SyncTarget

from .conftest import git

pytestmark = pytest.mark.podman


def _sync(agent, into: Path, state_dir: Path, **limits):
    target = SyncTarget(agent.spec.fleet, agent.spec.agent, agent.name, into)
    return sync_agent(agent.backend, target, SyncStateStore(state_dir), SyncLimits(**limits))


def _fsck_clean(repo: Path) -> None:
    code, output = HostRepo(repo).fsck()
    assert code == 0, output
    assert "error" not in output and "missing" not in output, output


def test_seed_commit_sync_lands_on_work_branch(make_agent, host_repo: Path) -> None:
    agent = make_agent(repo=RepoSpec(path=str(host_repo), copy_ignored=[".env"]))
    a = agent.spec.agent
    # Seeded: on the work branch, at main's commit, identity set, .env copied in and ignored.
    assert agent.sh("git rev-parse --abbrev-ref HEAD").strip() == f"swarm/{a}/work"
    assert agent.sh("git rev-parse HEAD").strip() == git(host_repo, "rev-parse", "main")
    assert agent.sh("git config user.name").strip() == a
    assert agent.sh("cat .env") == "TOKEN=not-for-git\n"
    assert agent.sh("git status --porcelain") == ""
    agent.sh("echo feature > feature.txt && git add feature.txt && git commit -qm 'agent work'")
    tip = agent.sh("git rev-parse HEAD").strip()

    result = _sync(agent, host_repo, make_agent.state_dir)
    assert result.ok, result.error
    assert git(host_repo, "rev-parse", f"refs/heads/swarm/{a}/work") == tip
    assert git(host_repo, "log", "-1", "--format=%s", f"swarm/{a}/work") == "agent work"
    # The host's own branch and worktree were not touched; no checkout happened.
    assert git(host_repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert not (host_repo / "feature.txt").exists()
    assert result.commits == 1  # incremental: only the new commit came out
    state = SyncStateStore(make_agent.state_dir).load(agent.spec.fleet, a)
    assert state.syncs == 1 and state.commits_total == 1 and state.last_error is None
    # A second sync with nothing new moves nothing and transfers nothing.
    again = _sync(agent, host_repo, make_agent.state_dir)
    assert again.ok and again.bytes == 0 and again.updates == []
    _fsck_clean(host_repo)


def test_uncommitted_work_lands_in_wip_without_touching_the_workspace(
    make_agent, host_repo: Path
) -> None:
    agent = make_agent(repo=RepoSpec(path=str(host_repo)))
    a = agent.spec.agent
    agent.sh("echo changed >> README.md && echo staged > staged.txt && git add staged.txt")
    agent.sh("echo untracked > notes.txt && echo 'SECRET=x' > .env && echo k > id.key")
    before = agent.sh("git status --porcelain")
    index_before = agent.sh("sha256sum .git/index")
    result = _sync(agent, host_repo, make_agent.state_dir)
    assert result.ok, result.error
    assert agent.sh("git status --porcelain") == before
    assert agent.sh("sha256sum .git/index") == index_before
    wip = f"refs/heads/swarm/{a}/wip"
    files = set(git(host_repo, "ls-tree", "-r", "--name-only", wip).splitlines())
    assert {"README.md", "staged.txt", "notes.txt"} <= files
    assert ".env" not in files and "id.key" not in files  # secrets stay out
    assert git(host_repo, "show", f"{wip}:notes.txt") == "untracked"
    assert git(host_repo, "rev-parse", f"{wip}^") == git(host_repo, "rev-parse", "main")


def test_rewritten_branch_keeps_old_host_ref(make_agent, host_repo: Path) -> None:
    agent = make_agent(repo=RepoSpec(path=str(host_repo)))
    a = agent.spec.agent
    agent.sh("echo one > one.txt && git add . && git commit -qm one")
    old = agent.sh("git rev-parse HEAD").strip()
    assert _sync(agent, host_repo, make_agent.state_dir).ok
    agent.sh("git reset -q --hard HEAD~1 && echo two > two.txt && git add . && git commit -qm two")
    new = agent.sh("git rev-parse HEAD").strip()
    result = _sync(agent, host_repo, make_agent.state_dir)
    assert result.ok, result.error
    assert git(host_repo, "rev-parse", f"refs/heads/swarm/{a}/work") == new
    backups = git(host_repo, "for-each-ref", "--format=%(refname) %(objectname)",
                  f"refs/heads/swarm-rewritten/{a}/")  # fmt: skip
    assert backups.count("\n") == 0 and backups.endswith(old)
    assert "refs/heads/swarm-rewritten/" + a + "/work/" in backups
    _fsck_clean(host_repo)


def test_fresh_workspace_without_repo_syncs_into_new_bare_repo(make_agent, tmp_path: Path) -> None:
    agent = make_agent(repo=None)
    a = agent.spec.agent
    assert agent.sh("git symbolic-ref --short HEAD").strip() == f"swarm/{a}/work"
    agent.sh("echo draft > draft.txt")  # unborn branch: only a wip snapshot exists
    into = tmp_path / "landing.git"
    result = _sync(agent, into, make_agent.state_dir)
    assert result.ok, result.error
    assert git(into, "show", f"swarm/{a}/wip:draft.txt") == "draft"
    agent.sh("git add . && git commit -qm first && git checkout -qb feature/x")
    agent.sh("echo more > more.txt && git add . && git commit -qm second")
    result = _sync(agent, into, make_agent.state_dir)
    assert result.ok, result.error
    assert git(into, "log", "--format=%s", f"swarm/{a}/feature/x") == "second\nfirst"
    assert git(into, "rev-parse", f"swarm/{a}/work") == git(
        into, "rev-parse", f"swarm/{a}/feature/x~1"
    )
    _fsck_clean(into)
