"""Message frames: MSG (fan-out, DMs, redaction, ``@@cb:`` callbacks), floor control
(RESPONDING_TO), TYPING, PING, presence and nick changes, and their timers.
"""

from __future__ import annotations

import random
import re
from typing import Any

from agentctl_swarm.chat import protocol as p
from agentctl_swarm.chat.protocol import ErrorCode as E
from agentctl_swarm.chat.protocol import js_json, js_truthy
from agentctl_swarm.chat.server.base import B36, CoreBase
from agentctl_swarm.chat.server.config import (
    CALLBACK_MAX_PAYLOAD,
    CALLBACK_MAX_PENDING,
    CALLBACK_MAX_SECONDS,
)
from agentctl_swarm.chat.server.state import Agent, Conn

_CB_PATTERN = re.compile(r"@@cb:(\d+(?:\.\d+)?)s(?:#([A-Za-z0-9_-]+))?@@([\s\S]*?)(?=@@cb:|$)")


class MessagingMixin(CoreBase):
    """MSG, callbacks, floor control, typing, presence, nick."""

    # ------------------------------------------------------------------ messages

    def _h_msg(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._auth(c, now)
        if a is None or self._lurk_error(c, a, "msg", now):
            return
        trusted = a.id in self.cfg.trusted_ids  # hook: embedded coordinator, not paced
        if self.cfg.limits_enabled and self.cfg.rate_limit_ms > 0 and not trusted:
            if c.last_msg is not None and now - c.last_msg < self.cfg.rate_limit_ms:
                self._error(
                    c, E.RATE_LIMITED, "Rate limit exceeded (max 1 message per second)", now
                )
                return
            c.last_msg = now
        text, _ = self.redactor.redact(msg["content"])
        content, has_callbacks = self._parse_callbacks(text, a, now)
        if not content and has_callbacks:
            return
        to = msg["to"]
        out: dict[str, Any] = {
            "type": "MSG",
            "ts": now,
            "from": a.at,
            "from_name": a.name,
            "to": to,
            "content": content or text,
            "msg_id": f"{now}-{''.join(random.choices(B36, k=6))}",
            "verified": a.verified,
        }
        if js_truthy(msg.get("sig")):
            out["sig"] = msg["sig"]
        if js_truthy(msg.get("in_reply_to")):
            out["in_reply_to"] = msg["in_reply_to"]
        if p.is_channel(to):
            ch = self.channels.get(to)
            if ch is None:
                self._error(c, E.CHANNEL_NOT_FOUND, f"Channel {to} not found", now)
                return
            if to not in a.channels:
                self._error(c, E.NOT_INVITED, f"Not a member of {to}", now)
                return
            for key in [k for k, v in self.floor.items() if k[0] == to and v["agent"] == a.id]:
                del self.floor[key]
            encoded = self._broadcast(to, out)
            if encoded is not None:
                self._buffer(to, encoded)
            return
        if not self.cfg.allow_dm:
            self._error(
                c, E.INVALID_MSG, "Direct messages are disabled. Use a channel instead.", now
            )
            return
        target = self.agents.get(to[1:])
        if target is None:
            self._error(c, E.AGENT_NOT_FOUND, f"Agent {to} not found", now)
            return
        self._send_many(list(dict.fromkeys([target.conn, c.id])), out)

    def _parse_callbacks(self, text: str, a: Agent, now: int) -> tuple[str, bool]:
        matches = list(_CB_PATTERN.finditer(text))
        if not matches:
            return text, False
        for m in matches:
            delay = min(float(m.group(1)), CALLBACK_MAX_SECONDS)
            payload = m.group(3).strip()
            if p.js_len(payload) > CALLBACK_MAX_PAYLOAD:
                continue
            pending = sum(1 for v in self.callbacks.values() if v["from"] == a.id)
            if pending >= CALLBACK_MAX_PENDING:
                continue
            cb_id = f"cb_{now}_{''.join(random.choices(B36, k=6))}"
            target = f"#{m.group(2)}" if m.group(2) else a.at
            self.callbacks[cb_id] = {"from": a.id, "target": target, "payload": payload}
            self._timer(now + int(delay * 1000), "callback", cb_id)
        return _CB_PATTERN.sub("", text).strip(), True

    def _t_callback(self, cb_id: str, now: int) -> None:
        cb = self.callbacks.pop(cb_id, None)
        if cb is None:
            return
        a = self.agents.get(cb["from"])
        if a is None:
            return
        if cb["target"].startswith("#") and (
            cb["target"] not in self.channels or cb["target"] not in a.channels
        ):
            return
        self._send(
            a.conn,
            {
                "type": "MSG",
                "ts": now,
                "from": "@server",
                "from_name": "server",
                "to": cb["target"],
                "content": f"@@cb-fire@@{cb['payload']}",
                "cb_id": cb_id,
                "cb_origin": a.at,
            },
        )

    def _h_file_chunk(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        self._error(c, E.INVALID_MSG, "File transfers are disabled.", now)

    def _h_ping(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        self._send(c, {"type": "PONG", "ts": now})

    def _h_typing(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = c.agent
        ch = self.channels.get(msg["channel"])
        if a is None or ch is None:
            return
        frame = {
            "type": "TYPING",
            "ts": now,
            "from": a.at,
            "from_name": a.name,
            "channel": msg["channel"],
        }
        self._broadcast(msg["channel"], frame, exclude=c.id)

    def _h_responding_to(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = c.agent
        name, msg_id, started = msg["channel"], msg["msg_id"], msg["started_at"]
        ch = self.channels.get(name)
        if a is None or ch is None:
            return
        key = (name, msg_id)
        cur = self.floor.get(key)
        if cur is not None and cur["expires"] <= now:
            cur = None
        if (
            cur is None
            or started < cur["started"]
            or (started == cur["started"] and a.id < cur["agent"])
        ):
            self.floor[key] = {
                "agent": a.id,
                "started": started,
                "expires": now + self.cfg.claim_ttl_ms,
            }
            self._timer(now + self.cfg.claim_ttl_ms, "floor", key)
            claimed = {
                "type": "FLOOR_CLAIMED",
                "ts": now,
                "msg_id": msg_id,
                "channel": name,
                "holder": a.at,
                "holder_name": a.name,
                "started_at": started,
            }
            self._broadcast(name, claimed, exclude=c.id)
            if cur is not None:
                old = self.agents.get(cur["agent"])
                if old is not None:
                    self._send(
                        old.conn,
                        {
                            "type": "YIELD",
                            "ts": now,
                            "msg_id": msg_id,
                            "channel": name,
                            "holder": a.at,
                            "holder_started_at": started,
                            "reason": "Earlier started_at timestamp",
                        },
                    )
            return
        self._send(
            c,
            {
                "type": "YIELD",
                "ts": now,
                "msg_id": msg_id,
                "channel": name,
                "holder": f"@{cur['agent']}",
                "holder_started_at": cur["started"],
                "reason": "Another agent claimed first",
            },
        )

    def _t_floor(self, key: tuple[str, str], now: int) -> None:
        cur = self.floor.get(key)
        if cur is not None and cur["expires"] <= now:
            del self.floor[key]

    # ------------------------------------------------------------------ presence, nick

    def _h_set_presence(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._auth(c, now)
        if a is None:
            return
        a.presence = msg["status"]
        a.status_text = msg.get("status_text") or None
        frame = {
            "type": "PRESENCE_CHANGED",
            "ts": now,
            "agent_id": a.at,
            "name": a.name,
            "presence": a.presence,
            "status_text": a.status_text,
        }
        seen: dict[int, None] = {}
        for name in a.channels:
            ch = self.channels.get(name)
            if ch is not None:
                for cid in ch.members:
                    if cid != c.id:
                        seen[cid] = None
        self._send_many(list(seen), frame)

    def _h_set_nick(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._auth(c, now)
        if a is None:
            return
        nick = msg["nick"].strip()
        if nick.lower() in p.RESERVED_NICKS:
            self._error(c, E.INVALID_NAME, f'Nick "{nick}" is reserved', now)
            return
        cool = self.cfg.nick_cooldown_ms
        if c.last_nick is not None and now - c.last_nick < cool:
            wait = -(-(cool - (now - c.last_nick)) // 1000)
            self._error(c, E.RATE_LIMITED, f"Nick change rate limited. Try again in {wait}s", now)
            return
        old = a.name or f"anon_{a.id}"
        a.name = nick
        c.last_nick = now
        frame = {
            "type": "NICK_CHANGED",
            "ts": now,
            "agent_id": a.at,
            "old_nick": old,
            "new_nick": nick,
        }
        text = js_json(frame)
        for name in a.channels:
            self._broadcast(name, text)
        self._send_many([c.id], text)
