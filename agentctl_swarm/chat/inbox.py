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
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def inbox_line(frame: dict[str, Any]) -> dict[str, Any] | None:
    """The inbox line for a server frame, or None if the frame is not kept."""
    kind = frame.get("type")
    if kind == "MSG":
        return {"type": "MSG", **{k: frame[k] for k in _MSG_FIELDS if k in frame}}
    if kind in EVENT_TYPES:
        rest = {k: v for k, v in frame.items() if k != "type"}
        return {"type": "EVENT", "event": kind, **rest}
    return None


@dataclass
class Cursor:
    """Position of the last line ``listen`` returned: its ``ts`` and the ids at that ts."""

    ts: int = 0
    ids: set[str] = field(default_factory=set)

    def is_new(self, line: dict[str, Any]) -> bool:
        ts = int(line.get("ts") or 0)
        return ts > self.ts or (ts == self.ts and _line_key(line) not in self.ids)

    def advance(self, lines: Iterable[dict[str, Any]]) -> None:
        for line in lines:
            ts = int(line.get("ts") or 0)
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
            ts=int(data.get("last_seen_ts") or 0),
            ids={str(i) for i in ids} if isinstance(ids, list) else set(),
        )


def _line_key(line: dict[str, Any]) -> str:
    return str(line.get("msg_id") or f"{line.get('event')}:{line.get('ts')}:{line.get('from')}")


def relevant(line: dict[str, Any], channels: Iterable[str], self_id: str | None) -> bool:
    """Does ``listen`` on ``channels`` return this line? (not own, not ``@server``)."""
    chans = set(channels)
    if line.get("type") == "MSG":
        if line.get("from") in (self_id, "@server"):
            return False
        return line.get("to") in chans or (self_id is not None and line.get("to") == self_id)
    if line.get("event") not in WAKING_EVENTS:
        return False
    if line.get("event") in ("YIELD",):
        return line.get("channel") in chans
    # Proposals and their follow-ups: only those this agent did not itself cause.
    return line.get("from") != self_id or line.get("to") == self_id


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
    fresh.sort(key=lambda ln: int(ln.get("ts") or 0))
    out: list[tuple[dict[str, Any], dict[str, Any]]] = []
    size = 0
    for line in fresh[:limit]:
        shown = output_line(line)
        n = len(json.dumps(shown, ensure_ascii=False).encode("utf-8"))
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
            for raw in self.path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    obj = json.loads(raw)
                    if isinstance(obj, dict):
                        self.lines.append(obj)
                self._file_lines += 1

    def append(self, line: dict[str, Any]) -> None:
        """Keep a line in memory and on disk; trim the file back to the ring size."""
        self.lines.append(line)
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._file_lines += 1
        if self._file_lines > self.ring + self.ring // 5:
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text(
            "".join(json.dumps(ln, ensure_ascii=False) + "\n" for ln in self.lines),
            encoding="utf-8",
        )
        os.replace(tmp, self.path)
        self._file_lines = len(self.lines)

    def load_cursor(self) -> Cursor | None:
        """The persisted cursor, or None when there is none yet."""
        try:
            return Cursor.from_json(json.loads(self.cursor_path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

    def save_cursor(self, cursor: Cursor) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cursor_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cursor.to_json()), encoding="utf-8")
        os.replace(tmp, self.cursor_path)

    def touch_heartbeat(self) -> None:
        """Upstream's listen loop touches this file; supervisors watch its mtime."""
        with contextlib.suppress(OSError):
            self.dir.mkdir(parents=True, exist_ok=True)
            self.heartbeat_path.touch()
