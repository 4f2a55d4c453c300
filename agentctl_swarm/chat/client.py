"""Asyncio AgentChat client: handshake, channels, messages, marketplace, reconnect.

Why it is built this way:

* One supervisor task owns the socket. When the connection drops it reconnects with
  jittered exponential backoff (1 s doubling to 30 s), re-joins the channels the caller
  joined, and only then lets queued messages flow again, so nothing sent while cut off
  is lost or sent to a channel the new socket has not joined yet.
* Outgoing MSGs pass a token bucket matching the server's limit (1 per second, no
  burst) and every frame passes a sliding window below the server's flood limit (60
  frames / 10 s, which *closes* the socket). Callers never see ``RATE_LIMITED``.
* The protocol has no request ids, so request/response calls are serialised and,
  where the server may stay silent (LEAVE, presence, claim), followed by an app-level
  PING: frames on one socket are answered in order, so once PONG is back any ERROR
  for the request has arrived too.
* WebSocket pings from the server are answered by ``websockets`` itself; our own pings
  (every 20 s) detect a dead peer and trigger the reconnect.
* ``SESSION_DISPLACED`` (another socket took over this identity) ends the client: it
  does not fight the new session by reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from agentctl_swarm.chat import protocol
from agentctl_swarm.chat.backoff import Backoff
from agentctl_swarm.chat.identity import Identity
from agentctl_swarm.chat.ratelimit import (
    FRAME_LIMIT_AUTHED,
    FRAME_WINDOW_S,
    MSG_BURST,
    MSG_INTERVAL_S,
    SlidingWindow,
    TokenBucket,
)

log = logging.getLogger(__name__)

__all__ = [
    "AgentChatClient",
    "ChatError",
    "ConnectError",
    "Displaced",
    "NotConnected",
    "ServerError",
]

#: Largest frame upstream accepts (``maxPayload``); we accept the same size inbound.
MAX_FRAME = 2 * 1024 * 1024
#: The server holds a taking-over socket up to 60 s before WELCOME (§2.5).
HANDSHAKE_TIMEOUT_S = 90.0
#: Handshake errors after which retrying cannot help.
_FATAL_HANDSHAKE = {"NOT_ALLOWED", "BANNED", "INVALID_MSG", "CAPTCHA_FAILED"}
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


class ChatError(Exception):
    """Base of every error this client raises."""


class ConnectError(ChatError):
    """The server could not be reached or the handshake failed."""


class NotConnected(ChatError):
    """The client is not connected (never connected, closed, or gave up)."""


class Displaced(ChatError):
    """Another connection took over this identity (``SESSION_DISPLACED``)."""


class ServerError(ChatError):
    """The server answered with an ``ERROR`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


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


class AgentChatClient:
    """One agent's connection to an AgentChat server.

    Use as ``async with AgentChatClient(url, identity) as c: ...`` or call
    :meth:`connect` / :meth:`close`. Iterate (``async for frame in c``) to receive every
    frame after WELCOME; iteration ends when the client is closed, displaced, or gives
    up reconnecting.
    """

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
        self.backoff = backoff or Backoff()
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

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AgentChatClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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
        """
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

    # ------------------------------------------------------------------ marketplace

    def _sign(self, text: str) -> str:
        if self.identity is None or not self.identity.has_private_key:
            raise ChatError("this operation is signed and needs a persistent identity")
        return self.identity.sign(text)

    async def register_skills(self, skills: list[dict[str, Any]]) -> dict[str, Any]:
        """Signed REGISTER_SKILLS; return SKILLS_REGISTERED."""
        sig = self._sign(protocol.sign_string_register_skills(skills))
        return await self._request(
            {"type": "REGISTER_SKILLS", "skills": skills, "sig": sig},
            _type_is("SKILLS_REGISTERED"),
        )

    async def search_skills(
        self, query: dict[str, Any], query_id: str | None = None
    ) -> dict[str, Any]:
        """SEARCH_SKILLS; return SEARCH_RESULTS."""
        qid = query_id or f"q{random.getrandbits(32):08x}"
        return await self._request(
            {"type": "SEARCH_SKILLS", "query": query, "query_id": qid},
            lambda f: f.get("type") == "SEARCH_RESULTS" and f.get("query_id") in (qid, None),
        )

    async def propose(
        self,
        to: str,
        task: str,
        *,
        amount: float | None = None,
        currency: str | None = None,
        payment_code: str | None = None,
        terms: str | None = None,
        expires: int | None = None,
        elo_stake: int | None = None,
        capability: str | None = None,
    ) -> dict[str, Any]:
        """Signed PROPOSAL to an online agent; return the echoed PROPOSAL (with ``id``)."""
        target = to if to.startswith("@") else f"@{to}"
        frame: dict[str, Any] = {"type": "PROPOSAL", "to": target, "task": task}
        optional = {
            "amount": amount,
            "currency": currency,
            "payment_code": payment_code,
            "terms": terms,
            "expires": expires,
            "elo_stake": elo_stake,
            "capability": capability,
        }
        frame.update({k: v for k, v in optional.items() if v is not None})
        frame["sig"] = self._sign(
            protocol.sign_string_proposal(
                target, task, amount, currency, payment_code, expires, elo_stake
            )
        )
        me = self.agent_id
        return await self._request(
            frame,
            lambda f: f.get("type") == "PROPOSAL" and f.get("from") == me and f.get("to") == target,
        )

    async def accept(
        self, proposal_id: str, *, payment_code: str | None = None, elo_stake: int | None = None
    ) -> dict[str, Any]:
        """Signed ACCEPT; return the ACCEPT frame."""
        frame: dict[str, Any] = {"type": "ACCEPT", "proposal_id": proposal_id}
        if payment_code is not None:
            frame["payment_code"] = payment_code
        if elo_stake is not None:
            frame["elo_stake"] = elo_stake
        frame["sig"] = self._sign(protocol.sign_string_accept(proposal_id, payment_code, elo_stake))
        return await self._request(frame, _proposal_reply("ACCEPT", proposal_id))

    async def reject(self, proposal_id: str, reason: str | None = None) -> dict[str, Any]:
        """Signed REJECT; return the REJECT frame."""
        frame: dict[str, Any] = {"type": "REJECT", "proposal_id": proposal_id}
        if reason is not None:
            frame["reason"] = reason
        frame["sig"] = self._sign(protocol.sign_string_reject(proposal_id, reason))
        return await self._request(frame, _proposal_reply("REJECT", proposal_id))

    async def complete(self, proposal_id: str, proof: str | None = None) -> dict[str, Any]:
        """Signed COMPLETE; return the COMPLETE frame (with ``rating_changes``)."""
        frame: dict[str, Any] = {"type": "COMPLETE", "proposal_id": proposal_id}
        if proof is not None:
            frame["proof"] = proof
        frame["sig"] = self._sign(protocol.sign_string_complete(proposal_id, proof))
        return await self._request(frame, _proposal_reply("COMPLETE", proposal_id))

    async def dispute(self, proposal_id: str, reason: str) -> dict[str, Any]:
        """Signed DISPUTE; return the DISPUTE frame (with ``rating_changes``)."""
        frame: dict[str, Any] = {
            "type": "DISPUTE",
            "proposal_id": proposal_id,
            "reason": reason,
            "sig": self._sign(protocol.sign_string_dispute(proposal_id, reason)),
        }
        return await self._request(frame, _proposal_reply("DISPUTE", proposal_id))

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
            )
        except InvalidURI:
            raise ConnectError(
                f"{self.url}: not a WebSocket URL; use ws://HOST:PORT or wss://HOST:PORT"
            ) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ConnectError(
                f"cannot reach AgentChat server at {self.url}: {_reason(exc)}"
            ) from None
        try:
            welcome = await asyncio.wait_for(self._handshake(ws), self.handshake_timeout)
        except TimeoutError:
            await ws.close()
            raise ConnectError(
                f"{self.url}: no WELCOME within {self.handshake_timeout:.0f} s"
            ) from None
        except ConnectionClosed as exc:
            raise ConnectError(
                f"{self.url}: server closed the connection during the handshake "
                f"({_close_reason(exc)})"
            ) from None
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
                raise ConnectError(f"{self.url}: handshake refused: {err}") from err
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
        self.backoff.reset()
        while not self.closed:
            delay = self.backoff.next()
            log.info("agentchat: reconnecting to %s in %.1f s", self.url, delay)
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
                log.warning("agentchat: could not re-join %s: %s", channel, exc)
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
        except ConnectionClosed:
            raise NotConnected(f"connection to {self.url} lost") from None

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
        except TimeoutError:
            raise ChatError(
                f"no reply to {frame.get('type')} from {self.url} within "
                f"{self.request_timeout:.0f} s"
            ) from None
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


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen: callers may have stopped waiting for it."""
    if not fut.cancelled():
        fut.exception()


def _type_is(kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("type") == kind


def _proposal_reply(kind: str, proposal_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("type") == kind and f.get("proposal_id") == proposal_id


def _decode(raw: str | bytes) -> dict[str, Any] | None:
    """Server frames are JSON objects; anything else is logged and skipped."""
    try:
        return protocol.decode_server_frame(raw)
    except protocol.ProtocolError as exc:
        log.warning("agentchat: ignoring a bad server frame (%s)", exc)
        return None


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
