"""Pure tests of the client's reconnect backoff curve and outgoing rate limiters."""

from __future__ import annotations

import itertools

import pytest

from agentctl_swarm.chat.client import RECONNECT_CURVE
from agentctl_swarm.chat.ratelimit import SlidingWindow, TokenBucket
from agentctl_swarm.core.backoff import Backoff, BackoffCurve


def test_backoff_doubles_from_one_second_to_thirty() -> None:
    delays = [RECONNECT_CURVE.delay(n, 0.0) for n in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_jitter_only_shortens_and_stays_in_band() -> None:
    for attempt, rand in itertools.product(range(10), (0.0, 0.3, 0.999)):
        base = min(30.0, 2.0**attempt)
        d = RECONNECT_CURVE.delay(attempt, rand)
        assert base * 0.75 <= d <= base


def test_backoff_huge_attempt_does_not_overflow() -> None:
    assert RECONNECT_CURVE.delay(10_000) == 30.0


@pytest.mark.parametrize(
    "make",
    [lambda: RECONNECT_CURVE.delay(-1), lambda: BackoffCurve(initial=1.0, cap=30.0, jitter=1.0)],
)
def test_backoff_rejects_bad_arguments(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_backoff_object_advances_and_resets() -> None:
    b = Backoff(RECONNECT_CURVE, rng=lambda: 0.0)
    assert [b.next() for _ in range(4)] == [1, 2, 4, 8]
    b.reset()
    assert b.next() == 1


def test_backoff_jitter_spreads_clients() -> None:
    values = iter([0.0, 0.5, 0.99])
    got = {Backoff(RECONNECT_CURVE, rng=lambda: next(values)).next() for _ in range(3)}
    assert len(got) == 3


def test_token_bucket_burst_one_spaces_messages() -> None:
    tb = TokenBucket(rate=1 / 1.05, burst=1)
    waits = [tb.reserve(0.0) for _ in range(4)]
    assert waits == pytest.approx([0.0, 1.05, 2.10, 3.15])


def test_token_bucket_refills_over_time_but_not_past_burst() -> None:
    tb = TokenBucket(rate=1.0, burst=2)
    assert tb.reserve(0.0) == 0.0
    assert tb.reserve(0.0) == 0.0
    assert tb.reserve(0.0) == pytest.approx(1.0)
    # Long idle: bucket refills to the burst (2), never more.
    assert tb.reserve(100.0) == 0.0
    assert tb.reserve(100.0) == 0.0
    assert tb.reserve(100.0) == pytest.approx(1.0)


def test_token_bucket_reset_and_validation() -> None:
    tb = TokenBucket(rate=1.0)
    tb.reserve(0.0)
    assert tb.reserve(0.0) > 0
    tb.reset()
    assert tb.reserve(0.0) == 0.0
    with pytest.raises(ValueError):
        TokenBucket(rate=0)


def _max_in_window(times: list[float], window: float) -> int:
    return max(sum(1 for u in times if t - window + 1e-9 < u <= t) for t in times)


def test_sliding_window_never_exceeds_limit() -> None:
    sw = SlidingWindow(limit=5, window=10.0)
    now = 0.0
    times = []
    for i in range(40):
        now += 0.3 if i % 7 else 4.0
        times.append(now + sw.reserve(now))
    assert times == sorted(times)
    assert _max_in_window(times, 10.0) <= 5


def test_sliding_window_free_when_under_limit_and_reset() -> None:
    sw = SlidingWindow(limit=3, window=10.0)
    assert [sw.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert sw.reserve(0.0) == 10.0
    sw.reset()
    assert sw.reserve(0.0) == 0.0
