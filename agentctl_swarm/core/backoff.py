"""The one backoff: a delay curve, and the restart policy built on it (pure).

Every wait-and-try-again in the project uses :class:`BackoffCurve`: the chat client's
reconnects (jittered, 1 s doubling to 30 s), the server's takeover delay, the in-container
supervisor's restarts and the controller's container restarts (both through
:class:`RestartPolicy`, which adds a stable-run reset and a crash-loop breaker). Every
function takes the clock values and random numbers it needs, so curves and policies are
unit-tested without sleeping.

Why the restart rules (owl/reference/original-system.md, "supervisor defects"):
- exits are classified from the *real* wait status, so a crash never looks clean;
- delays double from ``initial`` to ``cap`` and reset once a run has been stable for
  ``stable_after`` seconds, so one crash after hours of work costs one second;
- fatal exit codes are never retried; too many crashes inside a window trip the breaker
  ("degraded") instead of burning budget in a tight loop.
"""

from __future__ import annotations

import math
import random
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum


@dataclass(frozen=True)
class BackoffCurve:
    """``initial * multiplier**attempt`` capped at ``cap``; ``jitter`` only shortens.

    With jitter j and a random r in [0, 1) the delay lies in ``[base*(1-j), base]``, so the
    cap stays a hard upper bound and a fleet that lost its server at once does not come
    back in lock-step.
    """

    initial: float = 1.0
    multiplier: float = 2.0
    cap: float = 300.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not self.initial > 0 or math.isinf(self.initial):
            problems.append(f"initial backoff must be > 0 (got {self.initial})")
        if not self.multiplier >= 1 or math.isinf(self.multiplier):
            problems.append(f"backoff multiplier must be >= 1 (got {self.multiplier})")
        if not self.cap >= self.initial or math.isinf(self.cap):
            problems.append(
                f"backoff cap {self.cap:g} is below the initial backoff {self.initial:g}"
            )
        if not 0.0 <= self.jitter < 1.0:
            problems.append(f"jitter must be in [0, 1) (got {self.jitter})")
        if problems:
            raise ValueError("; ".join(problems))

    def delay(self, attempt: int, rand: float = 0.0) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        # Cap the exponent first so huge attempt counts cannot overflow a float.
        base = (
            self.cap if attempt >= 1024 else min(self.cap, self.initial * self.multiplier**attempt)
        )
        return base * (1.0 - self.jitter * rand)

    def after(self, delay: float) -> float:
        """The un-jittered delay that follows ``delay`` on this curve."""
        return min(self.cap, max(self.initial, delay * self.multiplier))

    def first(self, n: int) -> list[float]:
        """The first ``n`` un-jittered delays (for docs and tests)."""
        return [self.delay(i) for i in range(n)]


@dataclass
class Backoff:
    """A curve with a position: ``next()`` yields the delays in turn, ``reset()`` starts over."""

    curve: BackoffCurve = field(default_factory=BackoffCurve)
    rng: Callable[[], float] = field(default=random.random, repr=False)
    attempt: int = 0

    def next(self) -> float:
        """The delay before the next attempt; advances the position."""
        delay = self.curve.delay(self.attempt, self.rng())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Forget past failures (call after a success)."""
        self.attempt = 0


# ------------------------------------------------------------------------- restarts


class ExitKind(StrEnum):
    """How a supervised run ended, as far as the restart policy is concerned."""

    CLEAN = "clean"  # exit status 0
    CRASH = "crash"  # non-zero exit status that is not fatal
    FATAL = "fatal"  # an exit status the child uses to say "do not retry me"
    SIGNALED = "signaled"  # killed by a signal nobody in the supervisor sent
    LOST = "lost"  # the watcher itself died while the child ran; outcome unknown


class RestartAction(StrEnum):
    """What the supervisor (or controller) does next."""

    RESTART = "restart"  # start again after ``Decision.delay`` seconds
    STOP = "stop"  # clean exit and the policy says a clean exit ends supervision
    FATAL = "fatal"  # do not retry; exit with the child's code
    DEGRADED = "degraded"  # circuit breaker tripped; needs a person


@dataclass(frozen=True)
class ExitInfo:
    """One exit: code or signal (exactly one is set for a real exit)."""

    code: int | None
    signal: int | None
    kind: ExitKind

    @property
    def signal_name(self) -> str | None:
        """``SIGKILL`` rather than ``9`` in logs and state files."""
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"SIG{self.signal}"


def classify_exit(returncode: int, fatal_codes: Iterable[int]) -> ExitInfo:
    """Classify a ``subprocess``-style return code (negative = killed by that signal)."""
    if returncode < 0:
        return ExitInfo(code=None, signal=-returncode, kind=ExitKind.SIGNALED)
    if returncode == 0:
        return ExitInfo(code=0, signal=None, kind=ExitKind.CLEAN)
    if returncode in set(fatal_codes):
        return ExitInfo(code=returncode, signal=None, kind=ExitKind.FATAL)
    return ExitInfo(code=returncode, signal=None, kind=ExitKind.CRASH)


def describe_exit(exit_: ExitInfo) -> str:
    """Human words for an exit, for logs and ``last_error``."""
    if exit_.kind is ExitKind.SIGNALED:
        return f"killed by {exit_.signal_name}"
    if exit_.kind is ExitKind.LOST:
        return "supervisor ended while the child ran"
    return f"exit code {exit_.code}"


@dataclass(frozen=True)
class RestartState:
    """What the policy remembers between runs (persisted by its users).

    ``backoff``: the delay before the next restart. ``crash_times``: wall-clock times of
    recent counted crashes (only those inside the window matter).
    """

    backoff: float
    crash_times: tuple[float, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Decision:
    """The policy's answer: an action, the delay before it, and the next state."""

    action: RestartAction
    delay: float
    state: RestartState
    reason: str


@dataclass(frozen=True)
class RestartPolicy:
    """Restart with backoff, reset after a stable run, give up after a crash loop.

    ``initial``/``multiplier``/``cap``: the delay curve (1, 2, 4 ... 256, 300, 300 s).
    ``stable_after``: a run at least this long resets the curve and the crash history.
    ``quick_crash``: only crashes after less uptime than this count towards the breaker
    (``math.inf``: every crash counts). ``max_quick_crashes`` counted crashes within
    ``window`` seconds → degraded. ``fatal_exit_codes``: never retried.
    ``restart_on_clean_exit``: whether exit 0 restarts (with backoff, so a child that
    exits 0 at once cannot spin).
    """

    initial: float = 1.0
    multiplier: float = 2.0
    cap: float = 300.0
    stable_after: float = 300.0
    quick_crash: float = 10.0
    max_quick_crashes: int = 5
    window: float = 600.0
    fatal_exit_codes: frozenset[int] = frozenset({2})
    restart_on_clean_exit: bool = True

    def __post_init__(self) -> None:
        problems = []
        try:
            self.curve  # noqa: B018  (validates the curve's knobs)
        except ValueError as exc:
            problems.append(str(exc))
        if not self.stable_after >= 0:
            problems.append(f"stable-after must be >= 0 (got {self.stable_after})")
        if not self.quick_crash >= 0:
            problems.append(f"quick-crash must be >= 0 (got {self.quick_crash})")
        if self.max_quick_crashes < 1:
            problems.append(f"max quick crashes must be >= 1 (got {self.max_quick_crashes})")
        if not self.window > 0 or math.isinf(self.window):
            problems.append(f"crash window must be > 0 (got {self.window})")
        if 0 in self.fatal_exit_codes:
            problems.append("exit code 0 cannot be fatal")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def curve(self) -> BackoffCurve:
        return BackoffCurve(self.initial, self.multiplier, self.cap)

    def fresh(self) -> RestartState:
        """The state of something that has never crashed."""
        return RestartState(backoff=self.initial)

    def resume(self, state: RestartState) -> RestartState:
        """Clamp a persisted state to this policy (the knobs may have changed)."""
        backoff = min(self.cap, max(self.initial, state.backoff))
        return RestartState(backoff=backoff, crash_times=state.crash_times)

    def after_uptime(self, state: RestartState, uptime: float) -> RestartState:
        """Reset the curve once the current run has been stable long enough.

        Called while the run goes on, so something stopped after an hour of good work
        does not come back with a 300 s backoff.
        """
        if uptime >= self.stable_after and state != self.fresh():
            return self.fresh()
        return state

    def decide(self, state: RestartState, exit_: ExitInfo, uptime: float, now: float) -> Decision:
        """What to do after a run ended.

        ``uptime``: seconds the run lasted (monotonic clock); ``now``: wall-clock time
        (epoch seconds), used for the crash window because it must survive restarts of
        whoever applies the policy.
        """
        if exit_.kind is ExitKind.FATAL:
            return Decision(RestartAction.FATAL, 0.0, state, f"exit code {exit_.code} is fatal")
        if uptime >= self.stable_after:
            state = self.fresh()
        crashes = tuple(t for t in state.crash_times if now - self.window < t <= now)
        if exit_.kind is ExitKind.CLEAN:
            if not self.restart_on_clean_exit:
                return Decision(
                    RestartAction.STOP, 0.0, replace(state, crash_times=crashes), "clean exit"
                )
            reason = "clean exit"
        else:
            reason = describe_exit(exit_)
            if uptime < self.quick_crash:
                crashes = (*crashes, now)
                if len(crashes) >= self.max_quick_crashes:
                    quick = (
                        "crashes"
                        if math.isinf(self.quick_crash)
                        else f"crashes shorter than {self.quick_crash:g}s"
                    )
                    return Decision(
                        RestartAction.DEGRADED,
                        0.0,
                        RestartState(backoff=state.backoff, crash_times=crashes),
                        f"{len(crashes)} {quick} within {self.window:g}s",
                    )
        delay = state.backoff
        nxt = RestartState(backoff=self.curve.after(delay), crash_times=crashes)
        return Decision(RestartAction.RESTART, delay, nxt, reason)
