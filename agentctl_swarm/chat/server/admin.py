"""Admin and moderation frames: the admin-key checks, KICK/BAN/UNBAN, MOTD, VERIFY and
the allowlist frames this server does not support.
"""

from __future__ import annotations

import hmac
from typing import Any

from agentctl_swarm.chat import protocol as p
from agentctl_swarm.chat.protocol import ErrorCode as E
from agentctl_swarm.chat.server.base import CoreBase
from agentctl_swarm.chat.server.state import Agent, Conn


def _reason_text(value: Any, default: str) -> str:
    """An admin's ``reason`` as text, as a JavaScript template would show it (frames say
    ``reason`` is a string; a client may have sent any JSON value)."""
    if isinstance(value, str):
        return value or default
    return p.js_str(value) if p.js_truthy(value) else default


class AdminMixin(CoreBase):
    """ADMIN_* frames, all gated on the configured admin key."""

    def _admin_key_ok(self, msg: dict[str, Any]) -> bool:
        key, given = self.cfg.admin_key, msg.get("admin_key")
        if not key or not isinstance(given, str) or not given:
            return False
        return hmac.compare_digest(key.encode(), given.encode())

    def _check_admin(
        self, c: Conn, msg: dict[str, Any], now: int, text: str = "Invalid admin key"
    ) -> bool:
        if not self._admin_key_ok(msg):
            self._error(c, E.AUTH_REQUIRED, text, now)
            return False
        return True

    def _check_moderation(
        self, c: Conn, msg: dict[str, Any], now: int, text: str = "Invalid admin key"
    ) -> bool:
        """Kick/ban/unban: upstream has no banlist without an admin key, and says so."""
        if not self.cfg.admin_key:
            self._error(c, E.INVALID_MSG, "Moderation not configured (no admin key)", now)
            return False
        return self._check_admin(c, msg, now, text)

    # ------------------------------------------------------------------ admin

    def _h_admin_approve(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        self._error(c, E.INVALID_MSG, "Allowlist not configured", now)

    _h_admin_revoke = _h_admin_approve
    _h_admin_list = _h_admin_approve

    def _kick(self, target: Agent, frame_type: str, reason: str, now: int) -> None:
        """As upstream: KICKED/BANNED to the target, its departure fanned out at once
        (AGENT_LEFT, "went offline") and the socket closed, all before the admin's
        ADMIN_RESULT."""
        self._send(target.conn, {"type": frame_type, "ts": now, "reason": reason})
        conn = self.conns.get(target.conn)
        if conn is not None:
            self._drop(conn, now)
        close_reason = "Kicked by admin" if frame_type == "KICKED" else "Banned by admin"
        self._close(target.conn, p.CLOSE_NORMAL, close_reason)

    def _admin_result(self, c: Conn, action: str, aid: str, now: int) -> None:
        self._send(
            c,
            {
                "type": "ADMIN_RESULT",
                "ts": now,
                "action": action,
                "success": True,
                "agentId": f"@{aid}",
            },
        )

    def _h_admin_kick(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        if not self._check_moderation(c, msg, now):
            return
        aid = msg["agent_id"].removeprefix("@")
        target = self.agents.get(aid)
        if target is None:
            self._error(c, E.AGENT_NOT_FOUND, f"Agent @{aid} not found or not online", now)
            return
        self._kick(target, "KICKED", _reason_text(msg.get("reason"), "Kicked by admin"), now)
        self._admin_result(c, "kick", aid, now)

    def _h_admin_ban(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        if not self._check_moderation(c, msg, now, "invalid admin key"):
            return
        aid = msg["agent_id"].removeprefix("@")
        # Stored as given: a later login by this id reads "You are banned" when empty.
        self.bans[aid] = {"reason": _reason_text(msg.get("reason"), ""), "at": now}
        self.store.put("ban", aid, self.bans[aid])
        target = self.agents.get(aid)
        if target is not None:
            self._kick(target, "BANNED", _reason_text(msg.get("reason"), "Banned by admin"), now)
        self._admin_result(c, "ban", aid, now)

    def _h_admin_unban(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        if not self._check_moderation(c, msg, now, "invalid admin key"):
            return
        aid = msg["agent_id"].removeprefix("@")
        if self.bans.pop(aid, None) is None:
            self._error(c, E.AGENT_NOT_FOUND, "agent not banned", now)
            return
        self.store.delete("ban", aid)
        self._admin_result(c, "unban", aid, now)

    def _h_admin_motd(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        if not self._check_admin(c, msg, now):
            return
        self.motd = msg.get("motd") or None
        self._send_many(
            [x.id for x in self.conns.values() if x.open],
            {"type": "MOTD_UPDATE", "ts": now, "motd": self.motd},
        )
        if msg.get("kick") is True:
            for x in list(self.conns.values()):
                if x.id != c.id and x.open:
                    self._close(x.id, 1001, "Server maintenance")
        self._send(
            c,
            {
                "type": "ADMIN_RESULT",
                "ts": now,
                "action": "motd",
                "success": True,
                "motd": self.motd,
                "kicked": msg.get("kick") or False,
            },
        )

    def _h_admin_verify(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        if not self._check_admin(c, msg, now):
            return
        aid = msg["agent_id"].lstrip("@")
        target = self.agents.get(aid)
        if target is None:
            self._error(c, E.AGENT_NOT_FOUND, f"Agent {msg['agent_id']} not found", now)
            return
        target.verified = msg["verified"]
        # As upstream: the agent hears a note, the admin a confirmation (both if the same).
        note = (
            "You have been granted verified status \u2713"
            if target.verified
            else "Your verified status has been revoked"
        )
        self._send(
            target.conn,
            {
                "type": "ADMIN_RESULT",
                "ts": now,
                "action": "verify",
                "success": True,
                "verified": target.verified,
                "note": note,
            },
        )
        self._send(
            c,
            {
                "type": "ADMIN_RESULT",
                "ts": now,
                "action": "verify",
                "success": True,
                "agentId": msg["agent_id"],
                "verified": msg["verified"],
            },
        )
