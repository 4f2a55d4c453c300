"""The health monitor's rules (pure), checked the way kubelet's tests check their curve:
a crash loop ends in `degraded` with restart counts and delays bounded by the curve."""

from __future__ import annotations

from agentctl_swarm.controller.health import AgentFacts, HealthMonitor, Verdict

A = "swarm-builder-000"


def crash_loop(monitor: HealthMonitor, start: float, runs: int, uptime: float = 5.0):
    """Run, exit after ``uptime``, get started when allowed; the decisions in order."""
    now, out = start, []
    for _ in range(runs):
        monitor.assess(AgentFacts(A, "running"), now)
        now += uptime
        while True:
            d = monitor.assess(AgentFacts(A, "exited", exit_code=1), now)
            out.append((now, d))
            if d.verdict is not Verdict.WAIT:
                break
            now += d.delay
        if d.verdict is Verdict.DEGRADED:
            break
    return out


def test_a_crash_loop_backs_off_one_two_four_and_ends_degraded() -> None:
    m = HealthMonitor(heartbeat_interval=10)
    decisions = crash_loop(m, 1_000_000.0, runs=20)
    starts = [d for _, d in decisions if d.verdict is Verdict.START]
    waits = [round(d.delay) for _, d in decisions if d.verdict is Verdict.WAIT]
    assert len(starts) == 5  # at most 5 restarts in the window ...
    assert waits == [1, 2, 4, 8, 16]  # ... each after 1, 2, 4, 8, 16 s ...
    assert decisions[-1][1].verdict is Verdict.DEGRADED  # ... then degraded
    assert "agentctl restart" in decisions[-1][1].reason
    # degraded is final until a person clears it
    assert m.assess(AgentFacts(A, "exited", exit_code=1), 2_000_000.0).verdict is Verdict.DEGRADED
    m.clear(A)
    after = m.assess(AgentFacts(A, "exited", exit_code=1), 2_000_000.0)
    assert (after.verdict, after.delay) == (Verdict.WAIT, 1.0)  # a fresh curve


def test_ten_stable_minutes_reset_the_curve() -> None:
    m = HealthMonitor(heartbeat_interval=10)
    now = 1_000_000.0
    crash_loop(m, now, runs=3)  # backoff is now 8 s
    now += 100
    m.assess(AgentFacts(A, "running"), now)
    m.assess(AgentFacts(A, "running"), now + 601)  # stable for ten minutes
    d = m.assess(AgentFacts(A, "exited", exit_code=1), now + 700)
    assert (d.verdict, d.delay) == (Verdict.WAIT, 1.0)  # 1 s again, not 8


def test_three_missed_heartbeats_restart_an_idle_agent() -> None:
    m = HealthMonitor(heartbeat_interval=10)
    now = 1_000_000.0
    fine = AgentFacts(A, "running", runner_state="idle", last_heard=now - 25)
    assert m.assess(fine, now).verdict is Verdict.OK
    late = AgentFacts(A, "running", runner_state="idle", last_heard=now - 31)
    d = m.assess(late, now)
    assert d.verdict is Verdict.RESTART and "while idle" in d.reason


def test_a_quiet_active_agent_is_checked_and_never_killed_for_lateness_alone() -> None:
    m = HealthMonitor(heartbeat_interval=10)
    now = 1_000_000.0
    quiet = AgentFacts(A, "running", runner_state="active", last_heard=now - 300)
    assert m.assess(quiet, now).verdict is Verdict.CHECK
    working = AgentFacts(
        A, "running", runner_state="active", last_heard=now - 300, session_alive=True
    )
    assert m.assess(working, now).verdict is Verdict.OK
    gone = AgentFacts(
        A, "running", runner_state="active", last_heard=now - 300, session_alive=False
    )
    assert m.assess(gone, now).verdict is Verdict.RESTART


def test_memory_near_the_limit_alerts_once_per_crossing() -> None:
    m = HealthMonitor(heartbeat_interval=10)
    high = AgentFacts(A, "running", memory_used=95, memory_limit=100)
    low = AgentFacts(A, "running", memory_used=50, memory_limit=100)
    assert m.assess(high, 1.0).verdict is Verdict.ALERT
    assert m.assess(high, 2.0).verdict is Verdict.OK
    assert m.assess(low, 3.0).verdict is Verdict.OK
    assert m.assess(high, 4.0).verdict is Verdict.ALERT


def test_the_state_survives_a_restart_of_up() -> None:
    m = HealthMonitor(heartbeat_interval=10)
    crash_loop(m, 1_000_000.0, runs=3)
    again = HealthMonitor.restore(10, {"agents": m.snapshot()})
    assert again.health(A).restarts == m.health(A).restarts
    assert again.health(A).restart.backoff == m.health(A).restart.backoff


def test_next_start_is_the_earliest_backoff_still_to_come() -> None:
    m = HealthMonitor(heartbeat_interval=10)
    now = 1_000_000.0
    assert m.next_start(now) is None  # nothing waits: the controller keeps its interval
    m.assess(AgentFacts(A, "running"), now)
    first = m.assess(AgentFacts(A, "exited", exit_code=1), now + 5)
    assert first.verdict is Verdict.WAIT
    m.assess(AgentFacts("swarm-builder-001", "running"), now)
    m.assess(AgentFacts("swarm-builder-001", "exited", exit_code=1), now + 5.5)
    # the controller wakes when the first delay is over, not on its next interval
    assert m.next_start(now + 5.2) == now + 5 + first.delay
    # past due times do not count (a stale entry must not make the controller spin)
    assert m.next_start(now + 6.2) == now + 6.5
    assert m.next_start(now + 7) is None
