"""The one retry helper for I/O that may fail for a while (a socket not up yet, a server
restarting): tenacity, waiting on the project's :class:`~agentctl_swarm.core.backoff.BackoffCurve`.

Use ``for attempt in retrying(...): with attempt: ...`` (or ``async for`` with
:func:`retrying_async`), as tenacity documents; the last error is re-raised when the
attempts or the deadline run out.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    stop_never,
)

from agentctl_swarm.core.backoff import BackoffCurve


def _wait(curve: BackoffCurve, rng: Callable[[], float]) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        return curve.delay(state.attempt_number - 1, rng())

    return wait


def _kwargs(
    curve: BackoffCurve,
    attempts: int | None,
    deadline: float | None,
    retry_on: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException, float], None] | None,
    rng: Callable[[], float],
    stop: Callable[[RetryCallState], bool] | None,
) -> dict[str, Any]:
    stops: list[Any] = []
    if attempts is not None:
        stops.append(stop_after_attempt(attempts))
    if deadline is not None:
        stops.append(stop_after_delay(deadline))
    if stop is not None:
        stops.append(stop)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_retry(exc, state.next_action.sleep)

    return {
        "wait": _wait(curve, rng),
        "stop": stop_any(*stops) if stops else stop_never,
        "retry": retry_if_exception(retry_on),
        "before_sleep": before_sleep,
        "reraise": True,
    }


def retrying(
    *,
    curve: BackoffCurve,
    retry_on: Callable[[BaseException], bool],
    attempts: int | None = None,
    deadline: float | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
    rng: Callable[[], float] = random.random,
) -> Retrying:
    """A tenacity ``Retrying`` that waits on ``curve`` and retries errors ``retry_on`` accepts."""
    return Retrying(**_kwargs(curve, attempts, deadline, retry_on, on_retry, rng, None))


def retrying_async(
    *,
    curve: BackoffCurve,
    retry_on: Callable[[BaseException], bool],
    attempts: int | None = None,
    deadline: float | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
    rng: Callable[[], float] = random.random,
    stop: Callable[[RetryCallState], bool] | None = None,
) -> AsyncRetrying:
    """The asyncio form of :func:`retrying`; ``stop`` adds a condition (e.g. "closed")."""
    return AsyncRetrying(**_kwargs(curve, attempts, deadline, retry_on, on_retry, rng, stop))
