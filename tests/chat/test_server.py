"""The AgentChat server against several real websocket clients speaking raw frames.

Covers the handshake (persistent, ephemeral, bad signature, expiry, takeover),
fan-out with the sender's echo, replay, channels, presence/nick/typing, floor
control, callbacks, the error codes, rate limits, malformed and oversized frames,
keepalive and the HTTP endpoints.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed

from agentctl_swarm.chat.identity import Identity
from agentctl_swarm.chat.protocol import auth_signing_string
from tests.chat.conftest import closed_with

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------- handshake


async def test_persistent_handshake_welcome_and_auto_join(chat_server, raw_connect):
    a = await raw_connect(chat_server)
    w = await a.login("alice")
    assert w["agent_id"] == "@" + a.identity.agent_id
    assert w["name"] == "alice" and w["server"] == "agentchat"
    assert w["verified"] is False
    assert "lurk" not in w  # the first-hour gate is off by default (deliberate)
    assert w["disclaimer"].startswith("WARNING")
    await a.send({"type": "LIST_CHANNELS"})
    chans = await a.expect("CHANNELS")
    by_name = {c["name"]: c for c in chans["list"]}
    assert by_name["#general"]["agents"] == 1
    assert by_name["#bounties"]["agents"] == 1
    assert by_name["#ops"] == {"name": "#ops", "agents": 0, "verifiedOnly": True}


async def test_bad_signature_keeps_socket_open_and_allows_retry(chat_server, raw_connect):
    a = await raw_connect(chat_server)
    ident = Identity.generate("alice")
    other = Identity.generate("mallory")
    await a.send({"type": "IDENTIFY", "name": "alice", "pubkey": ident.public_pem})
    chal = await a.expect("CHALLENGE")
    assert chal["challenge_id"].startswith("chal_") and len(chal["nonce"]) == 32
    text = auth_signing_string(chal["nonce"], chal["challenge_id"], 1)
    await a.send(
        {"type": "VERIFY_IDENTITY", "challenge_id": chal["challenge_id"], "timestamp": 1,
         "signature": other.sign(text)}
    )  # fmt: skip
    err = await a.error("VERIFICATION_FAILED")
    assert err["message"] == "Invalid signature"
    # the challenge is gone, the socket stays open, a new IDENTIFY works
    await a.send(
        {"type": "VERIFY_IDENTITY", "challenge_id": chal["challenge_id"], "timestamp": 1,
         "signature": ident.sign(text)}
    )  # fmt: skip
    err = await a.error("VERIFICATION_EXPIRED")
    assert err["message"] == "Challenge not found or expired"
    w = await a.login("alice", ident)
    assert w["agent_id"] == "@" + ident.agent_id


async def test_invalid_pubkey_pending_and_already_identified(chat_server, raw_connect):
    a = await raw_connect(chat_server)
    await a.send({"type": "IDENTIFY", "name": "alice", "pubkey": "not a pem"})
    err = await a.error("INVALID_MSG")
    assert err["message"] == "Invalid public key format (must be Ed25519 PEM)"
    ident = Identity.generate("alice")
    await a.send({"type": "IDENTIFY", "name": "alice", "pubkey": ident.public_pem})
    await a.expect("CHALLENGE")
    await a.send({"type": "IDENTIFY", "name": "alice", "pubkey": ident.public_pem})
    assert (await a.error("INVALID_MSG"))["message"] == "Challenge already pending"
    b = await raw_connect(chat_server, "bob")
    await b.send({"type": "IDENTIFY", "name": "bob"})
    assert (await b.error("INVALID_MSG"))["message"] == "Already identified"


async def test_challenge_from_another_connection_is_refused(chat_server, raw_connect):
    a = await raw_connect(chat_server)
    b = await raw_connect(chat_server)
    ident = Identity.generate("alice")
    await a.send({"type": "IDENTIFY", "name": "alice", "pubkey": ident.public_pem})
    chal = await a.expect("CHALLENGE")
    text = auth_signing_string(chal["nonce"], chal["challenge_id"], 5)
    await b.send(
        {"type": "VERIFY_IDENTITY", "challenge_id": chal["challenge_id"], "timestamp": 5,
         "signature": ident.sign(text)}
    )  # fmt: skip
    err = await b.error("INVALID_MSG")
    assert err["message"] == "Challenge belongs to a different connection"


async def test_challenge_expiry_closes_with_1000(make_chat_server, raw_connect):
    srv = make_chat_server(challenge_timeout_ms=300)
    a = await raw_connect(srv.url)
    await a.send({"type": "IDENTIFY", "name": "alice", "pubkey": Identity.generate("a").public_pem})
    await a.expect("CHALLENGE")
    err = await a.error("VERIFICATION_EXPIRED")
    assert err["message"] == "Challenge expired"
    code, reason = await closed_with(a)
    assert (code, reason) == (1000, "Challenge expired")


async def test_ephemeral_identity_is_read_only(chat_server, raw_connect):
    e = await raw_connect(chat_server)
    await e.send({"type": "IDENTIFY", "name": "eph", "pubkey": None})
    w = await e.expect("WELCOME")
    assert w["lurk"] is True and "Persistent identity required" in w["lurk_reason"]
    assert len(w["agent_id"]) == 9 and "verified" not in w
    await e.send({"type": "MSG", "to": "#general", "content": "hi"})
    err = await e.error("LURK_MODE")
    assert err["message"] == "Persistent identity required to send messages"
    await e.send({"type": "PROPOSAL", "to": "@x", "task": "t", "sig": "s"})
    assert (await e.error("SIGNATURE_REQUIRED"))["message"] == (
        "Proposals require persistent identity"
    )
    await e.send({"type": "JOIN", "channel": "#help"})  # reading still works
    await e.expect("JOINED", channel="#help")


async def test_lurk_seconds_gates_new_keys(make_chat_server, raw_connect):
    srv = make_chat_server(lurk_seconds=3600)
    a = await raw_connect(srv.url)
    w = await a.login("alice")
    assert w["lurk"] is True and w["lurk_until"] > w["ts"]
    await a.send({"type": "MSG", "to": "#general", "content": "hi"})
    err = await a.error("LURK_MODE")
    assert err["message"].startswith("New identity — sending unlocks at ")


async def test_takeover_displaces_old_session(make_chat_server, raw_connect):
    srv = make_chat_server(takeover_backoff_ms=300)
    old = await raw_connect(srv.url, "alice")
    watcher = await raw_connect(srv.url, "watcher")
    new = await raw_connect(srv.url)
    await new.login("alice", old.identity)
    displaced = await old.expect("SESSION_DISPLACED")
    assert displaced["reason"] == "Another connection verified this identity"
    assert displaced["new_ip"] == "127.0.0.1"
    assert await closed_with(old) == (1000, "Identity claimed by verified connection")
    assert new.agent_id == old.agent_id
    left = await watcher.expect("AGENT_LEFT", channel="#general")
    assert left["agent"] == old.agent_id and "name" not in left
    # the new session works
    await new.send({"type": "MSG", "to": "#general", "content": "back"})
    assert (await watcher.expect("MSG", content="back"))["from"] == new.agent_id


# ---------------------------------------------------------------- messages


async def test_fan_out_includes_sender_echo_with_same_msg_id(chat_server, raw_connect):
    clients = [await raw_connect(chat_server, f"agent{i}") for i in range(3)]
    for c in clients:
        await c.drain(0.1)
    await clients[0].send(
        {"type": "MSG", "to": "#general", "content": "hello all", "sig": "abc",
         "in_reply_to": "1-x", "extra": "dropped"}
    )  # fmt: skip
    got = [await c.expect("MSG", content="hello all") for c in clients]
    ids = {g["msg_id"] for g in got}
    assert len(ids) == 1
    first = got[0]
    assert first["from"] == clients[0].agent_id and first["from_name"] == "agent0"
    assert first["sig"] == "abc" and first["in_reply_to"] == "1-x" and "extra" not in first
    assert first["verified"] is False
    assert first["msg_id"].split("-")[0] == str(first["ts"])


async def test_replay_on_join_respects_buffer_size(make_chat_server, raw_connect):
    srv = make_chat_server(buffer_size=3, rate_limit_ms=0)
    a = await raw_connect(srv.url, "alice")
    for i in range(5):
        await a.send({"type": "MSG", "to": "#help", "content": f"m{i}"})
    await a.expect("MSG", content="m4")
    b = await raw_connect(srv.url, "bob")
    await b.send({"type": "JOIN", "channel": "#help"})  # re-join after auto-join
    joined = await b.expect("JOINED", channel="#help")
    assert {x["name"] for x in joined["agents"]} == {"alice", "bob"}
    replay = [await b.expect("MSG") for _ in range(3)]
    assert [r["content"] for r in replay] == ["m2", "m3", "m4"]
    assert all(r["replay"] is True for r in replay)


async def test_secret_redaction_and_callbacks(chat_server, raw_connect):
    a = await raw_connect(chat_server, "alice")
    b = await raw_connect(chat_server, "bob")
    await b.drain(0.1)
    await a.send({"type": "MSG", "to": "#general", "content": "key ghp_" + "a" * 36})
    msg = await b.expect("MSG")
    while msg["from"] == "@server":
        msg = await b.expect("MSG")
    assert msg["content"] == "key [REDACTED:github_pat]"
    await asyncio.sleep(1.05)
    await a.send({"type": "MSG", "to": "#general", "content": "@@cb:0.2s@@wake up"})
    fire = await a.expect("MSG", content="@@cb-fire@@wake up")
    assert fire["from"] == "@server" and fire["cb_origin"] == a.agent_id
    assert fire["to"] == a.agent_id and fire["cb_id"].startswith("cb_")
    # a marker-only message is not relayed to anyone
    assert all(f.get("content") != "" for f in await b.drain(0.3))


async def test_direct_messages_refused_by_default(chat_server, raw_connect):
    a = await raw_connect(chat_server, "alice")
    b = await raw_connect(chat_server, "bob")
    await a.send({"type": "MSG", "to": b.agent_id, "content": "psst"})
    err = await a.error("INVALID_MSG")
    assert err["message"] == "Direct messages are disabled. Use a channel instead."


async def test_direct_messages_with_allow_dm(make_chat_server, raw_connect):
    srv = make_chat_server(allow_dm=True)
    a = await raw_connect(srv.url, "alice")
    b = await raw_connect(srv.url, "bob")
    c = await raw_connect(srv.url, "carol")
    await a.send({"type": "MSG", "to": b.agent_id, "content": "psst"})
    got_b = await b.expect("MSG", content="psst")
    got_a = await a.expect("MSG", content="psst")
    assert got_a["msg_id"] == got_b["msg_id"] and got_b["to"] == b.agent_id
    assert all(f.get("content") != "psst" for f in await c.drain(0.3))
    await asyncio.sleep(1.05)
    await a.send({"type": "MSG", "to": "@0000000000000000", "content": "nobody"})
    assert (await a.error("AGENT_NOT_FOUND"))["message"] == "Agent @0000000000000000 not found"


# ---------------------------------------------------------------- error codes


async def test_auth_required_before_identify(chat_server, raw_connect):
    a = await raw_connect(chat_server)
    for frame in (
        {"type": "JOIN", "channel": "#general"},
        {"type": "MSG", "to": "#general", "content": "x"},
        {"type": "LIST_AGENTS", "channel": "#general"},
        {"type": "SET_NICK", "nick": "x"},
    ):
        await a.send(frame)
        assert (await a.error("AUTH_REQUIRED"))["message"] == "Must IDENTIFY first"
    await a.send({"type": "LIST_CHANNELS"})  # allowed before auth
    await a.expect("CHANNELS")
    await a.send({"type": "PING"})
    pong = await a.expect("PONG")
    assert set(pong) == {"type", "ts"}


async def test_invalid_frames_get_upstream_texts(chat_server, raw_connect):
    a = await raw_connect(chat_server, "alice")
    cases = [
        ("{not json", "Invalid JSON"),
        ('{"name":"x"}', "Missing message type"),
        ('{"type":"NOPE"}', "Unknown message type: NOPE"),
        ('{"type":"ADMIN_OPEN_WINDOW"}', "Unknown message type: ADMIN_OPEN_WINDOW"),
        ('{"type":"JOIN","channel":"general"}', "Invalid channel name"),
        ('{"type":"MSG","to":"general","content":"x"}', "Invalid target (must start with # or @)"),
        ('{"type":"FILE_CHUNK","to":"@abc","content":"x"}', "File transfers are disabled."),
    ]
    for text, message in cases:
        await a.send(text)
        err = await a.error("INVALID_MSG")
        assert err["message"] == message, text
    # binary frames are read as text, like upstream's data.toString()
    await a.ws.send(b'{"type":"PING"}')
    await a.expect("PONG")


async def test_channel_errors(chat_server, raw_connect):
    a = await raw_connect(chat_server, "alice")
    await a.send({"type": "JOIN", "channel": "#nope"})
    assert (await a.error("CHANNEL_NOT_FOUND"))["message"] == "Channel #nope not found"
    await a.send({"type": "LIST_AGENTS", "channel": "#nope"})
    await a.error("CHANNEL_NOT_FOUND")
    await a.send({"type": "JOIN", "channel": "#ops"})
    assert (await a.error("AUTH_REQUIRED"))["message"] == "Channel #ops requires verified identity"
    await a.send({"type": "CREATE_CHANNEL", "channel": "#mine"})
    assert (await a.error("AUTH_REQUIRED"))["message"] == "Only verified agents can create channels"
    await a.send({"type": "LEAVE", "channel": "#help"})
    await a.expect("LEFT", channel="#help")
    await a.send({"type": "MSG", "to": "#help", "content": "x"})
    assert (await a.error("NOT_INVITED"))["message"] == "Not a member of #help"
    await a.send({"type": "INVITE", "channel": "#help", "agent": "@x"})
    assert (await a.error("INVALID_MSG"))["message"] == (
        "Private channels are disabled on this server"
    )


async def test_admin_verify_then_create_channel(make_chat_server, raw_connect):
    srv = make_chat_server(admin_key="s3cret-admin-key", private_channels=True)
    a = await raw_connect(srv.url, "alice")
    b = await raw_connect(srv.url, "bob")
    await a.send({"type": "ADMIN_VERIFY", "agent_id": a.agent_id, "admin_key": "wrong",
                  "verified": True})  # fmt: skip
    assert (await a.error("AUTH_REQUIRED"))["message"] == "Invalid admin key"
    await a.send({"type": "ADMIN_VERIFY", "agent_id": a.agent_id, "admin_key": "s3cret-admin-key",
                  "verified": True})  # fmt: skip
    res = await a.expect("ADMIN_RESULT", action="verify")
    assert res["success"] is True
    await a.send({"type": "CREATE_CHANNEL", "channel": "#priv", "invite_only": True})
    joined = await a.expect("JOINED", channel="#priv")
    assert joined["agents"] == [a.agent_id]
    await a.send({"type": "CREATE_CHANNEL", "channel": "#priv"})
    assert (await a.error("CHANNEL_EXISTS"))["message"] == "Channel #priv already exists"
    await b.send({"type": "JOIN", "channel": "#priv"})
    assert (await b.error("NOT_INVITED"))["message"] == "Channel #priv is invite-only"
    await a.send({"type": "INVITE", "channel": "#priv", "agent": b.agent_id})
    inv = await b.expect("MSG", content="You have been invited to #priv")
    assert inv["from"] == a.agent_id
    await b.send({"type": "JOIN", "channel": "#priv"})
    await b.expect("JOINED", channel="#priv")
    await a.send({"type": "LIST_CHANNELS"})
    assert "#priv" not in {c["name"] for c in (await a.expect("CHANNELS"))["list"]}
    # admin secrets are redacted from relayed text
    await asyncio.sleep(1.05)
    await a.send({"type": "MSG", "to": "#priv", "content": "key is s3cret-admin-key"})
    got = await b.expect("MSG", to="#priv", **{"from": a.agent_id})
    assert got["content"] == "key is [REDACTED:admin_key]"


async def test_admin_kick_and_ban(make_chat_server, raw_connect):
    srv = make_chat_server(admin_key="k-admin-123456")
    admin = await raw_connect(srv.url, "admin1")
    bad = await raw_connect(srv.url, "bad")
    await admin.send(
        {"type": "ADMIN_KICK", "agent_id": bad.agent_id, "admin_key": "k-admin-123456"}
    )
    await admin.expect("ADMIN_RESULT", action="kick")
    await bad.expect("KICKED")
    assert (await closed_with(bad))[0] == 1000
    await admin.send({"type": "ADMIN_BAN", "agent_id": bad.agent_id, "admin_key": "k-admin-123456",
                      "reason": "spam"})  # fmt: skip
    await admin.expect("ADMIN_RESULT", action="ban")
    again = await raw_connect(srv.url)
    await again.send({"type": "IDENTIFY", "name": "bad", "pubkey": bad.identity.public_pem})
    chal = await again.expect("CHALLENGE")
    text = auth_signing_string(chal["nonce"], chal["challenge_id"], 7)
    await again.send({"type": "VERIFY_IDENTITY", "challenge_id": chal["challenge_id"],
                      "timestamp": 7, "signature": bad.identity.sign(text)})  # fmt: skip
    assert (await again.error("BANNED"))["message"] == "spam"
    assert (await closed_with(again)) == (1000, "Banned")
    await admin.send({"type": "ADMIN_KICK", "agent_id": "@nobody", "admin_key": "k-admin-123456"})
    await admin.error("AGENT_NOT_FOUND")


async def test_msg_rate_limit(chat_server, raw_connect):
    a = await raw_connect(chat_server, "alice")
    await a.send({"type": "MSG", "to": "#general", "content": "one"})
    await a.send({"type": "MSG", "to": "#general", "content": "two"})
    err = await a.error("RATE_LIMITED")
    assert err["message"] == "Rate limit exceeded (max 1 message per second)"
    frames = await a.drain(0.3)
    assert all(f.get("content") != "two" for f in frames)


async def test_flood_before_auth_closes_1008_after_10_frames(chat_server, raw_connect):
    a = await raw_connect(chat_server)
    watcher = await raw_connect(chat_server, "watcher")
    for _ in range(12):
        await a.send({"type": "PING"})
    pongs = 0
    try:
        while True:
            frame = await a.recv(5)
            pongs += frame["type"] == "PONG"
    except ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code == 1008
        assert exc.rcvd.reason == "Rate limit exceeded"
    assert pongs == 10
    await watcher.send({"type": "PING"})  # others are still served
    await watcher.expect("PONG")


async def test_oversized_frame_closes_1009_and_server_keeps_serving(make_chat_server, raw_connect):
    srv = make_chat_server(max_payload=64 * 1024)
    a = await raw_connect(srv.url, "alice", max_size=None)
    b = await raw_connect(srv.url, "bob")
    await a.send({"type": "MSG", "to": "#general", "content": "x" * (65 * 1024)})
    code, _ = await closed_with(a)
    assert code == 1009
    # The server still answers b, and tells it a left; the two may arrive in either
    # order (the disconnect and b's PING race), so wait for both.
    await b.send({"type": "PING"})
    seen: set[str] = set()
    while not {"PONG", "AGENT_LEFT"} <= seen:
        frame = await b.recv()
        if frame["type"] == "AGENT_LEFT" and frame["channel"] == "#general":
            assert frame["agent"] == a.agent_id
            seen.add("AGENT_LEFT")
        elif frame["type"] == "PONG":
            seen.add("PONG")


async def test_nick_presence_typing(chat_server, raw_connect):
    a = await raw_connect(chat_server, "alice")
    b = await raw_connect(chat_server, "bob")
    await b.drain(0.1)
    await a.send({"type": "SET_NICK", "nick": "Admin"})
    assert (await a.error("INVALID_NAME"))["message"] == 'Nick "Admin" is reserved'
    await a.send({"type": "SET_NICK", "nick": "ally"})
    changed = await b.expect("NICK_CHANGED")
    assert changed == {**changed, "agent_id": a.agent_id, "old_nick": "alice", "new_nick": "ally"}
    await a.send({"type": "SET_NICK", "nick": "ally2"})
    assert (await a.error("RATE_LIMITED"))["message"].startswith("Nick change rate limited.")
    await a.send({"type": "SET_PRESENCE", "status": "busy", "status_text": "testing"})
    pres = await b.expect("PRESENCE_CHANGED")
    assert (
        pres["presence"] == "busy" and pres["status_text"] == "testing" and pres["name"] == "ally"
    )
    await b.send({"type": "LIST_AGENTS", "channel": "#general"})
    agents = {x["id"]: x for x in (await b.expect("AGENTS"))["list"]}
    assert agents[a.agent_id]["presence"] == "busy"
    await a.send({"type": "TYPING", "channel": "#general"})
    typing = await b.expect("TYPING")
    assert typing["from"] == a.agent_id and typing["channel"] == "#general"


async def test_floor_control_claim_and_yield(chat_server, raw_connect):
    a = await raw_connect(chat_server, "alice")
    b = await raw_connect(chat_server, "bob")
    await b.drain(0.1)
    await a.send({"type": "RESPONDING_TO", "msg_id": "1-abc", "channel": "#general",
                  "started_at": 1000})  # fmt: skip
    claimed = await b.expect("FLOOR_CLAIMED")
    assert claimed["holder"] == a.agent_id and claimed["started_at"] == 1000
    await b.send({"type": "RESPONDING_TO", "msg_id": "1-abc", "channel": "#general",
                  "started_at": 2000})  # fmt: skip
    y = await b.expect("YIELD")
    assert y["holder"] == a.agent_id and y["reason"] == "Another agent claimed first"
    await b.send({"type": "RESPONDING_TO", "msg_id": "1-abc", "channel": "#general",
                  "started_at": 500})  # fmt: skip
    y2 = await a.expect("YIELD")
    assert y2["holder"] == b.agent_id and y2["reason"] == "Earlier started_at timestamp"


async def test_peer_verification(chat_server, raw_connect):
    a = await raw_connect(chat_server, "alice")
    b = await raw_connect(chat_server, "bob")
    nonce = "n" * 20
    await a.send({"type": "VERIFY_REQUEST", "target": b.agent_id, "nonce": nonce})
    ack = await a.expect("VERIFY_REQUEST")
    assert ack["status"] == "pending"
    req = await b.expect("VERIFY_REQUEST")
    await b.send({"type": "VERIFY_RESPONSE", "request_id": req["request_id"], "nonce": nonce,
                  "sig": b.identity.sign(nonce)})  # fmt: skip
    ok = await a.expect("VERIFY_SUCCESS")
    assert ok["agent"] == b.agent_id and ok["pubkey"] == b.identity.public_pem


async def test_keepalive_drops_silent_socket(make_chat_server, raw_connect):
    srv = make_chat_server(heartbeat_interval_ms=200, heartbeat_grace_ms=100)
    watcher = await raw_connect(srv.url, "watcher")
    # a raw TCP peer that completes the upgrade but never answers pings
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        assert b"101" in sock.recv(1024)
        count = await asyncio.to_thread(srv.call, lambda: len(srv.handle.core.conns))
        assert count == 2
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            count = await asyncio.to_thread(srv.call, lambda: len(srv.handle.core.conns))
            if count == 1:
                break
        assert count == 1
    finally:
        sock.close()
    # the answering client is still connected
    await watcher.send({"type": "PING"})
    await watcher.expect("PONG")


# ---------------------------------------------------------------- HTTP


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body.startswith(b"{") else {"text": body.decode()}


async def test_http_health_connections_and_404(make_chat_server, raw_connect):
    srv = make_chat_server(admin_key="adm-key-9876")
    await raw_connect(srv.url, "alice")
    base = f"http://127.0.0.1:{srv.port}"
    status, health = await asyncio.to_thread(_get, base + "/health")
    assert status == 200 and health["status"] == "healthy"
    assert health["agents"] == {"connected": 1, "with_identity": 1}
    assert health["channels"]["total"] == 9
    assert set(health["proposals"]) == {"total", "byStatus", "agents"}
    status, _ = await asyncio.to_thread(_get, base + "/api/connections")
    assert status == 401
    status, conns = await asyncio.to_thread(
        _get, base + "/api/connections", {"X-Admin-Key": "adm-key-9876"}
    )
    assert status == 200 and conns["count"] == 1
    status, _ = await asyncio.to_thread(_get, base + "/nope")
    assert status == 404
