"""Canonical signing strings: the exact text each signed frame's Ed25519 signature covers
(pure; owl/reference/agentchat-protocol.md, "Signing").

Both sides build these strings, so a signature made by either verifies on the other. They
follow upstream's JavaScript literally: ``String(x)`` for numbers, ``x || ''`` for
optional parts (so ``0`` and ``""`` both become empty), and ``JSON.stringify`` for the
hashed lists. Signatures cover the UTF-8 bytes of the string.
"""

from __future__ import annotations

import hashlib
from typing import Any

from agentctl_swarm.chat.protocol.json_rules import js_json, js_str, js_truthy


def auth_signing_string(nonce: str, challenge_id: str, timestamp: int) -> str:
    """What VERIFY_IDENTITY signs: ``AGENTCHAT_AUTH|<nonce>|<challenge_id>|<timestamp>``."""
    return f"AGENTCHAT_AUTH|{js_str(nonce)}|{js_str(challenge_id)}|{js_str(timestamp)}"


def _or_empty(value: Any) -> str:
    return js_str(value) if js_truthy(value) else ""


def sign_string_proposal(
    to: str,
    task: str,
    amount: Any = None,
    currency: Any = None,
    payment_code: Any = None,
    expires: Any = None,
    elo_stake: Any = None,
) -> str:
    """PROPOSAL: ``to|task|amount|currency|payment_code|expires|elo_stake``; falsy -> ''.

    ``expires`` is the relative seconds value as sent, not the absolute time.
    """
    fields = [to, task, amount, currency, payment_code, expires, elo_stake]
    head = [js_str(to) if to is not None else "", js_str(task) if task is not None else ""]
    return "|".join(head + [_or_empty(v) for v in fields[2:]])


def sign_string_accept(proposal_id: str, payment_code: Any = None, elo_stake: Any = None) -> str:
    """ACCEPT: ``ACCEPT|<proposal_id>|<payment_code>|<elo_stake>`` (falsy -> '')."""
    return f"ACCEPT|{js_str(proposal_id)}|{_or_empty(payment_code)}|{_or_empty(elo_stake)}"


def sign_string_reject(proposal_id: str, reason: Any = None) -> str:
    """REJECT: ``REJECT|<proposal_id>|<reason>``."""
    return f"REJECT|{js_str(proposal_id)}|{_or_empty(reason)}"


def sign_string_complete(proposal_id: str, proof: Any = None) -> str:
    """COMPLETE: ``COMPLETE|<proposal_id>|<proof>``."""
    return f"COMPLETE|{js_str(proposal_id)}|{_or_empty(proof)}"


def sign_string_dispute(proposal_id: str, reason: str) -> str:
    """DISPUTE: ``DISPUTE|<proposal_id>|<reason>``."""
    return f"DISPUTE|{js_str(proposal_id)}|{js_str(reason)}"


def sign_string_register_skills(skills: list[Any]) -> str:
    """REGISTER_SKILLS: ``REGISTER_SKILLS|<sha256 hex of JSON.stringify(skills)>``."""
    digest = hashlib.sha256(js_json(skills).encode("utf-8")).hexdigest()
    return f"REGISTER_SKILLS|{digest}"


def sign_string_dispute_intent(proposal_id: str, reason: str, commitment: str) -> str:
    """DISPUTE_INTENT: ``DISPUTE_INTENT|<proposal_id>|<reason>|<commitment>``."""
    return f"DISPUTE_INTENT|{js_str(proposal_id)}|{js_str(reason)}|{js_str(commitment)}"


def sign_string_dispute_reveal(proposal_id: str, nonce: str) -> str:
    """DISPUTE_REVEAL: ``DISPUTE_REVEAL|<proposal_id>|<nonce>``."""
    return f"DISPUTE_REVEAL|{js_str(proposal_id)}|{js_str(nonce)}"


def sign_string_evidence(dispute_id: str, items: list[Any]) -> str:
    """EVIDENCE: ``EVIDENCE|<dispute_id>|<sha256 hex of JSON.stringify(items)>``."""
    digest = hashlib.sha256(js_json(items).encode("utf-8")).hexdigest()
    return f"EVIDENCE|{js_str(dispute_id)}|{digest}"


def sign_string_arbiter_accept(dispute_id: str) -> str:
    """ARBITER_ACCEPT: ``ARBITER_ACCEPT|<dispute_id>``."""
    return f"ARBITER_ACCEPT|{js_str(dispute_id)}"


def sign_string_arbiter_decline(dispute_id: str, reason: Any = None) -> str:
    """ARBITER_DECLINE: ``ARBITER_DECLINE|<dispute_id>|<reason>``."""
    return f"ARBITER_DECLINE|{js_str(dispute_id)}|{_or_empty(reason)}"


def sign_string_arbiter_vote(dispute_id: str, verdict: str) -> str:
    """ARBITER_VOTE: ``VOTE|<dispute_id>|<verdict>``."""
    return f"VOTE|{js_str(dispute_id)}|{js_str(verdict)}"


def sign_string_verify_response(nonce: str) -> str:
    """VERIFY_RESPONSE signs the raw nonce."""
    return nonce


def sign_string_msg(to: str, content: str, ts: int) -> str:
    """Optional MSG ``sig``: ``JSON.stringify({to, content, ts})`` (relayed, never checked)."""
    return js_json({"to": to, "content": content, "ts": ts})
