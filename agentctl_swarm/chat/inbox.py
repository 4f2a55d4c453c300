"""agentchat-mcp's inbox: what the MCP server received, as upstream keeps it.

Upstream's MCP server appends everything it receives to
``~/.agentchat/daemons/default/inbox.jsonl`` (a ring of 1000 lines) and ``listen``
reads new lines after a persisted cursor. We keep the same file (other tools tail it)
and the same cursor idea, with two fixes:

* every MSG line keeps its ``msg_id`` (and ``in_reply_to``), so an agent can
  ``agentchat_claim`` the message it is answering;
* the cursor is ``(ts, ids seen at that ts)``, not a bare timestamp, so two messages
  in the same millisecond are neither lost nor returned twice.

``select_new`` is pure (unit-tested); :class:`Inbox` is the small file edge.

Frames come from the network, so nothing here trusts their shape: :func:`inbox_line` keeps
only well-typed fields (a ``ts`` that is not a number becomes the receive time), and the
selection code reads lines defensively, so one odd frame can never make every later
``listen`` fail. A disk that refuses a write costs the file copy, not the session.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentctl_swarm.chat.protocol.json_rules import dumps_record, js_is_number, loads
from agentctl_swarm.core.files import atomic_write
from agentctl_swarm.core.logs import log_event

log = logging.getLogger("agentctl.chat.mcp")

RING_LINES = 1000
MAX_BATCH = 50
MAX_BATCH_BYTES = 32 * 1024

#: Non-MSG frames kept in the inbox as ``{"type": "EVENT", "event": <type>, ...}``.
EVENT_TYPES = frozenset(
    {
        "PROPOSAL",
        "ACCEPT",
        "REJECT",
        "COMPLETE",
        "DISPUTE",
        "YIELD",
        "FLOOR_CLAIMED",
        "AGENT_JOINED",
        "AGENT_LEFT",
        "NICK_CHANGED",
        "SESSION_DISPLACED",
        "KICKED",
        "BANNED",
    }
)
#: Events that wake a blocked ``listen`` (they concern this agent directly).
WAKING_EVENTS = frozenset(
    {"PROPOSAL", "ACCEPT", "REJECT", "COMPLETE", "DISPUTE", "YIELD", "SESSION_DISPLACED"}
)
_MSG_FIELDS = ("msg_id", "from", "from_name", "to", "content", "ts", "in_reply_to", "replay")


_STR_FIELDS = ("msg_id", "from", "from_name", "to", "content", "in_reply_to", "channel")


def inbox_line(frame: dict[str, Any], now_ms: int = 0) -> dict[str, Any] | None:
    """The inbox line for a server frame, or None if the frame is not kept.

    Fields the selection reads are kept only when they have the type it expects (strings;
    ``ts`` a finite number, else ``now_ms``), so a malformed frame is stored harmlessly.
    """
    kind = frame.get("type")
    if kind == "MSG":
        line = {"type": "MSG", **{k: frame[k] for k in _MSG_FIELDS if k in frame}}
    elif isinstance(kind, str) and kind in EVENT_TYPES:
        rest = {k: v for k, v in frame.items() if k not in ("type", "event")}
        line = {"type": "EVENT", "event": kind, **rest}
    else:
        return None
    for key in _STR_FIELDS:
        if key in line and not isinstance(line[key], str):
            del line[key]
    ts = line.get("ts")
    line["ts"] = int(ts) if js_is_number(ts) and math.isfinite(ts) else now_ms
    return line


def _ts(line: dict[str, Any]) -> int:
    ts = line.get("ts")
    return int(ts) if js_is_number(ts) and math.isfinite(ts) else 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class Cursor:
    """Position of the last line ``listen`` returned: its ``ts`` and the ids at that ts."""

    ts: int = 0
    ids: set[str] = field(default_factory=set)

    def is_new(self, line: dict[str, Any]) -> bool:
        ts = _ts(line)
        return ts > self.ts or (ts == self.ts and _line_key(line) not in self.ids)

    def advance(self, lines: Iterable[dict[str, Any]]) -> None:
        for line in lines:
            ts = _ts(line)
            if ts > self.ts:
                self.ts, self.ids = ts, set()
            if ts == self.ts:
                self.ids.add(_line_key(line))

    def to_json(self) -> dict[str, Any]:
        return {"last_seen_ts": self.ts, "ids": sorted(self.ids)}

    @classmethod
    def from_json(cls, data: Any) -> Cursor:
        if not isinstance(data, dict):
            return cls()
        ids = data.get("ids")
        return cls(
            ts=_ts({"ts": data.get("last_seen_ts")}),
            ids={str(i) for i in ids} if isinstance(ids, list) else set(),
        )


def _line_key(line: dict[str, Any]) -> str:
    return str(line.get("msg_id") or f"{line.get('event')}:{line.get('ts')}:{line.get('from')}")


def relevant(line: dict[str, Any], channels: Iterable[str], self_id: str | None) -> bool:
    """Does ``listen`` on ``channels`` return this line? (not own, not ``@server``)."""
    chans = set(channels)
    sender, to = _str(line.get("from")), _str(line.get("to"))
    if line.get("type") == "MSG":
        if sender in (self_id, "@server"):
            return False
        return to in chans or (self_id is not None and to == self_id)
    event = _str(line.get("event"))
    if event not in WAKING_EVENTS:
        return False
    if event == "YIELD":
        return _str(line.get("channel")) in chans
    # Proposals and their follow-ups: only those this agent did not itself cause.
    return sender != self_id or to == self_id


def output_line(line: dict[str, Any]) -> dict[str, Any]:
    """What ``listen`` shows for a line: MSG fields (with msg_id), or the event."""
    if line.get("type") == "MSG":
        return {k: line[k] for k in _MSG_FIELDS if k in line and k != "replay"}
    return dict(line)


def select_new(
    lines: Iterable[dict[str, Any]],
    cursor: Cursor,
    channels: Iterable[str],
    self_id: str | None,
    *,
    limit: int = MAX_BATCH,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(inbox line, shown dict)`` pairs ``listen`` returns next, oldest first, within
    the count and size caps.

    At least one line is returned when any is new, even if it alone exceeds
    ``max_bytes`` (its content is then cut and marked ``truncated``).
    """
    chans = list(channels)
    fresh = [ln for ln in lines if cursor.is_new(ln) and relevant(ln, chans, self_id)]
    fresh.sort(key=_ts)
    out: list[tuple[dict[str, Any], dict[str, Any]]] = []
    size = 0
    for line in fresh[:limit]:
        shown = output_line(line)
        n = len(dumps_record(shown).encode("utf-8"))
        if out and size + n > max_bytes:
            break
        if not out and n > max_bytes and isinstance(shown.get("content"), str):
            shown["content"] = shown["content"][: max_bytes // 2]
            shown["truncated"] = True
        out.append((line, shown))
        size += n
    return out


class Inbox:
    """The JSONL ring at ``<dir>/inbox.jsonl`` plus the listen cursor next to it."""

    def __init__(self, directory: Path, ring: int = RING_LINES) -> None:
        self.dir = directory
        self.path = directory / "inbox.jsonl"
        self.cursor_path = directory / "listen-cursor.json"
        self.heartbeat_path = directory / "heartbeat"
        self.ring = ring
        self.lines: deque[dict[str, Any]] = deque(maxlen=ring)
        self._file_lines = 0
        self._load()

    def _load(self) -> None:
        with contextlib.suppress(OSError):
            # "\n" only: str.splitlines() also splits at U+0085 and U+2028, which JSON
            # strings may hold unescaped.
            text = self.path.read_text(encoding="utf-8", errors="replace")
            for raw in text.split("\n"):
                if not raw:
                    continue
                with contextlib.suppress(ValueError):
                    obj = loads(raw)
                    if isinstance(obj, dict):
                        self.lines.append(obj)
                self._file_lines += 1

    def append(self, line: dict[str, Any]) -> None:
        """Keep a line in memory and on disk; trim the file back to the ring size.

        The line is always kept in memory (``listen`` reads from there); a disk that
        refuses it is logged and the file catches up at the next rewrite.
        """
        self.lines.append(line)
        try:
            text = dumps_record(line) + "\n"
            self.dir.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(text)
            self._file_lines += 1
            if self._file_lines > self.ring + self.ring // 5:
                self._rewrite()
        except (OSError, ValueError) as exc:
            log_event(log, "inbox.write_failed", level=logging.WARNING, path=self.path, error=exc)

    def _rewrite(self) -> None:
        atomic_write(self.path, "".join(dumps_record(ln) + "\n" for ln in self.lines))
        self._file_lines = len(self.lines)

    def load_cursor(self) -> Cursor | None:
        """The persisted cursor, or None when there is none yet."""
        try:
            return Cursor.from_json(loads(self.cursor_path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

    def save_cursor(self, cursor: Cursor) -> None:
        """Persist the cursor (a restarted MCP process resumes from it); a failed write is
        logged: the session goes on with the cursor in memory."""
        try:
            atomic_write(self.cursor_path, dumps_record(cursor.to_json()))
        except OSError as exc:
            log_event(
                log,
                "inbox.cursor_write_failed",
                level=logging.WARNING,
                path=self.cursor_path,
                error=exc,
            )

    def touch_heartbeat(self) -> None:
        """Upstream's listen loop touches this file; supervisors watch its mtime."""
        with contextlib.suppress(OSError):
            self.dir.mkdir(parents=True, exist_ok=True)
            self.heartbeat_path.touch()
