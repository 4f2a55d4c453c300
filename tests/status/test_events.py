"""`agentctl events`: the controller's events log read back, filtered, and followed
across the log's rotation (controller/observe.py follow_events, and the real CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from agentctl_swarm.controller.events import EventLog, events_path
from agentctl_swarm.controller.observe import follow_events
from tests.conftest import AGENTCTL, REPO, run_agentctl


def _env(state: Path) -> dict[str, str]:
    return {"AGENTCTL_STATE_DIR": str(state)}


def test_following_survives_rotation_without_losing_or_repeating_a_line(tmp_path: Path) -> None:
    log = EventLog(tmp_path, "f", max_bytes=1500)  # a rotation every ~12 events
    for i in range(5):
        log.emit("before", n=i)
    stop = threading.Event()
    seen: list[int] = []

    def follow() -> None:
        for _line, record in follow_events(tmp_path, "f", stop=stop, poll=0.005):
            seen.append(record["n"])

    reader = threading.Thread(target=follow)
    reader.start()
    for i in range(5, 200):
        log.emit("after", agent="swarm-a-000", reason="x" * 40, n=i)
        time.sleep(0.003)
    deadline = time.monotonic() + 10
    while len(seen) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    reader.join(5)
    assert events_path(tmp_path, "f").with_suffix(".jsonl.1").exists()  # it did rotate
    assert seen == list(range(200)), seen


def test_following_waits_for_the_log_and_filters(tmp_path: Path) -> None:
    stop = threading.Event()
    got: list[dict] = []

    def follow() -> None:
        keep = lambda r: r.get("agent") == "swarm-a-001"  # noqa: E731
        for _line, record in follow_events(tmp_path, "g", keep=keep, stop=stop, poll=0.01):
            got.append(record)

    reader = threading.Thread(target=follow)
    reader.start()
    time.sleep(0.1)  # no log yet: it waits
    log = EventLog(tmp_path, "g")
    log.emit("health.restart", agent="swarm-a-000", reason="one")
    log.emit("health.restart", agent="swarm-a-001", reason="two")
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    reader.join(5)
    assert [r["reason"] for r in got] == ["two"]


def test_a_half_written_line_waits_for_its_end(tmp_path: Path) -> None:
    path = events_path(tmp_path, "h")
    path.parent.mkdir(parents=True)
    record = json.dumps({"time": "2026-01-01T00:00:00Z", "event": "e", "n": 1})
    path.write_text(record[:10])
    stop = threading.Event()
    got: list[str] = []
    lines = follow_events(tmp_path, "h", stop=stop, poll=0.01)
    reader = threading.Thread(target=lambda: got.extend(line for line, _ in lines))
    reader.start()
    time.sleep(0.1)
    assert got == []
    with path.open("a") as f:
        f.write(record[10:] + "\n")
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    reader.join(5)
    assert got == [record]


def test_the_backlog_is_the_last_n(tmp_path: Path) -> None:
    log = EventLog(tmp_path, "b")
    for i in range(10):
        log.emit("e", n=i)
    stop = threading.Event()
    stop.set()  # read the backlog, do not follow
    assert [r["n"] for _, r in follow_events(tmp_path, "b", backlog=3, stop=stop)] == [7, 8, 9]
    assert list(follow_events(tmp_path, "b", backlog=0, stop=stop)) == []


# ------------------------------------------------------------------ the real CLI


def _write_log(state: Path) -> None:
    log = EventLog(state, "demo")
    log.emit("up.start", reason="agents talk to ws://127.0.0.1:6667", pid=42)
    log.emit("health.restart", agent="swarm-builder-000", reason="no heartbeat for 12s while idle",
             restarts=1)  # fmt: skip
    log.emit("health.degraded", agent="swarm-builder-001", reason="degraded: 6 restarts")


def test_events_prints_readable_lines_and_filters(tmp_path: Path) -> None:
    _write_log(tmp_path)
    proc = run_agentctl("events", "--fleet", "demo", env=_env(tmp_path), check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["TIME", "AGENT", "EVENT", "REASON"]
    assert len(lines) == 4
    assert "swarm-builder-000   health.restart" in lines[2]
    assert lines[2].endswith("no heartbeat for 12s while idle restarts=1")
    assert "pid=42" in lines[1]
    one = run_agentctl("events", "--fleet", "demo", "--agent", "swarm-builder-001", "-o", "json",
                       env=_env(tmp_path), check=True)  # fmt: skip
    (record,) = [json.loads(line) for line in one.stdout.splitlines()]
    assert record["event"] == "health.degraded"
    recent = run_agentctl("events", "--fleet", "demo", "--since", "1h", "--tail", "1",
                          env=_env(tmp_path), check=True)  # fmt: skip
    assert "health.degraded" in recent.stdout and "health.restart" not in recent.stdout


def test_events_errors_are_in_the_users_words(tmp_path: Path) -> None:
    none = run_agentctl("events", "--fleet", "nothing", env=_env(tmp_path))
    assert none.returncode == 0
    assert "no events of fleet 'nothing' yet" in none.stderr
    which = run_agentctl("events", env=_env(tmp_path))
    assert which.returncode == 2 and "which fleet?" in which.stderr
    assert "Traceback" not in which.stderr
    bad = run_agentctl("events", "--fleet", "demo", "--since", "yesterday", env=_env(tmp_path))
    assert bad.returncode == 2
    assert "--since: 'yesterday' is neither a duration" in bad.stderr
    _write_log(tmp_path)
    filtered = run_agentctl("events", "--fleet", "demo", "--agent", "nobody", env=_env(tmp_path))
    assert "matching the filters" in filtered.stderr


def test_events_follow_prints_new_events_as_they_come(tmp_path: Path) -> None:
    _write_log(tmp_path)
    proc = subprocess.Popen(
        [*AGENTCTL, "events", "--fleet", "demo", "-F", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, **_env(tmp_path)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = [json.loads(proc.stdout.readline())["event"] for _ in range(3)]
        assert first == ["up.start", "health.restart", "health.degraded"]
        EventLog(tmp_path, "demo").emit("reload.ok", reason="re-read fleet.yaml")
        assert json.loads(proc.stdout.readline())["event"] == "reload.ok"
    finally:
        proc.terminate()
        proc.wait(10)
