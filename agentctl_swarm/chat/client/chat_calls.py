"""Chat calls: channels, presence, nick, floor claims, PING, and queued MSG sends."""

from __future__ import annotations

import asyncio
from typing import Any

from agentctl_swarm.chat import protocol
from agentctl_swarm.chat.client.base import _now_ms, _Outgoing, _type_is
from agentctl_swarm.chat.client.errors import ChatError, Displaced
from agentctl_swarm.chat.client.outgoing import OutgoingMixin


class ChatCallsMixin(OutgoingMixin):
    """The public chat API (everything but the marketplace)."""

    # ------------------------------------------------------------------ chat calls

    async def join(self, channel: str) -> dict[str, Any]:
        """JOIN a channel; return JOINED. Its replayed history arrives in the iterator."""
        reply = await self._request(
            {"type": "JOIN", "channel": channel},
            lambda f: f.get("type") == "JOINED" and f.get("channel") == channel,
        )
        self.channels.add(channel)
        return reply

    async def leave(self, channel: str) -> None:
        """LEAVE a channel (the server is silent when it does not exist)."""
        self.channels.discard(channel)
        await self._request({"type": "LEAVE", "channel": channel}, None)

    async def create_channel(
        self, channel: str, *, invite_only: bool = False, verified_only: bool = False
    ) -> dict[str, Any]:
        """CREATE_CHANNEL (needs a verified agent); return the JOINED reply."""
        frame: dict[str, Any] = {"type": "CREATE_CHANNEL", "channel": channel}
        if invite_only:
            frame["invite_only"] = True
        if verified_only:
            frame["verified_only"] = True
        reply = await self._request(
            frame, lambda f: f.get("type") == "JOINED" and f.get("channel") == channel
        )
        self.channels.add(channel)
        return reply

    async def list_channels(self) -> list[dict[str, Any]]:
        """LIST_CHANNELS; the ``list`` of ``{name, agents, verifiedOnly?}``."""
        reply = await self._request({"type": "LIST_CHANNELS"}, _type_is("CHANNELS"))
        return list(reply.get("list") or [])

    async def list_agents(self, channel: str) -> list[dict[str, Any]]:
        """LIST_AGENTS of a channel; the ``list`` of ``{id, name, presence, ...}``."""
        reply = await self._request(
            {"type": "LIST_AGENTS", "channel": channel},
            lambda f: f.get("type") == "AGENTS" and f.get("channel") == channel,
        )
        return list(reply.get("list") or [])

    async def set_presence(self, status: str, status_text: str | None = None) -> None:
        """SET_PRESENCE (online, away, busy, offline or listening)."""
        frame: dict[str, Any] = {"type": "SET_PRESENCE", "status": status}
        if status_text is not None:
            frame["status_text"] = status_text
        await self._request(frame, None)

    async def set_nick(self, nick: str) -> dict[str, Any] | None:
        """SET_NICK; return NICK_CHANGED (None if the server stayed silent)."""
        reply = await self._request(
            {"type": "SET_NICK", "nick": nick}, None, collect=_type_is("NICK_CHANGED")
        )
        if reply:
            self.name = str(reply[0].get("new_nick") or nick)
        return reply[0] if reply else None

    async def claim(
        self, msg_id: str, channel: str, started_at: int | None = None
    ) -> dict[str, Any] | None:
        """RESPONDING_TO (floor claim). Return a YIELD frame if the floor was refused
        straight away, else None (granted, as far as the server said so far)."""
        frame = {
            "type": "RESPONDING_TO",
            "msg_id": msg_id,
            "channel": channel,
            "started_at": started_at if started_at is not None else _now_ms(),
        }
        got = await self._request(
            frame,
            None,
            collect=lambda f: f.get("type") == "YIELD" and f.get("msg_id") == msg_id,
        )
        return got[0] if got else None

    async def ping(self) -> dict[str, Any]:
        """App-level PING; return PONG."""
        return await self._request({"type": "PING"}, _type_is("PONG"))

    async def send(
        self,
        to: str,
        content: str,
        *,
        in_reply_to: str | None = None,
        wait: bool = False,
        echo: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any] | None:
        """Queue a MSG; it is paced by the token bucket and survives reconnects.

        * default: return at once (the message is queued);
        * ``wait=True``: return once it was written to a socket;
        * ``echo=True``: return the server's echo of it (carrying ``msg_id``), or raise
          :class:`ServerError` if the server refused it. ``timeout`` bounds the wait
          (TimeoutError); the message stays queued.

        Text is sent as the wire carries it: a lone surrogate becomes U+FFFD here, so one
        odd string can never fail to encode or sign later inside the send loop.
        """
        to, content = protocol.clean_text(to), protocol.clean_text(content)
        if in_reply_to is not None:
            in_reply_to = protocol.clean_text(in_reply_to)
        if self.displaced:
            raise Displaced(f"{self.agent_id} was displaced by another connection")
        if self._done.is_set():
            raise self._final_error()
        if protocol.js_len(content) > protocol.MAX_CONTENT_CHARS:
            # The server would refuse it (or close the socket for the frame size).
            raise ChatError(
                f"message is {protocol.js_len(content)} chars; the server allows "
                f"{protocol.MAX_CONTENT_CHARS}"
            )
        loop = asyncio.get_running_loop()
        item = _Outgoing(
            to=to,
            content=content,
            in_reply_to=in_reply_to,
            written=loop.create_future(),
            echo=loop.create_future() if echo else None,
        )
        for fut in (item.written, item.echo):
            if fut is not None:
                fut.add_done_callback(_retrieve)
        self._outbox.append(item)
        self._outbox_changed.set()
        if echo:
            assert item.echo is not None
            return await asyncio.wait_for(asyncio.shield(item.echo), timeout)
        if wait:
            await asyncio.wait_for(asyncio.shield(item.written), timeout)
        return None

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued MSG has been written."""
        pending = [o.written for o in self._outbox]
        if pending:
            await asyncio.wait_for(asyncio.gather(*pending), timeout)

    async def send_raw(self, frame: dict[str, Any]) -> None:
        """Write any frame as-is (paced by the frame window; waits for a connection)."""
        await self._write(frame)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen: callers may have stopped waiting for it."""
    if not fut.cancelled():
        fut.exception()
