"""The client survives a real server *process* being killed and started again."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from agentctl_swarm.chat.backoff import Backoff
from agentctl_swarm.chat.client import AgentChatClient
from agentctl_swarm.chat.identity import Identity

AGENTCTL = str(Path(sys.executable).with_name("agentctl"))


def start_server(port: int, data: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [AGENTCTL, "server", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "running on" not in line:
        proc.kill()
        raise AssertionError(f"server did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[-1].strip()


async def test_client_rides_out_a_killed_server_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, url = start_server(0, data)
    port = int(url.rsplit(":", 1)[1])
    procs = [first]
    a = AgentChatClient(url, Identity.generate("alice"), backoff=Backoff(0.05, maximum=0.5))
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
        second, _ = start_server(port, data)
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
