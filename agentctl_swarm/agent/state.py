"""``state.json``: what the supervisor tells the world (and its own next incarnation).

The file lives in the agent's state volume, so it survives container restarts; the
supervisor reads it at start to resume the backoff instead of resetting it. Fixes
defect D8 (owl/reference/original-system.md): the original built this JSON by string
interpolation (a quote in the mission broke it, and the restore silently fell back to
defaults). Here a dataclass is serialised by a JSON encoder and written atomically
(temp file + fsync + rename + directory fsync), so readers never see a torn file; a
corrupt file is set aside and the supervisor starts fresh, logged, never dead.

Plain dataclasses with an explicit reader, not pydantic: the supervisor stays resident
in every agent container, and pydantic (import plus model building) was ~8 MiB of its
anonymous memory (RssAnon with the supervisor imported, in the agent image: 18,332 KiB
with pydantic, 10,344 KiB without), against an idle target of 40 MiB per container
(bench/dispatch).
The reader keeps pydantic's lax rules, so every file that loaded before loads the same
(``"3"`` and ``3.0`` are 3 restarts, timestamps may be ISO 8601 text or Unix seconds,
unknown keys are ignored, the original bash supervisor's ``restart_count``/``backoff``
are accepted); what it rejects is rejected as before, with a ``where: what`` reason. The
JSON written has the same keys, order and formats (``...Z`` timestamps, ``null``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, TypeVar

from agentctl_swarm.core.backoff import ExitInfo, ExitKind, RestartState
from agentctl_swarm.core.env import parse_float, parse_int
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


@dataclass(kw_only=True)
class ExitRecord:
    """One ended run of the child, with the policy's answer to it."""

    code: int | None = None
    signal: int | None = None
    signal_name: str | None = None
    classification: ExitKind
    uptime_seconds: float = 0.0
    at: datetime = field(default_factory=utcnow)
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


@dataclass(kw_only=True)
class SupervisorState:
    """The content of ``state.json``; read by :meth:`from_json`, written by :meth:`to_json`."""

    schema_version: int = 1
    agent_name: str | None = None
    mission: str | None = None
    command: list[str] = field(default_factory=list)
    status: Status = Status.STARTING
    restarts: int = 0
    backoff_seconds: float | None = None
    next_start_at: datetime | None = None
    last_exit: ExitRecord | None = None
    last_error: str | None = None
    started_at: datetime | None = None  # start of the current (or last) child run
    supervisor_started_at: datetime | None = None
    updated_at: datetime = field(default_factory=utcnow)
    pid: int | None = None  # child pid (leader of its own process group)
    supervisor_pid: int | None = None
    recent_crash_times: list[float] = field(default_factory=list)  # epoch seconds
    recent_exits: list[ExitRecord] = field(default_factory=list)

    def backoff_state(self, default_backoff: float) -> RestartState:
        """The part the restart policy needs."""
        return RestartState(
            backoff=self.backoff_seconds or default_backoff,
            crash_times=tuple(self.recent_crash_times),
        )

    def with_backoff(self, state: RestartState) -> SupervisorState:
        """Copy with the policy's state folded back in."""
        return replace(
            self, backoff_seconds=state.backoff, recent_crash_times=list(state.crash_times)
        )

    def add_exit(self, record: ExitRecord) -> SupervisorState:
        """Copy with ``record`` as last exit, keeping a bounded history."""
        exits = [*self.recent_exits, record][-MAX_RECENT_EXITS:]
        return replace(self, last_exit=record, recent_exits=exits)

    @classmethod
    def from_json(cls, raw: bytes | str) -> SupervisorState:
        """Parse ``state.json``; :class:`StateError` (a ValueError) says where it is wrong."""
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            doc = json.loads(text)
            # A lone surrogate escape ("\ud800") decodes, but could never be written back.
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, Unicode*Error, nesting
            raise StateError(f"Invalid JSON: {exc}") from None
        return _read_object(cls, _STATE_FIELDS, doc)

    def to_json(self) -> str:
        """The document, indented, keys in field order (what readers of the file expect)."""
        return json.dumps(_plain(self), indent=2, ensure_ascii=False)


class StateError(ValueError):
    """A ``state.json`` that cannot be used; ``str()`` is ``where: what``."""

    def __init__(self, msg: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(msg)
        self.msg = msg
        self.loc = loc

    def inside(self, *outer: str | int) -> StateError:
        """The same error, located inside ``outer`` (a key or list index)."""
        return StateError(self.msg, (*outer, *self.loc))

    def __str__(self) -> str:
        return f"{'.'.join(str(p) for p in self.loc) or 'document'}: {self.msg}"


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
            return SupervisorState.from_json(raw)
        except ValueError as exc:
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
        state = replace(state, updated_at=utcnow())
        atomic_write(self.path, state.to_json() + "\n")
        return state


# --------------------------------------------------------------------------- writing


def _plain(value: object, *, real: bool = False) -> Any:
    """JSON-ready: dataclasses to dicts in field order, ``...Z`` timestamps, enum values;
    numbers in float fields as floats (``10.0``, not ``10``); inf/NaN (which JSON cannot
    hold) as null."""
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), real="float" in str(f.type))
            for f in fields(value)
        }
    if isinstance(value, list | tuple):
        return [_plain(v, real=real) for v in value]
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if value.utcoffset() == timedelta(0) else text
    if isinstance(value, Enum):
        return value.value
    if real and isinstance(value, int | float) and not isinstance(value, bool):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


# --------------------------------------------------------------------------- reading
#
# Each reader takes a decoded JSON value and returns the field's value or raises
# StateError; the messages are pydantic's, which wrote them in the log before.

Reader = Callable[[object], object]
T = TypeVar("T")


def _number(parse: Callable[[object], T]) -> Callable[[object], T]:
    def read(value: object) -> T:
        try:
            return parse(value)
        except ValueError as exc:
            raise StateError(str(exc)) from None

    return read


_int = _number(parse_int)
_float = _number(parse_float)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise StateError("Input should be a valid string")
    return value


def _choice(enum: type[StrEnum]) -> Reader:
    values = [m.value for m in enum]
    expected = ", ".join(repr(v) for v in values[:-1]) + f" or {values[-1]!r}"

    def read(value: object) -> StrEnum:
        if isinstance(value, str) and value in values:
            return enum(value)
        raise StateError(f"Input should be {expected}")

    return read


def _at_least(read: Reader, bound: float, *, strict: bool) -> Reader:
    def check(value: object) -> object:
        number = read(value)
        if not (number > bound if strict else number >= bound):  # type: ignore[operator]
            words = "greater than" if strict else "greater than or equal to"
            raise StateError(f"Input should be {words} {bound:g}")
        return number

    return check


def _optional(read: Reader) -> Reader:
    return lambda value: None if value is None else read(value)


def _list(read: Reader) -> Reader:
    def items(value: object) -> list[object]:
        if not isinstance(value, list):
            raise StateError("Input should be a valid array")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(read(item))
            except StateError as exc:
                raise exc.inside(i) from None
        return out

    return items


_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?)?"
)
_UNIX = re.compile(r"[+-]?\d+(?:\.\d+)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _datetime(value: object) -> datetime:
    """ISO 8601 text (``2026-01-01T00:00:00Z``, offsets, date only) or Unix time in
    seconds, or milliseconds beyond 2e10, as a number or text (pydantic's rules)."""
    if isinstance(value, str) and _UNIX.fullmatch(value):
        value = float(value) if "." in value else int(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise StateError("Input should be a valid datetime")
    if not isinstance(value, str):
        try:
            if abs(value) > 2e10:
                return _EPOCH + timedelta(milliseconds=value)
            return _EPOCH + timedelta(seconds=value)
        except (OverflowError, ValueError):
            raise StateError(
                "Input should be a valid datetime, dates after 9999 are not supported as "
                "unix timestamps"
            ) from None
    m = _ISO.fullmatch(value)
    if m is None:
        raise StateError("Input should be a valid datetime or date, invalid format")
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = m.groups()
    try:
        tz: timezone | None = None
        if zulu:
            tz = UTC
        elif sign:
            if int(off_m) > 59:
                raise ValueError("offset minutes must be in 0..59")
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            tz = UTC if not offset else timezone(-offset if sign == "-" else offset)
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((frac or "")[:6].ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError as exc:
        raise StateError(f"Input should be a valid datetime or date, {exc}") from None


# name, keys (the first one present wins), reader, required
_Field = tuple[str, Sequence[str], Reader, bool]
D = TypeVar("D")


def _read_object(cls: type[D], spec: Sequence[_Field], doc: object) -> D:
    """``cls`` from a JSON object: fields in order, first error raised, unknown keys ignored."""
    if not isinstance(doc, dict):
        raise StateError("Input should be an object")
    values: dict[str, object] = {}
    for name, keys, read, required in spec:
        key = next((k for k in keys if k in doc), None)
        if key is None:
            if required:
                raise StateError("Field required", (name,))
            continue  # the dataclass default
        try:
            values[name] = read(doc[key])
        except StateError as exc:
            raise exc.inside(key) from None
    return cls(**values)


_EXIT_FIELDS: tuple[_Field, ...] = (
    ("code", ("code",), _optional(_int), False),
    ("signal", ("signal",), _optional(_int), False),
    ("signal_name", ("signal_name",), _optional(_str), False),
    ("classification", ("classification",), _choice(ExitKind), True),
    ("uptime_seconds", ("uptime_seconds",), _float, False),
    ("at", ("at",), _datetime, False),
    ("action", ("action",), _optional(_str), False),
    ("delay_seconds", ("delay_seconds",), _optional(_float), False),
)


def _exit_record(value: object) -> ExitRecord:
    return _read_object(ExitRecord, _EXIT_FIELDS, value)


_STATE_FIELDS: tuple[_Field, ...] = (
    ("schema_version", ("schema_version",), _int, False),
    ("agent_name", ("agent_name",), _optional(_str), False),
    ("mission", ("mission",), _optional(_str), False),
    ("command", ("command",), _list(_str), False),
    ("status", ("status",), _choice(Status), False),
    # restart_count / backoff: the original bash supervisor's names, so an old state
    # volume resumes too.
    ("restarts", ("restarts", "restart_count"), _at_least(_int, 0, strict=False), False),
    (
        "backoff_seconds",
        ("backoff_seconds", "backoff"),
        _optional(_at_least(_float, 0, strict=True)),
        False,
    ),
    ("next_start_at", ("next_start_at",), _optional(_datetime), False),
    ("last_exit", ("last_exit",), _optional(_exit_record), False),
    ("last_error", ("last_error",), _optional(_str), False),
    ("started_at", ("started_at",), _optional(_datetime), False),
    ("supervisor_started_at", ("supervisor_started_at",), _optional(_datetime), False),
    ("updated_at", ("updated_at",), _datetime, False),
    ("pid", ("pid",), _optional(_int), False),
    ("supervisor_pid", ("supervisor_pid",), _optional(_int), False),
    ("recent_crash_times", ("recent_crash_times",), _list(_float), False),
    ("recent_exits", ("recent_exits",), _list(_exit_record), False),
)
