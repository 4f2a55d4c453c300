"""Points where other parts join a container's lifecycle (seeding, final sync).

The executor calls these around creates and removals. They are a small protocol so the
executor never imports the sync machinery itself; ``controller/hooks.py`` has the real
ones and tests may drive the executor with ``NoHooks``.
"""

from __future__ import annotations

from typing import Protocol

from agentctl_swarm.fleet.render import ContainerSpec
from agentctl_swarm.podman.backend import PodmanBackend
from agentctl_swarm.podman.types import ObservedContainer


class LifecycleHooks(Protocol):
    def after_create(self, spec: ContainerSpec, backend: PodmanBackend) -> None:
        """The container exists but has not started: deliver what it needs first."""

    def before_remove(
        self, observed: ObservedContainer, backend: PodmanBackend, *, force: bool
    ) -> None:
        """The container is about to go: save its work; raise to stop the removal."""


class NoHooks:
    """For tests that drive the executor without seeding or sync."""

    def after_create(self, spec: ContainerSpec, backend: PodmanBackend) -> None:
        return None

    def before_remove(
        self, observed: ObservedContainer, backend: PodmanBackend, *, force: bool
    ) -> None:
        return None
