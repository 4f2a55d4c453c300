"""The asyncio shell around :class:`ServerCore`: sockets, HTTP, timers, persistence flush.

It only moves bytes: each text frame goes to the core with the wall-clock time, and
the core's actions are performed in order. Fan-out uses ``websockets``' synchronous
``broadcast`` so one encoded frame is written to every member without awaiting
each one (a slow reader cannot stall the others). WebSocket keepalive is the
library's ping/pong: a ping every ``heartbeat_interval_ms`` and a close once a pong
is ``interval + grace`` late, i.e. 30 s / 70 s like upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agentctl_swarm.chat.server.config import ServerConfig
from agentctl_swarm.chat.server.core import Close, ServerAction, ServerCore
from agentctl_swarm.chat.server.store import Store, StoreWriteError
from agentctl_swarm.core.backoff import Backoff, BackoffCurve
from agentctl_swarm.core.logs import LogFormat, log_event, setup_logging

log = logging.getLogger("agentctl.chat.server")

_TICK_S = 0.05
#: The websockets library's records (handshake failures, write errors) join ours; it also
#: logs every connection opened and closed at INFO, which a fleet does not need to read.
_WS_LOG = logging.getLogger("agentctl.chat.server.ws")
_WS_LOG.setLevel(logging.WARNING)
#: Waits between flushes while the database refuses writes.
_FLUSH_RETRY = BackoffCurve(initial=0.5, multiplier=2.0, cap=10.0)


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every ``ts`` on the wire."""
    return time.time_ns() // 1_000_000


def _json_response(status: HTTPStatus, doc: Any) -> Response:
    body = json.dumps(doc, allow_nan=False).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


@dataclass
class ServerHandle:
    """A running server: its core, bound port and URL; ``close()`` stops it cleanly."""

    config: ServerConfig
    core: ServerCore
    store: Store
    port: int = 0
    _server: Server | None = None
    _sockets: dict[int, ServerConnection] = field(default_factory=dict)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _closed: asyncio.Event = field(default_factory=asyncio.Event)
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    #: Hook for embedded services (the task coordinator): each gets the request path and
    #: answers ``(status, json_doc)``, or None when the path is not its own.
    http_routes: list[Callable[[str], tuple[int, Any] | None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``ws://host:port`` clients connect to."""
        host = self.config.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"ws://{host}:{self.port}"

    @property
    def http_url(self) -> str:
        """``http://host:port`` for /health."""
        return "http" + self.url[2:]

    # ---- action execution

    def apply(self, actions: list[ServerAction]) -> None:
        """Perform the core's actions in order; one that fails is logged and skipped, so it
        never keeps the others (other clients' frames) from going out."""
        for act in actions:
            try:
                self._perform(act)
            except Exception as exc:
                log.error(
                    "chat.action_failed",
                    exc_info=True,
                    extra={"event": "chat.action_failed", "error": exc},
                )
        if len(self._tasks) > 64:
            self._tasks = [t for t in self._tasks if not t.done()]

    def _perform(self, act: ServerAction) -> None:
        if isinstance(act, Close):
            ws = self._sockets.get(act.conn)
            if ws is not None:
                self._tasks.append(asyncio.ensure_future(ws.close(act.code, act.reason)))
            return
        if len(act.conns) == 1:
            ws = self._sockets.get(act.conns[0])
            if ws is not None:
                broadcast((ws,), act.text)
        else:
            sockets = self._sockets
            broadcast([sockets[c] for c in act.conns if c in sockets], act.text)

    def _feed(self, step: Callable[..., list[ServerAction]], *args: Any) -> None:
        """Run one core entry point and apply its actions. The core guards its handlers;
        this guards the rest, so nothing a peer sends can end the connection with 1011."""
        try:
            actions = step(*args)
        except Exception as exc:
            log.error(
                "chat.core_failed", exc_info=True, extra={"event": "chat.core_failed", "error": exc}
            )
            return
        self.apply(actions)

    # ---- connection handler and HTTP

    async def _handle(self, ws: ServerConnection, ids: itertools.count[int]) -> None:
        cid = next(ids)
        self._sockets[cid] = ws
        remote = ws.remote_address
        ip = remote[0] if isinstance(remote, tuple) and remote else "unknown"
        core = self.core
        try:
            request = ws.request
            agent = request.headers.get("User-Agent") if request is not None else None
            self._feed(core.connect, cid, ip, now_ms(), agent)
            async for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                self._feed(core.receive, cid, text, now_ms())
        except ConnectionClosed:
            pass
        finally:
            self._feed(core.disconnect, cid, now_ms())
            self._sockets.pop(cid, None)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if "upgrade" in request.headers.get("Connection", "").lower() or request.headers.get(
            "Upgrade"
        ):
            return None  # a WebSocket on any path, like upstream
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return _json_response(HTTPStatus.OK, self.core.health(now_ms()))
        if path == "/api/connections":
            key = self.config.admin_key
            if not key or request.headers.get("X-Admin-Key") != key:
                return _json_response(HTTPStatus.UNAUTHORIZED, {"error": "Unauthorized"})
            conns = self.core.connections()
            return _json_response(HTTPStatus.OK, {"count": len(conns), "connections": conns})
        for route in self.http_routes:
            answer = route(path)
            if answer is not None:
                return _json_response(HTTPStatus(answer[0]), answer[1])
        # Upstream answers anything else with a bare "Not Found" (no content type).
        body = b"Not Found"
        headers = Headers([("Content-Length", str(len(body)))])
        return Response(HTTPStatus.NOT_FOUND.value, HTTPStatus.NOT_FOUND.phrase, headers, body)

    # ---- timers and persistence

    async def _ticker(self) -> None:
        """Fire due timers; flush the store every ``flush_interval_ms``, and while the
        database refuses, back off (up to 10 s) so a locked database does not keep the
        event loop waiting on it."""
        flush_every = self.config.flush_interval_ms / 1000
        retry = Backoff(_FLUSH_RETRY)
        next_flush = time.monotonic() + flush_every
        failing = False
        while True:
            await asyncio.sleep(_TICK_S)
            deadline = self.core.next_deadline()
            now = now_ms()
            if deadline is not None and deadline <= now:
                self._feed(self.core.tick, now)
            if time.monotonic() >= next_flush:
                failing = self._flush(failing)
                if failing:
                    next_flush = time.monotonic() + retry.next()
                else:
                    retry.reset()
                    next_flush = time.monotonic() + flush_every

    def _flush(self, failing: bool) -> bool:
        """Flush the store; persistence trouble never stops the chat. Logged when it
        starts and when it ends (not every 200 ms). Returns whether it is failing."""
        try:
            self.store.flush()
        except StoreWriteError as exc:
            if not failing:
                log_event(
                    log,
                    "store.flush_deferred",
                    level=logging.WARNING,
                    error=exc,
                    pending=self.store.pending,
                )
            return True
        except Exception as exc:
            log.error(
                "store.flush_failed",
                exc_info=True,
                extra={"event": "store.flush_failed", "error": exc},
            )
            return True
        if failing:
            log_event(log, "store.flush_recovered")
        return False

    # ---- lifecycle

    async def start(self) -> None:
        cfg = self.config
        ids = itertools.count(1)
        interval = cfg.heartbeat_interval_ms / 1000
        self._server = await ws_serve(
            lambda ws: self._handle(ws, ids),
            cfg.host,
            cfg.port,
            process_request=self._http,
            compression=None,
            max_size=cfg.max_payload,
            max_queue=64,
            ping_interval=interval,
            ping_timeout=interval + cfg.heartbeat_grace_ms / 1000,
            close_timeout=2,
            server_header=None,
            logger=_WS_LOG,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        self._tasks.append(asyncio.ensure_future(self._ticker()))

    async def close(self) -> None:
        """Stop accepting, close every socket with 1001, flush and close the store."""
        if self._closed.is_set():
            return
        self._closed.set()
        for t in self._tasks:
            t.cancel()
        try:
            if self._server is not None:
                self._server.close(close_connections=True)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._server.wait_closed(), timeout=5)
        finally:
            try:
                self.store.close()  # logs (never raises) a flush it could not do
            finally:
                self._done.set()  # whatever happened, wait_closed() returns: SIGTERM stops us

    async def wait_closed(self) -> None:
        """Return once ``close()`` has finished."""
        await self._done.wait()


async def serve(config: ServerConfig) -> ServerHandle:
    """Start a server in the running event loop and return its handle."""
    store = Store(config.data_dir)
    core = ServerCore(config, store, now=now_ms())
    handle = ServerHandle(config=config, core=core, store=store)
    try:
        await handle.start()
    except BaseException:
        store.close()
        raise
    log_event(log, "chat.server.listening", url=handle.url, data_dir=config.data_dir)
    return handle


class ThreadedServer:
    """A server on its own event loop in a daemon thread (tests, embedded mode)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.handle: ServerHandle | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="agentchat-server")  # fmt: skip

    def start(self) -> ThreadedServer:
        """Start and wait until the port is bound (raises what binding raised)."""
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(serve(self.config), self._loop)
        try:
            self.handle = fut.result(timeout=30)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            raise
        return self

    @property
    def port(self) -> int:
        assert self.handle is not None
        return self.handle.port

    @property
    def url(self) -> str:
        assert self.handle is not None
        return self.handle.url

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the server's loop and return its result (e.g. inspect core)."""

        async def _run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(_run(), self._loop).result(timeout=10)

    def stop(self) -> None:
        """Close the server and end its thread."""
        if self.handle is not None and self._thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self.handle.close(), self._loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=15)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(config: ServerConfig) -> ThreadedServer:
    """Start a server in a background thread; call ``.stop()`` when done."""
    return ThreadedServer(config).start()


#: Starts an embedded service on a running server; returns the coroutine that stops it.
Attach = Callable[[ServerHandle], Awaitable[Callable[[], Awaitable[None]]]]


def run_forever(
    config: ServerConfig, attach: Attach | None = None, *, log_format: LogFormat | None = None
) -> None:
    """Run until SIGINT/SIGTERM, then close cleanly (flushes the data dir). For the CLI.

    This is the server process's edge: it sets up logging (JSON lines on stderr unless
    stderr is a terminal or ``log_format`` says otherwise) and hands the process
    environment to the server for secret redaction. ``attach`` (hook for the embedded
    task coordinator) is started once the port is bound and stopped before the server
    closes.
    """
    setup_logging("chat-server", fmt=log_format)
    if not config.environ:
        config = config.with_(environ=dict(os.environ))

    async def _main() -> None:
        handle = await serve(config)
        try:
            detach = await attach(handle) if attach is not None else None
        except BaseException:
            await handle.close()
            raise

        async def _shutdown() -> None:
            if detach is not None:
                try:
                    await detach()
                except Exception:
                    log.exception("stopping the embedded service failed")
            await handle.close()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(_shutdown()))
        # Announced only once a SIGTERM would be handled: whoever waits for this line
        # may stop the server right away.
        print(f"AgentChat server running on {handle.url}", flush=True)
        await handle.wait_closed()
        await asyncio.sleep(0)

    asyncio.run(_main())
