"""Marketplace calls: signed skill registration, skill search and the proposal
lifecycle (PROPOSAL, ACCEPT, REJECT, COMPLETE, DISPUTE).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from agentctl_swarm.chat import protocol
from agentctl_swarm.chat.client.base import _type_is
from agentctl_swarm.chat.client.errors import ChatError
from agentctl_swarm.chat.client.outgoing import OutgoingMixin


class MarketCallsMixin(OutgoingMixin):
    """The public marketplace API; every call but search is signed."""

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


def _proposal_reply(kind: str, proposal_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("type") == kind and f.get("proposal_id") == proposal_id
