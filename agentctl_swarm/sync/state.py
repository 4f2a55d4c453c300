"""Per-agent sync state on the host: what was brought out last time, and how it went.

One small JSON file per agent under ``<AGENTCTL_STATE_DIR>/sync/<fleet>/<agent>.json``,
written atomically (temp file, fsync, rename), so a daemon killed mid-write leaves the
previous state intact. The tips recorded here are only *hints* for the next bundle's
prerequisites: the host repo stays the truth, and a stale or lost state file costs a
bigger bundle, never lost work.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from agentctl_swarm.core.files import atomic_write
from agentctl_swarm.sync.refs import check_agent


@dataclass
class AgentSyncState:
    """What the host knows about one agent's sync."""

    fleet: str
    agent: str
    container: str = ""
    into: str = ""
    tips: dict[str, str] = field(default_factory=dict)  # container branch -> last landed sha
    wip: str | None = None
    seed_commit: str | None = None
    last_sync: str | None = None  # ISO time of the last successful sync
    last_attempt: str | None = None
    last_error: str | None = None
    last_push_error: str | None = None
    syncs: int = 0
    commits_total: int = 0
    bytes_total: int = 0
    last_commits: int = 0
    last_bytes: int = 0
    last_duration: float | None = None
    skipped_files: list[str] = field(default_factory=list)

    def known_tips(self) -> list[str]:
        """Commits the host should already have (prerequisite candidates)."""
        out = {*self.tips.values()}
        if self.wip:
            out.add(self.wip)
        if self.seed_commit:
            out.add(self.seed_commit)
        return sorted(out)


class SyncStateStore:
    """Reads and atomically writes ``AgentSyncState`` files for one state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / "sync"

    def path(self, fleet: str, agent: str) -> Path:
        return self.root / check_agent(fleet) / f"{check_agent(agent)}.json"

    def load(self, fleet: str, agent: str) -> AgentSyncState:
        path = self.path(fleet, agent)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return AgentSyncState(fleet=fleet, agent=agent)
        except (OSError, ValueError):
            # A corrupt file only costs prerequisites: start over, say so.
            state = AgentSyncState(fleet=fleet, agent=agent)
            state.last_error = f"state file {path} was unreadable and has been reset"
            return state
        known = {f.name for f in fields(AgentSyncState)}
        data = {k: v for k, v in raw.items() if k in known} if isinstance(raw, dict) else {}
        data.update(fleet=fleet, agent=agent)
        return AgentSyncState(**data)

    def save(self, state: AgentSyncState) -> None:
        data = json.dumps(asdict(state), indent=2, sort_keys=True)
        atomic_write(self.path(state.fleet, state.agent), data, mode=0o600)

    def list(self, fleet: str) -> list[AgentSyncState]:
        folder = self.root / check_agent(fleet)
        if not folder.is_dir():
            return []
        return [self.load(fleet, p.stem) for p in sorted(folder.glob("*.json"))]

    def lock_path(self, fleet: str, agent: str) -> Path:
        return self.path(fleet, agent).with_suffix(".lock")
