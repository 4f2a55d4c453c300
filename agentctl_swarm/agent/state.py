"""``state.json``: what the supervisor tells the world (and its own next incarnation).

The file lives in the agent's state volume, so it survives container restarts; the
supervisor reads it at start to resume the backoff instead of resetting it. Fixes
defect D8 (owl/reference/original-system.md): the original built this JSON by string
interpolation (a quote in the mission broke it, and the restore silently fell back to
defaults). Here a pydantic model is serialised by a JSON encoder and written
atomically (temp file + fsync + rename + directory fsync), so readers never see a torn
file; a corrupt file is set aside and the supervisor starts fresh, logged, never dead.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from agentctl_swarm.core.backoff import ExitInfo, ExitKind, RestartState
from agentctl_swarm.core.files import atomic_write

log = logging.getLogger("agentctl.supervisor")

STATE_FILE = "state.json"
MAX_RECENT_EXITS = 20


class Status(StrEnum):
    """Lifecycle status of the supervised agent.

    starting: supervisor up, child not yet running (workspace preparation, resume).
    running: child alive. backoff: waiting before the next restart.
    stopped: stopped on request (signal or stop file). fatal: child (or workspace
    preparation, or exec) failed in a way that must not be retried. degraded: circuit
    breaker tripped. crashed: the supervisor itself hit an internal error.
    """

    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPED = "stopped"
    CRASHED = "crashed"
    FATAL = "fatal"
    DEGRADED = "degraded"


def utcnow() -> datetime:
    """Timezone-aware now; one place so the format stays the same everywhere."""
    return datetime.now(UTC)


class ExitRecord(BaseModel):
    """One ended run of the child, with the policy's answer to it."""

    model_config = ConfigDict(extra="ignore")

    code: int | None = None
    signal: int | None = None
    signal_name: str | None = None
    classification: ExitKind
    uptime_seconds: float = 0.0
    at: datetime = Field(default_factory=utcnow)
    action: str | None = None  # restart / stop / fatal / degraded / stopped-by-request
    delay_seconds: float | None = None  # delay before the restart it caused, if any

    @classmethod
    def from_exit(cls, exit_: ExitInfo, uptime: float) -> ExitRecord:
        """Build from the policy's ``ExitInfo``."""
        return cls(
            code=exit_.code,
            signal=exit_.signal,
            signal_name=exit_.signal_name,
            classification=exit_.kind,
            uptime_seconds=round(uptime, 3),
        )


class SupervisorState(BaseModel):
    """The content of ``state.json``. Unknown keys are ignored (lenient load).

    ``restart_count``/``backoff`` from the original bash supervisor are accepted as
    aliases so an old state volume resumes too.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    schema_version: int = 1
    agent_name: str | None = None
    mission: str | None = None
    command: list[str] = Field(default_factory=list)
    status: Status = Status.STARTING
    restarts: int = Field(
        default=0, ge=0, validation_alias=AliasChoices("restarts", "restart_count")
    )
    backoff_seconds: float | None = Field(
        default=None, gt=0, validation_alias=AliasChoices("backoff_seconds", "backoff")
    )
    next_start_at: datetime | None = None
    last_exit: ExitRecord | None = None
    last_error: str | None = None
    started_at: datetime | None = None  # start of the current (or last) child run
    supervisor_started_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)
    pid: int | None = None  # child pid (leader of its own process group)
    supervisor_pid: int | None = None
    recent_crash_times: list[float] = Field(default_factory=list)  # epoch seconds
    recent_exits: list[ExitRecord] = Field(default_factory=list)

    def backoff_state(self, default_backoff: float) -> RestartState:
        """The part the restart policy needs."""
        return RestartState(
            backoff=self.backoff_seconds or default_backoff,
            crash_times=tuple(self.recent_crash_times),
        )

    def with_backoff(self, state: RestartState) -> SupervisorState:
        """Copy with the policy's state folded back in."""
        return self.model_copy(
            update={"backoff_seconds": state.backoff, "recent_crash_times": list(state.crash_times)}
        )

    def add_exit(self, record: ExitRecord) -> SupervisorState:
        """Copy with ``record`` as last exit, keeping a bounded history."""
        exits = [*self.recent_exits, record][-MAX_RECENT_EXITS:]
        return self.model_copy(update={"last_exit": record, "recent_exits": exits})


class SupervisorStateStore:
    """Reads and writes ``<state-dir>/state.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_FILE

    def load(self) -> SupervisorState | None:
        """The persisted state, or None when absent or unusable.

        A corrupt file is renamed to ``state.json.corrupt`` (evidence for a person)
        and logged; the supervisor then starts fresh rather than dying.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read %s (%s); starting with fresh state", self.path, exc)
            return None
        try:
            return SupervisorState.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "document"
            reason = f"{where}: {first.get('msg')}"
        except ValueError as exc:  # not UTF-8 and similar
            reason = str(exc)
        aside = self.path.with_name(STATE_FILE + ".corrupt")
        with contextlib.suppress(OSError):
            os.replace(self.path, aside)
        log.warning(
            "%s is corrupt (%s); moved it to %s and starting with fresh state",
            self.path,
            reason,
            aside.name,
        )
        return None

    def save(self, state: SupervisorState) -> SupervisorState:
        """Write atomically; returns the state as written (``updated_at`` refreshed)."""
        state = state.model_copy(update={"updated_at": utcnow()})
        atomic_write(self.path, state.model_dump_json(indent=2) + "\n")
        return state
