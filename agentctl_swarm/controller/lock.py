"""One apply at a time per fleet: an advisory file lock in the state directory.

flock is released by the kernel when the holder dies, so a killed apply never leaves a
stale lock behind; the next apply simply takes it and repairs what was half done.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class LockTimeout(Exception):
    """Another process held the fleet lock for longer than we were willing to wait."""


@contextmanager
def fleet_lock(
    state_dir: Path,
    fleet: str,
    *,
    timeout: float = 300.0,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Hold ``<state_dir>/locks/<fleet>.lock`` exclusively for the duration."""
    lock_dir = state_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{fleet}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and on_wait is not None:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    on_wait(
                        f"fleet {fleet!r} is locked by another agentctl (pid {holder}); waiting"
                    )
                    told = True
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"fleet {fleet!r} stayed locked for {timeout:g}s ({path})"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)
