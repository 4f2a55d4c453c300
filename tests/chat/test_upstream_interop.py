"""Regression tests for behaviour recorded from the upstream AgentChat server.

Each expectation here was observed frame-by-frame against upstream agentchat 0.36.19
(commit f845e472, run on loopback with LURK_DISABLED=true, IDLE_PROMPTS=false,
AGENTCHAT_ADMIN_KEY = ALLOWLIST_ADMIN_KEY) and differed in our server before the fix.
The frames and texts below are the recorded upstream ones (``ts`` left out); no
upstream code is involved. The upstream ordering/field facts they pin:

* HTTP: anything but /health and /api/connections is ``404`` with the bare body
  ``Not Found`` and no content type.
* /api/connections lists identified agents only, each with ``agent_id`` (no ``@``),
  ``ip``, ``connected_at`` (ms) and ``user_agent`` (``unknown`` without the header).
* ADMIN_VERIFY: the target hears ``{action, success, verified, note}``; the admin
  gets ``{action, success, agentId, verified}`` with ``agentId`` exactly as sent.
* ADMIN_MOTD's result carries ``kicked``.
* Kick/ban: KICKED/BANNED, then the target's AGENT_LEFT fan-out, then the admin's
  ADMIN_RESULT; close 1000 ``Kicked by admin`` / ``Banned by admin``.
* Ban/unban key errors read ``invalid admin key``; unbanning an id that is not
  banned is ``AGENT_NOT_FOUND`` ``agent not banned``; a ban without a reason makes a
  later login read ``You are banned``; without an admin key the server answers
  moderation with ``INVALID_MSG`` ``Moderation not configured (no admin key)``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from agentctl_swarm.chat.protocol import auth_signing_string
from tests.chat.conftest import closed_with

pytestmark = pytest.mark.timeout(60)

KEY = "adminkey123"


def _strip_ts(frame: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in frame.items() if k != "ts"}


def _http(url: str, headers: dict[str, str] | None = None) -> tuple[int, str | None, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read()


async def test_http_404_is_bare_not_found(make_chat_server):
    srv = make_chat_server()
    status, ctype, body = await asyncio.to_thread(_http, f"http://127.0.0.1:{srv.port}/nope")
    assert (status, ctype, body) == (404, None, b"Not Found")


async def test_api_connections_lists_identified_agents_with_upstream_fields(
    make_chat_server, raw_connect
):
    srv = make_chat_server(admin_key=KEY)
    alice = await raw_connect(srv.url, "alice", user_agent_header="probe-ua/1.0")
    eph = await raw_connect(srv.url, user_agent_header=None)
    await eph.send({"type": "IDENTIFY", "name": "ephc"})
    eph_welcome = await eph.expect("WELCOME")
    await raw_connect(srv.url)  # connected but not identified: not listed upstream
    status, ctype, body = await asyncio.to_thread(
        _http, f"http://127.0.0.1:{srv.port}/api/connections", {"X-Admin-Key": KEY}
    )
    assert (status, ctype) == (200, "application/json")
    doc = json.loads(body)
    assert doc["count"] == 2 == len(doc["connections"])
    by_id = {c["agent_id"]: c for c in doc["connections"]}
    assert set(by_id) == {alice.agent_id[1:], eph_welcome["agent_id"][1:]}
    for entry in by_id.values():
        assert {"agent_id", "ip", "connected_at", "user_agent"} <= set(entry)
        assert entry["ip"] == "127.0.0.1"
        assert isinstance(entry["connected_at"], int) and entry["connected_at"] > 0
    assert by_id[alice.agent_id[1:]]["user_agent"] == "probe-ua/1.0"
    assert by_id[eph_welcome["agent_id"][1:]]["user_agent"] == "unknown"


async def test_admin_verify_note_to_target_and_confirmation_to_admin(make_chat_server, raw_connect):
    srv = make_chat_server(admin_key=KEY)
    admin = await raw_connect(srv.url, "adm_a")
    target = await raw_connect(srv.url, "adm_b")
    bare_id = target.agent_id[1:]  # upstream echoes agent_id as sent, '@' or not
    await admin.send({"type": "ADMIN_VERIFY", "agent_id": bare_id, "admin_key": KEY,
                      "verified": True})  # fmt: skip
    assert _strip_ts(await admin.expect("ADMIN_RESULT")) == {
        "type": "ADMIN_RESULT", "action": "verify", "success": True,
        "agentId": bare_id, "verified": True,
    }  # fmt: skip
    assert _strip_ts(await target.expect("ADMIN_RESULT")) == {
        "type": "ADMIN_RESULT", "action": "verify", "success": True, "verified": True,
        "note": "You have been granted verified status \u2713",
    }  # fmt: skip
    await admin.send({"type": "ADMIN_VERIFY", "agent_id": target.agent_id, "admin_key": KEY,
                      "verified": False})  # fmt: skip
    assert (await target.expect("ADMIN_RESULT"))["note"] == "Your verified status has been revoked"
    assert (await admin.expect("ADMIN_RESULT"))["agentId"] == target.agent_id


async def test_admin_motd_result_says_kicked(make_chat_server, raw_connect):
    srv = make_chat_server(admin_key=KEY)
    admin = await raw_connect(srv.url, "adm_a")
    await admin.send({"type": "ADMIN_MOTD", "admin_key": KEY, "motd": "hello motd"})
    assert _strip_ts(await admin.expect("MOTD_UPDATE")) == {
        "type": "MOTD_UPDATE", "motd": "hello motd"
    }  # fmt: skip
    assert _strip_ts(await admin.expect("ADMIN_RESULT")) == {
        "type": "ADMIN_RESULT", "action": "motd", "success": True,
        "motd": "hello motd", "kicked": False,
    }  # fmt: skip


async def test_admin_kick_order_texts_and_close_reason(make_chat_server, raw_connect):
    srv = make_chat_server(admin_key=KEY)
    admin = await raw_connect(srv.url, "adm_a")
    target = await raw_connect(srv.url, "adm_b")
    await admin.drain(0.2)
    await admin.send({"type": "ADMIN_KICK", "agent_id": "@0000000000000000", "admin_key": KEY})
    err = await admin.error("AGENT_NOT_FOUND")
    assert err["message"] == "Agent @0000000000000000 not found or not online"
    await admin.send({"type": "ADMIN_KICK", "agent_id": target.agent_id, "admin_key": "bad"})
    assert (await admin.error("AUTH_REQUIRED"))["message"] == "Invalid admin key"
    await admin.send({"type": "ADMIN_KICK", "agent_id": target.agent_id, "admin_key": KEY,
                      "reason": ""})  # fmt: skip
    # Upstream: the target's departure reaches the admin before its ADMIN_RESULT.
    seen = []
    while True:
        frame = await admin.recv()
        seen.append(frame["type"])
        if frame["type"] == "ADMIN_RESULT":
            break
    assert "AGENT_LEFT" in seen
    assert _strip_ts(frame) == {
        "type": "ADMIN_RESULT", "action": "kick", "success": True, "agentId": target.agent_id
    }  # fmt: skip
    kicked = await target.expect("KICKED")
    assert kicked["reason"] == "Kicked by admin"  # empty reason -> the default, as upstream
    assert await closed_with(target) == (1000, "Kicked by admin")


async def test_admin_ban_and_unban_upstream_texts(make_chat_server, raw_connect):
    srv = make_chat_server(admin_key=KEY)
    admin = await raw_connect(srv.url, "adm_a")
    target = await raw_connect(srv.url, "adm_b")
    await admin.send({"type": "ADMIN_BAN", "agent_id": target.agent_id, "admin_key": "bad"})
    assert (await admin.error("AUTH_REQUIRED"))["message"] == "invalid admin key"
    await admin.send({"type": "ADMIN_UNBAN", "agent_id": target.agent_id, "admin_key": "bad"})
    assert (await admin.error("AUTH_REQUIRED"))["message"] == "invalid admin key"
    await admin.send({"type": "ADMIN_UNBAN", "agent_id": target.agent_id, "admin_key": KEY})
    assert (await admin.error("AGENT_NOT_FOUND"))["message"] == "agent not banned"
    await admin.send({"type": "ADMIN_BAN", "agent_id": target.agent_id, "admin_key": KEY})
    res = await admin.expect("ADMIN_RESULT", action="ban")
    assert res["agentId"] == target.agent_id
    assert (await target.expect("BANNED"))["reason"] == "Banned by admin"
    assert await closed_with(target) == (1000, "Banned by admin")
    # A ban given without a reason reads "You are banned" at login, as upstream.
    again = await raw_connect(srv.url)
    await again.send({"type": "IDENTIFY", "name": "adm_b", "pubkey": target.identity.public_pem})
    chal = await again.expect("CHALLENGE")
    text = auth_signing_string(chal["nonce"], chal["challenge_id"], 7)
    await again.send({"type": "VERIFY_IDENTITY", "challenge_id": chal["challenge_id"],
                      "timestamp": 7, "signature": target.identity.sign(text)})  # fmt: skip
    assert (await again.error("BANNED"))["message"] == "You are banned"
    assert await closed_with(again) == (1000, "Banned")
    await admin.send({"type": "ADMIN_UNBAN", "agent_id": target.agent_id, "admin_key": KEY})
    assert _strip_ts(await admin.expect("ADMIN_RESULT", action="unban")) == {
        "type": "ADMIN_RESULT", "action": "unban", "success": True, "agentId": target.agent_id
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["ADMIN_KICK", "ADMIN_BAN", "ADMIN_UNBAN"])
async def test_moderation_without_admin_key_is_not_configured(chat_server, raw_connect, kind):
    a = await raw_connect(chat_server, "alice")
    await a.send({"type": kind, "agent_id": "@0000000000000000", "admin_key": "anything"})
    err = await a.error("INVALID_MSG")
    assert err["message"] == "Moderation not configured (no admin key)"
