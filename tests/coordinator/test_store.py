"""The durable task store: round trip, schema version, and failures that must never
wedge later writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agentctl_swarm.coordinator.board import Board, BoardConfig, Record
from agentctl_swarm.coordinator.grammar import parse_line
from agentctl_swarm.coordinator.store import SCHEMA_VERSION, StoreError, TaskStore
from agentctl_swarm.core.errors import AgentctlError


def _task(tid: str, state: str = "queued") -> Record:
    return Record("task", tid, {"id": tid, "state": state, "created_at": 1.0, "updated_at": 2.0})


def test_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = TaskStore(path)
    store.apply([_task("t-1"), Record("agent", "b1", {"name": "b1"}),
                 Record("meta", "cursor", {"ts": 5, "ids": ["x"]})])  # fmt: skip
    store.apply([_task("t-1", "done")])
    store.close()
    again = TaskStore(path)
    loaded = again.load()
    assert [t["state"] for t in loaded.tasks] == ["done"]
    assert loaded.agents == [{"name": "b1"}]
    assert loaded.meta == {"cursor": {"ts": 5, "ids": ["x"]}}
    assert again.schema_version == SCHEMA_VERSION
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_board_rebuilt_from_store(tmp_path: Path) -> None:
    board = Board(BoardConfig())
    store = TaskStore(tmp_path / "c.db")
    for line, who in [("TASK id=t-1 -- one", "p"), ("CLAIM id=t-1 agent=b1", "b1"),
                      ("STATUS id=t-1 agent=b1 -- going", "b1")]:  # fmt: skip
        msg = parse_line(line)
        assert msg is not None
        store.apply(board.handle(msg, f"@{who}", who, 10.0).records)
    store.close()
    loaded = TaskStore(tmp_path / "c.db").load()
    restored = Board.restore(BoardConfig(), loaded.tasks, loaded.agents, loaded.meta, 20.0)
    t = restored.tasks["t-1"]
    assert (t.state, t.assignee, t.history[0].agent) == ("running", "b1", "b1")
    assert restored.agents["b1"].task == "t-1"


def test_a_failed_batch_is_rolled_back_and_later_writes_work(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "c.db")
    bad = Record("task", "t-bad", {"id": "t-bad", "state": "queued", "created_at": float("nan")})
    with pytest.raises(StoreError, match="could not save 2 record") as err:
        store.apply([_task("t-1"), bad])
    assert isinstance(err.value, AgentctlError) and err.value.hint
    assert store.load().tasks == []  # nothing of the failed batch
    store.apply([_task("t-2")])  # not wedged
    assert [t["id"] for t in store.load().tasks] == ["t-2"]
    with pytest.raises(StoreError):
        store.apply([Record("bogus", "k", 1)])
    store.apply([_task("t-3")])
    assert len(store.load().tasks) == 2


def test_a_sqlite_error_mid_transaction_does_not_wedge(tmp_path: Path, monkeypatch) -> None:
    store = TaskStore(tmp_path / "c.db")
    real = store._write
    calls = {"n": 0}

    def flaky(rec: Record) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise sqlite3.OperationalError("disk I/O error")
        real(rec)

    monkeypatch.setattr(store, "_write", flaky)
    with pytest.raises(StoreError, match="disk I/O error"):
        store.apply([_task("t-1"), _task("t-2")])
    assert store.load().tasks == []
    store.apply([_task("t-1"), _task("t-2")])
    assert len(store.load().tasks) == 2
    assert not store._db.in_transaction


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    TaskStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer agentctl") as err:
        TaskStore(path)
    assert "upgrade" in (err.value.hint or "")


def test_a_file_that_is_not_a_database_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable task database") as err:
        TaskStore(path)
    assert "move the file away" in (err.value.hint or "")


def test_an_unwritable_directory_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create its directory") as err:
        TaskStore(blocker / "sub" / "c.db")
    assert err.value.hint == "pass a writable --data-dir"
