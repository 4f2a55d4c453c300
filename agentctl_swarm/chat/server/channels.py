"""Channel frames: JOIN (with replay of the buffer), LEAVE, LIST_CHANNELS, LIST_AGENTS,
CREATE_CHANNEL and INVITE.
"""

from __future__ import annotations

from typing import Any

from agentctl_swarm.chat.protocol import ErrorCode as E
from agentctl_swarm.chat.protocol import js_truthy
from agentctl_swarm.chat.server.base import CoreBase
from agentctl_swarm.chat.server.state import Channel, Conn, Send


class ChannelsMixin(CoreBase):
    """Joining, leaving, listing, creating and inviting to channels."""

    # ------------------------------------------------------------------ channels

    def _channel_or_error(self, c: Conn, name: str, now: int) -> Channel | None:
        """The channel ``name``, or None after telling ``c`` it does not exist."""
        ch = self.channels.get(name)
        if ch is None:
            self._error(c, E.CHANNEL_NOT_FOUND, f"Channel {name} not found", now)
        return ch

    def _h_join(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._auth(c, now)
        if a is None:
            return
        name = msg["channel"]
        ch = self._channel_or_error(c, name, now)
        if ch is None:
            return
        if ch.invite_only and a.id not in ch.invited:
            self._error(c, E.NOT_INVITED, f"Channel {name} is invite-only", now)
            return
        if ch.verified_only and not a.verified:
            self._error(c, E.AUTH_REQUIRED, f"Channel {name} requires verified identity", now)
            return
        rejoin = c.id in ch.members
        ch.members[c.id] = None
        a.channels[name] = None
        if not rejoin:
            self._announce_join(name, a, now)
        members = []
        for cid in ch.members:
            m = self.conns[cid].agent if cid in self.conns else None
            if m is not None:
                members.append({"id": m.at, "name": m.name, "verified": m.verified})
        self._send(c, {"type": "JOINED", "ts": now, "channel": name, "agents": members})
        for text in ch.buffer:
            self._out.append(Send([c.id], text[:-1] + ',"replay":true}'))
        if not rejoin:
            self._server_msg(name, f"{a.name} joined {name}", now)

    def _h_leave(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._auth(c, now)
        if a is None:
            return
        name = msg["channel"]
        ch = self.channels.get(name)
        if ch is None:
            return
        ch.members.pop(c.id, None)
        a.channels.pop(name, None)
        self._broadcast(
            name, {"type": "AGENT_LEFT", "ts": now, "channel": name, "agent": a.at, "name": a.name}
        )
        self._send(c, {"type": "LEFT", "ts": now, "channel": name})

    def _h_list_channels(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        lst = []
        for name, ch in self.channels.items():
            if ch.invite_only:
                continue
            item: dict[str, Any] = {"name": name, "agents": len(ch.members)}
            if ch.verified_only:
                item["verifiedOnly"] = True
            lst.append(item)
        self._send(c, {"type": "CHANNELS", "ts": now, "list": lst})

    def _h_list_agents(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        if self._auth(c, now) is None:
            return
        name = msg["channel"]
        ch = self._channel_or_error(c, name, now)
        if ch is None:
            return
        lst = []
        for cid in ch.members:
            m = self.conns[cid].agent if cid in self.conns else None
            if m is not None:
                lst.append(
                    {
                        "id": m.at,
                        "name": m.name,
                        "presence": m.presence or "online",
                        "status_text": m.status_text or None,
                        "verified": m.verified,
                    }
                )
        self._send(c, {"type": "AGENTS", "ts": now, "channel": name, "list": lst})

    def _h_create_channel(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._auth(c, now)
        if a is None:
            return
        if not a.verified:
            self._error(c, E.AUTH_REQUIRED, "Only verified agents can create channels", now)
            return
        name = msg["channel"]
        if name in self.channels:
            self._error(c, E.CHANNEL_EXISTS, f"Channel {name} already exists", now)
            return
        invite_only = js_truthy(msg.get("invite_only"))
        if invite_only and not self.cfg.private_channels:
            self._error(c, E.INVALID_MSG, "Private channels are disabled on this server", now)
            return
        ch = self._channel(name, invite_only, js_truthy(msg.get("verified_only")))
        if ch.invite_only:
            ch.invited.add(a.id)
        ch.members[c.id] = None
        a.channels[name] = None
        self.store.put("channel", name, ch.record())
        self._send(c, {"type": "JOINED", "ts": now, "channel": name, "agents": [a.at]})

    def _h_invite(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        if not self.cfg.private_channels:
            self._error(c, E.INVALID_MSG, "Private channels are disabled on this server", now)
            return
        a = self._auth(c, now)
        if a is None:
            return
        name = msg["channel"]
        ch = self._channel_or_error(c, name, now)
        if ch is None:
            return
        if name not in a.channels:
            self._error(c, E.NOT_INVITED, f"Not a member of {name}", now)
            return
        target = msg["agent"][1:]
        ch.invited.add(target)
        self.store.put("channel", name, ch.record())
        t = self.agents.get(target)
        if t is not None:
            self._send(
                t.conn,
                {
                    "type": "MSG",
                    "ts": now,
                    "from": a.at,
                    "from_name": a.name,
                    "to": msg["agent"],
                    "content": f"You have been invited to {name}",
                },
            )
