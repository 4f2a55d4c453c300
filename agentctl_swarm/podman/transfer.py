"""Streaming one file out of a container, with a byte cap and a deadline.

``PodmanBackend.get_archive`` returns the whole tar in memory; a sync must not trust the
container to keep its file small, so this reads the archive stream chunk by chunk,
aborts past ``max_bytes`` or the deadline, and accepts exactly one regular file with the
expected name (no links, no paths that could escape) which it writes to ``dest``.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

from podman.errors import APIError, NotFound

from agentctl_swarm.podman.backend import PodmanBackend, PodmanError

_TAR_SLACK = 64 * 1024  # headers and padding around the one file


class _CappedStream(io.RawIOBase):
    """A read-only file over an iterator of chunks that refuses to grow past a cap."""

    def __init__(self, chunks: Iterator[bytes], cap: int, deadline: float, what: str) -> None:
        self._chunks = chunks
        self._buf = b""
        self._cap = cap
        self._deadline = deadline
        self._what = what
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            if time.monotonic() > self._deadline:
                raise PodmanError(f"copying {self._what} out timed out")
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self.read_bytes += len(chunk)
            if self.read_bytes > self._cap:
                raise PodmanError(f"{self._what} is larger than the cap of {self._cap} bytes")
            self._buf = chunk
        n = min(len(target), len(self._buf))
        target[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def copy_file_out(
    backend: PodmanBackend,
    container: str,
    path: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout: float,
) -> int:
    """Copy the regular file ``container:path`` to ``dest``; returns bytes on the wire."""
    what = f"{container}:{path}"
    deadline = time.monotonic() + timeout
    try:
        chunks, stat = backend.client.containers.get(container).get_archive(path)
    except (NotFound, APIError) as exc:
        raise PodmanError(f"copying {what} out failed: {str(exc)[:300]}") from None
    size = int((stat or {}).get("size", 0) or 0)
    if size > max_bytes:
        raise PodmanError(f"{what} is {size} bytes, over the cap of {max_bytes} bytes")
    stream = _CappedStream(iter(chunks), max_bytes + _TAR_SLACK, deadline, what)
    expected = posixpath.basename(path)
    found = False
    try:
        with tarfile.open(fileobj=io.BufferedReader(stream), mode="r|") as tar:
            for member in tar:
                if found or member.name != expected or not member.isreg():
                    raise PodmanError(
                        f"{what}: the archive holds {member.name!r} "
                        f"({'a link' if member.islnk() or member.issym() else 'unexpected'}); "
                        "refusing it"
                    )
                handle = tar.extractfile(member)
                if handle is None:
                    raise PodmanError(f"{what}: unreadable archive member")
                with dest.open("wb") as out:
                    while block := handle.read(1 << 20):
                        out.write(block)
                found = True
    except tarfile.TarError as exc:
        raise PodmanError(f"{what}: malformed archive ({exc})") from None
    if not found:
        raise PodmanError(f"{what}: the archive held no file")
    return stream.read_bytes
