"""Hostile input against the real server (issue 8, points 1 and 2): real websockets on
127.0.0.1, real SQLite, a real ``agentctl server`` process for SIGTERM.

One bad frame must cost at most that frame: the sender keeps its socket, other clients
(and later joiners, through the replay) are unaffected, the store keeps saving, SIGTERM
still stops the server, and nothing the server sends is anything but strict JSON.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agentctl_swarm.chat import protocol as p
from agentctl_swarm.chat.server import ServerConfig, ThreadedServer
from tests.chat.conftest import start_server_process

pytestmark = pytest.mark.timeout(90)

#: A MSG whose content ends in a lone high surrogate, written as JSON escapes it.
LONE = '{"type":"MSG","to":"#general","content":"x \\ud83d"}'
REPLACED = "x \ufffd"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not strict JSON")


def strict(text: str) -> dict[str, Any]:
    """Parse like a strict JavaScript client: no NaN/Infinity; and the text must encode."""
    text.encode("utf-8")
    return json.loads(text, parse_constant=_no_constants)


async def strict_frames(client: Any, quiet: float = 0.3) -> list[dict[str, Any]]:
    """Every frame ``client`` receives until it is quiet, each checked strictly."""
    frames = []
    while True:
        try:
            raw = await asyncio.wait_for(client.ws.recv(), quiet)
        except TimeoutError:
            return frames
        frames.append(strict(raw))


async def replay_of(client: Any, channel: str) -> list[str]:
    await client.send({"type": "JOIN", "channel": channel})
    await client.expect("JOINED", channel=channel)
    return [f["content"] for f in await strict_frames(client) if f.get("replay")]


# ------------------------------------------------------------------ point 1: lone surrogates


async def test_lone_surrogate_is_relayed_stored_and_replayed(tmp_path: Path, raw_connect):
    cfg = ServerConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "d")
    srv = ThreadedServer(cfg).start()
    try:
        a = await raw_connect(srv.url, "alice")
        b = await raw_connect(srv.url, "bob")
        await b.drain(0.1)
        await a.send(LONE)
        echo = await a.expect("MSG", **{"from": a.agent_id})
        assert echo["content"] == REPLACED  # as a JavaScript peer encodes it
        assert (await b.expect("MSG", **{"from": a.agent_id}))["content"] == REPLACED
        await asyncio.sleep(1.05)
        await a.send({"type": "MSG", "to": "#general", "content": "after"})
        await b.expect("MSG", content="after")
        # A later joiner gets the replay (with the message) instead of a 1011 close.
        c = await raw_connect(srv.url, "carol")
        assert {REPLACED, "after"} <= set(await replay_of(c, "#general"))
        await c.send({"type": "PING"})
        await c.expect("PONG")
    finally:
        srv.stop()
    # Both were persisted: the store was not left in a failed transaction.
    srv2 = ThreadedServer(cfg).start()
    try:
        d = await raw_connect(srv2.url, "dave")
        assert {REPLACED, "after"} <= set(await replay_of(d, "#general"))
    finally:
        srv2.stop()


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"SET_PRESENCE","status":"busy","status_text":"on \\udc00 it"}',
        '{"type":"MSG","to":"#general","content":"hi","in_reply_to":"1-\\ud800"}',
        '{"type":"MSG","to":"#general","content":"hi","sig":"\\udfff"}',
        '{"type":"MSG","to":"#general","content":"key \\ud83d ghp_' + "a" * 36 + '"}',
        '{"type":"SEARCH_SKILLS","query":{"capability":"\\ud800","\\udc01":1},"query_id":"\\ud800"}',
        '{"type":"TYPING","channel":"#general","\\ud800":"\\ud800"}',
    ],
    ids=["status_text", "in_reply_to", "sig", "redacted", "query-keys", "ignored-field"],
)
async def test_lone_surrogates_anywhere_harm_no_one(chat_server, raw_connect, frame):
    a = await raw_connect(chat_server, "alice")
    b = await raw_connect(chat_server, "bob")
    await strict_frames(b, 0.1)
    await a.send(frame)
    await strict_frames(a)  # the sender keeps its socket and gets strict JSON only
    await b.send({"type": "LIST_AGENTS", "channel": "#general"})  # shows status_text
    got = await strict_frames(b)
    assert any(f["type"] == "AGENTS" for f in got)
    c = await raw_connect(chat_server, "carol")
    await replay_of(c, "#general")  # later joiners are not cut off
    await a.send({"type": "PING"})
    await a.expect("PONG")


async def test_sigterm_stops_the_server_after_a_hostile_message(tmp_path: Path, raw_connect):
    data = tmp_path / "d"
    proc, url = start_server_process("--data-dir", str(data))
    try:
        a = await raw_connect(url, "alice")
        b = await raw_connect(url, "bob")
        await a.send(LONE)
        await b.send({"type": "MSG", "to": "#general", "content": "still saving"})
        await b.expect("MSG", content="still saving")
        await asyncio.sleep(0.5)  # past a flush
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0  # no SIGKILL needed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    proc2, url2 = start_server_process("--data-dir", str(data))
    try:
        c = await raw_connect(url2, "carol")
        assert {REPLACED, "still saving"} <= set(await replay_of(c, "#general"))
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(20)


async def test_a_store_error_never_wedges_later_writes(tmp_path: Path, raw_connect):
    cfg = ServerConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "d", flush_interval_ms=50)
    srv = ThreadedServer(cfg).start()
    try:
        a = await raw_connect(srv.url, "alice")
        b = await raw_connect(srv.url, "bob")
        # Another process holds the database's write lock: every flush now fails.
        blocker = sqlite3.connect(tmp_path / "d" / "agentchat.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        await a.send({"type": "MSG", "to": "#general", "content": "during"})
        await b.expect("MSG", content="during")  # the chat goes on meanwhile
        await asyncio.sleep(6)  # longer than any busy timeout: the flushes fail
        await a.send({"type": "PING"})
        await a.expect("PONG", timeout=2)  # and the server still answers
        blocker.execute("ROLLBACK")
        blocker.close()
        await a.send({"type": "MSG", "to": "#general", "content": "after"})
        await b.expect("MSG", content="after")
        await asyncio.sleep(0.5)  # flushed by now; stop() would flush anyway
    finally:
        srv.stop()
    srv2 = ThreadedServer(cfg).start()
    try:
        c = await raw_connect(srv2.url, "carol")
        assert {"during", "after"} <= set(await replay_of(c, "#general"))
    finally:
        srv2.stop()


async def test_a_handler_bug_costs_one_frame_not_the_socket(chat_server_handle, raw_connect):
    srv = chat_server_handle
    a = await raw_connect(srv.url, "alice")
    b = await raw_connect(srv.url, "bob")

    def boom(*_: Any) -> None:
        raise RuntimeError("injected")

    await asyncio.to_thread(srv.call, lambda: setattr(srv.handle.core, "_h_typing", boom))
    await a.send({"type": "TYPING", "channel": "#general"})
    err = await a.error("INVALID_MSG")
    assert err["message"] == "Internal error while handling TYPING"
    await b.drain(0.1)
    await a.send({"type": "MSG", "to": "#general", "content": "fine"})
    await b.expect("MSG", content="fine")


# ------------------------------------------------------------------ point 2: numbers


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"RESPONDING_TO","msg_id":"1-a","channel":"#general","started_at":1e999}',
        '{"type":"RESPONDING_TO","msg_id":"1-a","channel":"#general","started_at":-1e999}',
        '{"type":"RESPONDING_TO","msg_id":"1-a","channel":"#general","started_at":1'
        + "0" * 400
        + "}",
        '{"type":"MSG","to":"#general","content":"x","in_reply_to":1e999}',
        '{"type":"SEARCH_SKILLS","query":{"max_rate":1e400}}',
        '{"type":"RESPONDING_TO","msg_id":"1-a","channel":"#general","started_at":NaN}',
        '{"type":"RESPONDING_TO","msg_id":"1-a","channel":"#general","started_at":Infinity}',
    ],
    ids=["inf", "-inf", "huge-int", "in_reply_to", "nested", "NaN", "Infinity"],
)
async def test_non_finite_numbers_are_refused_and_never_sent(chat_server, raw_connect, frame):
    a = await raw_connect(chat_server, "alice")
    b = await raw_connect(chat_server, "bob")
    await strict_frames(b, 0.1)
    await a.send(frame)
    err = await a.error("INVALID_MSG")
    assert err["message"].startswith("Invalid JSON")
    got = await strict_frames(b)  # nothing reached the peer, and nothing non-strict
    assert not any(
        f["type"] in ("FLOOR_CLAIMED", "MSG") and f.get("from") == a.agent_id for f in got
    )


async def test_an_expiry_that_overflows_is_refused(make_chat_server, raw_connect):
    srv = make_chat_server()
    a = await raw_connect(srv.url, "alice")
    b = await raw_connect(srv.url, "bob")
    task = "t"
    sig = a.identity.sign(p.sign_string_proposal(b.agent_id, task, None, None, None, 1e306))
    await a.send({"type": "PROPOSAL", "to": b.agent_id, "task": task, "expires": 1e306, "sig": sig})
    assert (await a.error("INVALID_MSG"))["message"] == "expires is out of range"
    assert not any(f["type"] == "PROPOSAL" for f in await strict_frames(b))


async def test_bad_frames_never_close_the_sender(chat_server, raw_connect):
    a = await raw_connect(chat_server, "alice")
    for raw in ("[" * 100_000, '"\\ud800"', "1e999", '{"a":' * 5000 + "1" + "}" * 5000):
        await a.send(raw)
        await a.error("INVALID_MSG")
    await a.send({"type": "PING"})
    await a.expect("PONG")


async def test_a_core_failure_or_a_bad_action_costs_only_itself(chat_server_handle, raw_connect):
    """Defence in depth below the handlers: the transport guards every core call and
    every action it performs."""
    from agentctl_swarm.chat.server.state import Send

    srv = chat_server_handle
    a = await raw_connect(srv.url, "alice")
    core = srv.handle.core
    real = core.receive
    calls = {"n": 0}

    def flaky(conn: int, text: str, now: int) -> list[Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("core bug")
        if calls["n"] == 2:  # an action that cannot be sent, then a good one
            return [Send([conn], "\ud800"), Send([conn], '{"type":"PONG","ts":1}')]
        return real(conn, text, now)

    await asyncio.to_thread(srv.call, lambda: setattr(core, "receive", flaky))
    await a.send({"type": "PING"})  # swallowed by the core bug
    await a.send({"type": "PING"})  # the bad action is skipped, the PONG after it is sent
    assert (await a.expect("PONG"))["ts"] == 1
    await a.send({"type": "PING"})
    assert (await a.expect("PONG"))["ts"] > 1
