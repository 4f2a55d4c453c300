"""The client survives a real server *process* being killed and started again."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

from agentctl_swarm.chat.client import AgentChatClient
from agentctl_swarm.chat.identity import Identity
from agentctl_swarm.core.backoff import Backoff, BackoffCurve
from tests.chat.conftest import start_server_process


async def test_client_rides_out_a_killed_server_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, url = start_server_process("--data-dir", str(data), port=0)
    port = int(url.rsplit(":", 1)[1])
    procs = [first]
    a = AgentChatClient(
        url,
        Identity.generate("alice"),
        backoff=Backoff(BackoffCurve(initial=0.05, cap=0.5, jitter=0.25)),
    )
    try:
        await a.connect()
        await a.join("#general")
        first.send_signal(signal.SIGKILL)  # a crash, not a clean shutdown
        first.wait(timeout=10)
        while a.connected:
            await asyncio.sleep(0.02)
        for i in range(3):
            await a.send("#general", f"while-down-{i}")
        assert a.queued == 3
        second, _ = start_server_process("--data-dir", str(data), port=port)
        procs.append(second)
        async with AgentChatClient(url, Identity.generate("bob")) as b:
            await b.join("#general")
            await a.flush(timeout=60)
            assert a.reconnects >= 1 and a.rejoined == ["#general"]
            got: list[str] = []

            async def collect() -> None:
                async for frame in b:
                    if str(frame.get("content", "")).startswith("while-down-"):
                        got.append(frame["content"])
                        if len(got) == 3:
                            return

            await asyncio.wait_for(collect(), 30)
            assert got == ["while-down-0", "while-down-1", "while-down-2"]
    finally:
        await a.close()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
