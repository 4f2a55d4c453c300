"""Reconnect backoff curve: pure, so the client's retry timing is unit-testable.

Upstream clients retry with exponential backoff; a fleet of agents that all lose the
server at once must not come back in lock-step, hence the jitter. The curve is
``initial * factor**attempt`` capped at ``maximum``, and jitter only ever *shortens* a
delay (by up to ``jitter`` of it), so the cap is a hard upper bound.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


def backoff_delay(
    attempt: int,
    *,
    initial: float = 1.0,
    factor: float = 2.0,
    maximum: float = 30.0,
    jitter: float = 0.25,
    rand: float = 0.0,
) -> float:
    """Delay in seconds before retry number ``attempt`` (0-based).

    ``rand`` is a number in [0, 1) supplied by the caller (the random source stays at the
    edge); the result lies in ``[base * (1 - jitter), base]`` with
    ``base = min(maximum, initial * factor**attempt)``.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    # Cap the exponent first so huge attempt counts cannot overflow a float.
    base = maximum if attempt >= 64 else min(maximum, initial * factor**attempt)
    return base * (1.0 - jitter * rand)


@dataclass
class Backoff:
    """Stateful wrapper: ``next()`` yields 1, 2, 4, ... 30, 30 s (jittered); ``reset()``
    after a connection succeeded."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.25
    rng: Callable[[], float] = field(default=random.random, repr=False)
    attempt: int = 0

    def next(self) -> float:
        """The delay before the next attempt; advances the attempt counter."""
        delay = backoff_delay(
            self.attempt,
            initial=self.initial,
            factor=self.factor,
            maximum=self.maximum,
            jitter=self.jitter,
            rand=self.rng(),
        )
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Forget past failures (call after a successful connect)."""
        self.attempt = 0
