"""Shared chat fixtures: a real AgentChat server on a free loopback port.

``chat_server`` yields the ws URL (``ws://127.0.0.1:<port>``) of a server running on
its own event loop in a background thread, so both sync and async tests can use it.
``chat_server_handle`` yields the :class:`ThreadedServer` itself (``.url``, ``.port``,
``.config``, ``.handle.core``, ``.call(fn)``). ``make_chat_server(**config)`` starts
servers with custom settings (shrunk timers, --data-dir, limits off) and stops them
at teardown. ``raw_connect`` opens bare websockets connections that speak raw frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agentctl_swarm.chat.identity import Identity
from agentctl_swarm.chat.protocol import auth_signing_string
from agentctl_swarm.chat.server import ServerConfig, ThreadedServer


@pytest.fixture
def make_chat_server() -> Iterator[Callable[..., ThreadedServer]]:
    """Factory: ``make_chat_server(**ServerConfig fields)`` -> started ThreadedServer."""
    started: list[ThreadedServer] = []

    def _make(**overrides: Any) -> ThreadedServer:
        cfg = ServerConfig(host="127.0.0.1", port=0, **overrides)
        srv = ThreadedServer(cfg).start()
        started.append(srv)
        return srv

    yield _make
    for srv in reversed(started):
        srv.stop()


@pytest.fixture
def chat_server_handle(make_chat_server: Callable[..., ThreadedServer]) -> ThreadedServer:
    """A default server (upstream defaults, lurk gate off) on a free port."""
    return make_chat_server()


@pytest.fixture
def chat_server(chat_server_handle: ThreadedServer) -> str:
    """The ws URL of a running default server."""
    return chat_server_handle.url


class RawClient:
    """A bare websockets connection speaking raw frames (no client library)."""

    def __init__(self, ws: Any, url: str) -> None:
        self.ws = ws
        self.url = url
        self.identity: Any = None
        self.agent_id: str | None = None
        self.welcome: dict[str, Any] | None = None

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def expect(self, type_: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """Read frames until one of ``type_`` (matching ``match``) arrives; return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {type_} {match or ''} within {timeout}s")
            frame = await self.recv(remaining)
            if frame.get("type") == type_ and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def error(self, code: str, timeout: float = 5.0) -> dict[str, Any]:
        return await self.expect("ERROR", timeout, code=code)

    async def drain(self, quiet: float = 0.2) -> list[dict[str, Any]]:
        """Read until nothing arrives for ``quiet`` seconds."""
        frames = []
        while True:
            try:
                frames.append(await self.recv(quiet))
            except TimeoutError:
                return frames

    async def login(self, name: str, identity: Any = None) -> dict[str, Any]:
        """Challenge-response handshake with a (new) persistent identity."""
        self.identity = identity or Identity.generate(name)
        await self.send({"type": "IDENTIFY", "name": name, "pubkey": self.identity.public_pem})
        chal = await self.expect("CHALLENGE")
        ts = int(time.time() * 1000)
        text = auth_signing_string(chal["nonce"], chal["challenge_id"], ts)
        await self.send(
            {"type": "VERIFY_IDENTITY", "challenge_id": chal["challenge_id"], "timestamp": ts,
             "signature": self.identity.sign(text)}
        )  # fmt: skip
        self.welcome = await self.expect("WELCOME")
        self.agent_id = self.welcome["agent_id"]
        return self.welcome

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
async def raw_connect() -> Any:
    """Async factory ``await raw_connect(url, name=None)`` -> RawClient (logged in if name)."""
    clients: list[RawClient] = []

    async def _connect(url: str, name: str | None = None, **kwargs: Any) -> RawClient:
        kwargs.setdefault("max_queue", None)  # unread frames must not stall the close
        kwargs.setdefault("close_timeout", 2)
        ws = await connect(url, compression=None, **kwargs)
        client = RawClient(ws, url)
        clients.append(client)
        if name is not None:
            await client.login(name)
        return client

    yield _connect
    for c in clients:
        with contextlib.suppress(Exception):
            await c.close()


AGENTCTL = str(Path(sys.executable).with_name("agentctl"))


def start_server_process(*extra: str, port: int = 0) -> tuple[subprocess.Popen[str], str]:
    """A real ``agentctl server`` process on 127.0.0.1; returns it and the URL it printed."""
    proc = subprocess.Popen(
        [AGENTCTL, "server", "--host", "127.0.0.1", "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    if "running on" not in line:
        proc.kill()
        raise AssertionError(f"server did not start: {line!r} {proc.stderr.read()}")
    return proc, line.rsplit(" ", 1)[-1].strip()


async def closed_with(client: Any, timeout: float = 5.0) -> tuple[int | None, str | None]:
    """Wait for the server to close ``client``; return (code, reason)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await client.ws.recv()
    except ConnectionClosed as exc:
        rcvd = exc.rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, None)
