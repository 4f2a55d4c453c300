"""The fleet's events log: every decision the controller takes, with its reason.

One JSON object per line in ``<state dir>/events/<fleet>.jsonl``, appended by `agentctl
up` (the only writer today), read by `agentctl events [-f]`. A line is written whole
with one ``write`` on an ``O_APPEND`` descriptor, so readers never see half a line and
several writers do not interleave. The file is rotated at ``MAX_BYTES`` (one old
generation kept), so a fleet left running for weeks does not fill the disk.

Fields: ``time`` (ISO, UTC), ``fleet``, ``event`` (dotted name, e.g. ``health.restart``),
``agent`` (when about one), ``reason`` (words for people), and any other fields.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MAX_BYTES = 16 * 1024 * 1024


def events_path(state_dir: Path, fleet: str) -> Path:
    return Path(state_dir) / "events" / f"{fleet}.jsonl"


class EventLog:
    """Append-only, thread-safe; never raises into the controller (a full disk must not
    stop it from restarting agents): a failed write is counted and reported once."""

    def __init__(self, state_dir: Path, fleet: str, *, max_bytes: int = MAX_BYTES) -> None:
        self.path = events_path(state_dir, fleet)
        self.fleet = fleet
        self.max_bytes = max_bytes
        self.failed_writes = 0
        self._lock = threading.Lock()

    def emit(
        self, event: str, *, agent: str | None = None, reason: str = "", **fields: Any
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "fleet": self.fleet,
            "event": event,
        }
        if agent is not None:
            record["agent"] = agent
        if reason:
            record["reason"] = reason
        record.update(fields)
        line = (json.dumps(record, default=str, allow_nan=False) + "\n").encode()
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._rotate(len(line))
                fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            except OSError:
                self.failed_writes += 1
        return record

    def _rotate(self, incoming: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_size + incoming > self.max_bytes:
                os.replace(self.path, self.path.with_suffix(".jsonl.1"))


def read_events(state_dir: Path, fleet: str, *, tail: int | None = None) -> list[dict[str, Any]]:
    """The recorded events, oldest first (the rotated generation included)."""
    path = events_path(state_dir, fleet)
    lines: list[str] = []
    for part in (path.with_suffix(".jsonl.1"), path):
        with contextlib.suppress(FileNotFoundError):
            lines += part.read_text(encoding="utf-8", errors="replace").splitlines()
    records = list(_parse(lines))
    return records[-tail:] if tail else records


def _parse(lines: list[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                yield record
