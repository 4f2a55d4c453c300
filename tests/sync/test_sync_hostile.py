"""A hostile or broken workspace does no harm, and one agent's failure never stops others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentctl_swarm.fleet.model import RepoSpec
from agentctl_swarm.fleet.source import read_fleet
from agentctl_swarm.sync.daemon import SyncDaemon
from agentctl_swarm.sync.engine import sync_agent
from agentctl_swarm.sync.errors import SyncError
from agentctl_swarm.sync.hooks import final_sync
from agentctl_swarm.sync.hostrepo import HostRepo
from agentctl_swarm.sync.state import SyncStateStore
from agentctl_swarm.sync.types import SyncLimits, SyncTarget

from .conftest import git, write_fleet

pytestmark = pytest.mark.podman
AGENTCTL = str(Path(sys.executable).parent / "agentctl")


def _sync(agent, into: Path, state_dir: Path, **limits):
    target = SyncTarget(agent.spec.fleet, agent.spec.agent, agent.name, into)
    return sync_agent(agent.backend, target, SyncStateStore(state_dir), SyncLimits(**limits))


def test_hooks_symlinks_and_huge_files_do_no_harm(make_agent, host_repo: Path, tmp_path) -> None:
    marker = tmp_path / "pwned"
    # A hook in the host repo proves no hook runs during a sync (not even the host's own).
    hook = host_repo / ".git" / "hooks" / "reference-transaction"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    agent = make_agent(repo=RepoSpec(path=str(host_repo)))
    a = agent.spec.agent
    agent.sh(
        f"mkdir -p .githooks && printf '#!/bin/sh\\ntouch {marker}\\n' > .githooks/post-merge"
        f" && chmod +x .githooks/post-merge && cp .githooks/post-merge .git/hooks/post-checkout"
        " && git config core.hooksPath .githooks"
        " && ln -s /etc/shadow shadow-link && git add . && git commit -q --no-verify -m hostile"
    )
    agent.sh("ln -s /root/.ssh/id_rsa untracked-link && head -c 3000000 /dev/urandom > big.bin")
    result = _sync(agent, host_repo, make_agent.state_dir, max_file_bytes=1_000_000)
    assert result.ok, result.error
    assert not marker.exists()
    work, wip = f"swarm/{a}/work", f"swarm/{a}/wip"
    # Symlinks arrive as symlink blobs (their target text), never followed, never checked out.
    assert git(host_repo, "ls-tree", work, "shadow-link").startswith("120000 ")
    assert git(host_repo, "cat-file", "-p", f"{work}:shadow-link") == "/etc/shadow"
    assert git(host_repo, "cat-file", "-p", f"{wip}:untracked-link") == "/root/.ssh/id_rsa"
    assert not (host_repo / "shadow-link").exists() and not (host_repo / ".githooks").exists()
    # The untracked file over the per-file cap stayed out of the snapshot, and was reported.
    assert "big.bin" not in git(host_repo, "ls-tree", "--name-only", wip)
    state = SyncStateStore(make_agent.state_dir).load(agent.spec.fleet, a)
    assert state.skipped_files == ["big.bin"]
    # Committing the huge file makes the bundle exceed the cap: refused, host refs unmoved.
    before = git(host_repo, "rev-parse", work)
    agent.sh("git add -f big.bin && git commit -q --no-verify -m big")
    result = _sync(agent, host_repo, make_agent.state_dir, max_bundle_bytes=1_000_000)
    assert not result.ok and "cap" in (result.error or "")
    assert git(host_repo, "rev-parse", work) == before
    state = SyncStateStore(make_agent.state_dir).load(agent.spec.fleet, a)
    assert "cap" in (state.last_error or "")
    code, out = HostRepo(host_repo).fsck()
    assert code == 0, out
    assert not marker.exists()


def test_tree_with_dotgit_entry_is_rejected_by_fsck(make_agent, host_repo: Path) -> None:
    agent = make_agent(repo=RepoSpec(path=str(host_repo)))
    a = agent.spec.agent
    # Hand-craft a tree holding a `.git` entry (git itself would never commit one).
    agent.sh(
        "blob=$(echo '[core] hooksPath = /tmp' | git hash-object -w --stdin)"
        " && inner=$(printf '100644 blob %s\\tconfig\\n' $blob | git mktree)"
        " && tree=$(printf '040000 tree %s\\t.git\\n' $inner | git mktree --missing)"
        " && c=$(git commit-tree $tree -p HEAD -m evil) && git branch evil $c"
    )
    result = _sync(agent, host_repo, make_agent.state_dir)
    assert not result.ok
    assert "index-pack" in (result.error or "")
    refs = git(host_repo, "for-each-ref", "--format=%(refname)", f"refs/heads/swarm/{a}/")
    assert refs == ""  # atomic: nothing of this agent landed


def test_one_broken_agent_never_stops_the_others(make_agent, host_repo: Path, tmp_path) -> None:
    good = make_agent(index=0, repo=RepoSpec(path=str(host_repo)))
    bad = make_agent(index=1, repo=RepoSpec(path=str(host_repo)))
    good.sh("echo ok > ok.txt && git add . && git commit -qm good")
    bad.sh("rm -rf .git")
    into = tmp_path / "into.git"
    fleet_file = write_fleet(tmp_path / "fleet.yaml", good.spec.fleet, host_repo, into, 2)
    daemon = SyncDaemon(read_fleet(fleet_file).fleet, good.backend, state_dir=make_agent.state_dir)
    results = {r.agent: r for r in daemon.run_once()}
    assert results[good.spec.agent].ok
    assert not results[bad.spec.agent].ok
    assert "not a git workspace" in (results[bad.spec.agent].error or "")
    assert git(into, "log", "-1", "--format=%s", f"swarm/{good.spec.agent}/work") == "good"
    # `agentctl sync status` shows both, with the error.
    env = {**os.environ, "AGENTCTL_STATE_DIR": str(make_agent.state_dir)}
    proc = subprocess.run(
        [AGENTCTL, "sync", "status", "-f", str(fleet_file), "-o", "json"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = {row["agent"]: row for row in json.loads(proc.stdout)}
    # A fresh landing repo lacks the seed history, so the first sync brings all 3 commits.
    assert rows[good.spec.agent]["commits_total"] == 3
    assert rows[good.spec.agent]["last_error"] is None
    assert "not a git workspace" in rows[bad.spec.agent]["last_error"]
    table = subprocess.run(
        [AGENTCTL, "sync", "status", "-f", str(fleet_file)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert good.spec.agent in table.stdout and "not a git workspace" in table.stdout


def test_final_sync_lands_work_or_stops_the_removal(make_agent, host_repo: Path, tmp_path) -> None:
    agent = make_agent(repo=RepoSpec(path=str(host_repo)))
    a = agent.spec.agent
    fleet_file = write_fleet(tmp_path / "fleet.yaml", agent.spec.fleet, host_repo, host_repo)
    fleet = read_fleet(fleet_file).fleet
    observed = agent.backend.observe(agent.name)
    assert observed is not None and observed.agent == a
    state_dir = make_agent.state_dir

    def final(force: bool) -> None:
        final_sync(fleet, observed, agent.backend, force=force, state_dir=state_dir)

    agent.sh("echo last > last.txt")  # uncommitted, about to be deleted
    final(False)
    assert git(host_repo, "show", f"swarm/{a}/wip:last.txt") == "last"
    agent.sh("rm -rf .git")
    with pytest.raises(SyncError) as info:
        final(False)
    assert "final sync of" in str(info.value) and "--force" in info.value.one_line()
    final(True)
    # A stopped container cannot be asked; its volume keeps the work, so no error.
    agent.backend.stop(agent.name, timeout=1)
    final(False)


def test_a_hanging_agent_is_reported_not_waited_for(make_agent, host_repo: Path) -> None:
    agent = make_agent(repo=RepoSpec(path=str(host_repo)))
    # A clean filter the agent controls makes git inside the box hang on the next snapshot.
    agent.sh(
        "git config filter.slow.clean 'sleep 60; cat' && echo '*.slow filter=slow' > .gitattributes"
        " && echo data > stuck.slow"
    )
    result = _sync(agent, host_repo, make_agent.state_dir, timeout=3)
    assert not result.ok and "did not finish within 3.0s" in (result.error or "")
    state = SyncStateStore(make_agent.state_dir).load(agent.spec.fleet, agent.spec.agent)
    assert "did not finish" in (state.last_error or "")
