"""State and plumbing shared by every frame handler of the server core.

:class:`CoreBase` owns the server state (connections, agents, channels, timers,
pending challenges, floor claims, callbacks, bans) and the primitives every handler
uses to queue output (:meth:`~CoreBase._send`, :meth:`~CoreBase._broadcast`, ...).
The handler mixins (:mod:`.handshake`, :mod:`.channels`, :mod:`.messaging`,
:mod:`.peer_verify`, :mod:`.market_frames`, :mod:`.admin`) build on it and
:class:`~agentctl_swarm.chat.server.core.ServerCore` combines them.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Any

from agentctl_swarm.chat import protocol as p
from agentctl_swarm.chat.protocol import ErrorCode as E
from agentctl_swarm.chat.protocol import js_json
from agentctl_swarm.chat.server.config import (
    BUILTIN_CHANNELS,
    BUILTIN_VERIFIED_CHANNELS,
    ServerConfig,
)
from agentctl_swarm.chat.server.marketplace import Market, iso
from agentctl_swarm.chat.server.state import Agent, Channel, Close, Conn, Send, ServerAction
from agentctl_swarm.chat.server.store import Store
from agentctl_swarm.core.redact import Redactor

#: Alphabet of the random parts of agent, message and callback ids.
B36 = "abcdefghijklmnopqrstuvwxyz0123456789"


class CoreBase:
    """Server state and output plumbing; see the module docstring."""

    def __init__(self, config: ServerConfig, store: Store | None = None, now: int = 0) -> None:
        self.cfg = config
        self.store = store if store is not None else Store(None)
        self.started_at = now
        self.conns: dict[int, Conn] = {}
        self.agents: dict[str, Agent] = {}
        self.channels: dict[str, Channel] = {}
        self.challenges: dict[str, dict[str, Any]] = {}
        self.verifications: dict[str, dict[str, Any]] = {}
        self.takeover_backoff: dict[str, tuple[int, int]] = {}
        self.floor: dict[tuple[str, str], dict[str, Any]] = {}
        self.callbacks: dict[str, dict[str, Any]] = {}
        self.motd = config.motd
        self._timers: list[tuple[int, int, str, Any]] = []
        self._seq = itertools.count()
        self._out: list[ServerAction] = []
        self.redactor = Redactor(
            env=config.environ,
            extra=[
                ("admin_key", config.admin_key or ""),
                *(("secret", s) for s in config.extra_secrets),
            ],
        )
        self.market = Market(self.store, pair_cooldown_ms=config.pair_cooldown_ms)
        self.market.load()
        self.first_seen: dict[str, int] = self.store.load("first_seen")
        self.bans: dict[str, dict[str, Any]] = self.store.load("ban")
        for name in BUILTIN_CHANNELS:
            self._channel(name)
        for name in BUILTIN_VERIFIED_CHANNELS:
            self._channel(name, verified_only=True)
        for name in config.extra_channels:  # hook: the coordinator's work channel
            self._channel(name)
        for name, rec in self.store.load("channel").items():
            ch = self._channel(name, rec.get("invite_only", False), rec.get("verified_only", False))
            ch.invited.update(rec.get("invited", []))
        for name, frames in self.store.load_messages().items():
            if name in self.channels:
                self.channels[name].buffer.extend(frames[-config.buffer_size :])

    # ------------------------------------------------------------------ plumbing

    def _channel(
        self, name: str, invite_only: bool = False, verified_only: bool = False
    ) -> Channel:
        ch = self.channels.get(name)
        if ch is None:
            ch = Channel(name, bool(invite_only), bool(verified_only))
            ch.buffer = deque(maxlen=max(1, self.cfg.buffer_size))
            self.channels[name] = ch
        return ch

    def _take(self) -> list[ServerAction]:
        out, self._out = self._out, []
        return out

    def _send(self, conn: int | Conn, frame: dict[str, Any]) -> None:
        cid = conn.id if isinstance(conn, Conn) else conn
        c = self.conns.get(cid)
        if c is not None and c.open:
            self._out.append(Send([cid], js_json(frame)))

    def _send_many(self, conns: list[int], frame: dict[str, Any] | str) -> None:
        live = [c for c in conns if (x := self.conns.get(c)) is not None and x.open]
        if live:
            text = frame if isinstance(frame, str) else js_json(frame)
            self._out.append(Send(live, text))

    def _error(self, conn: int | Conn, code: str, message: str, now: int) -> None:
        self._send(conn, p.make_error(code, message, now))

    def _close(self, conn: int, code: int, reason: str) -> None:
        c = self.conns.get(conn)
        if c is not None and c.open:
            c.open = False
            self._out.append(Close(conn, code, reason))

    def _announce_join(self, name: str, a: Agent, now: int) -> None:
        """AGENT_JOINED to the channel's other members (JOIN and auto-join at WELCOME)."""
        self._broadcast(
            name,
            {
                "type": "AGENT_JOINED",
                "ts": now,
                "channel": name,
                "agent": a.at,
                "name": a.name,
                "verified": a.verified,
            },
            exclude=a.conn,
        )

    def _broadcast(
        self, channel: str, frame: dict[str, Any] | str, exclude: int | None = None
    ) -> str | None:
        ch = self.channels.get(channel)
        if ch is None:
            return None
        text = frame if isinstance(frame, str) else js_json(frame)
        targets = [c for c in ch.members if c != exclude]
        self._send_many(targets, text)
        return text

    def _buffer(self, channel: str, text: str) -> None:
        ch = self.channels.get(channel)
        if ch is None:
            return
        ch.buffer.append(text)
        if self.cfg.data_dir is not None:
            self.store.append_message(channel, text, self.cfg.buffer_size)

    def _server_msg(self, channel: str, content: str, now: int) -> None:
        if channel not in self.channels:
            return
        frame = {
            "type": "MSG",
            "ts": now,
            "from": "@server",
            "from_name": "Server",
            "to": channel,
            "content": content,
        }
        text = self._broadcast(channel, frame)
        if text is not None:
            self._buffer(channel, text)

    def _timer(self, due: int, kind: str, payload: Any) -> None:
        heapq.heappush(self._timers, (due, next(self._seq), kind, payload))

    # ------------------------------------------------------------------ helpers

    def _auth(self, c: Conn, now: int) -> Agent | None:
        if c.agent is None:
            self._error(c, E.AUTH_REQUIRED, "Must IDENTIFY first", now)
        return c.agent

    def _is_lurking(self, a: Agent, now: int) -> bool:
        if a.lurk and a.lurk_until and now >= a.lurk_until:
            a.lurk = False
        return a.lurk

    def _drop(self, c: Conn, now: int) -> None:
        """Upstream's _handleDisconnect."""
        for cid, ch in list(self.challenges.items()):
            if ch["conn"] == c.id:
                del self.challenges[cid]
        a = c.agent
        for name, ch in self.channels.items():
            if c.id in ch.members:
                del ch.members[c.id]
                if a is not None:
                    self._broadcast(
                        name, {"type": "AGENT_LEFT", "ts": now, "channel": name, "agent": a.at}
                    )
        if a is None:
            return
        c.agent = None
        self._server_msg("#general", f"{a.name or a.id} went offline", now)
        if self.agents.get(a.id) is a:
            del self.agents[a.id]
        for cb_id in [k for k, v in self.callbacks.items() if v["from"] == a.id]:
            del self.callbacks[cb_id]
        for key in [k for k, v in self.floor.items() if v["agent"] == a.id]:
            del self.floor[key]

    def _lurk_error(self, c: Conn, a: Agent, what: str, now: int) -> bool:
        """Send LURK_MODE and return True if ``a`` may not act yet."""
        if not self._is_lurking(a, now):
            return False
        if what == "msg":
            reason = (
                f"New identity — sending unlocks at {iso(a.lurk_until)}"
                if a.lurk_until
                else "Persistent identity required to send messages"
            )
        else:
            reason = f"New identity — {what} unlock at {iso(a.lurk_until)}"
            if what == "skill registration":
                reason = f"New identity — skill registration unlocks at {iso(a.lurk_until)}"
        self._error(c, E.LURK_MODE, reason, now)
        return True
