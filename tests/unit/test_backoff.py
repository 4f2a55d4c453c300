"""The restart policy is pure: the whole curve and every decision without a process."""

from __future__ import annotations

import signal

import pytest

from agentctl_swarm.core.backoff import (
    ExitInfo,
    ExitKind,
    RestartAction,
    RestartPolicy,
    RestartState,
    classify_exit,
    describe_exit,
)

CRASH = ExitInfo(code=1, signal=None, kind=ExitKind.CRASH)
CLEAN = ExitInfo(code=0, signal=None, kind=ExitKind.CLEAN)
KILLED = ExitInfo(code=None, signal=signal.SIGKILL, kind=ExitKind.SIGNALED)


def crash_loop(policy: RestartPolicy, n: int, uptime: float, step: float = 1.0):
    """Feed ``n`` exits of ``uptime`` seconds, ``step`` seconds apart; return decisions."""
    state, now, out = policy.fresh(), 1_000_000.0, []
    for _ in range(n):
        now += uptime
        d = policy.decide(state, CRASH, uptime, now)
        out.append(d)
        state = d.state
        now += d.delay + step
    return out


def test_default_curve_doubles_from_one_second_to_the_300s_cap() -> None:
    assert RestartPolicy().curve.first(12) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]


def test_curve_with_custom_knobs() -> None:
    p = RestartPolicy(initial=0.5, multiplier=3, cap=10)
    assert p.curve.first(5) == [0.5, 1.5, 4.5, 10, 10]
    assert RestartPolicy(initial=5, multiplier=1, cap=5).curve.first(3) == [5, 5, 5]


def test_slow_crashes_follow_the_curve_and_never_degrade() -> None:
    # 60 s runs are not "quick": the breaker never trips, delays follow the curve.
    decisions = crash_loop(RestartPolicy(), 12, uptime=60)
    assert [d.action for d in decisions] == [RestartAction.RESTART] * 12
    assert [d.delay for d in decisions] == RestartPolicy().curve.first(12)
    assert all(d.state.crash_times == () for d in decisions)


def test_quick_crashes_degrade_at_the_threshold() -> None:
    decisions = crash_loop(RestartPolicy(), 5, uptime=0.5)
    assert [d.action for d in decisions] == [RestartAction.RESTART] * 4 + [RestartAction.DEGRADED]
    assert [d.delay for d in decisions[:4]] == [1, 2, 4, 8]
    assert len(decisions[-1].state.crash_times) == 5
    assert "5 crashes shorter than 10s within 600s" in decisions[-1].reason


def test_quick_crash_boundary_is_exclusive() -> None:
    p = RestartPolicy(max_quick_crashes=1)
    assert p.decide(p.fresh(), CRASH, 10.0, 100.0).action is RestartAction.RESTART
    assert p.decide(p.fresh(), CRASH, 9.999, 100.0).action is RestartAction.DEGRADED


def test_crashes_outside_the_window_are_forgotten() -> None:
    p = RestartPolicy(max_quick_crashes=3, window=600)
    old = RestartState(backoff=4, crash_times=(100.0, 200.0))
    d = p.decide(old, CRASH, 1.0, 900.0)  # 100 is out of (300, 900], 200 too
    assert d.action is RestartAction.RESTART
    assert d.state.crash_times == (900.0,)
    d = p.decide(RestartState(backoff=4, crash_times=(400.0, 500.0)), CRASH, 1.0, 900.0)
    assert d.action is RestartAction.DEGRADED


def test_future_crash_times_from_a_clock_jump_are_ignored() -> None:
    p = RestartPolicy(max_quick_crashes=2)
    d = p.decide(RestartState(backoff=1, crash_times=(5000.0,)), CRASH, 1.0, 1000.0)
    assert d.action is RestartAction.RESTART
    assert d.state.crash_times == (1000.0,)


def test_stable_run_resets_backoff_and_history() -> None:
    p = RestartPolicy()
    high = RestartState(backoff=256, crash_times=(1.0, 2.0, 3.0, 4.0))
    d = p.decide(high, CRASH, 300.0, 10.0)
    assert d.action is RestartAction.RESTART
    assert d.delay == 1
    assert d.state == RestartState(backoff=2, crash_times=())
    d = p.decide(high, CRASH, 299.0, 10.0)
    assert d.delay == 256
    assert d.state.backoff == 300


def test_after_uptime_resets_while_running() -> None:
    p = RestartPolicy(stable_after=300)
    high = RestartState(backoff=64, crash_times=(1.0,))
    assert p.after_uptime(high, 299.9) is high
    assert p.after_uptime(high, 300) == p.fresh()
    fresh = p.fresh()
    assert p.after_uptime(fresh, 1000) is fresh


def test_fatal_exit_is_never_retried_and_keeps_state() -> None:
    p = RestartPolicy()
    state = RestartState(backoff=8, crash_times=(1.0,))
    d = p.decide(state, classify_exit(2, p.fatal_exit_codes), 0.1, 5.0)
    assert d.action is RestartAction.FATAL
    assert d.delay == 0
    assert d.state == state
    assert "exit code 2 is fatal" in d.reason


def test_clean_exit_restarts_with_backoff_but_never_degrades() -> None:
    p = RestartPolicy(max_quick_crashes=2)
    state, now, delays = p.fresh(), 0.0, []
    for _ in range(6):
        d = p.decide(state, CLEAN, 0.1, now)
        assert d.action is RestartAction.RESTART
        delays.append(d.delay)
        state, now = d.state, now + d.delay
    assert delays == [1, 2, 4, 8, 16, 32]
    assert state.crash_times == ()


def test_clean_exit_stops_when_configured() -> None:
    p = RestartPolicy(restart_on_clean_exit=False)
    d = p.decide(p.fresh(), CLEAN, 0.1, 0.0)
    assert d.action is RestartAction.STOP
    assert d.reason == "clean exit"


def test_signal_death_counts_as_quick_crash() -> None:
    p = RestartPolicy(max_quick_crashes=2)
    d1 = p.decide(p.fresh(), KILLED, 1.0, 10.0)
    assert (d1.action, d1.reason) == (RestartAction.RESTART, "killed by SIGKILL")
    d2 = p.decide(d1.state, KILLED, 1.0, 12.0)
    assert d2.action is RestartAction.DEGRADED


def test_lost_run_counts_as_crash() -> None:
    p = RestartPolicy()
    lost = ExitInfo(code=None, signal=None, kind=ExitKind.LOST)
    d = p.decide(RestartState(backoff=4), lost, 2.0, 10.0)
    assert (d.action, d.delay, d.state.crash_times) == (RestartAction.RESTART, 4, (10.0,))
    assert describe_exit(lost) == "supervisor ended while the child ran"


@pytest.mark.parametrize(
    ("returncode", "fatal", "expected"),
    [
        (0, {2}, ExitInfo(0, None, ExitKind.CLEAN)),
        (1, {2}, ExitInfo(1, None, ExitKind.CRASH)),
        (2, {2}, ExitInfo(2, None, ExitKind.FATAL)),
        (2, set(), ExitInfo(2, None, ExitKind.CRASH)),
        (78, {2, 78}, ExitInfo(78, None, ExitKind.FATAL)),
        (137, {2}, ExitInfo(137, None, ExitKind.CRASH)),  # a shell's "killed": still a code
        (-9, {2}, ExitInfo(None, 9, ExitKind.SIGNALED)),
        (-15, {15}, ExitInfo(None, 15, ExitKind.SIGNALED)),
    ],
)
def test_classify_exit(returncode: int, fatal: set[int], expected: ExitInfo) -> None:
    assert classify_exit(returncode, fatal) == expected


def test_signal_names() -> None:
    assert classify_exit(-9, ()).signal_name == "SIGKILL"
    assert classify_exit(-15, ()).signal_name == "SIGTERM"
    assert classify_exit(-200, ()).signal_name == "SIG200"
    assert classify_exit(3, ()).signal_name is None


def test_resume_clamps_a_persisted_state_to_new_knobs() -> None:
    p = RestartPolicy(initial=2, cap=60)
    assert p.resume(RestartState(backoff=86400)).backoff == 60
    assert p.resume(RestartState(backoff=0.1)).backoff == 2
    kept = RestartState(backoff=8, crash_times=(1.0, 2.0))
    assert p.resume(kept) == kept


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"initial": 0}, "initial backoff must be > 0"),
        ({"multiplier": 0.5}, "multiplier must be >= 1"),
        ({"initial": 10, "cap": 5}, "cap 5 is below the initial backoff 10"),
        ({"max_quick_crashes": 0}, "max quick crashes must be >= 1"),
        ({"window": 0}, "crash window must be > 0"),
        ({"fatal_exit_codes": frozenset({0})}, "exit code 0 cannot be fatal"),
        ({"stable_after": -1}, "stable-after must be >= 0"),
        ({"quick_crash": -1}, "quick-crash must be >= 0"),
    ],
)
def test_bad_knobs_are_rejected_with_a_clear_message(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        RestartPolicy(**kwargs)
