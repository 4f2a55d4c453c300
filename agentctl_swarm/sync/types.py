"""The sync's data: what to sync (a target), within which limits, and what it did.

Plain values shared by the engine, the target resolution and the daemon, kept apart so
none of them imports another to get at these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agentctl_swarm.sync.refs import RefUpdate


@dataclass(frozen=True)
class SyncLimits:
    """Caps that keep one misbehaving agent from hurting the host or the other agents."""

    max_bundle_bytes: int = 512 * 1024**2
    max_file_bytes: int = 50 * 1024**2  # untracked files above this stay out of wip
    timeout: float = 120.0
    exec_user: str = "1000:1000"


@dataclass(frozen=True)
class SyncTarget:
    """One agent to sync: where its container is and which host repo its work lands in."""

    fleet: str
    agent: str
    container: str
    into: Path
    push_remote: str | None = None


@dataclass
class SyncResult:
    """What one agent's sync did."""

    agent: str
    ok: bool
    commits: int = 0
    bytes: int = 0
    updates: list[RefUpdate] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    duration: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step (for logs)
