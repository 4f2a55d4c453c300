"""The connection side: opening a socket and the IDENTIFY/CHALLENGE/WELCOME
handshake, the supervisor that reconnects with backoff and re-joins channels, and
the read loop that routes every server frame to a waiting request or the inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from agentctl_swarm.chat import protocol
from agentctl_swarm.chat.client.base import _now_ms
from agentctl_swarm.chat.client.errors import (
    BadServerUrl,
    ChatError,
    ConnectError,
    Displaced,
    HandshakeRefused,
    NotConnected,
    ServerError,
)
from agentctl_swarm.chat.client.outgoing import OutgoingMixin
from agentctl_swarm.core.logs import log_event

log = logging.getLogger("agentctl.chat.client")

#: Largest frame upstream accepts (``maxPayload``); we accept the same size inbound.
MAX_FRAME = protocol.MAX_PAYLOAD
#: Handshake errors after which retrying cannot help.
_FATAL_HANDSHAKE = {"NOT_ALLOWED", "BANNED", "INVALID_MSG", "CAPTCHA_FAILED"}


class ConnectionMixin(OutgoingMixin):
    """Socket lifecycle: handshake, supervision, reconnect, reading."""

    # ------------------------------------------------------------------ internals: I/O

    async def _open(self) -> tuple[ClientConnection, dict[str, Any]]:
        """Open a socket and run the handshake; return it with the WELCOME frame."""
        try:
            ws = await websockets.connect(
                self.url,
                open_timeout=self.open_timeout,
                max_size=MAX_FRAME + 1024,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=2,
                logger=log,
            )
        except InvalidURI as exc:
            raise BadServerUrl(
                f"{self.url}: not a WebSocket URL; use ws://HOST:PORT or wss://HOST:PORT"
            ) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ConnectError(
                f"cannot reach AgentChat server at {self.url}: {_reason(exc)}"
            ) from exc
        try:
            welcome = await asyncio.wait_for(self._handshake(ws), self.handshake_timeout)
        except TimeoutError as exc:
            await ws.close()
            raise ConnectError(
                f"{self.url}: no WELCOME within {self.handshake_timeout:.0f} s"
            ) from exc
        except ConnectionClosed as exc:
            raise ConnectError(
                f"{self.url}: server closed the connection during the handshake "
                f"({_close_reason(exc)})"
            ) from exc
        except BaseException:
            await ws.close()
            raise
        return ws, welcome

    async def _handshake(self, ws: ClientConnection) -> dict[str, Any]:
        identify: dict[str, Any] = {"type": "IDENTIFY", "name": self.name}
        if self.identity is not None:
            identify["pubkey"] = self.identity.public_pem
        await ws.send(protocol.encode(identify))
        early: list[dict[str, Any]] = []
        while True:
            frame = _decode(await ws.recv())
            if frame is None:
                continue
            kind = frame.get("type")
            if kind == "CHALLENGE" and self.identity is not None:
                ts = _now_ms()
                text = protocol.auth_signing_string(
                    str(frame.get("nonce")), str(frame.get("challenge_id")), ts
                )
                await ws.send(
                    protocol.encode(
                        {
                            "type": "VERIFY_IDENTITY",
                            "challenge_id": frame.get("challenge_id"),
                            "signature": self.identity.sign(text),
                            "timestamp": ts,
                        }
                    )
                )
            elif kind == "WELCOME":
                for f in early:
                    self._deliver(f)
                return frame
            elif kind == "ERROR":
                code = str(frame.get("code"))
                err = ServerError(code, str(frame.get("message")))
                await ws.close()
                raise HandshakeRefused(f"{self.url}: handshake refused: {err}") from err
            else:
                early.append(frame)

    def _adopt(self, ws: ClientConnection, welcome: dict[str, Any]) -> None:
        self._ws = ws
        self.welcome = welcome
        self.agent_id = str(welcome.get("agent_id"))
        self.name = str(welcome.get("name") or self.name)
        # A fresh socket starts with fresh server-side limits.
        self._bucket.reset()
        self._window.reset()

    async def _supervise(self, ws: ClientConnection) -> None:
        """Read the socket; on loss, reconnect with backoff, re-join, release the queue."""
        try:
            first = True
            while True:
                reader = asyncio.create_task(self._read_loop(ws))
                if not first:
                    with contextlib.suppress(ChatError, ConnectionClosed, TimeoutError):
                        await self._rejoin()
                    if not reader.done():
                        self._ready.set()
                        self._outbox_changed.set()
                first = False
                await reader
                self._ready.clear()
                self._fail_waiters(NotConnected(f"connection to {self.url} lost"))
                if self.closed or self.displaced or not self.reconnect:
                    return
                got = await self._reconnect_loop()
                if got is None:
                    return
                ws = got
        finally:
            self._finish(self._final_error())

    async def _reconnect_loop(self) -> ClientConnection | None:
        """Wait, try, wait longer: the next socket, or None when retrying cannot help.

        A plain loop over the client's :class:`~agentctl_swarm.core.backoff.Backoff` rather
        than tenacity: the first try also waits (jittered), so a fleet that lost its
        server does not reconnect in lock-step, and fatal handshake errors end it.
        """
        self.backoff.reset()
        while not self.closed:
            delay = self.backoff.next()
            log_event(log, "chat.client.reconnecting", url=self.url, delay_s=round(delay, 3))
            await asyncio.sleep(delay)
            try:
                ws, welcome = await self._open()
            except ConnectError as exc:
                self.last_error = exc
                cause = exc.__cause__
                if isinstance(cause, ServerError) and cause.code in _FATAL_HANDSHAKE:
                    return None
                continue
            self._adopt(ws, welcome)
            self.reconnects += 1
            return ws
        return None

    async def _rejoin(self) -> None:
        self.rejoined = []
        for channel in sorted(self.channels):
            try:
                await self._request(
                    {"type": "JOIN", "channel": channel},
                    lambda f, c=channel: f.get("type") == "JOINED" and f.get("channel") == c,
                    require_ready=False,
                )
                self.rejoined.append(channel)
            except ServerError as exc:
                # E.g. a created channel that did not survive a server restart.
                log_event(
                    log,
                    "chat.client.rejoin_failed",
                    level=logging.WARNING,
                    channel=channel,
                    error=exc,
                )
                self.channels.discard(channel)

    async def _read_loop(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                frame = _decode(raw)
                if frame is not None:
                    self._dispatch(frame)
        except ConnectionClosed as exc:
            self.last_error = exc

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "SESSION_DISPLACED":
            self.displaced = True
            self.last_error = Displaced(str(frame.get("reason") or "session displaced"))
        if kind == "MSG":
            msg_id = frame.get("msg_id")
            if isinstance(msg_id, str):
                if frame.get("replay") and msg_id in self._seen_ids:
                    return  # already delivered before a reconnect
                self._seen_ids[msg_id] = None
                while len(self._seen_ids) > 20_000:
                    self._seen_ids.popitem(last=False)
        consumed = False
        for waiter in list(self._waiters):
            if waiter.future.done():
                continue
            if waiter.collect_match is not None and waiter.collect_match(frame):
                waiter.collect.append(frame)
            if kind == "ERROR" and waiter.takes_error(str(frame.get("code"))):
                waiter.future.set_exception(
                    ServerError(str(frame.get("code")), str(frame.get("message")))
                )
                consumed = True
                break
            if waiter.match(frame):
                waiter.future.set_result(frame)
                consumed = kind not in ("MSG", "PROPOSAL", "SESSION_DISPLACED")
                break
        if not consumed:
            self._deliver(frame)

    def _deliver(self, frame: dict[str, Any]) -> None:
        if self._inbox.qsize() >= self._max_inbox:
            with contextlib.suppress(asyncio.QueueEmpty):
                self._inbox.get_nowait()  # drop the oldest rather than grow without bound
        self._inbox.put_nowait(frame)


def _decode(raw: str | bytes) -> dict[str, Any] | None:
    """Server frames are JSON objects under the wire's JSON rules; anything else (not
    JSON, non-finite numbers, nesting too deep) is logged and skipped, never raised into
    the read loop."""
    try:
        frame = protocol.decode_server_frame(raw)
    except protocol.ProtocolError as exc:
        log_event(log, "chat.client.bad_frame", level=logging.WARNING, error=exc.message)
        return None
    if frame["type"] == "ERROR" and not isinstance(frame.get("code"), str):
        # An ERROR without a code answers no request; taken as one it would fail
        # whatever call happens to be waiting (a JOIN, a PING) with a garbage error.
        log_event(log, "chat.client.bad_frame", level=logging.WARNING, error="ERROR without a code")
        return None
    return frame


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text


def _close_reason(exc: ConnectionClosed) -> str:
    rcvd = exc.rcvd
    if rcvd is None:
        return "no close frame"
    return f"code {rcvd.code}" + (f" {rcvd.reason}" if rcvd.reason else "")
