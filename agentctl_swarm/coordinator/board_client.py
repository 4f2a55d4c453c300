"""Reading the coordinator's board over HTTP (``GET /api/v1/...``), for the CLI and for
`agentctl up`/`scale` when the coordinator runs in another process or on another node.

The board is served on the chat server's own port (``ws://H:P`` → ``http://H:P``) when the
coordinator is embedded, or on `agentctl coordinator --http PORT`. Failures are
:class:`UnavailableError` in the user's words, never a traceback.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from agentctl_swarm.core.errors import UnavailableError, UsageError

#: What to do when the board cannot be reached, unless the caller knows better.
UNREACHABLE_HINT = "start it with `agentctl server` or `agentctl up`, or check the server URL"


def board_url(server_url: str) -> str:
    """The board's base URL for a chat server URL (``ws://H:P`` → ``http://H:P``)."""
    parts = urlsplit(server_url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise UsageError(
            f"{server_url!r} is not a WebSocket URL", hint="use ws://HOST:PORT or wss://HOST:PORT"
        )
    return ("https" if parts.scheme == "wss" else "http") + "://" + parts.netloc


class BoardClient:
    """Reads of one board (``base`` = ``http://HOST:PORT``), errors in the user's words.

    ``unreachable_hint`` is what the user should check when nothing answers (the CLI
    names its own options there).
    """

    def __init__(
        self, base: str, *, unreachable_hint: str = UNREACHABLE_HINT, timeout: float = 10.0
    ) -> None:
        self.base = base.rstrip("/")
        self.unreachable_hint = unreachable_hint
        self.timeout = timeout

    def get(self, path: str) -> tuple[int, Any]:
        """``GET {base}/api/v1/{path}``: (HTTP status, JSON body or None).

        A 404 without a JSON body means no board is served there at all (a plain chat
        server): that is an UnavailableError, unlike a 404 for an unknown task.
        """
        url = f"{self.base}/api/v1/{path}"
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                doc = json.loads(exc.read())
            except ValueError:
                doc = None
            if exc.code == 404 and not isinstance(doc, dict):
                raise UnavailableError(
                    f"{self.base} serves no task board (no coordinator there)",
                    hint="run `agentctl server` with its coordinator (the default), or pass "
                    "--api http://HOST:PORT of `agentctl coordinator --http PORT`",
                ) from None
            return exc.code, doc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UnavailableError(
                f"cannot read the task board at {self.base} ({reason})",
                hint=self.unreachable_hint,
            ) from None
        except ValueError as exc:
            raise UnavailableError(
                f"{self.base} answered something that is not a task board ({exc})",
                hint="check the server URL (or --api)",
            ) from None

    def read(self, path: str) -> Any:
        """The JSON at ``path``; anything but 200 is an UnavailableError."""
        status, doc = self.get(path)
        if status != 200:
            raise UnavailableError(
                f"{self.base}/api/v1/{path}: the task board answered {status}",
                hint="is the coordinator running there? (`agentctl server` runs it by default)",
            )
        return doc

    def tasks(self) -> dict[str, Any]:
        doc = self.read("tasks")
        if not isinstance(doc, dict):
            raise UnavailableError(f"{self.base}/api/v1/tasks answered something else")
        return doc

    def task(self, tid: str) -> dict[str, Any] | None:
        """One task, or None when the board does not know the id."""
        status, doc = self.get("tasks/" + quote(tid, safe=""))
        if status == 404:
            return None
        if status != 200 or not isinstance(doc, dict):
            raise UnavailableError(f"{self.base}/api/v1/tasks/{tid} answered {status}")
        return doc

    def require(self, tid: str) -> dict[str, Any]:
        doc = self.task(tid)
        if doc is None:
            raise UsageError(
                f"unknown task id {tid!r} on the board at {self.base}",
                hint="`agentctl task list` shows the ids",
            )
        return doc

    def wait_for(
        self, tid: str, ok: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any] | None:
        """Poll the task until ``ok(doc)``; the last doc (None if never seen) on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.task(tid)
            if doc is not None and ok(doc):
                return doc
            if time.monotonic() >= deadline:
                return doc
            time.sleep(0.05)


def read(base: str, path: str, *, timeout: float = 10.0) -> Any:
    """``GET {base}/api/v1/{path}`` as JSON; UnavailableError when it cannot be read."""
    return BoardClient(base, timeout=timeout).read(path)
