"""The chat server's state machine: frames and time in, frames and closes out.

Sans-I/O: :class:`ServerCore` never touches a socket or a clock. The transport
feeds it ``connect`` / ``receive`` / ``disconnect`` / ``tick`` with the current time
in milliseconds and performs the returned :class:`Send` and :class:`Close` actions
in order. That keeps every upstream rule (handshake, takeover backoff, fan-out with
the sender's echo, replay, rate limits, floor control, callbacks, marketplace)
testable without a network and lets the transport stay a thin shell.

Persistence goes through an injected :class:`Store` (SQLite in ``--data-dir`` or in
memory). Deliberate differences from upstream are listed in owl/components/chat-server.md.

Layout: the value types are in :mod:`.state`, the shared state and output plumbing in
:mod:`.base`, and the frame handlers, grouped by concern, in the mixins
:mod:`.handshake`, :mod:`.channels`, :mod:`.messaging`, :mod:`.peer_verify`,
:mod:`.market_frames` and :mod:`.admin`. This module combines them into
:class:`ServerCore` and holds the entry points: the dispatch of frames to ``_h_<type>``
and of due timers to ``_t_<kind>``.
"""

from __future__ import annotations

import heapq
import logging
from typing import Any

from agentctl_swarm.chat import protocol as p
from agentctl_swarm.chat.protocol import ErrorCode as E
from agentctl_swarm.chat.protocol import ProtocolError
from agentctl_swarm.chat.server.admin import AdminMixin
from agentctl_swarm.chat.server.channels import ChannelsMixin
from agentctl_swarm.chat.server.handshake import DISCLAIMER, EPHEMERAL_LURK_REASON, HandshakeMixin
from agentctl_swarm.chat.server.market_frames import AGENTCOURT_UNSUPPORTED, MarketFramesMixin
from agentctl_swarm.chat.server.marketplace import iso
from agentctl_swarm.chat.server.messaging import MessagingMixin
from agentctl_swarm.chat.server.peer_verify import PeerVerifyMixin
from agentctl_swarm.chat.server.state import Agent, Channel, Close, Conn, Send, ServerAction

__all__ = [
    "AGENTCOURT_UNSUPPORTED",
    "DISCLAIMER",
    "EPHEMERAL_LURK_REASON",
    "VERSION",
    "Agent",
    "Channel",
    "Close",
    "Conn",
    "Send",
    "ServerAction",
    "ServerCore",
]

VERSION = "0.36.19-agentctl"

log = logging.getLogger("agentctl.chat.server")


class ServerCore(
    HandshakeMixin,
    ChannelsMixin,
    MessagingMixin,
    PeerVerifyMixin,
    MarketFramesMixin,
    AdminMixin,
):
    """All server state and rules; see the module docstring."""

    # ------------------------------------------------------------------ entry points

    def next_deadline(self) -> int | None:
        """When ``tick`` next has work, in ms (None if no timer is pending)."""
        return self._timers[0][0] if self._timers else None

    def connect(
        self, conn: int, ip: str, now: int, user_agent: str | None = None
    ) -> list[ServerAction]:
        """A socket opened. Enforces the per-IP connection cap.

        ``user_agent`` (the HTTP header) and the time are kept for /api/connections.
        """
        agent = p.clean_text(user_agent) if user_agent else "unknown"  # headers may hold any bytes
        c = Conn(conn, ip, connected_at=now, user_agent=agent)
        self.conns[conn] = c
        cap = self.cfg.max_connections_per_ip
        if cap > 0 and sum(1 for x in self.conns.values() if x.ip == ip and x.open) > cap:
            self._close(conn, p.CLOSE_POLICY, "Too many connections from this IP")
        return self._take()

    def disconnect(self, conn: int, now: int) -> list[ServerAction]:
        """A socket closed (for any reason); clean up and tell the others."""
        c = self.conns.pop(conn, None)
        if c is not None:
            c.open = False
            self._drop(c, now)
        return self._take()

    def receive(self, conn: int, text: str, now: int) -> list[ServerAction]:
        """One text frame from a socket."""
        c = self.conns.get(conn)
        if c is None or not c.open:
            return []
        try:
            p.check_frame_size(text)
        except ProtocolError as exc:
            self._error(c, exc.code, exc.message, now)
            return self._take()
        if self.cfg.limits_enabled and not (c.agent and c.agent.id in self.cfg.trusted_ids):
            window = c.frames
            while window and now - window[0] >= self.cfg.flood_window_ms:
                window.popleft()
            window.append(now)
            limit = self.cfg.flood_max_post_auth if c.agent else self.cfg.flood_max_pre_auth
            if len(window) > limit:
                self._close(conn, p.CLOSE_POLICY, "Rate limit exceeded")
                return self._take()
        try:
            msg = p.decode_client_dict(text)
        except ProtocolError as exc:
            self._error(c, exc.code, exc.message, now)
            return self._take()
        handler = getattr(self, "_h_" + msg["type"].lower(), None)
        if handler is None:  # a validated type without a handler cannot happen
            self._error(c, E.INVALID_MSG, f"Unknown message type: {msg['type']}", now)
            return self._take()
        try:
            handler(c, msg, now)
        except Exception as exc:
            # A bug must cost the sender one frame, never its socket or anyone else's.
            log.error(
                "chat.handler_failed",
                exc_info=True,
                extra={"event": "chat.handler_failed", "frame_type": msg["type"], "error": exc},
            )
            self._error(c, E.INVALID_MSG, f"Internal error while handling {msg['type']}", now)
        return self._take()

    def tick(self, now: int) -> list[ServerAction]:
        """Fire every timer that is due."""
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, payload = heapq.heappop(self._timers)
            try:
                getattr(self, "_t_" + kind)(payload, now)
            except Exception as exc:  # one failed timer must not stop the others
                log.error(
                    "chat.timer_failed",
                    exc_info=True,
                    extra={"event": "chat.timer_failed", "timer": kind, "error": exc},
                )
        return self._take()

    def shutdown_conns(self) -> list[int]:
        """Connections still open (the transport closes them on shutdown)."""
        return [c.id for c in self.conns.values() if c.open]

    # ------------------------------------------------------------------ health

    def health(self, now: int) -> dict[str, Any]:
        """The /health document (upstream's fields)."""
        agents = list(self.agents.values())
        return {
            "status": "healthy",
            "server": self.cfg.name,
            "version": VERSION,
            "uptime_seconds": (now - self.started_at) // 1000,
            "started_at": iso(self.started_at),
            "agents": {
                "connected": len(agents),
                "with_identity": sum(1 for a in agents if a.pubkey),
            },
            "channels": {
                "total": len(self.channels),
                "public": sum(1 for ch in self.channels.values() if not ch.invite_only),
            },
            "proposals": self.market.stats(),
            "timestamp": iso(now),
        }

    def connections(self) -> list[dict[str, Any]]:
        """Admin view for /api/connections: identified agents only, upstream's fields
        (``agent_id`` without ``@``; no geo fields: there is no GeoIP lookup here),
        plus ``name`` and ``channels``."""
        out = []
        for a in self.agents.values():
            c = self.conns.get(a.conn)
            if c is None:
                continue
            out.append(
                {
                    "agent_id": a.id,
                    "ip": c.ip,
                    "connected_at": c.connected_at,
                    "user_agent": c.user_agent,
                    "name": a.name,
                    "channels": list(a.channels),
                }
            )
        return out
