""":class:`AgentChatClient`: the chat, marketplace and connection parts combined, plus
the lifecycle (connect, close, ``async with``) and the receiving side (``async for``,
:meth:`~AgentChatClient.recv`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from agentctl_swarm.chat.client.chat_calls import ChatCallsMixin
from agentctl_swarm.chat.client.connection import ConnectionMixin
from agentctl_swarm.chat.client.errors import ChatError, NotConnected
from agentctl_swarm.chat.client.market_calls import MarketCallsMixin


class AgentChatClient(ChatCallsMixin, MarketCallsMixin, ConnectionMixin):
    """One agent's connection to an AgentChat server.

    Use as ``async with AgentChatClient(url, identity) as c: ...`` or call
    :meth:`connect` / :meth:`close`. Iterate (``async for frame in c``) to receive every
    frame after WELCOME; iteration ends when the client is closed, displaced, or gives
    up reconnecting.
    """

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AgentChatClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> dict[str, Any]:
        """Connect and handshake once (no retry); return the WELCOME frame.

        Raises :class:`ConnectError` naming the URL when the server is unreachable or
        refuses the handshake. Afterwards the client reconnects on its own.
        """
        if self._tasks:
            raise ChatError("connect() called twice")
        ws, welcome = await self._open()
        self._adopt(ws, welcome)
        self._ready.set()
        self._tasks = [
            asyncio.create_task(self._supervise(ws), name=f"agentchat-supervise-{self.name}"),
            asyncio.create_task(self._send_loop(), name=f"agentchat-send-{self.name}"),
        ]
        return welcome

    async def close(self) -> None:
        """Close the socket and stop reconnecting; pending futures fail with NotConnected."""
        self.closed = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._finish(NotConnected("client closed"))

    async def wait_closed(self) -> None:
        """Wait until the client has finished for good (closed, displaced or gave up)."""
        await self._done.wait()

    # ------------------------------------------------------------------ receiving

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            frame = await self._inbox.get()
            if frame is None:
                self._inbox.put_nowait(None)  # keep later iterators ending too
                return
            yield frame

    async def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Next frame, or None on timeout or once the client has finished."""
        try:
            if timeout is not None and timeout <= 0:
                frame = self._inbox.get_nowait()  # wait_for(0) would never return a frame
            else:
                frame = await asyncio.wait_for(self._inbox.get(), timeout)
        except (TimeoutError, asyncio.QueueEmpty):
            return None
        if frame is None:
            self._inbox.put_nowait(None)
        return frame
