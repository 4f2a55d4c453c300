"""Pure helpers for proposal frames: upstream's transition error strings and the
field selection of PROPOSAL / ACCEPT / REJECT / COMPLETE / DISPUTE frames."""

from __future__ import annotations

from typing import Any


def transition_error(
    prop: dict[str, Any] | None, want: str, actor: str, *, recipient_only: bool, now: int | None
) -> str | None:
    """Upstream ProposalStore error strings for accept/reject/complete/dispute."""
    if prop is None:
        return "PROPOSAL_NOT_FOUND"
    if prop["status"] != want:
        return "PROPOSAL_NOT_PENDING" if want == "pending" else "PROPOSAL_NOT_ACCEPTED"
    if recipient_only and prop["to"] != actor:
        return "NOT_PROPOSAL_RECIPIENT"
    if not recipient_only and actor not in (prop["from"], prop["to"]):
        return "NOT_PROPOSAL_PARTY"
    if now is not None and prop["expires"] and now > prop["expires"]:
        prop["status"] = "expired"
        prop["updated_at"] = now
        return "PROPOSAL_EXPIRED"
    return None


def format_proposal(prop: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "from",
        "to",
        "task",
        "amount",
        "currency",
        "payment_code",
        "terms",
        "expires",
        "status",
        "created_at",
        "sig",
    )
    out = {k: prop[k] for k in keys}
    out["elo_stake"] = prop["proposer_stake"]
    return out


def format_response(prop: dict[str, Any], kind: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "proposal_id": prop["id"],
        "status": prop["status"],
        "updated_at": prop["updated_at"],
    }
    stakes = {"proposer": prop["proposer_stake"] or 0, "acceptor": prop["acceptor_stake"] or 0}
    if kind == "accept":
        base.update(
            {
                "from": prop["from"],
                "to": prop["to"],
                "payment_code": prop["response_payment_code"],
                "sig": prop["response_sig"],
                "proposer_stake": prop["proposer_stake"],
                "acceptor_stake": prop["acceptor_stake"],
            }
        )
    elif kind == "reject":
        base.update(
            {
                "from": prop["from"],
                "to": prop["to"],
                "reason": prop.get("reject_reason"),
                "sig": prop["response_sig"],
            }
        )
    elif kind == "complete":
        base.update(
            {
                "from": prop["from"],
                "to": prop["to"],
                "completed_by": prop.get("completed_by"),
                "completed_at": prop["completed_at"],
                "proof": prop["completion_proof"],
                "sig": prop.get("completion_sig"),
                "elo_stakes": stakes,
            }
        )
    elif kind == "dispute":
        base.update(
            {
                "from": prop["from"],
                "to": prop["to"],
                "disputed_by": prop.get("disputed_by"),
                "disputed_at": prop.get("disputed_at"),
                "reason": prop["dispute_reason"],
                "sig": prop.get("dispute_sig"),
                "elo_stakes": stakes,
            }
        )
    return base
