"""Files that must never be torn and locks that must never go stale.

``atomic_write``: readers see the old content or the new, never a mix (temp file in the
same directory, fsync, rename, fsync of the directory). ``file_lock``: an advisory
``flock``, which the kernel releases when the holder dies, so a killed process never
leaves a lock behind; the holder's pid is written into the file so a waiter can say who
holds it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from agentctl_swarm.core.errors import AgentctlError


class LockBusy(AgentctlError):
    """The lock is held by another process (and we were not willing to wait longer)."""

    def __init__(self, message: str, *, holder: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder = holder


def atomic_write(path: str | Path, data: bytes | str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably; the directory is created."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp: a name unique across processes and threads, in the same directory so the
    # rename is atomic; a crash leaves at most a dot-file ending in .tmp behind.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)  # the umask must not loosen or tighten what was asked
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def fsync_dir(path: str | Path) -> None:
    """Make a rename in ``path`` durable; file systems that refuse a dir fsync are fine."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
    return "?"


@contextlib.contextmanager
def file_lock(
    path: str | Path,
    *,
    timeout: float | None = None,
    what: str | None = None,
    on_wait: Callable[[str], None] | None = None,
    poll: float = 0.1,
    mode: int = 0o644,
) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` for the ``with`` block.

    ``timeout``: None waits forever, 0 tries once, N waits up to N seconds; then
    :class:`LockBusy` naming the holder's pid. ``what`` names the locked thing in
    messages ("fleet 'demo'"). ``on_wait`` is told once when we start waiting.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    label = what or str(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            holder = _holder(fd)
            if deadline is not None and time.monotonic() >= deadline:
                waited = f" for {timeout:g}s" if timeout else ""
                raise LockBusy(
                    f"{label} is locked by another process (pid {holder}){waited}",
                    holder=holder,
                    hint=f"wait for it to finish, or stop pid {holder}",
                )
            if not told and on_wait is not None:
                on_wait(f"{label} is locked by another process (pid {holder}); waiting")
                told = True
            time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing drops the flock
