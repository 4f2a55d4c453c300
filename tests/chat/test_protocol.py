"""The wire codec: upstream's validation texts, JS semantics, signing strings, models."""

from __future__ import annotations

import hashlib
import json

import pytest

from agentctl_swarm.chat import protocol as p
from agentctl_swarm.chat.identity import Identity

PEM = Identity.generate("x").public_pem

# One valid example of every client frame type (owl/reference/agentchat-protocol.md, "Client frames").
VALID = {
    "IDENTIFY": {"name": "alice-1_B", "pubkey": PEM},
    "VERIFY_IDENTITY": {"challenge_id": "chal_x", "signature": "c2ln", "timestamp": 17},
    "CAPTCHA_RESPONSE": {"captcha_id": "captcha_x", "answer": "4"},
    "JOIN": {"channel": "#general"},
    "LEAVE": {"channel": "#general"},
    "MSG": {"to": "#general", "content": "hi", "sig": "s", "in_reply_to": "1-a"},
    "LIST_CHANNELS": {},
    "LIST_AGENTS": {"channel": "#general"},
    "CREATE_CHANNEL": {"channel": "#new", "invite_only": True},
    "INVITE": {"channel": "#new", "agent": "@abc"},
    "PING": {},
    "SET_NICK": {"nick": "ally"},
    "SET_PRESENCE": {"status": "listening", "status_text": "waiting"},
    "TYPING": {"channel": "#general"},
    "RESPONDING_TO": {"msg_id": "1-a", "channel": "#general", "started_at": 5},
    "REGISTER_SKILLS": {"skills": [{"capability": "review", "rate": 5}], "sig": "s"},
    "SEARCH_SKILLS": {"query": {"capability": "rev"}, "query_id": "q1"},
    "PROPOSAL": {"to": "@abc", "task": "do it", "sig": "s", "expires": 60, "elo_stake": 3},
    "ACCEPT": {"proposal_id": "prop_1", "sig": "s", "elo_stake": 0},
    "REJECT": {"proposal_id": "prop_1", "sig": "s"},
    "COMPLETE": {"proposal_id": "prop_1", "sig": "s", "proof": "url"},
    "DISPUTE": {"proposal_id": "prop_1", "reason": "bad", "sig": "s"},
    "DISPUTE_INTENT": {"proposal_id": "p", "reason": "r", "commitment": "ab", "sig": "s"},
    "DISPUTE_REVEAL": {"proposal_id": "p", "nonce": "n", "sig": "s"},
    "EVIDENCE": {"dispute_id": "d", "items": [], "statement": "", "sig": "s"},
    "ARBITER_ACCEPT": {"dispute_id": "d", "sig": "s"},
    "ARBITER_DECLINE": {"dispute_id": "d"},
    "ARBITER_VOTE": {"dispute_id": "d", "verdict": "mutual", "reasoning": "", "sig": "s"},
    "VERIFY_REQUEST": {"target": "@abc", "nonce": "n" * 16},
    "VERIFY_RESPONSE": {"request_id": "r", "nonce": "n", "sig": "s"},
    "FILE_CHUNK": {"to": "@abc", "content": "x"},
    "ADMIN_APPROVE": {"pubkey": "k", "admin_key": "a"},
    "ADMIN_REVOKE": {"agent_id": "x", "admin_key": "a"},
    "ADMIN_LIST": {"admin_key": "a"},
    "ADMIN_KICK": {"agent_id": "x", "admin_key": "a"},
    "ADMIN_BAN": {"agent_id": "x", "admin_key": "a", "reason": "r"},
    "ADMIN_UNBAN": {"agent_id": "x", "admin_key": "a"},
    "ADMIN_MOTD": {"admin_key": "a", "motd": None},
    "ADMIN_VERIFY": {"agent_id": "x", "admin_key": "a", "verified": False},
}


def test_every_client_type_has_a_model_and_example():
    assert set(VALID) == set(p.CLIENT_MODELS)


@pytest.mark.parametrize("type_", sorted(VALID))
def test_valid_frames_decode_to_their_model(type_):
    frame = {"type": type_, **VALID[type_], "unknown_field": 1}
    model = p.decode_client_frame(json.dumps(frame))
    assert isinstance(model, p.CLIENT_MODELS[type_]) and model.type == type_
    for key, value in VALID[type_].items():
        assert getattr(model, key) == value
    assert model.model_extra == {"unknown_field": 1}  # kept, not forwarded by the server


INVALID = [
    ("{", "Invalid JSON"),
    ("NaN", "Invalid JSON"),
    ("null", "Missing message type"),
    ("[]", "Missing message type"),
    ('{"type":""}', "Missing message type"),
    ('{"type":0}', "Missing message type"),
    ('{"type":"X"}', "Unknown message type: X"),
    ('{"type":true}', "Unknown message type: true"),
    ('{"type":"ADMIN_OPEN_WINDOW"}', "Unknown message type: ADMIN_OPEN_WINDOW"),
    ({"type": "IDENTIFY", "name": ""}, "Invalid agent name"),
    ({"type": "IDENTIFY", "name": "a" * 33}, "Invalid agent name"),
    ({"type": "IDENTIFY", "name": "a b"}, "Invalid agent name"),
    ({"type": "IDENTIFY", "name": "ab\n"}, "Invalid agent name"),
    ({"type": "IDENTIFY", "name": "a", "pubkey": "x"}, "Invalid public key format (must be Ed25519 PEM)"),
    ({"type": "JOIN", "channel": "#"}, "Invalid channel name"),
    ({"type": "JOIN", "channel": "#" + "a" * 32}, "Invalid channel name"),
    ({"type": "LEAVE"}, "Invalid channel name"),
    ({"type": "TYPING", "channel": "x"}, "Invalid channel name"),
    ({"type": "CREATE_CHANNEL", "channel": "#a.b"}, "Invalid channel name"),
    ({"type": "MSG", "content": "x"}, "Missing target"),
    ({"type": "MSG", "to": "x", "content": "x"}, "Invalid target (must start with # or @)"),
    ({"type": "MSG", "to": "#a"}, "Missing or invalid content"),
    ({"type": "MSG", "to": "#a", "content": 5}, "Missing or invalid content"),
    ({"type": "MSG", "to": "#a", "content": "x", "sig": None}, "Invalid signature format"),
    ({"type": "MSG", "to": "#a", "content": "x" * (2 * 1024 * 1024 + 1)}, "Content too long (max 2MB)"),
    ({"type": "FILE_CHUNK", "to": "#a", "content": "x"}, "FILE_CHUNK only supports DM targets (@agent)"),
    ({"type": "INVITE", "channel": "#a", "agent": "b"}, "Invalid agent target"),
    ({"type": "PROPOSAL", "task": "t", "sig": "s"}, "Missing target (to)"),
    ({"type": "PROPOSAL", "to": "#a", "task": "t", "sig": "s"}, "Proposals must be sent to an agent (@id)"),
    ({"type": "PROPOSAL", "to": "@a", "task": "", "sig": "s"}, "Missing or invalid task description"),
    ({"type": "PROPOSAL", "to": "@a", "task": "t"}, "Proposals must be signed"),
    ({"type": "PROPOSAL", "to": "@a", "task": "t", "sig": "s", "expires": "1"}, "expires must be a number (seconds)"),
    ({"type": "PROPOSAL", "to": "@a", "task": "t", "sig": "s", "elo_stake": 1.5}, "elo_stake must be a non-negative integer"),
    ({"type": "ACCEPT", "sig": "s"}, "Missing proposal_id"),
    ({"type": "ACCEPT", "proposal_id": "p"}, "Accept must be signed"),
    ({"type": "ACCEPT", "proposal_id": "p", "sig": "s", "elo_stake": -1}, "elo_stake must be a non-negative integer"),
    ({"type": "REJECT", "proposal_id": "p"}, "Reject must be signed"),
    ({"type": "COMPLETE", "proposal_id": "p"}, "Complete must be signed"),
    ({"type": "DISPUTE", "proposal_id": "p", "sig": "s"}, "Missing or invalid dispute reason"),
    ({"type": "DISPUTE", "proposal_id": "p", "reason": "r"}, "Dispute must be signed"),
    ({"type": "REGISTER_SKILLS", "sig": "s"}, "Missing or invalid skills array"),
    ({"type": "REGISTER_SKILLS", "skills": [], "sig": "s"}, "Skills array cannot be empty"),
    ({"type": "REGISTER_SKILLS", "skills": [{"rate": 1}], "sig": "s"}, "Each skill must have a capability string"),
    ({"type": "REGISTER_SKILLS", "skills": [{"capability": "c"}]}, "Skill registration must be signed"),
    ({"type": "SEARCH_SKILLS", "query": "x"}, "Missing or invalid query object"),
    ({"type": "SET_PRESENCE", "status": "gone"}, "Invalid presence status. Must be one of: online, away, busy, offline, listening"),
    ({"type": "SET_PRESENCE", "status": "away", "status_text": 1}, "status_text must be a string"),
    ({"type": "SET_PRESENCE", "status": "away", "status_text": "x" * 101}, "status_text too long (max 100 chars)"),
    ({"type": "VERIFY_REQUEST", "nonce": "n" * 16}, "Missing target agent"),
    ({"type": "VERIFY_REQUEST", "target": "a", "nonce": "n" * 16}, "Target must be an agent (@id)"),
    ({"type": "VERIFY_REQUEST", "target": "@a"}, "Missing or invalid nonce"),
    ({"type": "VERIFY_REQUEST", "target": "@a", "nonce": "short"}, "Nonce must be 16-128 characters"),
    ({"type": "VERIFY_RESPONSE", "nonce": "n", "sig": "s"}, "Missing request_id"),
    ({"type": "VERIFY_RESPONSE", "request_id": "r", "nonce": "n"}, "Missing or invalid signature"),
    ({"type": "ADMIN_APPROVE", "admin_key": "a"}, "Missing or invalid pubkey"),
    ({"type": "ADMIN_APPROVE", "pubkey": "k"}, "Missing admin_key"),
    ({"type": "ADMIN_REVOKE", "admin_key": "a"}, "Missing pubkey or agent_id"),
    ({"type": "ADMIN_LIST"}, "Missing admin_key"),
    ({"type": "DISPUTE_INTENT", "proposal_id": "p", "reason": "r", "sig": "s"}, "Missing or invalid commitment hash"),
    ({"type": "DISPUTE_INTENT", "proposal_id": "p", "commitment": "c", "sig": "s"}, "Missing or invalid reason"),
    ({"type": "DISPUTE_INTENT", "proposal_id": "p", "reason": "r", "commitment": "c"}, "Dispute intent must be signed"),
    ({"type": "DISPUTE_REVEAL", "proposal_id": "p", "nonce": "n"}, "Dispute reveal must be signed"),
    ({"type": "EVIDENCE", "items": [], "statement": "", "sig": "s"}, "Missing or invalid dispute_id"),
    ({"type": "EVIDENCE", "dispute_id": "d", "statement": "", "sig": "s"}, "Missing or invalid items array"),
    ({"type": "EVIDENCE", "dispute_id": "d", "items": [], "sig": "s"}, "Missing or invalid statement"),
    ({"type": "EVIDENCE", "dispute_id": "d", "items": [], "statement": ""}, "Evidence must be signed"),
    ({"type": "ARBITER_ACCEPT", "dispute_id": "d"}, "Arbiter accept must be signed"),
    ({"type": "ARBITER_DECLINE"}, "Missing or invalid dispute_id"),
    ({"type": "ARBITER_VOTE", "dispute_id": "d", "verdict": "x", "reasoning": "", "sig": "s"}, "Invalid verdict (must be disputant, respondent, or mutual)"),
    ({"type": "ARBITER_VOTE", "dispute_id": "d", "verdict": "mutual", "sig": "s"}, "Missing or invalid reasoning"),
    ({"type": "ARBITER_VOTE", "dispute_id": "d", "verdict": "mutual", "reasoning": ""}, "Arbiter vote must be signed"),
    ({"type": "SET_NICK"}, "Missing or invalid nick"),
    ({"type": "SET_NICK", "nick": "x" * 25}, "Nick must be 1-24 characters"),
    ({"type": "SET_NICK", "nick": "a b"}, "Nick must contain only alphanumeric characters, hyphens, and underscores"),
    ({"type": "RESPONDING_TO", "channel": "#a", "started_at": 1}, "Missing or invalid msg_id"),
    ({"type": "RESPONDING_TO", "msg_id": "m", "channel": "a", "started_at": 1}, "Missing or invalid channel"),
    ({"type": "RESPONDING_TO", "msg_id": "m", "channel": "#a", "started_at": 0}, "Missing or invalid started_at timestamp"),
    ({"type": "VERIFY_IDENTITY", "signature": "s", "timestamp": 1}, "Missing or invalid challenge_id"),
    ({"type": "VERIFY_IDENTITY", "challenge_id": "c", "timestamp": 1}, "Missing or invalid signature"),
    ({"type": "VERIFY_IDENTITY", "challenge_id": "c", "signature": "s", "timestamp": "1"}, "Missing or invalid timestamp"),
    ({"type": "ADMIN_KICK", "admin_key": "a"}, "Missing or invalid agent_id"),
    ({"type": "ADMIN_BAN", "agent_id": "x"}, "Missing admin_key"),
    ({"type": "ADMIN_UNBAN", "agent_id": 5, "admin_key": "a"}, "Missing or invalid agent_id"),
    ({"type": "ADMIN_MOTD", "admin_key": "a", "motd": 5}, "motd must be a string or null"),
    ({"type": "ADMIN_VERIFY", "agent_id": "x", "verified": True}, "Missing admin_key"),
    ({"type": "ADMIN_VERIFY", "admin_key": "a", "verified": True}, "Missing agent_id"),
    ({"type": "ADMIN_VERIFY", "admin_key": "a", "agent_id": "x", "verified": 1}, "verified must be a boolean"),
    ({"type": "CAPTCHA_RESPONSE", "answer": "a"}, "Missing or invalid captcha_id"),
    ({"type": "CAPTCHA_RESPONSE", "captcha_id": "c", "answer": ""}, "Missing or invalid answer"),
]  # fmt: skip


@pytest.mark.parametrize(("frame", "message"), INVALID)
def test_invalid_frames_raise_upstream_texts(frame, message):
    text = frame if isinstance(frame, str) else json.dumps(frame)
    with pytest.raises(p.ProtocolError) as info:
        p.decode_client_frame(text)
    assert info.value.code == "INVALID_MSG"
    assert info.value.message == message


def test_frame_size_check_counts_utf16_units():
    p.check_frame_size("x" * p.MAX_FRAME_CHARS)
    with pytest.raises(p.ProtocolError, match=r"Message too large \(2097153 bytes, max 2097152\)"):
        p.check_frame_size("x" * (p.MAX_FRAME_CHARS + 1))
    assert p.js_len("a😀") == 3


def test_js_helpers():
    assert [p.js_truthy(v) for v in ("", 0, 0.0, None, False, [], {}, "0", 1)] == [
        False, False, False, False, False, True, True, True, True,
    ]  # fmt: skip
    assert p.js_number_str(10.0) == "10" and p.js_number_str(0.5) == "0.5"
    assert p.js_number_str(1e21) == "1e+21" and p.js_number_str(1e-7) == "1e-7"
    assert p.js_number_str(0.00001) == "0.00001" and p.js_number_str(-3) == "-3"
    assert p.js_str([1, None, "a"]) == "1,,a" and p.js_str({"a": 1}) == "[object Object]"
    assert p.js_json({"b": 1, "a": "é"}) == '{"b":1,"a":"é"}'


def test_signing_strings():
    assert p.auth_signing_string("n", "chal_1", 17) == "AGENTCHAT_AUTH|n|chal_1|17"
    assert p.sign_string_proposal("@a", "task", 10.0, "TEST", None, 600, 0) == (
        "@a|task|10|TEST||600|"
    )
    assert p.sign_string_proposal("@a", "t") == "@a|t|||||"
    assert p.sign_string_accept("p1") == "ACCEPT|p1||"
    assert p.sign_string_accept("p1", "pc", 5) == "ACCEPT|p1|pc|5"
    assert p.sign_string_reject("p1", None) == "REJECT|p1|"
    assert p.sign_string_complete("p1", "proof") == "COMPLETE|p1|proof"
    assert p.sign_string_dispute("p1", "why") == "DISPUTE|p1|why"
    skills = [{"capability": "review", "rate": 5, "description": "é"}]
    digest = hashlib.sha256(
        json.dumps(skills, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert p.sign_string_register_skills(skills) == f"REGISTER_SKILLS|{digest}"
    assert p.sign_string_dispute_intent("p", "r", "c") == "DISPUTE_INTENT|p|r|c"
    assert p.sign_string_dispute_reveal("p", "n") == "DISPUTE_REVEAL|p|n"
    assert p.sign_string_evidence("d", []).startswith("EVIDENCE|d|")
    assert p.sign_string_arbiter_accept("d") == "ARBITER_ACCEPT|d"
    assert p.sign_string_arbiter_decline("d", None) == "ARBITER_DECLINE|d|"
    assert p.sign_string_arbiter_vote("d", "mutual") == "VOTE|d|mutual"
    assert p.sign_string_verify_response("nonce") == "nonce"
    assert p.sign_string_msg("#a", "hi", 5) == '{"to":"#a","content":"hi","ts":5}'


def test_encode_models_and_dicts():
    msg = p.ServerMsg(ts=1, **{"from": "@a"}, to="#g", content="hi", msg_id="1-x")
    assert p.encode(msg) == (
        '{"type":"MSG","ts":1,"from":"@a","to":"#g","content":"hi","msg_id":"1-x"}'
    )
    assert p.encode(p.Join(channel="#g")) == '{"type":"JOIN","channel":"#g"}'
    assert p.encode({"type": "PING"}) == '{"type":"PING"}'
    assert p.make_error("X", "y", 3) == {"type": "ERROR", "ts": 3, "code": "X", "message": "y"}


def test_decode_server_frame_is_lenient():
    frame = p.decode_server_frame(
        '{"type":"WELCOME","agent_id":"@a","name":"n","server":"s","new":1}'
    )
    model = p.server_frame_model(frame)
    assert isinstance(model, p.Welcome) and model.agent_id == "@a"
    msg = p.server_frame_model(
        p.decode_server_frame(
            '{"type":"MSG","ts":1,"from":"@a","to":"#g","content":"x","replay":true}'
        )
    )
    assert isinstance(msg, p.ServerMsg) and msg.from_ == "@a" and msg.replay is True
    assert p.server_frame_model({"type": "FUTURE_THING"}) == {"type": "FUTURE_THING"}
    assert p.server_frame_model({"type": "ERROR"}) == {"type": "ERROR"}  # does not fit: dict
    for bad in ("nope", "[1]", '{"type":5}'):
        with pytest.raises(p.ProtocolError):
            p.decode_server_frame(bad)


def test_every_server_type_has_a_model():
    server_types = {
        "CHALLENGE", "CAPTCHA_CHALLENGE", "WELCOME", "MSG", "JOINED", "LEFT", "AGENT_JOINED",
        "AGENT_LEFT", "CHANNELS", "AGENTS", "NICK_CHANGED", "PRESENCE_CHANGED", "TYPING",
        "FLOOR_CLAIMED", "YIELD", "PONG", "ERROR", "SESSION_DISPLACED", "SKILLS_REGISTERED",
        "SEARCH_RESULTS", "PROPOSAL", "ACCEPT", "REJECT", "COMPLETE", "DISPUTE",
        "VERIFY_REQUEST", "VERIFY_SUCCESS", "VERIFY_FAILED", "ADMIN_RESULT", "MOTD_UPDATE",
        "KICKED", "BANNED", "DISPUTE_INTENT_ACK", "DISPUTE_REVEALED", "PANEL_FORMED",
        "ARBITER_ASSIGNED", "EVIDENCE_RECEIVED", "CASE_READY", "VERDICT",
        "SETTLEMENT_COMPLETE", "DISPUTE_FALLBACK", "FILE_CHUNK",
    }  # fmt: skip
    assert server_types == set(p.SERVER_MODELS)
