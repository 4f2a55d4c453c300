"""Helpers for the rootless tests (run by scripts/test-rootless.sh, not by the main suite).

Two halves: ``test_as_root.py`` runs as root with root's virtualenv and acts on other
users (the image copy, the doctor for a user with nothing set up); ``test_as_user.py``
runs as the CI user against its own rootless Podman. Each skips itself elsewhere, with
the reason, so the main (root) suite collects and skips them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

USER_PATH = "/usr/local/bin:/usr/bin:/bin"


def login_env(name: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment a login gives ``name`` (nothing of the caller's leaks in)."""
    return {
        "HOME": str(home),
        "USER": name,
        "LOGNAME": name,
        "PATH": USER_PATH,
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
        **extra,
    }


def kill_pidfile(path: Path) -> None:
    """SIGTERM the process whose pid a file holds (rootless Podman's pause process, an
    API service): only that process, and only when the file is there."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def stop_pid(pid: int) -> None:
    """SIGTERM one process we started, then wait a little for it to go."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def podman() -> str:
    path = shutil.which("podman")
    assert path, "podman is not installed"
    return path


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=kw.pop("timeout", 300),
        stdin=subprocess.DEVNULL, **kw,
    )  # fmt: skip
