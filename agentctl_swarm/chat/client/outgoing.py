"""The outgoing side: paced frame writes, serialised request/response exchanges (a
PING closes exchanges the server may answer with silence), and the MSG send loop
that drains the queue through the token bucket while connected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from agentctl_swarm.chat import protocol
from agentctl_swarm.chat.client.base import ClientBase, _now_ms, _type_is, _Waiter
from agentctl_swarm.chat.client.errors import ChatError, Displaced, NotConnected

#: ERROR codes that can answer a MSG.
_MSG_ERRORS = frozenset(
    {
        "NOT_INVITED",
        "CHANNEL_NOT_FOUND",
        "LURK_MODE",
        "RATE_LIMITED",
        "INVALID_MSG",
        "AUTH_REQUIRED",
    }
)
_ANY_ERROR: frozenset[str] = frozenset()  # empty = every code


class OutgoingMixin(ClientBase):
    """Writing frames and waiting for their replies."""

    async def _write(self, frame: dict[str, Any], *, require_ready: bool = True) -> None:
        if require_ready:
            await self.wait_connected(self.request_timeout)
        ws = self._ws
        if ws is None:
            raise NotConnected(f"not connected to {self.url}")
        wait = self._window.reserve(time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            await ws.send(protocol.encode(frame))
        except ConnectionClosed as exc:
            raise NotConnected(f"connection to {self.url} lost") from exc

    async def _request(
        self,
        frame: dict[str, Any],
        match: Callable[[dict[str, Any]], bool] | None,
        *,
        collect: Callable[[dict[str, Any]], bool] | None = None,
        require_ready: bool = True,
    ) -> Any:
        """Send ``frame`` and wait for its reply (``match``) or an ERROR.

        With ``match=None`` a PING follows and the PONG closes the exchange; the frames
        accepted by ``collect`` on the way are returned as a list.
        """
        if self.displaced:
            raise Displaced(f"{self.agent_id} was displaced by another connection")
        if not require_ready:
            # Re-join during a reconnect: user requests are parked until ready.
            return await self._exchange(frame, match, collect, require_ready=False)
        async with self._req_lock:
            await self.wait_connected(self.request_timeout)
            return await self._exchange(frame, match, collect, require_ready=True)

    async def _exchange(
        self,
        frame: dict[str, Any],
        match: Callable[[dict[str, Any]], bool] | None,
        collect: Callable[[dict[str, Any]], bool] | None,
        *,
        require_ready: bool,
    ) -> Any:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(
            match=match or _type_is("PONG"),
            error_codes=_ANY_ERROR,
            future=loop.create_future(),
            collect_match=collect,
        )
        self._waiters.append(waiter)
        try:
            await self._write(frame, require_ready=require_ready)
            if match is None:
                await self._write({"type": "PING"}, require_ready=require_ready)
            reply = await asyncio.wait_for(waiter.future, self.request_timeout)
        except TimeoutError as exc:
            raise ChatError(
                f"no reply to {frame.get('type')} from {self.url} within "
                f"{self.request_timeout:.0f} s"
            ) from exc
        finally:
            self._drop_waiter(waiter)
        return waiter.collect if match is None else reply

    async def _send_loop(self) -> None:
        """Write queued MSGs in order, one token per message, only while connected."""
        while True:
            if not self._outbox:
                self._outbox_changed.clear()
                await self._outbox_changed.wait()
                continue
            await self._ready.wait()
            wait = self._bucket.reserve(time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
            if not self._ready.is_set() or not self._outbox:
                continue
            item = self._outbox[0]
            ts = _now_ms()
            frame: dict[str, Any] = {
                "type": "MSG",
                "to": item.to,
                "content": item.content,
                "ts": ts,
            }
            if item.in_reply_to:
                frame["in_reply_to"] = item.in_reply_to
            if self.identity is not None and self.identity.has_private_key:
                frame["sig"] = self.identity.sign(
                    protocol.sign_string_msg(item.to, item.content, ts)
                )
            waiter = None
            if item.echo is not None:
                me, target = self.agent_id, item.to
                waiter = _Waiter(
                    match=lambda f, me=me, target=target: (
                        f.get("type") == "MSG"
                        and f.get("from") == me
                        and f.get("to") == target
                        and not f.get("replay")
                    ),
                    error_codes=_MSG_ERRORS,
                    future=item.echo,
                )
                self._waiters.append(waiter)
            try:
                await self._write(frame, require_ready=False)
            except NotConnected:
                if waiter is not None:
                    self._waiters.remove(waiter)
                continue  # stays queued; flushed after the reconnect
            self._outbox.popleft()
            if not item.written.done():
                item.written.set_result(None)
            if waiter is not None:
                item.echo.add_done_callback(lambda _f, w=waiter: self._drop_waiter(w))  # type: ignore[union-attr]
