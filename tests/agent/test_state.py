"""state.json: serializer round trips, atomic writes, lenient load of bad files."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from agentctl_swarm.agent.state import (
    MAX_RECENT_EXITS,
    ExitRecord,
    Status,
    SupervisorState,
    SupervisorStateStore,
)
from agentctl_swarm.core.backoff import ExitKind, RestartState, classify_exit

NASTY = "say \"hi\"\nthen {braces}, $HOME, `ticks`, \\backslash, 'single', \u00e9\u2603 \x00end"


def test_round_trip_keeps_quotes_newlines_and_unicode(tmp_path: Path) -> None:
    store = SupervisorStateStore(tmp_path)
    cmd = ["sh", "-c", "echo \"a\nb\" > '/tmp/x'"]
    state = SupervisorState(agent_name="swarm-builder-000", mission=NASTY, command=cmd)
    store.save(state)
    raw = json.loads((tmp_path / "state.json").read_text())
    assert raw["mission"] == NASTY
    assert raw["command"] == cmd
    loaded = store.load()
    assert loaded is not None
    assert loaded.mission == NASTY
    assert loaded.command == cmd


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = SupervisorStateStore(tmp_path)
    for i in range(5):
        store.save(SupervisorState(restarts=i, status=Status.RUNNING))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert store.load().restarts == 4  # type: ignore[union-attr]


def test_save_refreshes_updated_at(tmp_path: Path) -> None:
    store = SupervisorStateStore(tmp_path)
    first = store.save(SupervisorState())
    second = store.save(first)
    assert second.updated_at >= first.updated_at


def test_save_creates_the_state_dir(tmp_path: Path) -> None:
    store = SupervisorStateStore(tmp_path / "a" / "b")
    store.save(SupervisorState())
    assert (tmp_path / "a" / "b" / "state.json").is_file()


def test_missing_file_means_fresh_start(tmp_path: Path) -> None:
    assert SupervisorStateStore(tmp_path).load() is None


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'{"status": "exploded"}',
        b'{"restarts": -4}',
        b'{"backoff_seconds": "soon"}',
        b'{"status": "running", "restarts": 3',  # torn write of the original
    ],
)
def test_corrupt_file_is_set_aside_and_logged(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state.json").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="agentctl.supervisor"):
        assert SupervisorStateStore(tmp_path).load() is None
    assert "corrupt" in caplog.text
    assert (tmp_path / "state.json.corrupt").read_bytes() == content
    assert not (tmp_path / "state.json").exists()


def test_unreadable_file_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state.json").mkdir()  # reading a directory fails with an OSError
    with caplog.at_level(logging.WARNING, logger="agentctl.supervisor"):
        assert SupervisorStateStore(tmp_path).load() is None
    assert "cannot read" in caplog.text


def test_unknown_keys_are_ignored_and_original_field_names_accepted(tmp_path: Path) -> None:
    # The shape the original bash supervisor wrote (owl/reference/original-system.md).
    original = {
        "agent_name": "alice",
        "mission": "monitor agentchat",
        "status": "crashed",
        "last_error": "",
        "restart_count": 7,
        "backoff": 40,
        "started_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:01:00Z",
        "pid": 42,
        "some_future_field": {"x": 1},
    }
    (tmp_path / "state.json").write_text(json.dumps(original))
    state = SupervisorStateStore(tmp_path).load()
    assert state is not None
    assert (state.restarts, state.backoff_seconds, state.status) == (7, 40, Status.CRASHED)


def test_backoff_state_round_trip() -> None:
    state = SupervisorState().with_backoff(RestartState(backoff=16, crash_times=(1.5, 2.5)))
    assert state.backoff_seconds == 16
    assert state.recent_crash_times == [1.5, 2.5]
    assert state.backoff_state(1.0) == RestartState(backoff=16, crash_times=(1.5, 2.5))
    assert SupervisorState().backoff_state(3.0) == RestartState(backoff=3.0)


def test_exit_history_is_bounded() -> None:
    state = SupervisorState()
    for i in range(MAX_RECENT_EXITS + 5):
        state = state.add_exit(ExitRecord.from_exit(classify_exit(1, ()), float(i)))
    assert len(state.recent_exits) == MAX_RECENT_EXITS
    assert state.recent_exits[-1].uptime_seconds == MAX_RECENT_EXITS + 4
    assert state.last_exit == state.recent_exits[-1]


def test_exit_record_from_signal() -> None:
    rec = ExitRecord.from_exit(classify_exit(-9, ()), 1.23456)
    assert (rec.code, rec.signal, rec.signal_name) == (None, 9, "SIGKILL")
    assert rec.classification is ExitKind.SIGNALED
    assert rec.uptime_seconds == 1.235


def test_written_file_is_readable_by_plain_json_tools(tmp_path: Path) -> None:
    store = SupervisorStateStore(tmp_path)
    store.save(SupervisorState(status=Status.FATAL, last_error='bad "thing"\n'))
    text = (tmp_path / "state.json").read_text()
    assert text.endswith("\n")
    data = json.loads(text)
    assert data["status"] == "fatal"
    assert data["updated_at"].endswith("Z")


STATE_KEYS = [
    "schema_version", "agent_name", "mission", "command", "status", "restarts",
    "backoff_seconds", "next_start_at", "last_exit", "last_error", "started_at",
    "supervisor_started_at", "updated_at", "pid", "supervisor_pid", "recent_crash_times",
    "recent_exits",
]  # fmt: skip
EXIT_KEYS = [
    "code", "signal", "signal_name", "classification", "uptime_seconds", "at", "action",
    "delay_seconds",
]  # fmt: skip


def _load(tmp_path: Path, doc: object) -> SupervisorState | None:
    (tmp_path / "state.json").write_text(json.dumps(doc))
    return SupervisorStateStore(tmp_path).load()


def test_written_document_keeps_its_shape(tmp_path: Path) -> None:
    # `agentctl get` and the health monitor read this file as plain JSON.
    rec = ExitRecord.from_exit(classify_exit(3, ()), 10)
    rec.action, rec.delay_seconds = "restart", 2
    state = SupervisorState(
        status=Status.BACKOFF,
        restarts=2,
        backoff_seconds=4,
        next_start_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
        started_at=datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC),
        recent_crash_times=[1, 2.5, math.inf],
    ).add_exit(rec)
    SupervisorStateStore(tmp_path).save(state)
    text = (tmp_path / "state.json").read_text()
    data = json.loads(text)
    assert list(data) == STATE_KEYS
    assert list(data["last_exit"]) == EXIT_KEYS
    assert data["recent_exits"] == [data["last_exit"]]
    assert text.startswith('{\n  "schema_version": 1,\n  "agent_name": null,\n')
    assert '"backoff_seconds": 4.0,' in text  # float fields stay floats
    assert '"uptime_seconds": 10.0,' in text
    assert '"delay_seconds": 2.0' in text
    assert data["status"] == "backoff"
    assert data["last_exit"]["classification"] == "crash"
    assert data["next_start_at"] == "2026-01-02T03:04:05+02:00"
    assert data["started_at"] == "2026-01-02T03:04:05.120000Z"
    assert data["recent_crash_times"] == [1.0, 2.5, None]  # JSON has no Infinity


def test_first_of_the_alias_names_wins(tmp_path: Path) -> None:
    state = _load(tmp_path, {"restart_count": 9, "restarts": 1, "backoff": 7, "backoff_seconds": 5})
    assert state is not None
    assert (state.restarts, state.backoff_seconds) == (1, 5.0)


def test_lenient_values_load_as_before(tmp_path: Path) -> None:
    doc = {
        "restarts": "3",
        "schema_version": 1.0,
        "pid": " 42 ",
        "backoff_seconds": "2.5",
        "recent_crash_times": [1, "2.5", True],
        "next_start_at": 1700000000,
        "started_at": "2026-01-01T00:00:00+0200",
        "updated_at": "2026-01-01 10:00",
        "last_exit": {"classification": "lost", "code": "7", "at": "1700000000000", "x": 1},
    }
    state = _load(tmp_path, doc)
    assert state is not None
    assert (state.restarts, state.schema_version, state.pid) == (3, 1, 42)
    assert state.backoff_seconds == 2.5
    assert state.recent_crash_times == [1.0, 2.5, 1.0]
    assert state.next_start_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert state.started_at == datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    assert state.updated_at == datetime(2026, 1, 1, 10, 0)  # no zone given: naive, as before
    assert state.last_exit is not None
    assert (state.last_exit.classification, state.last_exit.code) == (ExitKind.LOST, 7)
    assert state.last_exit.at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"restart_count": -1}, "restart_count: Input should be greater than or equal to 0"),
        ({"backoff": 0}, "backoff: Input should be greater than 0"),
        ({"restarts": 3.5}, "restarts: Input should be a valid integer, got a number with a"),
        ({"command": ["a", None]}, "command.1: Input should be a valid string"),
        ({"last_exit": {}}, "last_exit.classification: Field required"),
        (
            {"recent_exits": [{"classification": "clean"}, {"classification": "crashed"}]},
            "recent_exits.1.classification: Input should be 'clean', 'crash', 'fatal', "
            "'signaled' or 'lost'",
        ),
        ({"updated_at": None}, "updated_at: Input should be a valid datetime"),
        ({"next_start_at": "2026-13-01T00:00:00Z"}, "next_start_at: Input should be a valid"),
        ({"mission": "\ud800"}, "document: Invalid JSON"),  # could never be written back
        ([], "document: Input should be an object"),
    ],
)
def test_corrupt_reasons_say_where(
    tmp_path: Path, doc: object, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agentctl.supervisor"):
        assert _load(tmp_path, doc) is None
    assert f"({reason}" in caplog.text
    assert (tmp_path / "state.json.corrupt").exists()
