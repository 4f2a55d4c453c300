"""Marketplace frames: skill registration and search, proposals (PROPOSAL, ACCEPT,
REJECT, COMPLETE, DISPUTE) and the unsupported Agentcourt frames. The rating and
escrow arithmetic lives in :mod:`.marketplace`, the frame shapes in
:mod:`.proposal_view`.
"""

from __future__ import annotations

from typing import Any

from agentctl_swarm.chat import protocol as p
from agentctl_swarm.chat.identity import verify_signature
from agentctl_swarm.chat.protocol import ErrorCode as E
from agentctl_swarm.chat.protocol import js_truthy
from agentctl_swarm.chat.server.base import CoreBase
from agentctl_swarm.chat.server.proposal_view import (
    format_proposal,
    format_response,
    transition_error,
)
from agentctl_swarm.chat.server.state import Agent, Conn

AGENTCOURT_UNSUPPORTED = (
    "Agentcourt dispute panels are not supported by this server; use DISPUTE for a legacy dispute."
)


class MarketFramesMixin(CoreBase):
    """Skills, proposals, disputes (signed, persistent identities only)."""

    # ------------------------------------------------------------------ skills

    def _signed_actor(self, c: Conn, now: int, need_key_text: str, lurk_what: str) -> Agent | None:
        a = self._auth(c, now)
        if a is None:
            return None
        if not a.pubkey:
            self._error(c, E.SIGNATURE_REQUIRED, need_key_text, now)
            return None
        if self._lurk_error(c, a, lurk_what, now):
            return None
        return a

    def _bad_sig(self, c: Conn, a: Agent, text: str, sig: Any, now: int) -> bool:
        if isinstance(sig, str) and a.pubkey and verify_signature(a.pubkey, text, sig):
            return False
        self._error(c, E.VERIFICATION_FAILED, "Invalid signature", now)
        return True

    def _h_register_skills(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._signed_actor(
            c, now, "Skill registration requires persistent identity", "skill registration"
        )
        if a is None:
            return
        skills = msg["skills"]
        if self._bad_sig(c, a, p.sign_string_register_skills(skills), msg["sig"], now):
            return
        reg = self.market.register_skills(a.id, skills, msg["sig"], now)
        self._send(
            c,
            {
                "type": "SKILLS_REGISTERED",
                "ts": now,
                "agent_id": a.at,
                "skills_count": len(skills),
                "registered_at": reg["registered_at"],
            },
        )
        caps = ", ".join(p.js_str(s.get("capability")) for s in skills)
        self._broadcast(
            "#discovery",
            {
                "type": "MSG",
                "ts": now,
                "from": "@server",
                "from_name": "Server",
                "to": "#discovery",
                "content": f"Agent {a.at} registered {len(skills)} skill(s): {caps}",
            },
        )

    def _h_search_skills(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        if self._auth(c, now) is None:
            return
        query = msg.get("query") or {}
        results, total = self.market.search(query)
        self._send(
            c,
            {
                "type": "SEARCH_RESULTS",
                "ts": now,
                "query_id": msg.get("query_id") if js_truthy(msg.get("query_id")) else None,
                "query": query,
                "results": results,
                "total": total,
            },
        )

    # ------------------------------------------------------------------ proposals

    def _h_proposal(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._signed_actor(c, now, "Proposals require persistent identity", "proposals")
        if a is None:
            return
        sig_text = p.sign_string_proposal(
            msg["to"],
            msg["task"],
            msg.get("amount"),
            msg.get("currency"),
            msg.get("payment_code"),
            msg.get("expires"),
            msg.get("elo_stake"),
        )
        if self._bad_sig(c, a, sig_text, msg["sig"], now):
            return
        target = self.agents.get(msg["to"][1:])
        if target is None:
            self._error(c, E.AGENT_NOT_FOUND, f"Agent {msg['to']} not found", now)
            return
        task = self.redactor.clean(msg["task"])
        prop = self.market.create_proposal(msg, a.at, task, now)
        frame = {"type": "PROPOSAL", "ts": now, **format_proposal(prop)}
        self._send_many(list(dict.fromkeys([target.conn, c.id])), frame)
        amount = msg.get("amount")
        currency = p.js_str(msg["currency"]) if js_truthy(msg.get("currency")) else "ELO"
        amount_s = f" ({p.js_str(amount)} {currency})" if js_truthy(amount) else ""
        stake = msg.get("elo_stake")
        stake_s = f" [stake: {p.js_str(stake)} ELO]" if js_truthy(stake) else ""
        self._server_msg(
            "#bounties",
            f'[BOUNTY] {a.at} → {msg["to"]}: "{task}"{amount_s}{stake_s} — {prop["id"]}',
            now,
        )

    def _h_accept(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._signed_actor(
            c, now, "Accepting proposals requires persistent identity", "actions"
        )
        if a is None:
            return
        sig_text = p.sign_string_accept(
            msg["proposal_id"], msg.get("payment_code"), msg.get("elo_stake")
        )
        if self._bad_sig(c, a, sig_text, msg["sig"], now):
            return
        prop = self.market.get_proposal(msg["proposal_id"], now)
        if prop is None:
            self._error(c, E.PROPOSAL_NOT_FOUND, "Proposal not found", now)
            return
        p_stake = prop["proposer_stake"] or 0
        a_stake = msg.get("elo_stake") or 0
        if p_stake > 0:
            why = self.market.can_stake(prop["from"], p_stake)
            if why:
                self._error(c, E.INSUFFICIENT_REPUTATION, f"Proposer: {why}", now)
                return
        if a_stake > 0:
            why = self.market.can_stake(a.at, a_stake)
            if why:
                self._error(c, E.INSUFFICIENT_REPUTATION, why, now)
                return
        err = transition_error(prop, "pending", a.at, recipient_only=True, now=now)
        if err:
            self._error(c, E.INVALID_PROPOSAL, err, now)
            return
        prop.update(
            status="accepted",
            response_sig=msg["sig"],
            updated_at=now,
            response_payment_code=msg.get("payment_code"),
            acceptor_stake=a_stake,
        )
        if p_stake > 0 or a_stake > 0:
            self.market.create_escrow(prop, p_stake, a_stake, now)
            prop["stakes_escrowed"] = True
        self.market.save_proposal(prop)
        frame = {"type": "ACCEPT", "ts": now, **format_response(prop, "accept")}
        self._notify_parties(prop, c, frame, proposer_only=True)
        self._server_msg(
            "#bounties", f'[CLAIMED] {prop["id"]} accepted by {a.at} — "{prop["task"]}"', now
        )

    def _h_reject(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._signed_actor(
            c, now, "Rejecting proposals requires persistent identity", "actions"
        )
        if a is None:
            return
        if self._bad_sig(
            c, a, p.sign_string_reject(msg["proposal_id"], msg.get("reason")), msg["sig"], now
        ):
            return
        prop = self.market.get_proposal(msg["proposal_id"], now)
        err = transition_error(prop, "pending", a.at, recipient_only=True, now=None)
        if err or prop is None:
            self._error(c, E.INVALID_PROPOSAL, err or "PROPOSAL_NOT_FOUND", now)
            return
        prop.update(
            status="rejected",
            response_sig=msg["sig"],
            reject_reason=msg.get("reason"),
            updated_at=now,
        )
        self.market.save_proposal(prop)
        frame = {"type": "REJECT", "ts": now, **format_response(prop, "reject")}
        self._notify_parties(prop, c, frame, proposer_only=True)

    def _h_complete(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._signed_actor(
            c, now, "Completing proposals requires persistent identity", "actions"
        )
        if a is None:
            return
        if self._bad_sig(
            c, a, p.sign_string_complete(msg["proposal_id"], msg.get("proof")), msg["sig"], now
        ):
            return
        min_age = self.cfg.complete_min_age_ms
        existing = self.market.get_proposal(msg["proposal_id"], now)
        if min_age > 0 and existing is not None:
            age = now - existing["created_at"]
            if age < min_age:
                remaining = -(-(min_age - age) // 1000)
                self._error(
                    c,
                    E.RATE_LIMITED,
                    f"Proposal must be at least {p.js_number_str(min_age / 1000)}s old before "
                    f"completion ({remaining}s remaining)",
                    now,
                )
                return
        err = transition_error(existing, "accepted", a.at, recipient_only=False, now=None)
        if err or existing is None:
            self._error(c, E.INVALID_PROPOSAL, err or "PROPOSAL_NOT_FOUND", now)
            return
        existing.update(
            status="completed",
            completed_at=now,
            completion_proof=msg.get("proof"),
            completion_sig=msg["sig"],
            completed_by=a.at,
            updated_at=now,
        )
        changes = self.market.process_completion(existing, now)
        self.market.save_proposal(existing)
        frame = {
            "type": "COMPLETE",
            "ts": now,
            **format_response(existing, "complete"),
            "rating_changes": changes,
        }
        self._notify_parties(existing, c, frame)

    def _h_dispute(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        a = self._signed_actor(
            c, now, "Disputing proposals requires persistent identity", "actions"
        )
        if a is None:
            return
        if self._bad_sig(
            c, a, p.sign_string_dispute(msg["proposal_id"], msg["reason"]), msg["sig"], now
        ):
            return
        prop = self.market.get_proposal(msg["proposal_id"], now)
        err = transition_error(prop, "accepted", a.at, recipient_only=False, now=None)
        if err or prop is None:
            self._error(c, E.INVALID_PROPOSAL, err or "PROPOSAL_NOT_FOUND", now)
            return
        prop.update(
            status="disputed",
            dispute_reason=msg["reason"],
            dispute_sig=msg["sig"],
            disputed_by=a.at,
            disputed_at=now,
            updated_at=now,
        )
        changes = self.market.process_dispute(prop, a.at, now)
        self.market.save_proposal(prop)
        frame = {
            "type": "DISPUTE",
            "ts": now,
            **format_response(prop, "dispute"),
            "rating_changes": changes,
        }
        self._notify_parties(prop, c, frame)

    def _notify_parties(
        self, prop: dict[str, Any], c: Conn, frame: dict[str, Any], proposer_only: bool = False
    ) -> None:
        actor = c.agent.at if c.agent else ""
        if proposer_only:
            other = prop["from"]
        else:
            other = prop["to"] if prop["from"] == actor else prop["from"]
        targets = []
        o = self.agents.get(other[1:])
        if o is not None:
            targets.append(o.conn)
        if c.id not in targets:
            targets.append(c.id)
        self._send_many(targets, frame)

    # ------------------------------------------------------------------ Agentcourt (unsupported)

    def _agentcourt(self, c: Conn, msg: dict[str, Any], now: int) -> None:
        if self._auth(c, now) is None:
            return
        self._error(c, E.INVALID_MSG, AGENTCOURT_UNSUPPORTED, now)

    _h_dispute_intent = _agentcourt
    _h_dispute_reveal = _agentcourt
    _h_evidence = _agentcourt
    _h_arbiter_accept = _agentcourt
    _h_arbiter_decline = _agentcourt
    _h_arbiter_vote = _agentcourt
