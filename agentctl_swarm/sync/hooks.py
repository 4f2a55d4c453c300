"""What the controller calls around a container's life: seed after create, sync before remove.

``seed_container`` runs between create and start; ``final_sync`` runs before ``delete``,
``restart`` or a recreate removes a container, and raises SyncError (which stops the
removal) when the agent's latest work could not be brought out, unless forced.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agentctl_swarm.core.logs import log_event
from agentctl_swarm.fleet.model import Fleet
from agentctl_swarm.fleet.render import ContainerSpec
from agentctl_swarm.podman.backend import PodmanBackend
from agentctl_swarm.podman.types import ObservedContainer
from agentctl_swarm.sync.engine import sync_agent
from agentctl_swarm.sync.errors import SyncError
from agentctl_swarm.sync.seed import build_seed, seed_tar
from agentctl_swarm.sync.state import SyncStateStore
from agentctl_swarm.sync.targets import limits_for, target_for

log = logging.getLogger("agentctl.sync")


def seed_container(spec: ContainerSpec, backend: PodmanBackend, *, state_dir: Path) -> None:
    """Deliver ``/state/seed/`` into the created (not started) container for ``spec``."""
    seed = build_seed(spec.agent, spec.repo, state_dir)
    if seed.bundle is not None or seed.files:
        # Without a repo there is nothing to deliver: `prepare` makes a fresh repository
        # on swarm/<agent>/work from the container's own AGENTCTL_AGENT (saves a copy
        # into the container per create).
        backend.put_archive(spec.name, "/state", seed_tar(seed))
    store = SyncStateStore(state_dir)
    state = store.load(spec.fleet, spec.agent)
    state.container = spec.name
    state.seed_commit = seed.commit
    store.save(state)
    log_event(log, "seed.ok", agent=spec.agent, commit=seed.commit, bytes=len(seed.bundle or b""))


def final_sync(
    fleet: Fleet,
    observed: ObservedContainer,
    backend: PodmanBackend,
    *,
    force: bool,
    state_dir: Path,
    base_dir: Path | None = None,
) -> None:
    """Sync once more before the container goes; SyncError stops the removal unless forced.

    A container that is not running cannot be asked for a bundle; its work stays in its
    workspace volume (volumes are kept unless the user deletes them), so that is no error.
    """
    current = backend.observe(observed.name)
    if current is None:
        return
    if not current.running:
        log_event(
            log,
            "sync.final_skipped",
            agent=observed.agent,
            reason="container not running; work stays in its volume",
        )
        return
    target = target_for(fleet, observed.agent, observed.name, state_dir, base_dir)
    result = sync_agent(backend, target, SyncStateStore(state_dir), limits_for(fleet))
    if result.ok:
        return
    if force:
        log_event(
            log,
            "sync.final_forced",
            level=logging.WARNING,
            agent=observed.agent,
            error=result.error,
        )
        return
    raise SyncError(
        f"final sync of {observed.agent} ({observed.name}) failed: {result.error}",
        hint="the container was kept so no work is lost; fix the cause and retry, or pass "
        "--force to remove it anyway (work since the last successful sync stays only in its "
        "workspace volume)",
    )
