"""The task board's durable store: SQLite in WAL mode, one transaction per event.

Why SQLite: a restart (even ``kill -9``) must lose no task, and the board must be
rebuilt from what was committed. Every batch of records the board decides on is
written in one transaction (with the channel cursor, so a restart neither skips nor
re-applies a line); a failed transaction is rolled back and reported, and the
connection stays usable for the next one, so one bad write never wedges the rest.

Schema (versioned with ``PRAGMA user_version``): ``tasks`` (one JSON document per task,
with its state and times as columns for queries), ``agents`` (by name) and ``meta``
(quota state, probe counter, channel cursor). A database written by a newer agentctl is
refused rather than misread.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentctl_swarm.coordinator.board import Record
from agentctl_swarm.core.errors import AgentctlError

DB_NAME = "coordinator.db"
SCHEMA_VERSION = 1

#: Migrations: ``_MIGRATIONS[n]`` brings a version-n database to version n+1.
_MIGRATIONS: dict[int, str] = {
    0: """
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        doc TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state, created_at);
    CREATE TABLE IF NOT EXISTS agents (
        name TEXT PRIMARY KEY,
        doc TEXT NOT NULL
    );
    """,
}


class StoreError(AgentctlError):
    """The task store cannot be opened or written; the message names the file."""


@dataclass
class Loaded:
    """Everything in the store, as the board restores it."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    agents: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


class TaskStore:
    """Tasks, agents and meta records in one SQLite file (``path``), or in memory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        where = str(path) if path is not None else ":memory:"
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{where}: not a usable task database ({exc})",
                hint="move the file away (tasks in it are lost) or pass another --data-dir",
            ) from exc
        except OSError as exc:
            raise StoreError(
                f"{where}: cannot create its directory ({exc.strerror})",
                hint="pass a writable --data-dir",
            ) from exc

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "in-memory task store"

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.where}: written by a newer agentctl (schema {version}, "
                f"this one knows {SCHEMA_VERSION})",
                hint="upgrade agentctl, or pass another --data-dir",
            )
        while version < SCHEMA_VERSION:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                version += 1
                self._db.execute(f"PRAGMA user_version = {version}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # ------------------------------------------------------------------ reading

    def load(self) -> Loaded:
        """Every task, agent and meta value."""
        out = Loaded()
        for (doc,) in self._db.execute("SELECT doc FROM tasks ORDER BY created_at, id"):
            out.tasks.append(json.loads(doc))
        for (doc,) in self._db.execute("SELECT doc FROM agents ORDER BY name"):
            out.agents.append(json.loads(doc))
        for key, value in self._db.execute("SELECT key, value FROM meta"):
            out.meta[key] = json.loads(value)
        return out

    # ------------------------------------------------------------------ writing

    def apply(self, records: Iterable[Record]) -> None:
        """Write a batch of records in one transaction; all or nothing.

        On any failure the transaction is rolled back (so the next call starts clean)
        and :class:`StoreError` says what could not be written.
        """
        rows = list(records)
        if not rows:
            return
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.where}: cannot start a write ({exc})") from exc
        try:
            for rec in rows:
                self._write(rec)
            db.execute("COMMIT")
        except Exception as exc:
            # (no transaction left to roll back if SQLite already did)
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise StoreError(
                f"{self.where}: could not save {len(rows)} record(s): {exc}",
                hint="check the disk (space, permissions); the write is retried",
            ) from exc

    def _write(self, rec: Record) -> None:
        db = self._db
        if rec.kind == "task":
            doc = rec.value
            db.execute(
                "INSERT OR REPLACE INTO tasks (id, state, created_at, updated_at, doc) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    rec.key,
                    doc["state"],
                    float(doc["created_at"]),
                    float(doc.get("updated_at") or doc["created_at"]),
                    json.dumps(doc, allow_nan=False, separators=(",", ":")),
                ),
            )
        elif rec.kind == "agent":
            db.execute(
                "INSERT OR REPLACE INTO agents (name, doc) VALUES (?, ?)",
                (rec.key, json.dumps(rec.value, allow_nan=False, separators=(",", ":"))),
            )
        elif rec.kind == "meta":
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (rec.key, json.dumps(rec.value, allow_nan=False, separators=(",", ":"))),
            )
        else:
            raise ValueError(f"unknown record kind {rec.kind!r}")

    def close(self) -> None:
        """Close the database (committed data is already on disk)."""
        self._db.close()
