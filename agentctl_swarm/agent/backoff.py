"""Restart policy of the in-container supervisor: backoff curve and circuit breaker.

Pure: every function takes the history and clock values it needs and returns a new
value, so the whole curve is unit-tested without processes, sleeps or files. The
supervisor (agent/supervisor.py) is the only caller that touches the world.

Why these rules (original-system.md §1.3, §6.2):
- Exits are classified from the *real* wait status (no shell pipeline in between),
  so a crash can no longer look like a clean exit (defect 1).
- Delays double from ``initial`` up to ``cap`` and reset once a run has been stable
  for ``stable_after`` seconds, so one crash after hours of work costs one second.
- Fatal exit codes are never retried; a burst of quick crashes inside a window trips
  the breaker ("degraded") instead of burning budget in a tight loop.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum


class ExitKind(StrEnum):
    """How a child run ended, as far as the restart policy is concerned."""

    CLEAN = "clean"  # exit status 0
    CRASH = "crash"  # non-zero exit status that is not fatal
    FATAL = "fatal"  # an exit status the child uses to say "do not retry me"
    SIGNALED = "signaled"  # killed by a signal nobody in the supervisor sent
    LOST = "lost"  # the supervisor itself died while the child ran; outcome unknown


class Action(StrEnum):
    """What the supervisor does next."""

    RESTART = "restart"  # start the child again after ``Decision.delay`` seconds
    STOP = "stop"  # clean exit and the policy says a clean exit ends supervision
    FATAL = "fatal"  # do not retry; exit with the child's code
    DEGRADED = "degraded"  # circuit breaker tripped; needs a person or the controller


@dataclass(frozen=True)
class ExitInfo:
    """One child exit: code or signal (exactly one is set for a real exit)."""

    code: int | None
    signal: int | None
    kind: ExitKind

    @property
    def signal_name(self) -> str | None:
        """``SIGKILL`` rather than ``9`` in logs and state.json."""
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


@dataclass(frozen=True)
class BackoffPolicy:
    """Knobs of the restart policy; defaults are the issue's contract.

    ``initial``/``multiplier``/``cap``: the delay curve 1, 2, 4 ... 256, 300, 300 s.
    ``stable_after``: a run at least this long resets the curve and the crash history.
    ``quick_crash``: a crash (or signal death) after less uptime than this is "quick".
    ``max_quick_crashes`` quick crashes within ``window`` seconds → degraded.
    ``fatal_exit_codes``: never retried. ``restart_on_clean_exit``: whether exit 0
    restarts the child (with backoff, so a child that exits 0 at once cannot spin).
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
        if self.initial <= 0:
            problems.append(f"initial backoff must be > 0 (got {self.initial})")
        if self.multiplier < 1:
            problems.append(f"backoff multiplier must be >= 1 (got {self.multiplier})")
        if self.cap < self.initial:
            problems.append(
                f"backoff cap {self.cap:g} is below the initial backoff {self.initial:g}"
            )
        if self.stable_after < 0:
            problems.append(f"stable-after must be >= 0 (got {self.stable_after})")
        if self.quick_crash < 0:
            problems.append(f"quick-crash must be >= 0 (got {self.quick_crash})")
        if self.max_quick_crashes < 1:
            problems.append(f"max quick crashes must be >= 1 (got {self.max_quick_crashes})")
        if self.window <= 0:
            problems.append(f"crash window must be > 0 (got {self.window})")
        if 0 in self.fatal_exit_codes:
            problems.append("exit code 0 cannot be fatal")
        if problems:
            raise ValueError("; ".join(problems))

    def fresh(self) -> BackoffState:
        """The state of an agent that has never crashed."""
        return BackoffState(backoff=self.initial)

    def curve(self, n: int) -> list[float]:
        """The first ``n`` delays of an uninterrupted crash loop (for docs and tests)."""
        out, state = [], self.fresh()
        for _ in range(n):
            out.append(state.backoff)
            state = replace(state, backoff=self._next(state.backoff))
        return out

    def _next(self, backoff: float) -> float:
        return min(self.cap, max(self.initial, backoff * self.multiplier))

    def resume(self, state: BackoffState) -> BackoffState:
        """Clamp a persisted state to this policy (the knobs may have changed)."""
        backoff = min(self.cap, max(self.initial, state.backoff))
        return BackoffState(backoff=backoff, crash_times=state.crash_times)

    def after_uptime(self, state: BackoffState, uptime: float) -> BackoffState:
        """Reset the curve once the current run has been stable long enough.

        Called while the child is still running, so a container stopped after an hour
        of good work does not come back with a 300 s backoff.
        """
        if uptime >= self.stable_after and state != self.fresh():
            return self.fresh()
        return state

    def decide(self, state: BackoffState, exit_: ExitInfo, uptime: float, now: float) -> Decision:
        """What to do after the child ended.

        ``uptime``: seconds the run lasted (monotonic clock); ``now``: wall-clock time
        (epoch seconds), used for the crash window because it must survive restarts
        of the supervisor and the container.
        """
        if exit_.kind is ExitKind.FATAL:
            return Decision(Action.FATAL, 0.0, state, f"exit code {exit_.code} is fatal")
        if uptime >= self.stable_after:
            state = self.fresh()
        crashes = tuple(t for t in state.crash_times if now - self.window < t <= now)
        if exit_.kind is ExitKind.CLEAN:
            if not self.restart_on_clean_exit:
                return Decision(Action.STOP, 0.0, replace(state, crash_times=crashes), "clean exit")
            reason = "clean exit"
        else:
            reason = describe_exit(exit_)
            if uptime < self.quick_crash:
                crashes = (*crashes, now)
                if len(crashes) >= self.max_quick_crashes:
                    return Decision(
                        Action.DEGRADED,
                        0.0,
                        BackoffState(backoff=state.backoff, crash_times=crashes),
                        f"{len(crashes)} crashes shorter than {self.quick_crash:g}s "
                        f"within {self.window:g}s",
                    )
        delay = state.backoff
        nxt = BackoffState(backoff=self._next(delay), crash_times=crashes)
        return Decision(Action.RESTART, delay, nxt, reason)


@dataclass(frozen=True)
class BackoffState:
    """What the policy remembers between runs; persisted in state.json.

    ``backoff``: the delay before the next restart. ``crash_times``: wall-clock times
    of recent quick crashes (only those inside the window matter).
    """

    backoff: float
    crash_times: tuple[float, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Decision:
    """The policy's answer: an action, the delay before it, and the next state."""

    action: Action
    delay: float
    state: BackoffState
    reason: str


def describe_exit(exit_: ExitInfo) -> str:
    """Human words for an exit, for logs and state.json ``last_error``."""
    if exit_.kind is ExitKind.SIGNALED:
        return f"killed by {exit_.signal_name}"
    if exit_.kind is ExitKind.LOST:
        return "supervisor ended while the child ran"
    return f"exit code {exit_.code}"
