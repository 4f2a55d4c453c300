"""Fixtures for the coordinator's integration tests: real servers, a coordinator, and
peers that speak the coordination grammar like runners and people do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from agentctl_swarm.chat.client import AgentChatClient
from agentctl_swarm.chat.identity import Identity
from agentctl_swarm.coordinator import grammar as g
from tests.chat.conftest import make_chat_server, raw_connect  # noqa: F401  (fixtures)

CHANNEL = "#work"


class Peer:
    """A chat client on the work channel that records every coordination line it sees
    (with the frame it came in) and can say lines: a runner, a person, an observer."""

    def __init__(self, url: str, name: str, channel: str = CHANNEL) -> None:
        self.name = name
        self.channel = channel
        self.client = AgentChatClient(url, Identity.generate(name))
        self.seen: list[tuple[dict[str, Any], g.Message]] = []
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Peer:
        await self.client.connect()
        await self.client.join(self.channel)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for frame in self.client:
            if frame.get("type") == "MSG" and frame.get("to") == self.channel:
                for msg in g.parse_message(frame.get("content")):
                    self.seen.append((frame, msg))
                self._changed.set()

    async def say(self, line: str) -> dict[str, Any]:
        echo = await self.client.send(self.channel, line, echo=True, timeout=30)
        assert echo is not None
        return echo

    async def wait_for(self, pred: Callable[[g.Message], bool], timeout: float = 30.0) -> g.Message:
        """The first message seen (ever) that matches; waits for one to arrive."""
        async with asyncio.timeout(timeout):
            while True:
                for _, msg in self.seen:
                    if pred(msg):
                        return msg
                self._changed.clear()
                await self._changed.wait()

    def lines(self, kind: type[g.Message], **fields: Any) -> list[g.Message]:
        return [
            m for _, m in self.seen
            if isinstance(m, kind) and all(getattr(m, k) == v for k, v in fields.items())
        ]  # fmt: skip

    async def close(self) -> None:
        await self.client.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


@pytest.fixture
async def peers():
    """Factory ``await peers(url, name)`` -> started Peer; all closed at teardown."""
    made: list[Peer] = []

    async def _make(url: str, name: str, channel: str = CHANNEL) -> Peer:
        peer = await Peer(url, name, channel).start()
        made.append(peer)
        return peer

    yield _make
    for peer in made:
        with contextlib.suppress(Exception):
            await peer.close()
