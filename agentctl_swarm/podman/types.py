"""What Podman says about things the project owns, as plain values (no I/O).

The backend returns these; the pure planner and the status code read them. Keeping them
out of backend.py means importing them never loads podman-py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ObservedContainer:
    """What Podman says about one container the project owns."""

    id: str
    name: str
    fleet: str
    agent: str
    role: str
    spec_hash: str
    state: str
    image: str
    labels: dict[str, str]
    created: datetime | None
    started_at: datetime | None
    exit_code: int | None = None
    restarts: int | None = None
    node: str = "local"  # which of the fleet's nodes it runs on (controller.nodes)

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class ContainerStats:
    """One sample of a running container's resource use (``GET /containers/stats``).

    ``cpu_percent`` is Podman's own figure for a single sample: the average since the
    container started. A live view wants the use *now*, so the raw counters are kept too:
    two samples give it (``controller.fleet_view.cpu_percent``).
    """

    name: str
    cpu_percent: float  # of one core, averaged since the container started
    cpu_nanos: int  # CPU time used so far
    system_nanos: int  # Podman's clock at the sample, ns (the denominator of CPU %)
    mem_usage: int  # bytes
    mem_limit: int  # bytes (the host's memory when the container has no limit)
    pids: int = 0

    @property
    def mem_percent(self) -> float | None:
        return 100.0 * self.mem_usage / self.mem_limit if self.mem_limit > 0 else None
