"""Points where other parts join a container's lifecycle (seeding, final sync).

The executor calls these around creates and removals. Keeping them behind a small
protocol lets the controller be tested without the sync machinery, and lets the sync
package own everything about git.
"""

from __future__ import annotations

from typing import Protocol

from agentctl_swarm.fleet.model import Fleet
from agentctl_swarm.fleet.render import ContainerSpec
from agentctl_swarm.podman.backend import ObservedContainer, PodmanBackend


class LifecycleHooks(Protocol):
    def after_create(self, spec: ContainerSpec, backend: PodmanBackend) -> None:
        """The container exists but has not started: deliver what it needs first."""

    def before_remove(
        self, observed: ObservedContainer, backend: PodmanBackend, *, force: bool
    ) -> None:
        """The container is about to go: save its work; raise to stop the removal."""


class NoHooks:
    """For fleets and tests that need neither seeding nor sync."""

    def after_create(self, spec: ContainerSpec, backend: PodmanBackend) -> None:
        return None

    def before_remove(
        self, observed: ObservedContainer, backend: PodmanBackend, *, force: bool
    ) -> None:
        return None


class WorkspaceHooks:
    """Seed workspaces on create and run a final sync before any removal."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def after_create(self, spec: ContainerSpec, backend: PodmanBackend) -> None:
        from agentctl_swarm.sync.hooks import seed_container

        seed_container(spec, backend)

    def before_remove(
        self, observed: ObservedContainer, backend: PodmanBackend, *, force: bool
    ) -> None:
        from agentctl_swarm.sync.hooks import final_sync

        final_sync(self.fleet, observed.name, observed.agent, backend, force=force)


def hooks_for(fleet: Fleet) -> LifecycleHooks:
    """Workspace hooks when the sync package is installed, else none."""
    try:
        import agentctl_swarm.sync.hooks  # noqa: F401
    except ImportError:
        return NoHooks()
    return WorkspaceHooks(fleet)
