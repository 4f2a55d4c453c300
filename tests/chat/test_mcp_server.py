"""agentchat-mcp end to end: ``agentctl-agent mcp`` as a subprocess, driven through the
official MCP client SDK, against a real AgentChat server."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from agentctl_swarm.chat.client import AgentChatClient
from agentctl_swarm.chat.identity import Identity
from agentctl_swarm.chat.server import ThreadedServer

AGENT_BIN = str(Path(sys.executable).with_name("agentctl-agent"))

UPSTREAM_TOOLS = {
    "agentchat_connect",
    "agentchat_send",
    "agentchat_listen",
    "agentchat_channels",
    "agentchat_leave",
    "agentchat_create_channel",
    "agentchat_nick",
    "agentchat_claim",
    "agentchat_set_presence",
    "agentchat_register_skills",
    "agentchat_search_skills",
    "agentchat_propose",
    "agentchat_accept",
    "agentchat_reject",
    "agentchat_complete",
    "agentchat_dispute",
}


@asynccontextmanager
async def mcp_agent(home: Path, url: str, **env: str) -> AsyncIterator[Client]:
    """Start ``agentctl-agent mcp`` with its own HOME and talk MCP to it over stdio."""
    home.mkdir(parents=True, exist_ok=True)
    params = StdioServerParameters(
        command=AGENT_BIN,
        args=["mcp"],
        env={"HOME": str(home), "AGENTCHAT_URL": url, "AGENTCHAT_SETTLE_MS": "100", **env},
    )
    async with Client(params) as client:
        yield client


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    """Call a tool that must succeed; return its JSON result."""
    result = await client.call_tool(tool, args)
    text = result.content[0].text  # type: ignore[union-attr]
    assert not result.is_error, text
    return json.loads(text)


async def call_error(client: Client, tool: str, **args: Any) -> str:
    """Call a tool that must fail; return its error text."""
    result = await client.call_tool(tool, args)
    assert result.is_error, result
    return result.content[0].text  # type: ignore[union-attr]


async def test_tools_have_upstream_names_and_params(tmp_path: Path, chat_server: str) -> None:
    async with mcp_agent(tmp_path / "h", chat_server) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) == UPSTREAM_TOOLS
        props = {name: set(t.input_schema.get("properties", {})) for name, t in tools.items()}
        assert props["agentchat_connect"] == {"name", "identity_path", "channels"}
        assert props["agentchat_send"] == {"target", "message", "in_reply_to"}
        assert props["agentchat_listen"] == {"channels", "tail"}
        assert props["agentchat_claim"] == {"msg_id", "channel"}
        assert props["agentchat_propose"] == {
            "to",
            "task",
            "amount",
            "currency",
            "expires",
            "elo_stake",
        }
        assert tools["agentchat_listen"].input_schema["required"] == ["channels"]


async def test_connect_send_listen_claim(tmp_path: Path, chat_server: str) -> None:
    peer = AgentChatClient(chat_server, Identity.generate("peer"))
    await peer.connect()
    try:
        await peer.join("#general")
        async with mcp_agent(tmp_path / "h", chat_server) as c:
            conn = await call(c, "agentchat_connect", name="worker-1")
            ident_file = tmp_path / "h" / ".agentchat" / "identities" / "worker-1.json"
            assert conn["success"] and conn["persistent"]
            assert conn["identity_path"] == str(ident_file)
            assert conn["agent_id"] == "@" + Identity.load(ident_file).agent_id
            assert "#general" in conn["channels"]

            sent = await call(c, "agentchat_send", target="#general", message="CLAIM: nothing yet")
            assert sent["success"] and sent["msg_id"]

            echo = await peer.send("#general", "TASK: fix the flaky test", echo=True, timeout=10)
            assert echo is not None
            heard = await call(c, "agentchat_listen", channels=["#general"])
            texts = [m["content"] for m in heard["messages"]]
            assert texts == ["TASK: fix the flaky test"]  # not its own, not @server notices
            msg = heard["messages"][0]
            assert msg["msg_id"] == echo["msg_id"]  # the fix over upstream
            assert msg["from"] == peer.agent_id and msg["from_name"] == "peer"

            claimed = await call(c, "agentchat_claim", msg_id=msg["msg_id"], channel="#general")
            assert claimed["success"] and claimed["yielded"] is False
            floor = None
            async for frame in peer:
                if frame.get("type") == "FLOOR_CLAIMED":
                    floor = frame
                    break
            assert floor is not None and floor["msg_id"] == echo["msg_id"]
            assert floor["holder"] == conn["agent_id"]

            reply = await call(
                c,
                "agentchat_send",
                target="#general",
                message="on it",
                in_reply_to=msg["msg_id"],
            )
            assert reply["msg_id"] != msg["msg_id"]

            # The inbox file is upstream's, and its lines keep msg_id too.
            inbox = tmp_path / "h" / ".agentchat" / "daemons" / "default" / "inbox.jsonl"
            lines = [json.loads(x) for x in inbox.read_text().splitlines()]
            assert any(ln.get("msg_id") == echo["msg_id"] for ln in lines)
            tail = await call(c, "agentchat_listen", channels=["#general"], tail=2)
            assert [m["content"] for m in tail["messages"]] == ["TASK: fix the flaky test", "on it"]
    finally:
        await peer.close()


async def test_listen_times_out_and_other_tools(
    tmp_path: Path, make_chat_server: Callable[..., ThreadedServer]
) -> None:
    srv = make_chat_server(complete_min_age_ms=0)
    async with (
        mcp_agent(tmp_path / "a", srv.url, AGENTCHAT_LISTEN_TIMEOUT_MS="300") as a,
        mcp_agent(tmp_path / "b", srv.url) as b,
    ):
        ida = (await call(a, "agentchat_connect", name="alice", channels=["#general"]))["agent_id"]
        await call(b, "agentchat_connect", name="bob")
        quiet = await call(a, "agentchat_listen", channels=["#general"])
        assert quiet["messages"] == [] and quiet["timeout"] is True

        chans = await call(a, "agentchat_channels")
        assert "#general" in {ch["name"] for ch in chans["channels"]}
        assert chans["joined"] == ["#general"]
        assert (await call(a, "agentchat_leave", channel="#general"))["success"]
        assert (await call(a, "agentchat_nick", nick="alice_x"))["nick"] == "alice_x"
        assert (await call(a, "agentchat_set_presence", status_text="reviewing"))["success"]
        err = await call_error(a, "agentchat_set_presence", status_text="x" * 101)
        assert "100" in err
        err = await call_error(a, "agentchat_create_channel", channel="#mine")
        assert "AUTH_REQUIRED" in err  # needs a verified agent, as upstream

        reg = await call(b, "agentchat_register_skills", skills=[{"capability": "review"}])
        assert reg["skills_count"] == 1
        found = await call(a, "agentchat_search_skills", capability="rev")
        assert found["total"] == 1
        bob_id = found["results"][0]["agent_id"]
        prop = await call(a, "agentchat_propose", to=bob_id, task="review PR 1", amount=3)
        pid = prop["proposal_id"]
        # The proposal reaches bob's listen as an EVENT.
        heard = await call(b, "agentchat_listen", channels=["#general"])
        assert any(m.get("event") == "PROPOSAL" and m.get("id") == pid for m in heard["messages"])
        assert (await call(b, "agentchat_accept", proposal_id=pid))["status"] == "accepted"
        assert (await call(b, "agentchat_complete", proposal_id=pid, proof="ok"))[
            "status"
        ] == "completed"
        p2 = (await call(a, "agentchat_propose", to=bob_id, task="two"))["proposal_id"]
        assert (await call(b, "agentchat_reject", proposal_id=p2, reason="no"))[
            "status"
        ] == "rejected"
        p3 = (await call(a, "agentchat_propose", to=bob_id, task="three"))["proposal_id"]
        await call(b, "agentchat_accept", proposal_id=p3)
        assert (await call(a, "agentchat_dispute", proposal_id=p3, reason="late"))[
            "status"
        ] == "disputed"
        assert ida


async def test_failure_paths_are_clear_tool_errors(tmp_path: Path, chat_server: str) -> None:
    async with mcp_agent(tmp_path / "h", chat_server) as c:
        assert "agentchat_connect first" in await call_error(
            c, "agentchat_send", target="#general", message="x"
        )
        err = await call_error(c, "agentchat_connect", identity_path="/etc/passwd")
        assert "must be within" in err
        err = await call_error(c, "agentchat_connect", name="!!!")
        assert "invalid agent name" in err
        # Ephemeral: connects, but the server keeps it read-only (as upstream).
        eph = await call(c, "agentchat_connect")
        assert eph["persistent"] is False and eph["identity_path"] is None
        err = await call_error(c, "agentchat_send", target="#general", message="hi")
        assert "LURK_MODE" in err
        err = await call_error(c, "agentchat_register_skills", skills=[{"capability": "x"}])
        assert "persistent identity" in err
    async with mcp_agent(tmp_path / "h2", "ws://10.1.2.3:6667") as c:
        err = await call_error(c, "agentchat_connect", name="x")
        assert "AGENTCHAT_PUBLIC=true" in err
    async with mcp_agent(tmp_path / "h3", "ws://127.0.0.1:1") as c:
        err = await call_error(c, "agentchat_connect", name="x")
        assert "cannot reach AgentChat server at ws://127.0.0.1:1" in err


async def test_idle_timeout_drops_and_next_call_reconnects(
    tmp_path: Path, chat_server: str
) -> None:
    peer = AgentChatClient(chat_server, Identity.generate("peer"))
    await peer.connect()
    try:
        async with mcp_agent(tmp_path / "h", chat_server, AGENTCHAT_IDLE_TIMEOUT_MS="200") as c:
            me = (await call(c, "agentchat_connect", name="sleepy"))["agent_id"]
            left = None
            async for frame in peer:  # the server sees the idle socket go
                if frame.get("type") == "AGENT_LEFT" and frame.get("agent") == me:
                    left = frame
                    break
            assert left is not None
            sent = await call(c, "agentchat_send", target="#general", message="back again")
            assert sent["from"] == me and sent["msg_id"]
    finally:
        await peer.close()


@pytest.mark.parametrize("argv", [["--help"], ["bogus"]])
def test_cli_usage(argv: list[str]) -> None:
    import subprocess

    proc = subprocess.run([AGENT_BIN, "mcp", *argv], capture_output=True, text=True, timeout=60)
    if argv == ["--help"]:
        assert proc.returncode == 0 and "AGENTCHAT_URL" in proc.stdout
    else:
        assert proc.returncode == 2 and "unexpected arguments" in proc.stderr


def test_bad_env_is_reported(tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.run(
        [AGENT_BIN, "mcp"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(tmp_path), "AGENTCHAT_SETTLE_MS": "soon"},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    # The wording of the one settings loader (agentctl_swarm.config.load_settings).
    assert "AGENTCHAT_SETTLE_MS='soon': must be a number" in proc.stderr


async def test_displaced_session_says_so_and_connect_takes_it_back(
    tmp_path: Path, make_chat_server: Callable[..., ThreadedServer]
) -> None:
    srv = make_chat_server(takeover_backoff_ms=50)
    home = tmp_path / "h"
    async with mcp_agent(home, srv.url) as c:
        me = (await call(c, "agentchat_connect", name="twin"))["agent_id"]
        ident = Identity.load(home / ".agentchat" / "identities" / "twin.json")
        async with AgentChatClient(srv.url, ident) as thief:
            assert thief.agent_id == me
            err = await call_error(c, "agentchat_send", target="#general", message="me?")
            assert "taken over" in err and "agentchat_connect" in err
            again = await call(c, "agentchat_connect", name="twin")
            assert again["agent_id"] == me
            await thief.wait_closed()
            assert thief.displaced
            sent = await call(c, "agentchat_send", target="#general", message="me again")
            assert sent["msg_id"]
