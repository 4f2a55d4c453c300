"""SQLite persistence for the chat server (``--data-dir``), or in memory without one.

Why one small key/value schema: the server keeps its working state in memory (like
upstream) and only needs each record back after a restart. Marketplace records
(ratings, escrows, skills, proposals), first-seen times, bans, created channels and
the channel replay buffers are written here. Marketplace writes commit at once; the
high-volume replay buffer commits on ``flush()``, which the transport calls every
``flush_interval_ms`` and on shutdown, so a clean restart loses nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    frame TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_channel ON messages (channel, seq);
"""

DB_NAME = "agentchat.db"


class StoreError(RuntimeError):
    """The data dir cannot be used; the message names the path and the fix."""


class Store:
    """Records by (kind, key) as JSON, plus per-channel replay buffers."""

    def __init__(self, data_dir: Path | None) -> None:
        self.path: Path | None = None
        if data_dir is None:
            target = ":memory:"
        else:
            data_dir = Path(data_dir)
            try:
                data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"--data-dir {data_dir}: cannot create it ({exc.strerror}); "
                    "pass a writable directory"
                ) from None
            self.path = data_dir / DB_NAME
            target = str(self.path)
        try:
            self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"--data-dir {data_dir}: {DB_NAME} is not a usable SQLite database ({exc}); "
                "move it away or pass another directory"
            ) from None
        self._pending_messages: list[tuple[str, str]] = []
        self._trim: dict[str, int] = {}

    # ---- records

    def load(self, kind: str) -> dict[str, Any]:
        """All records of one kind, by key."""
        rows = self._db.execute("SELECT key, value FROM kv WHERE kind = ?", (kind,))
        return {key: json.loads(value) for key, value in rows}

    def put(self, kind: str, key: str, value: Any) -> None:
        """Insert or replace one record and commit it."""
        self._db.execute(
            "INSERT OR REPLACE INTO kv (kind, key, value) VALUES (?, ?, ?)",
            (kind, key, json.dumps(value, separators=(",", ":"))),
        )

    def delete(self, kind: str, key: str) -> None:
        """Remove one record."""
        self._db.execute("DELETE FROM kv WHERE kind = ? AND key = ?", (kind, key))

    # ---- replay buffers

    def append_message(self, channel: str, frame_text: str, keep: int) -> None:
        """Queue a buffered frame; written on the next ``flush``."""
        self._pending_messages.append((channel, frame_text))
        self._trim[channel] = keep

    def load_messages(self) -> dict[str, list[str]]:
        """Buffered frames of every channel, oldest first."""
        out: dict[str, list[str]] = {}
        for channel, frame in self._db.execute("SELECT channel, frame FROM messages ORDER BY seq"):
            out.setdefault(channel, []).append(frame)
        return out

    def flush(self) -> None:
        """Write queued replay frames and trim each channel to its buffer size."""
        if not self._pending_messages:
            return
        pending, self._pending_messages = self._pending_messages, []
        trim, self._trim = self._trim, {}
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO messages (channel, frame) VALUES (?, ?)", pending)
            for channel, keep in trim.items():
                db.execute(
                    "DELETE FROM messages WHERE channel = ? AND seq NOT IN "
                    "(SELECT seq FROM messages WHERE channel = ? ORDER BY seq DESC LIMIT ?)",
                    (channel, channel, keep),
                )
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise

    def put_many(self, kind: str, items: Iterable[tuple[str, Any]]) -> None:
        """Insert or replace several records in one transaction."""
        self._db.execute("BEGIN")
        for key, value in items:
            self.put(kind, key, value)
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Flush and close the database."""
        try:
            self.flush()
        finally:
            self._db.close()
