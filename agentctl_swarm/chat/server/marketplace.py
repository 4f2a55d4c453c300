"""Marketplace state: proposals, ELO reputation with escrowed stakes, skills registry.

Follows upstream's arithmetic exactly (start 1200, floor 100, K 32/24/16 by
transaction count, amount-scaled K, completion gains halved and diminished per
pair, dispute loss/transfer/burn of stakes), because agents compare the
``rating_changes`` they receive. Unlike upstream, proposals are persisted too, so a
restart loses nothing. Rounding uses JavaScript's ``Math.round`` (half up).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agentctl_swarm.chat.protocol import js_number_str, js_truthy
from agentctl_swarm.chat.server.store import Store

ELO_DIVISOR = 400
#: Every agent's starting rating, and the floor no loss goes below (upstream's values).
DEFAULT_RATING = 1200
RATING_FLOOR = 100


def js_round(x: float) -> int:
    """JavaScript ``Math.round``: halves go up."""
    return math.floor(x + 0.5)


def base36(n: int) -> str:
    """Non-negative int in base 36, like ``n.toString(36)``."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def iso(now_ms: int) -> str:
    """ISO-8601 like ``new Date(ms).toISOString()``."""
    dt = datetime.fromtimestamp(now_ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now_ms % 1000:03d}Z"


def expected_score(self_rating: float, other_rating: float) -> float:
    """ELO expected score."""
    return 1 / (1 + 10 ** ((other_rating - self_rating) / ELO_DIVISOR))


def k_factor(transactions: int) -> int:
    """32 below 30 transactions, 24 below 100, then 16."""
    if transactions < 30:
        return 32
    if transactions < 100:
        return 24
    return 16


def effective_k(base_k: float, amount: float) -> float:
    """K scaled up to 3x by the logarithm of the proposal amount."""
    if not amount or amount <= 0:
        return base_k
    return base_k * min(1 + math.log10(amount + 1), 3)


def completion_gain(self_r: float, other_r: float, k: float, amount: float) -> int:
    """Full (un-halved) rating gain for a completion."""
    return max(1, js_round(effective_k(k, amount) * (1 - expected_score(self_r, other_r))))


def dispute_loss(self_r: float, other_r: float, k: float, amount: float) -> int:
    """Rating loss (negative) for the party at fault in a dispute."""
    return -max(1, js_round(effective_k(k, amount) * expected_score(self_r, other_r)))


def _num(value: Any) -> float:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


@dataclass
class Market:
    """Reputation, escrows, proposals and skills, written through to the store."""

    store: Store
    pair_cooldown_ms: int = 3_600_000
    ratings: dict[str, dict[str, Any]] = field(default_factory=dict)
    escrows: dict[str, dict[str, Any]] = field(default_factory=dict)
    proposals: dict[str, dict[str, Any]] = field(default_factory=dict)
    skills: dict[str, dict[str, Any]] = field(default_factory=dict)
    _completion_log: dict[str, int] = field(default_factory=dict)
    _pair_count: dict[str, int] = field(default_factory=dict)

    def load(self) -> None:
        """Read everything persisted back into memory."""
        self.ratings = self.store.load("rating")
        self.escrows = self.store.load("escrow")
        self.proposals = self.store.load("proposal")
        self.skills = self.store.load("skills")

    # ---- reputation

    @staticmethod
    def _norm(agent_id: str) -> str:
        return agent_id if agent_id.startswith("@") else f"@{agent_id}"

    def get_rating(self, agent_id: str) -> dict[str, Any]:
        """``{rating, transactions, updated}``; 1200/0 for an unknown agent."""
        rec = self.ratings.get(self._norm(agent_id))
        if rec is None:
            return {"rating": DEFAULT_RATING, "transactions": 0, "updated": None}
        return rec

    def skill_rating(self, agent_id: str, capability: str) -> dict[str, Any]:
        """Per-skill rating, falling back to the agent's rating with 0 transactions."""
        rec = self.ratings.get(self._norm(agent_id))
        if not rec or capability not in (rec.get("skills") or {}):
            return {
                "rating": rec["rating"] if rec else DEFAULT_RATING,
                "transactions": 0,
                "updated": None,
            }
        return rec["skills"][capability]

    def escrowed(self, agent_id: str) -> float:
        """Stake currently locked in active escrows."""
        aid = self._norm(agent_id)
        total: float = 0
        for e in self.escrows.values():
            if e["status"] == "active":
                if e["from"]["agent_id"] == aid:
                    total += e["from"]["stake"]
                if e["to"]["agent_id"] == aid:
                    total += e["to"]["stake"]
        return total

    def available(self, agent_id: str) -> float:
        """Rating that can still be staked (above the floor, minus escrow)."""
        return max(0, self.get_rating(agent_id)["rating"] - self.escrowed(agent_id) - RATING_FLOOR)

    def can_stake(self, agent_id: str, amount: float) -> str | None:
        """None if ``amount`` can be staked, else upstream's reason text."""
        if not amount or amount <= 0:
            return None
        avail = self.available(agent_id)
        if amount > avail:
            return f"Insufficient ELO. Available: {_js_num(avail)}, Requested: {_js_num(amount)}"
        return None

    def _update(self, agent_id: str, change: float, now: int) -> dict[str, Any]:
        aid = self._norm(agent_id)
        rec = self.ratings.setdefault(
            aid, {"rating": DEFAULT_RATING, "transactions": 0, "updated": None}
        )
        rec["rating"] = max(RATING_FLOOR, rec["rating"] + change)
        rec["transactions"] += 1
        rec["updated"] = iso(now)
        return rec

    def _save_ratings(self, *agent_ids: str) -> None:
        for aid in agent_ids:
            self.store.put("rating", self._norm(aid), self.ratings[self._norm(aid)])

    def _settle_escrow(self, proposal_id: str, reason: str, now: int) -> dict[str, Any] | None:
        e = self.escrows.get(proposal_id)
        if e is None or e["status"] != "active":
            return None
        e.update(status="settled", settled_at=now, settlement_reason=reason)
        self.store.put("escrow", proposal_id, e)
        return e

    def process_completion(self, prop: dict[str, Any], now: int) -> dict[str, Any] | None:
        """Both parties gain (halved, diminishing per pair); stakes are returned.

        Returns None when the same pair completed within the cooldown, as upstream
        (whose error is swallowed and shows up as ``rating_changes: null``).
        """
        p1, p2 = prop["from"], prop["to"]
        amount = _num(prop.get("amount")) or 0
        pair = "|".join(sorted([self._norm(p1), self._norm(p2)]))
        last = self._completion_log.get(pair)
        if last is not None and now - last < self.pair_cooldown_ms:
            return None
        r1, r2 = self.get_rating(p1), self.get_rating(p2)
        old1, old2 = r1["rating"], r2["rating"]
        full1 = completion_gain(old1, old2, k_factor(r1["transactions"]), amount)
        full2 = completion_gain(old2, old1, k_factor(r2["transactions"]), amount)
        count = self._pair_count.get(pair, 0) + 1
        self._pair_count[pair] = count
        g1 = max(1, js_round(full1 / 2 * (1 / count)))
        g2 = max(1, js_round(full2 / 2 * (1 / count)))
        self._completion_log[pair] = now
        escrow = self._settle_escrow(prop["id"], "completed", now)
        u1 = self._update(p1, g1, now)
        u2 = self._update(p2, g2, now)
        self._save_ratings(p1, p2)
        result: dict[str, Any] = {
            p1: {
                "oldRating": old1,
                "newRating": u1["rating"],
                "change": g1,
                "transactions": u1["transactions"],
            },
            p2: {
                "oldRating": old2,
                "newRating": u2["rating"],
                "change": g2,
                "transactions": u2["transactions"],
            },
        }
        if escrow is not None:
            result["_escrow"] = {
                "proposer_stake": escrow["from"]["stake"],
                "acceptor_stake": escrow["to"]["stake"],
                "settlement": "returned",
            }
        return result

    def process_dispute(self, prop: dict[str, Any], disputed_by: str, now: int) -> dict[str, Any]:
        """The party not disputing is at fault: loses ELO and its stake to the other."""
        p1, p2 = prop["from"], prop["to"]
        amount = _num(prop.get("amount")) or 0
        r1, r2 = self.get_rating(p1), self.get_rating(p2)
        old1, old2 = r1["rating"], r2["rating"]
        k1, k2 = k_factor(r1["transactions"]), k_factor(r2["transactions"])
        escrow = self.escrows.get(prop["id"])
        s1 = s2 = 0
        if escrow is not None and escrow["status"] == "active":
            s1 = (
                escrow["from"]["stake"]
                if escrow["from"]["agent_id"] == self._norm(p1)
                else (escrow["to"]["stake"])
            )
            s2 = (
                escrow["from"]["stake"]
                if escrow["from"]["agent_id"] == self._norm(p2)
                else (escrow["to"]["stake"])
            )
        stakes = {
            "proposer_stake": escrow["from"]["stake"] if escrow else 0,
            "acceptor_stake": escrow["to"]["stake"] if escrow else 0,
        }
        # The party that did not file the dispute loses rating and its stake to the other.
        p1_at_fault = disputed_by != p1
        if p1_at_fault:
            old_f, old_w, k_f, stake_f, winner = old1, old2, k1, s1, p2
        else:
            old_f, old_w, k_f, stake_f, winner = old2, old1, k2, s2, p1
        loss = dispute_loss(old_f, old_w, k_f, amount)
        change_f, change_w = loss - stake_f, js_round(abs(loss) * 0.5) + stake_f
        c1, c2 = (change_f, change_w) if p1_at_fault else (change_w, change_f)
        settlement = {
            **stakes,
            "settlement": "transferred",
            "transferred_to": winner,
            "transferred_amount": stake_f,
        }
        self._settle_escrow(prop["id"], "disputed", now)
        u1 = self._update(p1, c1, now)
        u2 = self._update(p2, c2, now)
        self._save_ratings(p1, p2)
        return {
            p1: {
                "oldRating": old1,
                "newRating": u1["rating"],
                "change": c1,
                "transactions": u1["transactions"],
            },
            p2: {
                "oldRating": old2,
                "newRating": u2["rating"],
                "change": c2,
                "transactions": u2["transactions"],
            },
            "_escrow": settlement,
        }

    # ---- proposals

    def create_proposal(self, msg: dict[str, Any], from_id: str, task: str, now: int) -> dict:
        """Store a new pending proposal; ``expires`` becomes absolute ms."""
        pid = f"prop_{base36(now)}_{secrets.token_hex(4)}"
        expires = msg.get("expires")
        prop = {
            "id": pid,
            "from": from_id,
            "to": msg["to"],
            "task": task,
            "amount": msg.get("amount") if js_truthy(msg.get("amount")) else None,
            "currency": msg.get("currency") if js_truthy(msg.get("currency")) else None,
            "payment_code": msg.get("payment_code") if js_truthy(msg.get("payment_code")) else None,
            "terms": msg.get("terms") if js_truthy(msg.get("terms")) else None,
            "capability": msg.get("capability") if js_truthy(msg.get("capability")) else None,
            "expires": now + expires * 1000 if js_truthy(expires) else None,
            "status": "pending",
            "created_at": now,
            "updated_at": now,
            "sig": msg["sig"],
            "proposer_stake": msg.get("elo_stake") if js_truthy(msg.get("elo_stake")) else None,
            "acceptor_stake": None,
            "stakes_escrowed": False,
            "response_sig": None,
            "response_payment_code": None,
            "completed_at": None,
            "completion_proof": None,
            "dispute_reason": None,
        }
        self.proposals[pid] = prop
        self.save_proposal(prop)
        return prop

    def save_proposal(self, prop: dict[str, Any]) -> None:
        """Persist one proposal."""
        self.store.put("proposal", prop["id"], prop)

    def get_proposal(self, pid: Any, now: int) -> dict[str, Any] | None:
        """A proposal, marking a pending one expired once its time has passed."""
        prop = self.proposals.get(pid) if isinstance(pid, str) else None
        if prop is None:
            return None
        if prop["expires"] and now > prop["expires"] and prop["status"] == "pending":
            prop["status"] = "expired"
            prop["updated_at"] = now
            self.save_proposal(prop)
        return prop

    def create_escrow(self, prop: dict[str, Any], p_stake: float, a_stake: float, now: int) -> None:
        """Lock both stakes until the proposal completes or is disputed."""
        self.escrows[prop["id"]] = {
            "proposal_id": prop["id"],
            "created_at": now,
            "from": {"agent_id": self._norm(prop["from"]), "stake": p_stake or 0},
            "to": {"agent_id": self._norm(prop["to"]), "stake": a_stake or 0},
            "status": "active",
            "expires_at": prop["expires"],
            "settled_at": None,
            "settlement_reason": None,
        }
        self.store.put("escrow", prop["id"], self.escrows[prop["id"]])

    def stats(self) -> dict[str, Any]:
        """Proposal counts for /health."""
        by_status: dict[str, int] = {}
        agents: set[str] = set()
        for prop in self.proposals.values():
            by_status[prop["status"]] = by_status.get(prop["status"], 0) + 1
            agents.update((prop["from"], prop["to"]))
        return {"total": len(self.proposals), "byStatus": by_status, "agents": len(agents)}

    # ---- skills

    def register_skills(self, agent_id: str, skills: list[Any], sig: str, now: int) -> dict:
        """Replace an agent's skill list."""
        reg = {"agent_id": f"@{agent_id}", "skills": skills, "registered_at": now, "sig": sig}
        self.skills[agent_id] = reg
        self.store.put("skills", agent_id, reg)
        return reg

    def search(self, query: Any) -> tuple[list[dict[str, Any]], int]:
        """Upstream's search: substring capability, max_rate, currency; ELO-sorted."""
        q = query if isinstance(query, dict) else {}
        cap_q = q.get("capability")
        results: list[dict[str, Any]] = []
        for reg in self.skills.values():
            for skill in reg["skills"]:
                if not isinstance(skill, dict):
                    continue
                if js_truthy(cap_q) and str(cap_q).lower() not in str(skill["capability"]).lower():
                    continue
                max_rate, rate = q.get("max_rate"), skill.get("rate")
                if (
                    "max_rate" in q
                    and "rate" in skill
                    and _is_num(rate)
                    and _is_num(max_rate)
                    and rate > max_rate
                ):
                    continue
                cur_q, cur = q.get("currency"), skill.get("currency")
                if js_truthy(cur_q) and js_truthy(cur) and str(cur).lower() != str(cur_q).lower():
                    continue
                results.append(
                    {"agent_id": reg["agent_id"], **skill, "registered_at": reg["registered_at"]}
                )
        for r in results:
            ar = self.get_rating(r["agent_id"])
            sr = self.skill_rating(r["agent_id"], r["capability"])
            r["agent_rating"] = ar["rating"]
            r["agent_transactions"] = ar["transactions"]
            r["skill_rating"] = sr["rating"]
            r["skill_transactions"] = sr["transactions"]
            r["skill_updated"] = sr["updated"]
        results.sort(
            key=lambda r: (
                -(r["skill_rating"] or 0),
                -(r["agent_rating"] or 0),
                -r["registered_at"],
            )
        )
        limit = q.get("limit") if js_truthy(q.get("limit")) and _is_num(q.get("limit")) else 50
        return results[: max(0, int(limit))], len(results)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _js_num(v: float) -> str:
    return js_number_str(v)
