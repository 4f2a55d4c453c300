"""The chat server, its store and the MCP server log through core/logs: one valid JSON
object per line when not on a terminal, exceptions as fields, nothing on the MCP's stdout;
and the server redacts the secrets of the environment it is given (issue 7)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentctl_swarm.chat.server import ServerConfig, ThreadedServer
from agentctl_swarm.core.logs import setup_logging
from tests.chat.conftest import start_server_process

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Route ``agentctl.*`` records to a buffer as JSON lines; undo it afterwards."""
    buf = io.StringIO()
    root = setup_logging("chat-server", fmt="json", stream=buf)
    try:
        yield buf
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.propagate = True
        root.setLevel(logging.NOTSET)


def records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_a_failing_handler_is_logged_as_one_json_record(json_log, raw_connect):
    with ThreadedServer(ServerConfig(host="127.0.0.1", port=0)) as srv:
        a = await raw_connect(srv.url, "alice")

        def boom(*_: Any) -> None:
            raise RuntimeError("injected failure")

        await asyncio.to_thread(srv.call, lambda: setattr(srv.handle.core, "_h_ping", boom))
        await a.send({"type": "PING"})
        await a.error("INVALID_MSG")
    logged = records(json_log.getvalue())  # every line parses
    failed = [r for r in logged if r.get("event") == "chat.handler_failed"]
    assert len(failed) == 1
    assert failed[0]["level"] == "ERROR" and failed[0]["frame_type"] == "PING"
    assert "RuntimeError: injected" in failed[0]["exc_info"]  # the traceback is a field


def test_the_server_process_logs_json_lines_on_stderr(tmp_path: Path) -> None:
    proc, url = start_server_process("--data-dir", str(tmp_path / "d"))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert proc.stderr is not None
    logged = records(proc.stderr.read())
    assert any(r.get("event") == "chat.server.listening" and r["url"] == url for r in logged)
    assert all(r["component"] == "chat-server" for r in logged)


async def test_secrets_of_the_given_environment_are_redacted(raw_connect) -> None:
    env = {"DEPLOY_TOKEN": "tok-1234567890", "HARMLESS": "tok-1234567890x"}
    with ThreadedServer(ServerConfig(host="127.0.0.1", port=0, environ=env)) as srv:
        a = await raw_connect(srv.url, "alice")
        await a.send({"type": "MSG", "to": "#general", "content": "it is tok-1234567890"})
        got = await a.expect("MSG", **{"from": a.agent_id})
        assert got["content"] == "it is [REDACTED:env:DEPLOY_TOKEN]"


async def test_the_library_does_not_read_the_process_environment(monkeypatch, raw_connect):
    monkeypatch.setenv("DEPLOY_TOKEN", "tok-1234567890")
    with ThreadedServer(ServerConfig(host="127.0.0.1", port=0)) as srv:
        a = await raw_connect(srv.url, "alice")
        await a.send({"type": "MSG", "to": "#general", "content": "it is tok-1234567890"})
        assert (await a.expect("MSG", **{"from": a.agent_id}))["content"] == "it is tok-1234567890"


async def test_agentctl_server_redacts_its_own_environment(monkeypatch, raw_connect):
    monkeypatch.setenv("AGENTCTL_TEST_SECRET", "s3cr3t-value-123")
    proc, url = start_server_process()
    try:
        a = await raw_connect(url, "alice")
        await a.send({"type": "MSG", "to": "#general", "content": "s3cr3t-value-123"})
        got = await a.expect("MSG", **{"from": a.agent_id})
        assert got["content"] == "[REDACTED:env:AGENTCTL_TEST_SECRET]"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_mcp_server_keeps_stdout_for_mcp(tmp_path: Path) -> None:
    """A bad setting is reported on stderr; stdout (the MCP channel) stays empty."""
    agent = str(Path(sys.executable).with_name("agentctl-agent"))
    proc = subprocess.run(
        [agent, "mcp"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(tmp_path), "AGENTCHAT_PUBLIC": "perhaps"},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "AGENTCHAT_PUBLIC='perhaps'" in proc.stderr
