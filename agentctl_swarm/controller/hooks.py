"""The real lifecycle hooks: seed workspaces on create, final sync before removal.

Imported directly (never behind a try/except): if the sync machinery cannot load (e.g.
``git`` missing), apply and delete must fail loudly rather than run without seeding or
the final sync, which would lose work. The CLI runs ``preflight.check_tools`` before it
imports this, so a missing git is reported with the fix.
"""

from __future__ import annotations

from pathlib import Path

from agentctl_swarm.fleet.model import Fleet
from agentctl_swarm.fleet.render import ContainerSpec
from agentctl_swarm.podman.backend import PodmanBackend
from agentctl_swarm.podman.types import ObservedContainer
from agentctl_swarm.sync.hooks import final_sync, seed_container


class WorkspaceHooks:
    """Seed workspaces on create and run a final sync before any removal."""

    def __init__(self, fleet: Fleet, state_dir: Path, base_dir: Path | None = None) -> None:
        self.fleet = fleet
        self.state_dir = state_dir
        self.base_dir = base_dir

    def after_create(self, spec: ContainerSpec, backend: PodmanBackend) -> None:
        seed_container(spec, backend, state_dir=self.state_dir)

    def before_remove(
        self, observed: ObservedContainer, backend: PodmanBackend, *, force: bool
    ) -> None:
        final_sync(
            self.fleet,
            observed,
            backend,
            force=force,
            state_dir=self.state_dir,
            base_dir=self.base_dir,
        )
