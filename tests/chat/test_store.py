"""The server's SQLite store under failure: one bad row, a locked database, a corrupt
record, a failed flush at close. None of them may stop the writes that follow."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from agentctl_swarm.chat.server.store import DB_NAME, Store, StoreError, StoreWriteError


def _lock(data: Path) -> sqlite3.Connection:
    """Another process holding the write lock."""
    other = sqlite3.connect(data / DB_NAME, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_a_row_that_cannot_be_stored_costs_only_that_row(tmp_path: Path, caplog) -> None:
    store = Store(tmp_path)
    store.append_message("#a", '{"n":1}', 10)
    store.append_message("#a", "lone \ud800", 10)  # cannot be encoded
    store.append_message("#a", '{"n":3}', 10)
    with caplog.at_level(logging.ERROR, logger="agentctl.chat.server.store"):
        store.flush()
    assert any(r.getMessage() == "store.frame_dropped" for r in caplog.records)
    store.append_message("#a", '{"n":4}', 10)
    store.flush()  # later writes are not wedged
    assert store.load_messages() == {"#a": ['{"n":1}', '{"n":3}', '{"n":4}']}
    store.close()


def test_a_record_that_is_not_strict_json_is_dropped_not_stored(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put("rating", "@a", {"rating": float("inf")})
    store.put("rating", "@b", {"rating": 1200})
    assert store.load("rating") == {"@b": {"rating": 1200}}
    store.close()


def test_a_locked_database_defers_writes_and_keeps_them(tmp_path: Path) -> None:
    store = Store(tmp_path, busy_timeout_s=0.05)
    other = _lock(tmp_path)
    store.put("ban", "x", {"reason": "r"})  # deferred, not lost
    for n in range(30):
        store.append_message("#a", f'{{"n":{n}}}', 5)
    with pytest.raises(StoreWriteError, match="refused a write"):
        store.flush()
    assert store.pending == 5 + 1  # only what the buffer can hold, plus the record
    other.execute("ROLLBACK")
    other.close()
    store.flush()
    assert store.pending == 0
    assert store.load("ban") == {"x": {"reason": "r"}}
    assert store.load_messages()["#a"] == [f'{{"n":{n}}}' for n in range(25, 30)]
    store.close()


def test_close_never_raises_and_says_what_it_lost(tmp_path: Path, caplog) -> None:
    store = Store(tmp_path, busy_timeout_s=0.05)
    other = _lock(tmp_path)
    store.append_message("#a", '{"n":1}', 5)
    with caplog.at_level(logging.ERROR, logger="agentctl.chat.server.store"):
        store.close()
    other.execute("ROLLBACK")
    other.close()
    lost = [r for r in caplog.records if r.getMessage() == "store.flush_failed_at_close"]
    assert lost and lost[0].lost == 1


def test_corrupt_rows_are_skipped_on_load(tmp_path: Path) -> None:
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("INSERT INTO kv VALUES ('ban', 'a', 'NaN')")
    db.execute("INSERT INTO kv VALUES ('ban', 'b', '{\"reason\":\"\"}')")
    db.execute("INSERT INTO messages (channel, frame) VALUES ('#a', CAST(X'FF7B7D' AS TEXT))")
    db.commit()
    db.close()
    store = Store(tmp_path)
    assert store.load("ban") == {"b": {"reason": ""}}
    assert store.load_messages() == {"#a": ["\ufffd{}"]}  # read, not a crash
    store.close()


def test_an_unusable_data_dir_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create it") as info:
        Store(blocker / "d")
    assert info.value.exit_code == 2 and info.value.__cause__ is not None
