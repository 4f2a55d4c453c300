"""Client state and the bookkeeping every part of the client shares.

:class:`ClientBase` holds the constructor (all connection, queue and waiter state),
the connected/finished view of it, and how the client finishes for good (failing
pending waiters and queued messages). The pending-request and queued-message
records live here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection

from agentctl_swarm.chat.client.errors import ChatError, Displaced, NotConnected
from agentctl_swarm.chat.identity import Identity
from agentctl_swarm.chat.ratelimit import (
    FRAME_LIMIT_AUTHED,
    FRAME_WINDOW_S,
    MSG_BURST,
    MSG_INTERVAL_S,
    SlidingWindow,
    TokenBucket,
)
from agentctl_swarm.core.backoff import Backoff, BackoffCurve

#: The server holds a socket taking over a live identity up to 60 s before WELCOME
#: (owl/reference/agentchat-protocol.md, "Duplicate identities").
HANDSHAKE_TIMEOUT_S = 90.0
#: Waits between reconnect attempts: 1 s doubling to 30 s, each shortened at random by up
#: to a quarter so a fleet that lost its server does not come back in lock-step.
RECONNECT_CURVE = BackoffCurve(initial=1.0, multiplier=2.0, cap=30.0, jitter=0.25)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Waiter:
    """A pending request: resolves on the first matching frame or matching ERROR."""

    match: Callable[[dict[str, Any]], bool]
    error_codes: frozenset[str]
    future: asyncio.Future[dict[str, Any]]
    collect: list[dict[str, Any]] = field(default_factory=list)
    collect_match: Callable[[dict[str, Any]], bool] | None = None

    def takes_error(self, code: str) -> bool:
        return not self.error_codes or code in self.error_codes


@dataclass
class _Outgoing:
    """A queued MSG and the future its sender may await (written, or echo received)."""

    to: str
    content: str
    in_reply_to: str | None
    written: asyncio.Future[None]
    echo: asyncio.Future[dict[str, Any]] | None = None


class ClientBase:
    """State shared by the client's parts; see the module docstring."""

    def __init__(
        self,
        url: str,
        identity: Identity | None = None,
        name: str | None = None,
        *,
        reconnect: bool = True,
        open_timeout: float = 10.0,
        request_timeout: float = 15.0,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
        backoff: Backoff | None = None,
        msg_interval: float = MSG_INTERVAL_S,
        frame_limit: int = FRAME_LIMIT_AUTHED,
        frame_window: float = FRAME_WINDOW_S,
        max_inbox: int = 10_000,
    ) -> None:
        if identity is None and not name:
            raise ValueError("an ephemeral client needs a name")
        self.url = url
        self.identity = identity
        self.name = name or (identity.name if identity else "")
        self.reconnect = reconnect
        self.open_timeout = open_timeout
        self.request_timeout = request_timeout
        self.handshake_timeout = handshake_timeout
        self.backoff = backoff or Backoff(RECONNECT_CURVE)
        self.agent_id: str | None = None  # "@<id>", set by WELCOME
        self.welcome: dict[str, Any] | None = None
        self.channels: set[str] = set()  # joined explicitly; re-joined on reconnect
        self.reconnects = 0  # successful reconnects so far (observability, tests)
        self.rejoined: list[str] = []  # channels re-joined after the last reconnect
        self.displaced = False
        self.closed = False
        self.last_error: BaseException | None = None

        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()  # handshake done and channels re-joined
        self._done = asyncio.Event()  # client finished for good
        self._inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._max_inbox = max_inbox
        self._waiters: list[_Waiter] = []
        self._req_lock = asyncio.Lock()
        self._outbox: deque[_Outgoing] = deque()
        self._outbox_changed = asyncio.Event()
        self._bucket = TokenBucket(rate=1.0 / msg_interval, burst=MSG_BURST)
        self._window = SlidingWindow(limit=frame_limit, window=frame_window)
        self._seen_ids: OrderedDict[str, None] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> bool:
        """True while a handshaken socket is up (queued sends flow)."""
        return self._ready.is_set() and not self._done.is_set()

    @property
    def finished(self) -> bool:
        """True once the client stopped for good (closed, displaced, or gave up)."""
        return self._done.is_set()

    @property
    def queued(self) -> int:
        """Messages waiting to be written (e.g. while disconnected)."""
        return len(self._outbox)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the socket is up (again); raise NotConnected if the client finished."""
        ready = asyncio.create_task(self._ready.wait())
        done = asyncio.create_task(self._done.wait())
        try:
            await asyncio.wait({ready, done}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            done.cancel()
        if self._done.is_set():
            raise self._final_error()
        if not self._ready.is_set():
            raise NotConnected(f"not connected to {self.url} (reconnecting)")

    def _drop_waiter(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def _fail_waiters(self, exc: BaseException) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(exc)
                waiter.future.exception()  # mark retrieved: nobody may await it any more

    def _final_error(self) -> ChatError:
        if self.displaced:
            return Displaced(f"{self.agent_id} was displaced by another connection")
        if self.closed:
            return NotConnected("client closed")
        return NotConnected(f"gave up on {self.url}: {self.last_error}")

    def _finish(self, exc: ChatError) -> None:
        if self._done.is_set():
            return
        self._done.set()
        self._ready.clear()
        self._fail_waiters(exc)
        for item in self._outbox:
            for fut in (item.written, item.echo):
                if fut is not None and not fut.done():
                    fut.set_exception(exc)
                    fut.exception()
        self._inbox.put_nowait(None)


def _type_is(kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("type") == kind
