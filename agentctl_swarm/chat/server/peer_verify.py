"""Peer verification frames: VERIFY_REQUEST / VERIFY_RESPONSE (one agent asks another to
sign a nonce with its persistent key) and the request timeout.
"""

from __future__ import annotations

import secrets
from typing import Any

from agentctl_swarm.chat.identity import verify_signature
from agentctl_swarm.chat.protocol import ErrorCode as E
from agentctl_swarm.chat.server.base import CoreBase
from agentctl_swarm.chat.server.marketplace import base36
from agentctl_swarm.chat.server.state import Conn


class PeerVerifyMixin(CoreBase):
    """VERIFY_REQUEST / VERIFY_RESPONSE and their timeout."""

    # ------------------------------------------------------------------ peer verification

    def _h_verify_request(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._auth(c, now)
        if a is None:
            return
        target = self.agents.get(msg["target"][1:])
        if target is None:
            self._error(c, E.AGENT_NOT_FOUND, f"Agent {msg['target']} not found", now)
            return
        if not target.pubkey:
            self._error(c, E.NO_PUBKEY, f"Agent {msg['target']} has no persistent identity", now)
            return
        rid = f"verify_{base36(now)}_{secrets.token_hex(4)}"
        self.verifications[rid] = {
            "from": c.id,
            "target": msg["target"],
            "pubkey": target.pubkey,
            "nonce": msg["nonce"],
        }
        self._timer(now + self.cfg.verify_request_timeout_ms, "verify", rid)
        self._send(
            target.conn,
            {
                "type": "VERIFY_REQUEST",
                "ts": now,
                "request_id": rid,
                "from": a.at,
                "nonce": msg["nonce"],
            },
        )
        self._send(
            c,
            {
                "type": "VERIFY_REQUEST",
                "ts": now,
                "request_id": rid,
                "target": msg["target"],
                "status": "pending",
            },
        )

    def _t_verify(self, rid: str, now: int) -> None:
        req = self.verifications.pop(rid, None)
        if req is not None:
            self._send(
                req["from"],
                {
                    "type": "VERIFY_FAILED",
                    "ts": now,
                    "request_id": rid,
                    "target": req["target"],
                    "reason": "Verification timed out",
                },
            )

    def _h_verify_response(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._auth(c, now)
        if a is None:
            return
        if not a.pubkey:
            self._error(
                c,
                E.SIGNATURE_REQUIRED,
                "Responding to verification requires persistent identity",
                now,
            )
            return
        rid = msg["request_id"]
        req = self.verifications.get(rid) if isinstance(rid, str) else None
        if req is None:
            self._error(c, E.VERIFICATION_EXPIRED, "Verification request not found or expired", now)
            return
        if req["target"] != a.at:
            self._error(c, E.INVALID_MSG, "You are not the target of this verification", now)
            return
        if msg["nonce"] != req["nonce"]:
            self._error(c, E.INVALID_MSG, "Nonce mismatch", now)
            return
        del self.verifications[rid]
        if verify_signature(req["pubkey"], req["nonce"], msg["sig"]):
            self._send(
                req["from"],
                {
                    "type": "VERIFY_SUCCESS",
                    "ts": now,
                    "request_id": rid,
                    "agent": req["target"],
                    "pubkey": req["pubkey"],
                },
            )
            self._send(
                c, {"type": "VERIFY_SUCCESS", "ts": now, "request_id": rid, "verified": True}
            )
        else:
            self._send(
                req["from"],
                {
                    "type": "VERIFY_FAILED",
                    "ts": now,
                    "request_id": rid,
                    "target": req["target"],
                    "reason": "Invalid signature",
                },
            )
            self._send(
                c, {"type": "VERIFY_FAILED", "ts": now, "request_id": rid, "verified": False}
            )
