"""Outgoing rate limiting: pure (time is passed in), so it is unit-testable.

The server drops a MSG that comes within ``RATE_LIMIT_MS`` (1 s) of the previous one
on the same socket (``ERROR RATE_LIMITED``), and *closes* a socket that sends more
than 60 frames in a sliding 10 s window (10 before WELCOME). The client paces itself
with these two limiters so callers never see either.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: Server's MSG spacing (upstream RATE_LIMIT_MS) plus a safety margin for scheduling
#: jitter: the server measures at *receive* time, so two frames written 1.000 s apart
#: can arrive 0.99 s apart.
MSG_INTERVAL_S = 1.05
#: Upstream allows no burst: the second MSG within the interval is refused.
MSG_BURST = 1
#: Upstream's flood window: 60 frames per 10 s after WELCOME; we stay below it.
FRAME_WINDOW_S = 10.0
FRAME_LIMIT_AUTHED = 55
FRAME_LIMIT_UNAUTHED = 8


@dataclass
class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` stored.

    ``reserve(now)`` takes one token and returns how long the caller must wait before
    using it (0.0 when a token was available). Reservations queue up: N back-to-back
    calls return 0, 1/rate, 2/rate, ... beyond the burst.
    """

    rate: float
    burst: int = 1
    _tokens: float = field(init=False)
    _stamp: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._tokens = float(self.burst)

    def _refill(self, now: float) -> None:
        if self._stamp is not None and now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        if self._stamp is None or now > self._stamp:
            self._stamp = now

    def reserve(self, now: float) -> float:
        """Take one token (possibly going into debt); return the wait in seconds."""
        self._refill(now)
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate

    def reset(self) -> None:
        """Full bucket again (a fresh socket starts with a fresh server-side limit)."""
        self._tokens = float(self.burst)
        self._stamp = None


@dataclass
class SlidingWindow:
    """At most ``limit`` events in any ``window`` seconds (the server's flood rule)."""

    limit: int
    window: float
    _events: deque[float] = field(default_factory=deque, init=False)

    def reserve(self, now: float) -> float:
        """Record one event at the earliest allowed time; return the wait from ``now``."""
        while self._events and self._events[0] <= now - self.window:
            self._events.popleft()
        # Keep the history sorted (a pending reservation may lie in the future).
        at = max(now, self._events[-1]) if self._events else now
        if len(self._events) >= self.limit:
            at = max(at, self._events[-self.limit] + self.window)
        self._events.append(at)
        return at - now

    def reset(self) -> None:
        """Forget history (new socket)."""
        self._events.clear()
