"""The sync-daemon: every running agent of a fleet, on an interval, until told to stop.

Usable as ``agentctl sync`` in the foreground or from a thread in the controller:
``SyncDaemon(fleet, backend, state_dir=...).run(stop_event)``. One agent's failure (or a
bug while syncing it) never stops the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from agentctl_swarm.core.logs import log_event
from agentctl_swarm.fleet.model import Fleet
from agentctl_swarm.podman.backend import PodmanBackend, PodmanError
from agentctl_swarm.sync.engine import sync_agent
from agentctl_swarm.sync.errors import SyncError
from agentctl_swarm.sync.state import SyncStateStore
from agentctl_swarm.sync.targets import fleet_targets, limits_for
from agentctl_swarm.sync.types import SyncLimits, SyncResult, SyncTarget

log = logging.getLogger("agentctl.sync")


class SyncDaemon:
    """Sync every running agent of a fleet, on an interval, until told to stop."""

    def __init__(
        self,
        fleet: Fleet,
        backend: PodmanBackend,
        *,
        state_dir: Path,
        base_dir: Path | None = None,
        interval: float | None = None,
        limits: SyncLimits | None = None,
        targets: Callable[[], list[SyncTarget]] | None = None,
    ) -> None:
        self.fleet = fleet
        self.backend = backend
        self.state_dir = Path(state_dir)
        self.store = SyncStateStore(self.state_dir)
        self.base_dir = base_dir
        self.interval = interval if interval is not None else float(self.fleet.sync.interval)
        self.limits = limits or limits_for(self.fleet)
        self._targets = targets or (
            lambda: fleet_targets(self.fleet, backend, self.state_dir, base_dir)
        )

    def run_once(self) -> list[SyncResult]:
        """One pass over every running agent; one agent's failure never stops the others."""
        results = []
        try:
            targets = self._targets()
        except (PodmanError, SyncError) as exc:
            log_event(log, "sync.discover_error", level=logging.WARNING, error=str(exc))
            return []
        for target in targets:
            try:
                results.append(sync_agent(self.backend, target, self.store, self.limits))
            except Exception as exc:  # a bug for one agent must not stop the daemon
                log.exception("sync of %s crashed", target.agent, extra={"agent": target.agent})
                results.append(SyncResult(agent=target.agent, ok=False, error=repr(exc)))
        return results

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set (checked between passes and during the wait)."""
        log_event(log, "sync.start", fleet=self.fleet.name, interval=self.interval)
        while not stop.is_set():
            self.run_once()
            stop.wait(self.interval)
        log_event(log, "sync.stop", fleet=self.fleet.name)
