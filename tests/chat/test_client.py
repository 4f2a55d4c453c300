"""The asyncio client against a real AgentChat server on loopback.

Every test talks to a real server (``make_chat_server`` / ``chat_server`` from
conftest.py) over real sockets; timers on the server are shrunk where a test would
otherwise wait for upstream's defaults (takeover hold, heartbeat, COMPLETE age).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentctl_swarm.chat.client import (
    AgentChatClient,
    ChatError,
    ConnectError,
    Displaced,
    NotConnected,
    ServerError,
)
from agentctl_swarm.chat.identity import Identity
from agentctl_swarm.chat.server import ServerConfig, ThreadedServer
from agentctl_swarm.core.backoff import Backoff, BackoffCurve

FAST = Backoff(BackoffCurve(initial=0.05, cap=0.5, jitter=0.25))


def _client(url: str, name: str, **kw: Any) -> AgentChatClient:
    kw.setdefault("backoff", Backoff(BackoffCurve(initial=0.05, cap=0.5, jitter=0.25)))
    return AgentChatClient(url, Identity.generate(name), **kw)


async def _next(client: AgentChatClient, pred: Callable[[dict], bool], timeout: float = 10) -> dict:
    """The next frame matching ``pred`` (skipping the rest)."""

    async def scan() -> dict:
        async for frame in client:
            if pred(frame):
                return frame
        raise AssertionError("client finished before the expected frame")

    return await asyncio.wait_for(scan(), timeout)


def _is_msg(content: str) -> Callable[[dict], bool]:
    return lambda f: f.get("type") == "MSG" and f.get("content") == content


async def test_connect_send_receive_and_echo_carries_msg_id(chat_server: str) -> None:
    async with _client(chat_server, "alice") as a, _client(chat_server, "bob") as b:
        assert a.agent_id and a.agent_id.startswith("@") and len(a.agent_id) == 17
        assert a.agent_id == "@" + a.identity.agent_id  # type: ignore[union-attr]
        await a.join("#general")
        await b.join("#general")
        echo = await a.send("#general", "hello bob", echo=True, timeout=10)
        assert echo is not None and echo["from"] == a.agent_id and echo["msg_id"]
        got = await _next(b, _is_msg("hello bob"))
        assert got["msg_id"] == echo["msg_id"]
        assert got["sig"]  # signed by the persistent identity
        reply = await b.send("#general", "hi", in_reply_to=echo["msg_id"], echo=True, timeout=10)
        assert reply is not None and reply["in_reply_to"] == echo["msg_id"]


async def test_requests_lists_presence_nick_claim_and_errors(chat_server: str) -> None:
    async with _client(chat_server, "alice") as a, _client(chat_server, "bob") as b:
        await a.join("#general")
        await b.join("#general")
        names = {c["name"] for c in await a.list_channels()}
        assert {"#general", "#bounties"} <= names
        members = {m["id"] for m in await a.list_agents("#general")}
        assert {a.agent_id, b.agent_id} <= members
        await a.set_presence("busy", "testing")
        assert (await _next(b, lambda f: f.get("type") == "PRESENCE_CHANGED"))["presence"] == "busy"
        changed = await a.set_nick("alice_two")
        assert changed is not None and changed["new_nick"] == "alice_two"
        echo = await b.send("#general", "who takes this?", echo=True, timeout=10)
        assert echo is not None
        # Explicit start times: equal milliseconds would be decided by agent id.
        assert await a.claim(echo["msg_id"], "#general", started_at=1_000) is None  # granted
        lost = await b.claim(echo["msg_id"], "#general", started_at=2_000)
        assert lost is not None and lost["type"] == "YIELD" and lost["holder"] == a.agent_id
        with pytest.raises(ServerError) as err:
            await a.join("#does-not-exist")
        assert err.value.code == "CHANNEL_NOT_FOUND"
        await a.leave("#general")
        await a.leave("#never-existed")  # the server stays silent; no hang, no error
        assert "#general" not in a.channels
        assert (await a.ping())["type"] == "PONG"


async def test_ephemeral_client_is_read_only_and_send_error_surfaces(chat_server: str) -> None:
    async with AgentChatClient(chat_server, None, name="lurker") as c:
        assert c.welcome is not None and c.welcome.get("lurk") is True
        await c.join("#general")
        with pytest.raises(ServerError) as err:
            await c.send("#general", "may I?", echo=True, timeout=10)
        assert err.value.code == "LURK_MODE"
        with pytest.raises(Exception, match="persistent identity"):
            await c.register_skills([{"capability": "x"}])


async def test_unreachable_server_is_one_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"ws://127.0.0.1:{port}"
    with pytest.raises(ConnectError, match=f"cannot reach AgentChat server at {url}"):
        await _client(url, "alice").connect()
    with pytest.raises(ConnectError, match="not a WebSocket URL"):
        await _client("http://127.0.0.1:1", "alice").connect()


async def test_handshake_refusal_is_a_connect_error(chat_server: str) -> None:
    with pytest.raises(ConnectError, match="handshake refused: INVALID_MSG"):
        await AgentChatClient(chat_server, None, name="no spaces allowed").connect()


async def test_token_bucket_keeps_a_burst_error_free(chat_server: str) -> None:
    async with _client(chat_server, "alice") as a, _client(chat_server, "bob") as b:
        await a.join("#general")
        await b.join("#general")
        # Control: two raw MSGs back to back do hit the server's limit...
        async with _client(chat_server, "carol") as c:
            await c.join("#general")
            await c.send_raw({"type": "MSG", "to": "#general", "content": "raw-1"})
            await c.send_raw({"type": "MSG", "to": "#general", "content": "raw-2"})
            err = await _next(c, lambda f: f.get("type") == "ERROR")
            assert err["code"] == "RATE_LIMITED"
        # ...the paced send path never does: a burst of 5 all go through, in order.
        echoes = await asyncio.gather(
            *(a.send("#general", f"burst-{i}", echo=True, timeout=30) for i in range(5))
        )
        assert [e["content"] for e in echoes if e] == [f"burst-{i}" for i in range(5)]
        seen = []
        while len(seen) < 5:
            f = await _next(b, lambda f: str(f.get("content", "")).startswith("burst-"))
            seen.append(f["content"])
        assert seen == [f"burst-{i}" for i in range(5)]
        await a.ping()
        while (f := await a.recv(timeout=0)) is not None:
            assert f.get("type") != "ERROR", f


async def test_frame_window_stays_under_the_flood_close(
    make_chat_server: Callable[..., ThreadedServer],
) -> None:
    # A server that closes a socket after 12 frames in 1 s; the client paces to 10.
    srv = make_chat_server(flood_max_post_auth=12, flood_window_ms=1000)
    async with _client(srv.url, "alice", frame_limit=10, frame_window=1.0) as a:
        for _ in range(20):  # 40 frames (request + PING barrier) would trip the limit
            await a.set_presence("online")
        assert a.reconnects == 0 and a.connected


async def test_reconnect_after_server_restart_rejoins_and_flushes_queue(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ThreadedServer(ServerConfig(host="127.0.0.1", port=0, data_dir=data)).start()
    port = first.port
    url = first.url
    second: ThreadedServer | None = None
    a = _client(url, "alice")
    try:
        await a.connect()
        await a.join("#general")
        await a.join("#engineering")
        first.stop()
        await asyncio.wait_for(_wait(lambda: not a.connected), 10)
        # Sent while the server is down: queued, not lost, not an error.
        await a.send("#general", "queued-1")
        await a.send("#general", "queued-2")
        assert a.queued == 2
        second = ThreadedServer(ServerConfig(host="127.0.0.1", port=port, data_dir=data)).start()
        async with _client(url, "bob") as b:
            await b.join("#general")
            await a.flush(timeout=30)
            assert a.reconnects == 1
            assert a.rejoined == ["#engineering", "#general"]
            got = [(await _next(b, _is_msg(f"queued-{i}")))["content"] for i in (1, 2)]
            assert got == ["queued-1", "queued-2"]
            # The re-joined client still hears the channel.
            await b.send("#general", "welcome back", echo=True, timeout=10)
            await _next(a, _is_msg("welcome back"))
    finally:
        await a.close()
        first.stop()
        if second is not None:
            second.stop()


async def _wait(cond: Callable[[], bool]) -> None:
    while not cond():
        await asyncio.sleep(0.02)


async def test_displaced_client_stops_reconnecting(
    make_chat_server: Callable[..., ThreadedServer],
) -> None:
    srv = make_chat_server(takeover_backoff_ms=50)
    ident = Identity.generate("twin")
    old = AgentChatClient(srv.url, ident, backoff=FAST)
    await old.connect()
    try:
        async with AgentChatClient(srv.url, ident, backoff=FAST) as new:
            assert new.agent_id == old.agent_id
            frames = [f async for f in old]  # iteration ends: the old client is done
            assert any(f["type"] == "SESSION_DISPLACED" for f in frames)
            assert old.displaced and old.finished and old.reconnects == 0
            with pytest.raises(Displaced):
                await old.send("#general", "still me?")
            await new.join("#general")
            assert await new.send("#general", "I am the twin now", echo=True, timeout=10)
    finally:
        await old.close()


async def test_keepalive_pings_are_answered(
    make_chat_server: Callable[..., ThreadedServer],
) -> None:
    # The server pings every 0.1 s and drops a socket without pong after 0.3 s.
    srv = make_chat_server(heartbeat_interval_ms=100, heartbeat_grace_ms=100)
    async with _client(srv.url, "alice") as a:
        await asyncio.sleep(1.0)  # idle well past the drop deadline
        assert (await a.ping())["type"] == "PONG"
        assert a.reconnects == 0


async def test_closed_client_refuses_work(chat_server: str) -> None:
    a = _client(chat_server, "alice")
    await a.connect()
    await a.close()
    assert a.finished
    with pytest.raises(NotConnected):
        await a.send("#general", "too late")
    b = _client(chat_server, "bob")
    async with b:
        with pytest.raises(ChatError, match="the server allows 2097152"):
            await b.send("#general", "x" * (2 * 1024 * 1024 + 1))
    # Iteration ends instead of hanging (leftover frames may still be drained).
    await asyncio.wait_for(_drain(a), 5)


async def _drain(client: AgentChatClient) -> None:
    async for _ in client:
        pass


async def test_marketplace_flow(make_chat_server: Callable[..., ThreadedServer]) -> None:
    srv = make_chat_server(complete_min_age_ms=0)
    async with _client(srv.url, "alice") as a, _client(srv.url, "bob") as b:
        reg = await b.register_skills(
            [{"capability": "code_review", "description": "reviews", "rate": 5, "currency": "TEST"}]
        )
        assert reg["type"] == "SKILLS_REGISTERED" and reg["skills_count"] == 1
        found = await a.search_skills({"capability": "review"})
        assert [r["agent_id"] for r in found["results"]] == [b.agent_id]
        prop = await a.propose(
            b.agent_id or "", "review PR 12", amount=10, currency="TEST", expires=600
        )
        pid = prop["id"]
        assert pid.startswith("prop_") and prop["status"] == "pending"
        incoming = await _next(b, lambda f: f.get("type") == "PROPOSAL" and f.get("id") == pid)
        assert incoming["from"] == a.agent_id
        accepted = await b.accept(pid)
        assert accepted["status"] == "accepted"
        done = await b.complete(pid, proof="merged")
        assert done["status"] == "completed" and "rating_changes" in done
        # A second proposal: rejected; a third: accepted, then disputed.
        p2 = (await a.propose(b.agent_id or "", "task two"))["id"]
        assert (await b.reject(p2, "busy"))["status"] == "rejected"
        p3 = (await a.propose(b.agent_id or "", "task three"))["id"]
        await b.accept(p3)
        disputed = await a.dispute(p3, "not delivered")
        assert disputed["status"] == "disputed"
        with pytest.raises(ServerError) as err:
            await b.accept("prop_nope")
        assert err.value.code == "PROPOSAL_NOT_FOUND"


async def test_banned_client_gives_up_instead_of_retrying_forever(
    make_chat_server: Callable[..., ThreadedServer],
) -> None:
    srv = make_chat_server(admin_key="k-admin-test-1")
    victim = _client(srv.url, "victim")
    await victim.connect()
    try:
        async with _client(srv.url, "admin") as admin:
            await admin.send_raw(
                {"type": "ADMIN_BAN", "agent_id": victim.agent_id, "admin_key": "k-admin-test-1"}
            )
            frames = await asyncio.wait_for(_collect(victim), 30)
            assert "BANNED" in [f["type"] for f in frames]
            # It tried again, was refused at the handshake, and stopped for good.
            assert victim.finished and not victim.displaced
            assert "BANNED" in str(victim.last_error)
            with pytest.raises(NotConnected, match="gave up"):
                await victim.send("#general", "let me back in")
    finally:
        await victim.close()


async def _collect(client: AgentChatClient) -> list[dict]:
    return [f async for f in client]
