"""The client side against a hostile (or broken) server on 127.0.0.1 (issue 8): frames that
are not JSON, break the JSON rules, nest without end, or have every field of the wrong
type must be skipped by the client library and by agentchat-mcp, never end the session.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from agentctl_swarm.chat.client import AgentChatClient
from tests.chat.test_mcp_server import call, mcp_agent

pytestmark = pytest.mark.timeout(60)


def hostile_frames(now: int) -> list[str]:
    """Garbage first, then one good MSG (content "ok")."""
    return [
        "not json",
        "NaN",
        "[" * 100_000,
        '{"type":"MSG","to":"#general","from":"@x","content":"big","ts":1e999}',
        '{"type":"MSG","to":[],"from":{},"content":5,"ts":"abc","msg_id":7}',
        '{"type":"MSG","to":"#general","from":"@x","content":"\\ud800","ts":[1]}',
        '{"type":"YIELD","channel":["#general"],"ts":"x"}',
        '{"type":"PROPOSAL","from":[],"to":{},"ts":null}',
        '{"type":"ERROR","code":[],"message":{}}',
        '"just a string"',
        json.dumps({"type": "MSG", "to": "#general", "from": "@friend", "from_name": "f",
                    "content": "ok", "ts": now + 1000, "msg_id": f"{now}-okokok"}),
    ]  # fmt: skip


@asynccontextmanager
async def hostile_server(
    on_join: Callable[[ServerConnection], Awaitable[None]],
) -> AsyncIterator[str]:
    """A fake AgentChat server: WELCOME without a challenge, JOINED, PONG, and whatever
    ``on_join`` sends after the first JOIN of #general."""

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            kind, ts = frame.get("type"), int(time.time() * 1000)
            if kind == "IDENTIFY":
                await ws.send(json.dumps({"type": "WELCOME", "ts": ts, "agent_id": "@me00000000000000",
                                          "name": frame["name"], "server": "hostile"}))  # fmt: skip
            elif kind == "JOIN":
                await ws.send(json.dumps({"type": "JOINED", "ts": ts, "channel": frame["channel"],
                                          "agents": []}))  # fmt: skip
                if frame["channel"] == "#general":
                    await on_join(ws)
            elif kind == "PING":
                await ws.send(json.dumps({"type": "PONG", "ts": ts}))

    async with serve(handler, "127.0.0.1", 0, max_size=None) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def _send_all(ws: ServerConnection) -> None:
    for text in hostile_frames(int(time.time() * 1000)):
        await ws.send(text)


async def test_client_skips_hostile_frames_and_stays_connected() -> None:
    async with hostile_server(_send_all) as url:
        client = AgentChatClient(url, name="me", reconnect=False)
        await client.connect()
        try:
            await client.join("#general")
            got = []
            while (frame := await client.recv(timeout=3)) is not None:
                got.append(frame)
                if frame.get("content") == "ok":
                    break
            assert got and got[-1]["content"] == "ok"
            assert client.connected and not client.finished
            for frame in got:  # whatever it kept re-encodes as strict JSON
                json.dumps(frame, allow_nan=False).encode("utf-8")
            await client.ping()
        finally:
            await client.close()


async def test_malformed_error_does_not_answer_a_pending_join() -> None:
    """An ERROR without a string code arriving while a JOIN waits is skipped, and the
    JOIN still gets its JOINED (CI saw agentchat_connect fail on exactly this race)."""

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            ts = int(time.time() * 1000)
            if frame.get("type") == "IDENTIFY":
                await ws.send(json.dumps({"type": "WELCOME", "ts": ts, "agent_id": "@me00000000000000",
                                          "name": frame["name"], "server": "hostile"}))  # fmt: skip
            elif frame.get("type") == "JOIN":
                await ws.send('{"type":"ERROR","code":[],"message":{}}')
                await ws.send(json.dumps({"type": "JOINED", "ts": ts, "channel": frame["channel"],
                                          "agents": []}))  # fmt: skip

    async with serve(handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        client = AgentChatClient(f"ws://127.0.0.1:{port}", name="me", reconnect=False)
        await client.connect()
        try:
            reply = await client.join("#general")
            assert reply["channel"] == "#general" and client.connected
        finally:
            await client.close()


async def test_mcp_listen_survives_hostile_frames(tmp_path: Path) -> None:
    async with (
        hostile_server(_send_all) as url,
        mcp_agent(tmp_path / "h", url) as mcp,
    ):
        await call(mcp, "agentchat_connect", name="worker")
        heard: list[str] = []
        for _ in range(5):  # a busy machine may split the burst over several listens
            got = await call(mcp, "agentchat_listen", channels=["#general"])
            heard += [m.get("content") for m in got["messages"]]
            if "ok" in heard:
                break
        assert "ok" in heard
        again = await call(mcp, "agentchat_listen", channels=["#general"], tail=20)
        assert isinstance(again["messages"], list)
        inbox = tmp_path / "h" / ".agentchat" / "daemons" / "default" / "inbox.jsonl"
        for line in inbox.read_text(encoding="utf-8").splitlines():
            json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the inbox"))
