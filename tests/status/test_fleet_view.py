"""The combining behind `agentctl status` and `top` (controller/fleet_view.py): Podman's
containers, the coordinator's board and the controller's health record into one row per
agent and the fleet's totals. Pure: every input is a fixture."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agentctl_swarm.controller import fleet_view as fv
from agentctl_swarm.controller.status import AgentStatus
from agentctl_swarm.podman.types import ContainerStats

NOW = 1_800_000_000.0
FLEET = "demo"


def status(agent: str, state: str = "running", **kw: Any) -> AgentStatus:
    fields: dict[str, Any] = {
        "name": f"{FLEET}-{agent}",
        "agent": agent,
        "fleet": FLEET,
        "role": agent.split("-")[1],
        "state": state,
        "agent_status": kw.pop("agent_status", "running"),
        "restarts": 0,
        "container_id": "abc",
        "uptime_seconds": 30.0 if state == "running" else None,
        "spec_hash": "h",
        "supervisor": "running",
    }
    fields.update(kw)
    return AgentStatus(**fields)


def runner(name: str, state: str = "idle", **kw: Any) -> dict[str, Any]:
    return {"name": name, "state": state, "task": None, "last_seen": NOW - 4, "alive": True, **kw}


def board(
    agents: list[dict[str, Any]] | None = None,
    tasks: list[dict[str, Any]] | None = None,
    **doc: Any,
) -> fv.BoardSnapshot:
    return fv.BoardSnapshot(
        "http://127.0.0.1:6667",
        tasks_doc={"tasks": tasks or [], "tokens_used": 0, "cost_used_usd": 0.0, **doc},
        agents=agents or [],
    )


DOWN = fv.BoardSnapshot("http://127.0.0.1:6667", error="cannot read the task board (refused)")


def stats(name: str, cpu_nanos: int, at: int, mem: int = 64 << 20) -> ContainerStats:
    return ContainerStats(
        name=f"{FLEET}-{name}",
        cpu_percent=3.0,
        cpu_nanos=cpu_nanos,
        system_nanos=at,
        mem_usage=mem,
        mem_limit=1 << 30,
    )


def view(**kw: Any) -> fv.FleetView:
    args: dict[str, Any] = {
        "desired": ["swarm-builder-000"],
        "task_takers": ["swarm-builder-000"],
        "statuses": [status("swarm-builder-000")],
        "stats": {},
        "board": board([runner("swarm-builder-000")]),
        "health": None,
        "now": NOW,
    }
    args.update(kw)
    return fv.build_view(FLEET, **args)


def one(**kw: Any) -> fv.AgentRow:
    (row,) = view(**kw).rows
    return row


# ------------------------------------------------------------------ states


def test_the_runner_says_what_a_running_agent_does() -> None:
    for state in ("idle", "assigned", "promoting", "active", "demoting"):
        row = one(board=board([runner("swarm-builder-000", state, task="t-1")]))
        assert (row.state, row.runner_state, row.task) == (state, state, "t-1")


def test_an_exited_container_wins_over_what_the_runner_last_said() -> None:
    row = one(
        statuses=[status("swarm-builder-000", "exited", exit_code=137,
                         agent_status="killed (SIGKILL)")],
        board=board([runner("swarm-builder-000", "active", task="t-1")]),
    )  # fmt: skip
    assert row.state == "crashed"
    assert row.detail == "killed (SIGKILL)"


def test_crashed_says_when_up_starts_it_again() -> None:
    row = one(
        statuses=[status("swarm-builder-000", "exited", exit_code=2, agent_status="exited (2)")],
        health={"agents": {"swarm-builder-000": {"restarts": 2, "next_start_at": NOW + 8}}},
    )
    assert row.state == "crashed"
    assert row.detail == "exited (2); `agentctl up` starts it again in 8s"
    assert row.restarts == 2


def test_stopped_on_request_is_not_a_crash() -> None:
    for code, supervisor in ((0, "running"), (143, "running"), (1, "stopped")):
        row = one(statuses=[status("swarm-builder-000", "exited", exit_code=code,
                                   supervisor=supervisor)])  # fmt: skip
        assert row.state == "stopped", (code, supervisor)


def test_degraded_from_the_health_record_or_the_supervisor() -> None:
    reason = "degraded: 6 restarts in 30 min; `agentctl restart swarm-builder-000` clears it"
    row = one(health={"agents": {"swarm-builder-000": {"degraded": True, "reason": reason}}})
    assert (row.state, row.detail) == ("degraded", reason)
    row = one(statuses=[status("swarm-builder-000", "exited", exit_code=3, supervisor="degraded")])
    assert row.state == "degraded"


def test_the_supervisor_restarting_the_agent_process() -> None:
    row = one(statuses=[status("swarm-builder-000", supervisor="backoff")])
    assert row.state == "restarting"


def test_an_idle_runner_without_heartbeats_is_silent_but_an_active_one_stays_active() -> None:
    quiet = {"alive": False, "last_seen": NOW - 120}
    assert one(board=board([runner("swarm-builder-000", "idle", **quiet)])).state == "silent"
    row = one(board=board([runner("swarm-builder-000", "active", task="t-9", **quiet)]))
    assert row.state == "active"  # never judged dead on a late heartbeat alone
    assert row.heartbeat_age == 120


def test_blocked_says_how_to_unblock() -> None:
    row = one(board=board([runner("swarm-builder-000", "idle", blocked="auth")]))
    assert row.state == "blocked"
    assert "RETRY agent=swarm-builder-000" in row.detail


def test_not_yet_heard_and_non_runners() -> None:
    assert one(board=board([])).state == "starting"
    assert one(statuses=[status("swarm-builder-000", supervisor="starting")]).state == "starting"
    helper = one(
        desired=["swarm-helper-000"], task_takers=[], statuses=[status("swarm-helper-000")],
        board=board([]),
    )  # fmt: skip
    assert helper.state == "running"


def test_declared_but_absent_is_missing_and_absent_from_the_file_is_still_shown() -> None:
    v = view(
        desired=["swarm-builder-000", "swarm-builder-001"],
        statuses=[status("swarm-builder-000"), status("swarm-old-000")],
    )
    states = {r.agent: r.state for r in v.rows}
    assert states == {"swarm-builder-000": "idle", "swarm-builder-001": "missing",
                      "swarm-old-000": "running"}  # fmt: skip


def test_other_container_states() -> None:
    assert one(statuses=[status("swarm-builder-000", "created")]).state == "created"
    assert one(statuses=[status("swarm-builder-000", "paused")]).state == "paused"


# ------------------------------------------------------------------ numbers


TASKS = [
    {"id": "t-1", "state": "done", "history": [
        {"n": 1, "agent": "swarm-builder-000", "tokens_in": 1000, "tokens_out": 50, "cost_usd": 0.1},
    ]},
    {"id": "t-2", "state": "running", "history": [
        {"n": 1, "agent": "swarm-builder-001", "tokens_in": 10, "tokens_out": 0, "cost_usd": 0.0,
         "outcome": "failed"},
        {"n": 2, "agent": "swarm-builder-000", "tokens_in": 200, "tokens_out": 20, "cost_usd": 0.02},
    ]},
    {"id": "t-3", "state": "queued", "history": []},
    {"id": "t-4", "state": "failed", "history": []},
    {"id": "t-5", "state": "assigned", "history": [{"n": 1, "agent": "swarm-builder-001"}]},
]  # fmt: skip


def test_tokens_and_cost_are_summed_per_agent_over_every_attempt() -> None:
    usage = fv.agent_usage(TASKS)
    assert usage["swarm-builder-000"] == (1270, pytest.approx(0.12))
    assert usage["swarm-builder-001"] == (10, 0.0)


def test_totals() -> None:
    v = view(
        desired=["swarm-builder-000", "swarm-builder-001", "swarm-builder-002"],
        statuses=[status("swarm-builder-000"), status("swarm-builder-001")],
        board=board(
            [runner("swarm-builder-000", "active", task="t-2"), runner("swarm-builder-001")],
            TASKS,
            tokens_used=1280,
            cost_used_usd=0.12,
            token_budget=0,
            cost_budget_usd=0.5,
            gate="max-active 1 reached",
            quota={"paused": False},
            max_active=1,
        ),
    )
    t = v.totals
    assert t.agents == 3 and t.active == 1
    assert t.states == {"active": 1, "idle": 1, "missing": 1}
    assert t.tasks == {"queued": 1, "running": 2, "done": 1, "failed": 1, "cancelled": 0}
    assert (t.tokens, t.cost_usd) == (1280, 0.12)
    assert t.budget_percent == pytest.approx(24.0)
    assert t.gate == "max-active 1 reached"
    lines = fv.summary_lines(v)
    assert lines[0] == "agents: 3 (1 active, 1 idle, 1 missing); working: 1"
    assert lines[1] == "tasks: 1 queued, 2 running, 1 done, 1 failed"
    assert lines[2] == "tokens: 1.3k   cost: $0.1200   budget: 24% used of $0.5000"
    assert lines[3] == "not assigning: max-active 1 reached"
    assert [r.agent for r in v.rows] == ["swarm-builder-000", "swarm-builder-001",
                                         "swarm-builder-002"]  # fmt: skip


def test_the_board_down_leaves_what_podman_knows_and_says_why() -> None:
    v = view(board=DOWN, stats={"demo-swarm-builder-000": stats("swarm-builder-000", 1, 1)})
    (row,) = v.rows
    assert row.state == "running"  # Podman's word alone: not "starting"
    assert (row.tokens, row.cost_usd, row.heartbeat_age, row.task) == (None, None, None, None)
    assert row.mem_usage == 64 << 20
    assert v.totals.tasks is None and v.totals.tokens is None
    assert v.notes == ("cannot read the task board (refused); showing what Podman knows",)
    doc = v.as_dict()
    assert doc["board"] == {"url": "http://127.0.0.1:6667", "reachable": False,
                            "error": "cannot read the task board (refused)"}  # fmt: skip
    assert fv.summary_lines(v) == ["agents: 1 (1 running); working: 0"]


def test_memory_and_cpu_from_two_samples() -> None:
    first = stats("swarm-builder-000", cpu_nanos=1_000_000_000, at=10_000_000_000)
    second = stats("swarm-builder-000", cpu_nanos=1_500_000_000, at=12_000_000_000, mem=256 << 20)
    row = one(stats={second.name: second}, previous_stats={first.name: first})
    assert row.cpu_percent == pytest.approx(25.0)  # 0.5 s of CPU in 2 s
    assert row.mem_percent == pytest.approx(25.0)
    assert fv.cells(row)["memory"] == "256Mi/1.0Gi 25%"
    assert fv.cells(row)["cpu"] == "25.0%"
    alone = one(stats={second.name: second})
    assert alone.cpu_percent == 3.0  # Podman's since-start average


def test_cpu_falls_back_when_the_container_restarted_between_samples() -> None:
    before = stats("a", cpu_nanos=9_000_000_000, at=10)
    after = stats("a", cpu_nanos=100, at=20)
    assert fv.cpu_percent(before, after) == after.cpu_percent
    assert fv.cpu_percent(after, after) == after.cpu_percent  # no time passed


def test_top_order_is_working_first_then_trouble_then_idle() -> None:
    rows = [fv.AgentRow(agent=f"a{i}", role="r", state=s)
            for i, s in enumerate(["stopped", "idle", "crashed", "active", "missing", "promoting"])]  # fmt: skip
    ordered = [r.state for r in sorted(rows, key=fv.sort_key)]
    assert ordered == ["active", "promoting", "crashed", "idle", "stopped", "missing"]


def test_as_dict_is_json_ready_and_rounded() -> None:
    first = stats("swarm-builder-000", cpu_nanos=0, at=0)
    second = stats("swarm-builder-000", cpu_nanos=1, at=3)
    doc = view(stats={second.name: second}, previous_stats={first.name: first}).as_dict()
    (agent,) = doc["agents"]
    assert agent["cpu_percent"] == 33.3
    assert agent["heartbeat_age"] == 4.0
    assert doc["time"] == "2027-01-15T08:00:00Z"
    assert set(doc) == {"fleet", "time", "board", "agents", "totals", "notes"}


def test_human_formats() -> None:
    assert [fv.human_bytes(n) for n in (512, 1536, 64 << 20, 3 << 30)] == ["512B", "1.5Ki",
                                                                        "64Mi", "3.0Gi"]  # fmt: skip
    assert [fv.human_age(s) for s in (5, 65, 3700, 90000)] == ["5s", "1m05s", "1h01m", "1d01h"]
    assert [fv.human_count(n) for n in (999, 41102, 2_500_000)] == ["999", "41.1k", "2.50M"]
    assert fv.money(0.16704) == "$0.1670" and fv.money(12.5) == "$12.50"


# ------------------------------------------------------------------ events


def test_since_takes_durations_and_times() -> None:
    assert fv.parse_since("10m", NOW) == NOW - 600
    assert fv.parse_since("1h30m", NOW) == NOW - 5400
    assert fv.parse_since("2d", NOW) == NOW - 172800
    assert fv.parse_since("90s", NOW) == NOW - 90
    assert fv.parse_since("2027-01-15T08:00:00Z", NOW) == NOW
    with pytest.raises(ValueError, match="neither a duration"):
        fv.parse_since("yesterday", NOW)
    with pytest.raises(ValueError):
        fv.parse_since("10x", NOW)


def _event(minutes_ago: float, **kw: Any) -> dict[str, Any]:
    when = datetime.fromtimestamp(NOW, UTC) - timedelta(minutes=minutes_ago)
    stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"time": stamp, "fleet": FLEET, "event": "health.restart", **kw}


def test_event_filters() -> None:
    old, new = _event(90, agent="swarm-builder-000"), _event(5, agent="swarm-builder-001")
    assert fv.keep_event(new, since=NOW - 600) and not fv.keep_event(old, since=NOW - 600)
    assert fv.keep_event(old, agent="swarm-builder-000")
    assert not fv.keep_event(new, agent="swarm-builder-000")
    assert not fv.keep_event({"event": "x"}, since=NOW - 600)  # no time: cannot be recent


def test_an_event_line_is_readable_with_its_extra_fields() -> None:
    record = _event(0, agent="swarm-builder-000", reason="no heartbeat for 12s while idle",
                    restarts=2, delay=4.0)  # fmt: skip
    line = fv.event_line(record, tz=timezone(timedelta(hours=1)))
    assert line == (
        "2027-01-15 09:00:00  swarm-builder-000   health.restart            "
        "no heartbeat for 12s while idle restarts=2 delay=4.0"
    )
    bare = fv.event_line({"time": "garbage", "event": "up.start"})
    assert bare.startswith("garbage") and "-" in bare and "up.start" in bare


def test_a_narrow_terminal_drops_whole_columns_by_priority() -> None:
    row = one(board=board([runner("swarm-builder-000", "active", task="t-1234abcd")]))
    cells = [fv.cells(row)]
    wide = fv.choose_columns(cells, 200)
    assert [k for k, _ in wide] == [k for k, _ in fv.COLUMNS]
    narrow = [k for k, _ in fv.choose_columns(cells, 60)]
    assert narrow[:3] == ["agent", "state", "task"]
    assert "detail" not in narrow and "cost" not in narrow
    assert [k for k, _ in fv.choose_columns(cells, 10)] == ["agent"]  # always the name
