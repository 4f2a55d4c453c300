"""What the controller calls around a container's life: seed after create, sync before remove.

``seed_container`` runs between create and start; ``final_sync`` runs before ``delete``,
``restart`` or a recreate removes a container, and raises SyncError (which stops the
removal) when the agent's latest work could not be brought out, unless forced.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from agentctl_swarm.podman.backend import PodmanBackend
from agentctl_swarm.sync.engine import sync_agent
from agentctl_swarm.sync.errors import SyncError
from agentctl_swarm.sync.seed import build_seed, seed_tar
from agentctl_swarm.sync.state import StateStore
from agentctl_swarm.sync.targets import limits_for, target_for

log = logging.getLogger("agentctl.sync")


def _state_dir(state_dir: Path | None) -> Path:
    if state_dir is not None:
        return Path(state_dir)
    from agentctl_swarm.config import settings

    return settings().state_dir


def seed_container(spec: object, backend: PodmanBackend, *, state_dir: Path | None = None) -> None:
    """Deliver ``/state/seed/`` into the created (not started) container for ``spec``.

    ``spec`` is a rendered ContainerSpec (``.name``, ``.agent``, ``.fleet``, ``.repo``).
    """
    root = _state_dir(state_dir)
    name, agent, fleet = spec.name, spec.agent, spec.fleet  # type: ignore[attr-defined]
    seed = build_seed(agent, getattr(spec, "repo", None), root)
    if seed.bundle is not None or seed.files:
        # Without a repo there is nothing to deliver: `prepare` makes a fresh repository
        # on swarm/<agent>/work from the container's own AGENTCTL_AGENT (saves a copy
        # into the container per create).
        backend.put_archive(name, "/state", seed_tar(seed))
    store = StateStore(root)
    state = store.load(fleet, agent)
    state.container = name
    state.seed_commit = seed.commit
    store.save(state)
    log.info(
        json.dumps(
            {
                "event": "seed.ok",
                "agent": agent,
                "commit": seed.commit,
                "bytes": len(seed.bundle or b""),
            }
        )
    )


def final_sync(
    fleet: object,
    container_name: str,
    agent: str,
    backend: PodmanBackend,
    force: bool,
    *,
    state_dir: Path | None = None,
    base_dir: Path | None = None,
) -> None:
    """Sync once more before the container goes; SyncError stops the removal unless forced.

    A container that is not running cannot be asked for a bundle; its work stays in its
    workspace volume (volumes are kept unless the user deletes them), so that is no error.
    """
    fleet_obj = getattr(fleet, "fleet", fleet)
    attrs = backend.inspect(container_name)
    if attrs is None:
        return
    running = (
        (attrs.get("State") or {}).get("Running")
        if isinstance(attrs.get("State"), dict)
        else attrs.get("State") == "running"
    )
    if not running:
        log.info(
            json.dumps(
                {
                    "event": "sync.final_skipped",
                    "agent": agent,
                    "reason": "container not running; work stays in its volume",
                }
            )
        )
        return
    root = _state_dir(state_dir)
    target = target_for(fleet_obj, agent, container_name, root, base_dir)  # type: ignore[arg-type]
    result = sync_agent(backend, target, StateStore(root), limits_for(fleet_obj))  # type: ignore[arg-type]
    if result.ok:
        return
    message = (
        f"final sync of {agent} ({container_name}) failed: {result.error}. The container was "
        "kept so no work is lost; fix the cause and retry, or pass --force to remove it anyway "
        "(work since the last successful sync stays only in its workspace volume)"
    )
    if force:
        log.warning(
            json.dumps({"event": "sync.final_forced", "agent": agent, "error": result.error})
        )
        return
    raise SyncError(message)
