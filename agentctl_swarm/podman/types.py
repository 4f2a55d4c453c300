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

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
