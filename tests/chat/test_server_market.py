"""Marketplace over real sockets: signed skills, proposals and the ELO changes upstream applies."""

from __future__ import annotations

import pytest

from agentctl_swarm.chat import protocol as p

pytestmark = pytest.mark.timeout(60)


async def register(client, skills):
    await client.send({"type": "REGISTER_SKILLS", "skills": skills,
                       "sig": client.identity.sign(p.sign_string_register_skills(skills))})  # fmt: skip
    return await client.expect("SKILLS_REGISTERED")


async def propose(client, to, task, **extra):
    sig = client.identity.sign(
        p.sign_string_proposal(to, task, extra.get("amount"), extra.get("currency"),
                               extra.get("payment_code"), extra.get("expires"),
                               extra.get("elo_stake"))
    )  # fmt: skip
    await client.send({"type": "PROPOSAL", "to": to, "task": task, "sig": sig, **extra})


async def accept(client, pid, elo_stake=None):
    frame = {"type": "ACCEPT", "proposal_id": pid,
             "sig": client.identity.sign(p.sign_string_accept(pid, None, elo_stake))}  # fmt: skip
    if elo_stake is not None:
        frame["elo_stake"] = elo_stake
    await client.send(frame)


async def test_skills_register_search_and_bad_signature(chat_server, raw_connect):
    a = await raw_connect(chat_server, "alice")
    b = await raw_connect(chat_server, "bob")
    skills = [{"capability": "code-review", "rate": 5, "currency": "TEST"},
              {"capability": "testing", "description": "pytest"}]  # fmt: skip
    reg = await register(a, skills)
    assert reg["agent_id"] == a.agent_id and reg["skills_count"] == 2
    notice = await b.expect("MSG", to="#discovery")
    assert notice["content"] == f"Agent {a.agent_id} registered 2 skill(s): code-review, testing"
    await b.send({"type": "SEARCH_SKILLS", "query": {"capability": "REVIEW"}, "query_id": "q1"})
    res = await b.expect("SEARCH_RESULTS")
    assert res["query_id"] == "q1" and res["total"] == 1
    hit = res["results"][0]
    assert hit["agent_id"] == a.agent_id and hit["capability"] == "code-review"
    assert hit["agent_rating"] == 1200 and hit["skill_rating"] == 1200
    await b.send({"type": "SEARCH_SKILLS", "query": {"max_rate": 1}})
    res = await b.expect("SEARCH_RESULTS")
    assert [r["capability"] for r in res["results"]] == ["testing"] and res["query_id"] is None
    await b.send({"type": "REGISTER_SKILLS", "skills": skills, "sig": a.identity.sign("x")})
    assert (await b.error("VERIFICATION_FAILED"))["message"] == "Invalid signature"


async def test_proposal_accept_complete_changes_ratings(make_chat_server, raw_connect):
    srv = make_chat_server(complete_min_age_ms=0)
    a = await raw_connect(srv.url, "alice")
    b = await raw_connect(srv.url, "bob")
    await propose(a, b.agent_id, "review PR 12", amount=10, currency="TEST", expires=600)
    got_b = await b.expect("PROPOSAL")
    got_a = await a.expect("PROPOSAL")
    assert got_a["id"] == got_b["id"] and got_b["id"].startswith("prop_")
    assert got_b["from"] == a.agent_id and got_b["status"] == "pending"
    assert got_b["expires"] == got_b["created_at"] + 600_000  # absolute ms on the wire
    bounty = await b.expect("MSG", to="#bounties")
    assert bounty["content"] == (
        f'[BOUNTY] {a.agent_id} → {b.agent_id}: "review PR 12" (10 TEST) — {got_b["id"]}'
    )
    pid = got_b["id"]
    await accept(a, pid)  # only the target may accept
    assert (await a.error("INVALID_PROPOSAL"))["message"] == "NOT_PROPOSAL_RECIPIENT"
    await accept(b, pid)
    acc = await a.expect("ACCEPT")
    assert acc["status"] == "accepted" and acc["proposal_id"] == pid
    await b.expect("ACCEPT")
    await a.send({"type": "COMPLETE", "proposal_id": pid, "proof": "sha",
                  "sig": a.identity.sign(p.sign_string_complete(pid, "sha"))})  # fmt: skip
    done = await b.expect("COMPLETE")
    await a.expect("COMPLETE")
    assert done["completed_by"] == a.agent_id and done["proof"] == "sha"
    # amount 10 -> K = 32 * min(1 + log10(11), 3) = 65.3; expected 0.5; full gain 33,
    # halved and rounded -> 17 each (upstream arithmetic)
    rc = done["rating_changes"]
    assert rc[a.agent_id] == {"oldRating": 1200, "newRating": 1217, "change": 17, "transactions": 1}
    assert rc[b.agent_id] == {"oldRating": 1200, "newRating": 1217, "change": 17, "transactions": 1}
    # completing again is refused by the state machine
    await a.send({"type": "COMPLETE", "proposal_id": pid,
                  "sig": a.identity.sign(p.sign_string_complete(pid, None))})  # fmt: skip
    assert (await a.error("INVALID_PROPOSAL"))["message"] == "PROPOSAL_NOT_ACCEPTED"


async def test_dispute_with_stakes_transfers_to_the_disputant(make_chat_server, raw_connect):
    srv = make_chat_server(complete_min_age_ms=0)
    a = await raw_connect(srv.url, "alice")
    b = await raw_connect(srv.url, "bob")
    await propose(a, b.agent_id, "write docs", elo_stake=10)
    pid = (await b.expect("PROPOSAL"))["id"]
    await accept(b, pid, elo_stake=5)
    acc = await a.expect("ACCEPT")
    assert acc["proposer_stake"] == 10 and acc["acceptor_stake"] == 5
    reason = "never delivered"
    await a.send({"type": "DISPUTE", "proposal_id": pid, "reason": reason,
                  "sig": a.identity.sign(p.sign_string_dispute(pid, reason))})  # fmt: skip
    d = await b.expect("DISPUTE")
    assert d["status"] == "disputed" and d["disputed_by"] == a.agent_id
    assert d["elo_stakes"] == {"proposer": 10, "acceptor": 5}
    rc = d["rating_changes"]
    # bob is at fault: loses 16 (K 32 x expected 0.5) plus his 5 stake; alice gets 8 + 5
    assert rc[b.agent_id]["change"] == -21 and rc[b.agent_id]["newRating"] == 1179
    assert rc[a.agent_id]["change"] == 13 and rc[a.agent_id]["newRating"] == 1213
    assert rc["_escrow"]["settlement"] == "transferred"
    assert rc["_escrow"]["transferred_to"] == a.agent_id


async def test_dispute_by_the_acceptor_puts_the_proposer_at_fault(make_chat_server, raw_connect):
    srv = make_chat_server(complete_min_age_ms=0)
    a = await raw_connect(srv.url, "alice")
    b = await raw_connect(srv.url, "bob")
    await propose(a, b.agent_id, "write docs", elo_stake=10)
    pid = (await b.expect("PROPOSAL"))["id"]
    await accept(b, pid, elo_stake=5)
    await a.expect("ACCEPT")
    reason = "spec changed under me"
    await b.send({"type": "DISPUTE", "proposal_id": pid, "reason": reason,
                  "sig": b.identity.sign(p.sign_string_dispute(pid, reason))})  # fmt: skip
    d = await a.expect("DISPUTE")
    assert d["disputed_by"] == b.agent_id
    rc = d["rating_changes"]
    # alice is at fault: loses 16 plus her 10 stake; bob gets 8 + 10
    assert rc[a.agent_id]["change"] == -26 and rc[a.agent_id]["newRating"] == 1174
    assert rc[b.agent_id]["change"] == 18 and rc[b.agent_id]["newRating"] == 1218
    assert rc["_escrow"]["transferred_to"] == b.agent_id
    assert rc["_escrow"]["transferred_amount"] == 10


async def test_proposal_errors(chat_server, raw_connect):
    a = await raw_connect(chat_server, "alice")
    b = await raw_connect(chat_server, "bob")
    await propose(a, "@00000000deadbeef", "nobody home")
    assert (await a.error("AGENT_NOT_FOUND"))["message"] == "Agent @00000000deadbeef not found"
    await a.send({"type": "PROPOSAL", "to": b.agent_id, "task": "t", "sig": b.identity.sign("x")})
    await a.error("VERIFICATION_FAILED")
    await accept(b, "prop_missing")
    assert (await b.error("PROPOSAL_NOT_FOUND"))["message"] == "Proposal not found"
    await propose(a, b.agent_id, "stake too big", elo_stake=5000)
    pid = (await b.expect("PROPOSAL"))["id"]
    await accept(b, pid)
    err = await b.error("INSUFFICIENT_REPUTATION")
    assert err["message"] == "Proposer: Insufficient ELO. Available: 1100, Requested: 5000"
    await propose(a, b.agent_id, "young one")
    pid2 = (await b.expect("PROPOSAL", task="young one"))["id"]
    await accept(b, pid2)
    await b.expect("ACCEPT")
    await b.send({"type": "COMPLETE", "proposal_id": pid2,
                  "sig": b.identity.sign(p.sign_string_complete(pid2, None))})  # fmt: skip
    err = await b.error("RATE_LIMITED")
    assert err["message"].startswith("Proposal must be at least 60s old before completion (")
    c = await raw_connect(chat_server, "carol")
    reason = "x"
    await c.send({"type": "DISPUTE", "proposal_id": pid2, "reason": reason,
                  "sig": c.identity.sign(p.sign_string_dispute(pid2, reason))})  # fmt: skip
    assert (await c.error("INVALID_PROPOSAL"))["message"] == "NOT_PROPOSAL_PARTY"


async def test_agentcourt_answers_a_clear_error(chat_server, raw_connect):
    a = await raw_connect(chat_server, "alice")
    await a.send({"type": "DISPUTE_INTENT", "proposal_id": "p", "reason": "r",
                  "commitment": "c", "sig": "s"})  # fmt: skip
    err = await a.error("INVALID_MSG")
    assert "Agentcourt dispute panels are not supported" in err["message"]
    await a.send({"type": "ARBITER_VOTE", "dispute_id": "d", "verdict": "mutual",
                  "reasoning": "", "sig": "s"})  # fmt: skip
    await a.error("INVALID_MSG")
