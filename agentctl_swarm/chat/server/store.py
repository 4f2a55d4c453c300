"""SQLite persistence for the chat server (``--data-dir``), or in memory without one.

Why one small key/value schema: the server keeps its working state in memory (like
upstream) and only needs each record back after a restart. Marketplace records
(ratings, escrows, skills, proposals), first-seen times, bans, created channels and
the channel replay buffers are written here. Record writes commit at once; the
high-volume replay buffer commits on ``flush()``, which the transport calls every
``flush_interval_ms`` and on shutdown, so a clean restart loses nothing.

Why it is careful about failure: one write that fails must never stop the ones after it.
Every transaction is rolled back on *any* error (not only SQLite's), so the connection
never stays inside a failed transaction; a write the database refuses for now (locked,
busy, disk full) is kept and retried on the next flush; a row that can never be stored
is logged and dropped on its own, without the rows batched with it. Records are strict
JSON (no NaN/Infinity), like every frame.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentctl_swarm.chat.protocol.json_rules import JsonRuleError, dumps_record, loads
from agentctl_swarm.core.errors import AgentctlError, UsageError
from agentctl_swarm.core.logs import log_event

log = logging.getLogger("agentctl.chat.server.store")

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
#: How long a write waits for a lock held by another process before it is retried later;
#: short, because writes run on the server's event loop.
BUSY_TIMEOUT_S = 0.5
_DELETE = object()


class StoreError(UsageError):
    """The data dir cannot be used; the message names the path and the fix."""


class StoreWriteError(AgentctlError):
    """The database refused a write for now; it stays queued and is retried on flush."""


def _text(raw: bytes) -> str:
    # A database edited by other tools may hold invalid UTF-8; read it rather than crash.
    return raw.decode("utf-8", "replace")


class Store:
    """Records by (kind, key) as JSON, plus per-channel replay buffers."""

    def __init__(self, data_dir: Path | None, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
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
                ) from exc
            self.path = data_dir / DB_NAME
            target = str(self.path)
        try:
            self._db = sqlite3.connect(
                target, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s
            )
            self._db.text_factory = _text
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"--data-dir {data_dir}: {DB_NAME} is not a usable SQLite database ({exc}); "
                "move it away or pass another directory"
            ) from exc
        self._pending_messages: list[tuple[str, str]] = []
        self._trim: dict[str, int] = {}
        self._retry: dict[tuple[str, str], Any] = {}

    # ---- transactions

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN ... COMMIT, rolled back on any exception (never left open)."""
        db = self._db
        db.execute("BEGIN")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # ---- records

    def load(self, kind: str) -> dict[str, Any]:
        """All records of one kind, by key (a row that is not strict JSON is skipped)."""
        out: dict[str, Any] = {}
        for key, value in self._db.execute("SELECT key, value FROM kv WHERE kind = ?", (kind,)):
            try:
                out[key] = loads(value)
            except JsonRuleError as exc:
                log_event(
                    log, "store.bad_record", level=logging.WARNING, kind=kind, key=key, error=exc
                )
        return out

    def put(self, kind: str, key: str, value: Any) -> None:
        """Insert or replace one record and commit it (retried on flush if refused)."""
        self._write_record(kind, key, value)

    def delete(self, kind: str, key: str) -> None:
        """Remove one record (retried on flush if refused)."""
        self._write_record(kind, key, _DELETE)

    def _write_record(self, kind: str, key: str, value: Any) -> None:
        self._retry.pop((kind, key), None)
        try:
            self._apply_record(self._db, kind, key, value)
        except sqlite3.OperationalError as exc:
            self._retry[(kind, key)] = value
            log_event(
                log, "store.write_deferred", level=logging.WARNING, kind=kind, key=key, error=exc
            )
        except (sqlite3.Error, ValueError) as exc:
            log.error(
                "store.record_dropped",
                exc_info=True,
                extra={"event": "store.record_dropped", "kind": kind, "key": key, "error": exc},
            )

    @staticmethod
    def _apply_record(db: sqlite3.Connection, kind: str, key: str, value: Any) -> None:
        if value is _DELETE:
            db.execute("DELETE FROM kv WHERE kind = ? AND key = ?", (kind, key))
        else:
            db.execute(
                "INSERT OR REPLACE INTO kv (kind, key, value) VALUES (?, ?, ?)",
                (kind, key, dumps_record(value)),
            )

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

    @property
    def pending(self) -> int:
        """Writes waiting for the next flush (queued frames and deferred records)."""
        return len(self._pending_messages) + len(self._retry)

    def flush(self) -> None:
        """Write queued replay frames (and deferred records); trim each channel's buffer.

        Raises :class:`StoreWriteError` when the database refuses for now; everything stays
        queued (at most a buffer's worth per channel) for the next call.
        """
        if not self._pending_messages and not self._retry:
            return
        pending, self._pending_messages = self._pending_messages, []
        trim, self._trim = self._trim, {}
        records, self._retry = self._retry, {}
        try:
            with self._transaction() as db:
                self._write_all(db, pending, trim, records)
        except sqlite3.OperationalError as exc:
            self._requeue(pending, trim, records)
            raise StoreWriteError(f"the chat database refused a write ({exc})") from exc
        except (sqlite3.Error, ValueError):
            # Some row cannot be stored at all: store the others one by one.
            self._write_each(pending, trim, records)

    def _write_all(
        self,
        db: sqlite3.Connection,
        pending: list[tuple[str, str]],
        trim: dict[str, int],
        records: dict[tuple[str, str], Any],
    ) -> None:
        for (kind, key), value in records.items():
            self._apply_record(db, kind, key, value)
        db.executemany("INSERT INTO messages (channel, frame) VALUES (?, ?)", pending)
        for channel, keep in trim.items():
            self._trim_channel(db, channel, keep)

    @staticmethod
    def _trim_channel(db: sqlite3.Connection, channel: str, keep: int) -> None:
        db.execute(
            "DELETE FROM messages WHERE channel = ? AND seq NOT IN "
            "(SELECT seq FROM messages WHERE channel = ? ORDER BY seq DESC LIMIT ?)",
            (channel, channel, keep),
        )

    def _write_each(
        self,
        pending: list[tuple[str, str]],
        trim: dict[str, int],
        records: dict[tuple[str, str], Any],
    ) -> None:
        for (kind, key), value in records.items():
            self._write_record(kind, key, value)
        for channel, frame in pending:
            try:
                with self._transaction() as db:
                    db.execute(
                        "INSERT INTO messages (channel, frame) VALUES (?, ?)", (channel, frame)
                    )
            except (sqlite3.Error, ValueError) as exc:
                log_event(
                    log, "store.frame_dropped", level=logging.ERROR, channel=channel, error=exc
                )
        for channel, keep in trim.items():
            with contextlib.suppress(sqlite3.Error), self._transaction() as db:
                self._trim_channel(db, channel, keep)

    def _requeue(
        self,
        pending: list[tuple[str, str]],
        trim: dict[str, int],
        records: dict[tuple[str, str], Any],
    ) -> None:
        """Put a refused batch back in front of what came since, keeping only what the
        buffers can hold (a long outage must not grow memory without bound)."""
        for channel, keep in trim.items():
            self._trim[channel] = self._trim.get(channel, keep)
        merged = pending + self._pending_messages
        kept: list[tuple[str, str]] = []
        left: dict[str, int] = dict(self._trim)
        for channel, frame in reversed(merged):
            if left.get(channel, 0) > 0:
                left[channel] -= 1
                kept.append((channel, frame))
        self._pending_messages = kept[::-1]
        self._retry = {**records, **self._retry}

    def close(self) -> None:
        """Flush and close the database; a failed flush is logged, never raised, so a
        shutdown always completes."""
        try:
            self.flush()
        except Exception:
            log.error(
                "store.flush_failed_at_close",
                exc_info=True,
                extra={"event": "store.flush_failed_at_close", "lost": self.pending},
            )
        finally:
            self._db.close()
