"""The chat server's hooks for the embedded coordinator: trusted ids (verified, not
rate-limited, never flood-closed), channels that exist from the start, HTTP routes."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from agentctl_swarm.chat.identity import Identity


async def test_trusted_id_is_verified_and_not_rate_limited(make_chat_server, raw_connect):
    trusted = Identity.generate("coordinator")
    srv = make_chat_server(trusted_ids=frozenset({trusted.agent_id}), extra_channels=("#work",))
    c = await raw_connect(srv.url)
    welcome = await c.login("coordinator", trusted)
    assert welcome["verified"] is True
    await c.send({"type": "JOIN", "channel": "#work"})
    await c.expect("JOINED", channel="#work")
    for i in range(80):  # past both the 1 msg/s limit and the 60 frames / 10 s flood close
        await c.send({"type": "MSG", "to": "#work", "content": f"ASSIGN id=t-{i} agent=a"})
    frames = []
    while len([f for f in frames if f.get("type") == "MSG" and f.get("to") == "#work"]) < 80:
        frame = await c.recv(10)
        assert frame.get("type") != "ERROR", frame
        frames.append(frame)


async def test_others_stay_rate_limited_and_unverified(make_chat_server, raw_connect):
    trusted = Identity.generate("coordinator")
    srv = make_chat_server(trusted_ids=frozenset({trusted.agent_id}), extra_channels=("#work",))
    c = await raw_connect(srv.url)
    welcome = await c.login("runner")
    assert welcome["verified"] is False
    for _ in range(2):
        await c.send({"type": "MSG", "to": "#work", "content": "CLAIM id=t-1"})
    await c.error("RATE_LIMITED")
    await c.send({"type": "CREATE_CHANNEL", "channel": "#other"})
    await c.error("AUTH_REQUIRED")


async def test_http_routes_hook(make_chat_server):
    srv = make_chat_server()
    assert srv.handle is not None
    srv.handle.http_routes.append(
        lambda path: (200, {"path": path}) if path.startswith("/api/v1/") else None
    )

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    assert await asyncio.to_thread(get, "/api/v1/tasks?x=1") == (
        200,
        json.dumps({"path": "/api/v1/tasks"}).encode(),
    )
    assert await asyncio.to_thread(get, "/nope") == (404, b"Not Found")
    status, body = await asyncio.to_thread(get, "/health")
    assert status == 200 and json.loads(body)["status"] == "healthy"
