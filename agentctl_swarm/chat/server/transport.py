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
import signal
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agentctl_swarm.chat.server.config import ServerConfig
from agentctl_swarm.chat.server.core import Close, ServerCore
from agentctl_swarm.chat.server.store import Store

log = logging.getLogger("agentctl.chat.server")

_TICK_S = 0.05


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every ``ts`` on the wire."""
    return time.time_ns() // 1_000_000


def _json_response(status: HTTPStatus, doc: Any) -> Response:
    body = json.dumps(doc).encode()
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

    def apply(self, actions: list[Any]) -> None:
        for act in actions:
            if isinstance(act, Close):
                ws = self._sockets.get(act.conn)
                if ws is not None:
                    self._tasks.append(asyncio.ensure_future(ws.close(act.code, act.reason)))
                continue
            if len(act.conns) == 1:
                ws = self._sockets.get(act.conns[0])
                if ws is not None:
                    broadcast((ws,), act.text)
            else:
                sockets = self._sockets
                broadcast([sockets[c] for c in act.conns if c in sockets], act.text)
        if len(self._tasks) > 64:
            self._tasks = [t for t in self._tasks if not t.done()]

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
            self.apply(core.connect(cid, ip, now_ms(), agent))
            async for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                self.apply(core.receive(cid, text, now_ms()))
        except ConnectionClosed:
            pass
        finally:
            self.apply(core.disconnect(cid, now_ms()))
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
        # Upstream answers anything else with a bare "Not Found" (no content type).
        body = b"Not Found"
        headers = Headers([("Content-Length", str(len(body)))])
        return Response(HTTPStatus.NOT_FOUND.value, HTTPStatus.NOT_FOUND.phrase, headers, body)

    # ---- timers and persistence

    async def _ticker(self) -> None:
        flush_every = self.config.flush_interval_ms / 1000
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(_TICK_S)
            deadline = self.core.next_deadline()
            now = now_ms()
            if deadline is not None and deadline <= now:
                self.apply(self.core.tick(now))
            if time.monotonic() - last_flush >= flush_every:
                last_flush = time.monotonic()
                try:
                    self.store.flush()
                except Exception:  # persistence trouble must not stop the chat
                    log.exception("flushing the replay buffer failed")

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
        if self._server is not None:
            self._server.close(close_connections=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)
        self.store.close()
        self._done.set()

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
    log.info("AgentChat server listening on %s", handle.url)
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


def run_forever(config: ServerConfig) -> None:
    """Run until SIGINT/SIGTERM, then close cleanly (flushes the data dir). For the CLI."""

    async def _main() -> None:
        handle = await serve(config)
        print(f"AgentChat server running on {handle.url}", flush=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(handle.close()))
        await handle.wait_closed()
        await asyncio.sleep(0)

    asyncio.run(_main())
