"""The coordination grammar: the lines agents, people and the coordinator post on the
work channel. Pure: a parser and a formatter, no I/O.

Why plain text: every AgentChat client (a person in ``agentctl chat``, the upstream
CLI, Claude Code through agentchat-mcp) can read and type these lines, and the server
relays them untouched. One line is one message; one chat MSG may carry several lines
(the server allows one MSG per second per socket, so the coordinator batches)::

    KEYWORD key=value key="quoted value" ... -- free text

* The keyword comes first (TASK, CLAIM, ASSIGN, REJECTED, UNCLAIM, STATUS, DONE, FAIL,
  BLOCKED, HEARTBEAT, QUOTA, PROBE, CANCEL, RETRY). Typed in capitals it is always a
  keyword; in other case only when ``key=value`` fields follow, so chatter such as
  "Done, thanks!" or "task list looks good" is never read as a message.
* Values are bare (no blanks, no ``"``) or double-quoted with ``\\"``, ``\\\\``, ``\\n``,
  ``\\r`` and ``\\t`` escapes. Unknown keys are kept (``extra``) so newer runners can add
  fields without breaking older coordinators.
* The free text after `` -- `` runs to the end of the line; ``\\n``, ``\\r`` and ``\\\\``
  in it stand for a newline, a carriage return and a backslash, so a multi-line prompt
  stays on one line. A person may leave out the ``--``: after at least one field, the
  first word that is not ``key=value`` starts the text (taken as typed, no escapes).

Tolerated upstream styles (read, never written): the container-skill convention
``CLAIM: <summary>`` (also ``TASK: <prompt>``), and the JS swarm's JSON
strings ``{"type":"CLAIM","agentId",...}``, ``TASK_AVAILABLE``, ``ASSIGN``, ``TASK_DONE``
and ``TASK_FAIL``. Anything else (garbage, chatter, huge input) parses to ``None``;
the parser never raises.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

__all__ = [
    "KINDS",
    "Assign",
    "Blocked",
    "Cancel",
    "Claim",
    "Done",
    "Fail",
    "Heartbeat",
    "Message",
    "Probe",
    "Quota",
    "Rejected",
    "Retry",
    "Status",
    "Task",
    "Unclaim",
    "explain_line",
    "format_line",
    "format_lines",
    "is_valid_id",
    "is_valid_name",
    "merge_rejections",
    "parse_line",
    "parse_message",
    "role_matches",
]

#: Longest line looked at (a long prompt fits; a 2 MB paste of garbage is skipped).
MAX_LINE_CHARS = 1_000_000
#: Lines looked at per chat message.
MAX_LINES = 1_000

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_BLANK = " \t"

_INT_FIELDS = frozenset({"priority", "timeout", "retries", "tokens_in", "tokens_out", "attempt"})
_NONNEG_INT = frozenset({"timeout", "retries", "tokens_in", "tokens_out", "attempt"})
_FLOAT_FIELDS = frozenset({"cost_usd", "retry_after"})
_ID_FIELDS = frozenset({"id"})
_NAME_FIELDS = frozenset({"role", "state"})


def is_valid_id(value: object) -> bool:
    """Task and probe ids: 1-64 of ``[A-Za-z0-9_.:-]``, starting with a letter or digit."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def is_valid_name(value: object) -> bool:
    """Agent and role names: 1-64 of ``[A-Za-z0-9_.-]``, starting with a letter or digit."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


#: The role a task gets when none is named (``agentctl task add`` without ``--role``).
ANY_ROLE = "any"
#: Roles that mean "every role", on a task or on an agent (upstream swarms use all three).
WILDCARD_ROLES = frozenset({ANY_ROLE, "general", "*"})


def role_matches(task_role: str | None, agent_role: str | None) -> bool:
    """Whether an agent of ``agent_role`` may take a task for ``task_role``: the one rule
    both the coordinator (who may be assigned) and the runner (what to claim) apply, so a
    task one side calls eligible is never ignored by the other."""
    return (
        task_role is None
        or agent_role is None
        or task_role in WILDCARD_ROLES
        or agent_role in WILDCARD_ROLES
        or task_role == agent_role
    )


class GrammarError(ValueError):
    """A line that starts with a keyword but is not a well-formed message (internal)."""


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, kw_only=True)
class Message:
    """One coordination message. ``text`` is the free text after ``--``; ``extra`` keeps
    unknown ``key=value`` pairs in the order they came."""

    KIND: ClassVar[str] = ""
    #: Fields of which at least one group must be set (each group: all of its fields).
    REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = ()

    text: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    def with_(self, **changes: Any) -> Any:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def field_items(self) -> Iterator[tuple[str, Any]]:
        """The set ``key=value`` fields in canonical order (without text and extra)."""
        for f in fields(self):
            if f.name in ("text", "extra"):
                continue
            value = getattr(self, f.name)
            if value is not None:
                yield f.name, value


@dataclass(frozen=True, kw_only=True)
class Task(Message):
    """A unit of work; ``text`` is the prompt. Without ``id`` the coordinator assigns one
    and re-announces the task; without ``role`` any agent may claim it."""

    KIND: ClassVar[str] = "TASK"
    REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("text",),)
    id: str | None = None
    role: str | None = None
    priority: int | None = None
    timeout: int | None = None  # seconds
    retries: int | None = None
    repo: str | None = None
    branch: str | None = None


@dataclass(frozen=True, kw_only=True)
class Claim(Message):
    """An idle agent asks for a task. ``CLAIM: <summary>`` (upstream style) carries no id,
    only ``text``."""

    KIND: ClassVar[str] = "CLAIM"
    REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("id",), ("text",))
    id: str | None = None
    agent: str | None = None
    role: str | None = None


@dataclass(frozen=True, kw_only=True)
class Assign(Message):
    """Coordinator → agent: the task is yours (``attempt`` counts from 1)."""

    KIND: ClassVar[str] = "ASSIGN"
    REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("id", "agent"),)
    id: str | None = None
    agent: str | None = None
    attempt: int | None = None


@dataclass(frozen=True, kw_only=True)
class Rejected(Message):
    """Coordinator → agents: your claim lost. ``agent`` may list several, comma-separated."""

    KIND: ClassVar[str] = "REJECTED"
    REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("id", "agent"),)
    id: str | None = None
    agent: str | None = None
    reason: str | None = None

    @property
    def agents(self) -> tuple[str, ...]:
        """The rejected agents' names."""
        return tuple(a for a in (self.agent or "").split(",") if a)


@dataclass(frozen=True, kw_only=True)
class Unclaim(Message):
    """Agent → coordinator: I cannot run the task I was assigned (e.g. no local slot)."""

    KIND: ClassVar[str] = "UNCLAIM"
    REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("id",),)
    id: str | None = None
    agent: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class Status(Message):
    """Agent → all: progress on a task (the first one marks the task running)."""

    KIND: ClassVar[str] = "STATUS"
    REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("id",),)
    id: str | None = None
    agent: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None


@dataclass(frozen=True, kw_only=True)
class Done(Message):
    """Agent → coordinator: task (or probe) finished; ``text`` is the summary."""

    KIND: ClassVar[str] = "DONE"
    REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("id",),)
    id: str | None = None
    agent: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None


@dataclass(frozen=True, kw_only=True)
class Fail(Message):
    """Agent → coordinator: task failed, ``reason`` one of crash, timeout, killed, context,
    permission, ... (free-form), ``text`` the detail."""

    KIND: ClassVar[str] = "FAIL"
    REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("id",),)
    id: str | None = None
    agent: str | None = None
    reason: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None


@dataclass(frozen=True, kw_only=True)
class Blocked(Message):
    """Agent → coordinator: I cannot work at all (``reason=auth``): do not assign me."""

    KIND: ClassVar[str] = "BLOCKED"
    id: str | None = None
    agent: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class Heartbeat(Message):
    """Agent → coordinator: I am alive; ``state`` idle, promoting, active or demoting."""

    KIND: ClassVar[str] = "HEARTBEAT"
    agent: str | None = None
    role: str | None = None
    state: str | None = None
    id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Quota(Message):
    """Agent → coordinator: the model API's quota is exhausted (``retry_after`` s)."""

    KIND: ClassVar[str] = "QUOTA"
    id: str | None = None
    agent: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, kw_only=True)
class Probe(Message):
    """Coordinator → one idle agent: try one cheap model call; answer DONE or QUOTA with
    the probe's id."""

    KIND: ClassVar[str] = "PROBE"
    REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("id", "agent"),)
    id: str | None = None
    agent: str | None = None


@dataclass(frozen=True, kw_only=True)
class Cancel(Message):
    """Person → coordinator: cancel a task. Coordinator → agent (with ``agent``): stop
    working on it."""

    KIND: ClassVar[str] = "CANCEL"
    REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("id",),)
    id: str | None = None
    agent: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class Retry(Message):
    """Person → coordinator: queue a failed or cancelled task again (``id``), or let a
    blocked agent be assigned again (``agent``)."""

    KIND: ClassVar[str] = "RETRY"
    REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("id",), ("agent",))
    id: str | None = None
    agent: str | None = None


KINDS: dict[str, type[Message]] = {
    cls.KIND: cls
    for cls in (
        Task, Claim, Assign, Rejected, Unclaim, Status, Done, Fail,
        Blocked, Heartbeat, Quota, Probe, Cancel, Retry,
    )
}  # fmt: skip
_FIELDS: dict[type[Message], frozenset[str]] = {
    cls: frozenset(f.name for f in fields(cls)) - {"text", "extra"} for cls in KINDS.values()
}


# --------------------------------------------------------------------------- formatting


def _needs_quotes(value: str) -> bool:
    if value == "" or value == "--":
        return True
    return any(c.isspace() or c in '"\\' or not c.isprintable() for c in value)


def _quote(value: str) -> str:
    out = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{out}"'


def _escape_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _value_text(key: str, value: object) -> str:
    if isinstance(value, bool):
        raise ValueError(f"{key}: booleans are not a field type")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{key}: {value} is not a finite number")
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return str(value)


def format_line(msg: Message) -> str:
    """One message as one line (no newline). Raises ValueError on an invalid message
    (a bug in the caller: the parser never produces one)."""
    problem = _invalid(msg)
    if problem:
        raise ValueError(f"cannot format {msg.KIND}: {problem}")
    parts = [msg.KIND]
    for key, value in [*msg.field_items(), *msg.extra]:
        text = _value_text(key, value)
        parts.append(f"{key}={_quote(text) if _needs_quotes(text) else text}")
    line = " ".join(parts)
    if msg.text:
        line += " -- " + _escape_text(msg.text)
    return line


def format_lines(msgs: Iterable[Message]) -> str:
    """Several messages as the content of one chat MSG (one line each)."""
    return "\n".join(format_line(m) for m in msgs)


def merge_rejections(msgs: Iterable[Message]) -> list[Message]:
    """Fold REJECTED lines for the same task and reason into one naming every agent
    (fewer lines in a batch), keeping the order of first appearance."""
    out: list[Message] = []
    index: dict[tuple[str | None, str | None, str], int] = {}
    for m in msgs:
        if isinstance(m, Rejected) and not m.extra:
            key = (m.id, m.reason, m.text)
            at = index.get(key)
            if at is not None:
                prev = out[at]
                assert isinstance(prev, Rejected)
                names = list(dict.fromkeys([*prev.agents, *m.agents]))
                out[at] = prev.with_(agent=",".join(names))
                continue
            index[key] = len(out)
        out.append(m)
    return out


# --------------------------------------------------------------------------- parsing


def parse_message(content: object) -> list[Message]:
    """Every coordination message in one chat MSG's content (chatter lines skipped)."""
    if not isinstance(content, str):
        return []
    out = []
    for n, line in enumerate(content.split("\n")):
        if n >= MAX_LINES:
            break
        msg = parse_line(line)
        if msg is not None:
            out.append(msg)
    return out


def parse_line(line: object) -> Message | None:
    """One line as a message, or None if it is not one (never raises)."""
    return explain_line(line)[0]


def explain_line(line: object) -> tuple[Message | None, str | None]:
    """``(message, None)``, or ``(None, why)`` where ``why`` is None for plain chatter
    and a reason for a line that starts like a message but is malformed (for logs)."""
    if not isinstance(line, str) or len(line) > MAX_LINE_CHARS:
        return None, None
    try:
        return _parse(line), None
    except GrammarError as exc:
        return None, str(exc)
    except (ValueError, TypeError, RecursionError):  # pragma: no cover - defensive
        return None, "unreadable"


def _parse(raw: str) -> Message | None:
    line = raw.removesuffix("\r").lstrip(_BLANK)
    if not line:
        return None
    if line[0] == "{":
        return _parse_json(line)
    end = 0
    while end < len(line) and line[end] not in _BLANK and line[end] != ":":
        end += 1
    word = line[:end]
    cls = KINDS.get(word.upper())
    if cls is None:
        aliases = {"SITREP": Status}
        cls = aliases.get(word.upper()) if word.isupper() else None
        if cls is None:
            return None
    if end < len(line) and line[end] == ":":
        if not word.isupper():
            return None
        return _build(cls, [], line[end + 1 :].strip(), colon=True)
    try:
        pairs, text, had_fields = _fields(line, end)
    except GrammarError:
        if not word.isupper():
            return None  # "task list looks good": chatter
        raise
    if not word.isupper() and not had_fields:
        return None  # "done -- thanks": chatter
    return _build(cls, pairs, text)


def _fields(line: str, i: int) -> tuple[list[tuple[str, str]], str, bool]:
    pairs: list[tuple[str, str]] = []
    n = len(line)
    had = False
    while True:
        while i < n and line[i] in _BLANK:
            i += 1
        if i >= n:
            return pairs, "", had
        if line.startswith("--", i) and (i + 2 == n or line[i + 2] in _BLANK):
            rest = line[i + 2 :]
            if rest[:1] in _BLANK:
                rest = rest[1:]
            return pairs, _unescape_text(rest), had
        m = _KEY.match(line, i)
        if m is None or m.end() >= n or line[m.end()] != "=":
            if not had:
                raise GrammarError("expected key=value after the keyword")
            return pairs, line[i:].rstrip(_BLANK), had  # typed by a person
        key = m.group(0).lower()
        i = m.end() + 1
        if i < n and line[i] == '"':
            value, i = _read_quoted(line, i + 1)
            if i < n and line[i] not in _BLANK:
                raise GrammarError(f"{key}: text after the closing quote")
        else:
            start = i
            while i < n and line[i] not in _BLANK:
                if line[i] == '"':
                    raise GrammarError(f"{key}: a quote inside a bare value")
                i += 1
            value = line[start:i]
        had = True
        pairs.append((key, value))


_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def _read_quoted(line: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    n = len(line)
    while i < n:
        c = line[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < n:
            nxt = line[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
        out.append(c)
        i += 1
    raise GrammarError("unterminated quoted value")


def _unescape_text(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "\\nr":
            out.append({"\\": "\\", "n": "\n", "r": "\r"}[text[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _convert(key: str, value: str) -> Any:
    if key in _INT_FIELDS:
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", value):
            raise GrammarError(f"{key}={value!r}: not a whole number")
        number = int(value)
        if key in _NONNEG_INT and number < 0:
            raise GrammarError(f"{key}={value}: must not be negative")
        return number
    if key in _FLOAT_FIELDS:
        if len(value) > 40:
            raise GrammarError(f"{key}: number too long")
        try:
            number = float(value)
        except ValueError:
            raise GrammarError(f"{key}={value!r}: not a number") from None
        if not math.isfinite(number) or number < 0:
            raise GrammarError(f"{key}={value}: must be a finite number, 0 or more")
        return number
    if key in _ID_FIELDS and not is_valid_id(value):
        raise GrammarError(f"id={value!r}: ids are 1-64 of [A-Za-z0-9_.:-]")
    if key in _NAME_FIELDS and not is_valid_name(value):
        raise GrammarError(f"{key}={value!r}: names are 1-64 of [A-Za-z0-9_.-]")
    if key == "agent":
        names = value.split(",")
        if not all(is_valid_name(a) for a in names):
            raise GrammarError(f"agent={value!r}: names are 1-64 of [A-Za-z0-9_.-]")
    return value


def _build(
    cls: type[Message], pairs: list[tuple[str, str]], text: str, *, colon: bool = False
) -> Message:
    known = _FIELDS[cls]
    kwargs: dict[str, Any] = {}
    extra: list[tuple[str, str]] = []
    for key, value in pairs:
        if key in known:
            kwargs[key] = _convert(key, value)  # a repeated field: the last one wins
        else:
            extra.append((key, value))
    msg = cls(text=text, extra=tuple(extra), **kwargs)
    problem = _invalid(msg, colon=colon)
    if problem:
        raise GrammarError(problem)
    return msg


def _invalid(msg: Message, *, colon: bool = False) -> str | None:
    """Why ``msg`` is not a valid message, or None."""
    cls = type(msg)
    for key, value in msg.field_items():
        try:
            if _convert(key, _value_text(key, value)) != value:
                return f"{key}: not representable"
        except (GrammarError, ValueError) as exc:
            return str(exc)
        if key not in _INT_FIELDS and key not in _FLOAT_FIELDS and not isinstance(value, str):
            return f"{key}: must be text"
        if key == "agent" and "," in value and cls is not Rejected:
            return f"agent={value!r}: only REJECTED names several agents"
    for key, value in msg.extra:
        if not isinstance(value, str):
            return f"{key}: must be text"
        if not isinstance(key, str) or not _KEY.fullmatch(key) or key.lower() != key:
            return f"{key!r}: not a field name"
        if key in _FIELDS[cls]:
            return f"{key}: a known field cannot be in extra"
    if cls.REQUIRED:
        ok = any(all(getattr(msg, f) for f in group) for group in cls.REQUIRED)
        if not ok:
            need = " or ".join("+".join(g) for g in cls.REQUIRED)
            return f"{cls.KIND} needs {need}"
    if colon and cls not in (Claim, Task):
        return f"{cls.KIND}: needs key=value fields"
    return None


# --------------------------------------------------------------------------- JS swarm JSON


def _js_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _js_name(value: object) -> str | None:
    text = _js_str(value)
    if text is None:
        return None
    text = text.removeprefix("@")
    if not is_valid_name(text):
        raise GrammarError(f"agentId {text!r}: not a name")
    return text


def _js_id(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _js_str(value)
    if text is not None and not is_valid_id(text):
        raise GrammarError(f"task id {text!r}: not an id")
    return text


def _parse_json(line: str) -> Message | None:
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        return None
    kind = doc["type"]
    agent = _js_name(doc.get("agentId"))
    task = doc.get("task")
    if kind == "TASK_AVAILABLE" and isinstance(task, dict):
        prompt = _js_str(task.get("prompt")) or _js_str(task.get("component")) or ""
        role = _js_str(task.get("role"))
        extra = (("component", task["component"]),) if _js_str(task.get("component")) else ()
        msg: Message = Task(
            id=_js_id(task), role=role if is_valid_name(role) else None, text=prompt, extra=extra
        )
    elif kind == "CLAIM":
        role = _js_str(doc.get("role"))
        component = _js_str(doc.get("component")) or ""
        msg = Claim(
            id=_js_id(doc.get("taskId") or doc.get("id")),
            agent=agent,
            role=role if is_valid_name(role) else None,
            text=component,
        )
    elif kind == "ASSIGN":
        msg = Assign(id=_js_id(task), agent=agent)
    elif kind == "TASK_DONE":
        msg = Done(id=_js_id(task), agent=agent)
    elif kind == "TASK_FAIL":
        error = doc.get("error")
        msg = Fail(id=_js_id(task), agent=agent, reason="error", text=str(error or ""))
    else:
        return None
    problem = _invalid(msg)
    if problem:
        raise GrammarError(problem)
    return msg
