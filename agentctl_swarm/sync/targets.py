"""Which host repo each agent's work lands in, and which agents to sync now.

Resolution of the host repo (``sync.into``), first match wins:
the fleet's ``sync.into``; the agent's seeding repo path; the host clone of the agent's
seeding URL (under the state dir); a bare repo created for the fleet under the state dir.
Agents are discovered by label (``list_owned``), never by container name pattern.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from agentctl_swarm.fleet.model import Fleet, RepoSpec
from agentctl_swarm.fleet.render import repo_for
from agentctl_swarm.podman.backend import PodmanBackend
from agentctl_swarm.sync.types import SyncLimits, SyncTarget


def _resolve(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p.absolute()


def url_cache_path(state_dir: Path, url: str) -> Path:
    """Where a seeding URL is cloned on the host (one bare clone per URL)."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(state_dir) / "seed-cache" / f"{digest}.git"


def fleet_repo_path(fleet: Fleet, state_dir: Path) -> Path:
    """The bare repo created for a fleet that names no repo at all."""
    return Path(state_dir) / "repos" / f"{fleet.name}.git"


def into_for(
    fleet: Fleet, repo: RepoSpec | None, state_dir: Path, base_dir: Path | None = None
) -> Path:
    """The host repo an agent's work lands in."""
    if fleet.sync.into:
        return _resolve(fleet.sync.into, base_dir)
    if repo is not None and repo.path:
        return _resolve(repo.path, base_dir)
    if repo is not None and repo.url:
        return url_cache_path(state_dir, repo.url)
    return fleet_repo_path(fleet, state_dir)


def limits_for(fleet: Fleet) -> SyncLimits:
    return SyncLimits(
        max_bundle_bytes=fleet.sync.max_bundle_mb * 1024**2, timeout=float(fleet.sync.timeout)
    )


def target_for(
    fleet: Fleet,
    agent: str,
    container: str,
    state_dir: Path,
    base_dir: Path | None = None,
) -> SyncTarget:
    repo = repo_for(fleet, agent)
    return SyncTarget(
        fleet=fleet.name,
        agent=agent,
        container=container,
        into=into_for(fleet, repo, state_dir, base_dir),
        push_remote=fleet.sync.push.remote if fleet.sync.push else None,
    )


def fleet_targets(
    fleet: Fleet, backend: PodmanBackend, state_dir: Path, base_dir: Path | None = None
) -> list[SyncTarget]:
    """One target per running container of the fleet (found by label)."""
    return [
        target_for(fleet, c.agent, c.name, state_dir, base_dir)
        for c in backend.list_owned(fleet.name)
        if c.state == "running" and c.agent
    ]
