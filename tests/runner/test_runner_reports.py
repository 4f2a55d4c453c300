"""A task's report (DONE, FAIL, ...) must reach the coordinator (found by the chaos
suite: with the server unreachable for a minute, the DONEs the runners had written to
sockets that then died were gone, and the coordinator ran both finished tasks again).
The runner sends a report until the server echoes it: `send_confirmed`.

A real `agentctl server` process and the real client; SIGSTOP makes the server
unreachable without closing anything.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentctl_swarm.agent.runner import Runner, RunnerSettings, send_confirmed
from agentctl_swarm.chat.client import AgentChatClient, ServerError
from agentctl_swarm.chat.identity import Identity
from agentctl_swarm.config import AgentChatSettings
from tests.integration.helpers import free_port, start_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, "AGENTCTL_STATE_DIR": str(tmp_path / "state")}
    args = ["--port", str(port), "--data-dir", str(tmp_path / "chat"), "--no-coordinator"]
    proc = start_server(args, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    yield f"ws://127.0.0.1:{port}", proc
    os.kill(proc.pid, signal.SIGCONT)
    proc.kill()
    proc.wait(timeout=30)


async def test_a_report_without_an_echo_is_sent_again_until_the_server_takes_it(
    server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, proc = server
    async with AgentChatClient(url, Identity.generate("swarm-builder-000")) as client:
        await client.join("#general")
        os.kill(proc.pid, signal.SIGSTOP)  # unreachable: nothing answers
        loop = asyncio.get_running_loop()
        loop.call_later(3.0, os.kill, proc.pid, signal.SIGCONT)
        calls = 0

        async def report() -> None:
            nonlocal calls
            calls += 1
            await client.send("#general", "DONE id=t-1 agent=swarm-builder-000", echo=True,
                              timeout=2)  # fmt: skip

        assert await send_confirmed(report)
        assert calls >= 2  # the first send saw no echo in time and was not the last


async def test_a_report_written_to_a_connection_that_died_is_sent_again(tmp_path: Path) -> None:
    """The chaos suite's case: the server stalls, the report goes into the socket, the
    connection dies before the server reads it; only a new send after the reconnect
    gets it there."""
    port = free_port()
    env = {**os.environ, "AGENTCTL_STATE_DIR": str(tmp_path / "state")}
    args = ["--port", str(port), "--data-dir", str(tmp_path / "chat"), "--no-coordinator"]
    first = start_server(args, env)
    _wait_port(port)
    second: subprocess.Popen[bytes] | None = None
    try:
        client = AgentChatClient(f"ws://127.0.0.1:{port}", Identity.generate("swarm-builder-000"))
        async with client:
            await client.join("#general")
            os.kill(first.pid, signal.SIGSTOP)
            calls = 0

            async def report() -> None:
                nonlocal calls
                calls += 1
                await client.send("#general", "DONE id=t-1 agent=swarm-builder-000",
                                  echo=True, timeout=30)  # fmt: skip

            sending = asyncio.ensure_future(send_confirmed(report, pause=0.5))
            await asyncio.sleep(1.5)  # written into the stalled server's socket
            first.kill()  # the connection dies with the report unread
            first.wait(timeout=30)
            second = start_server(args, env)
            assert await asyncio.wait_for(sending, 60)
            assert calls >= 2
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)


async def test_a_rate_limited_report_is_sent_again_and_other_refusals_are_final() -> None:
    codes = ["RATE_LIMITED", None]

    async def limited() -> None:
        code = codes.pop(0)
        if code:
            raise ServerError(code, "Rate limit exceeded (max 1 message per second)")

    assert await send_confirmed(limited, pause=0)
    assert not codes
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise ServerError("NOT_INVITED", "Not a member of #work")

    assert not await send_confirmed(refused, pause=0)
    assert calls == 1


def test_while_a_report_is_unconfirmed_the_heartbeat_says_demoting_with_its_task(
    tmp_path: Path,
) -> None:
    """An idle heartbeat while the DONE is still on its way would have the coordinator
    requeue the finished task as lost ("the agent reports itself idle")."""
    cfg = RunnerSettings(agent="swarm-builder-000", role="builder", state_dir=tmp_path)
    runner = Runner(cfg, AgentChatSettings())
    assert runner._beat().state == "idle"
    runner._reporting = "t-1"
    beat = runner._beat()
    assert (beat.state, beat.id, beat.agent) == ("demoting", "t-1", "swarm-builder-000")
