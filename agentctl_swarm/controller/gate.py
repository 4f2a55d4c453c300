"""The node's local gate: may this agent start a Claude Code session on this machine now?

The coordinator keeps the fleet-wide limits (max-active, budget); the gate keeps what
only the node knows: how many sessions run here (``max_active`` per node) and whether
the machine has the memory for one more. A runner that was assigned a task asks over its
control socket before it promotes; "no" becomes UNCLAIM and the task goes back.

:class:`LocalGate` is the policy (pure). :class:`ControlServer` is its asyncio shell: one
Unix socket per agent, in a directory mounted only into that agent's container at
``/run/agentctl``, so the socket a request arrives on says which agent is asking.
Requests are JSON lines: ``{"op": "slot", "task": ...}`` → ``{"ok": true}`` or
``{"ok": false, "reason": ...}``; ``{"op": "release"}`` frees the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agentctl_swarm.core.logs import log_event

log = logging.getLogger("agentctl.controller")

SOCKET_NAME = "control.sock"
MAX_REQUEST = 4096


@dataclass
class LocalGate:
    """Slots per node: at most ``max_active`` sessions, and ``min_free_bytes`` of memory
    left after one more starts (``memory_per_agent`` each)."""

    max_active: int
    memory_per_agent: int = 0
    min_free_bytes: int = 256 * 1024**2
    slots: dict[str, str] = field(default_factory=dict)  # agent -> task

    def request(self, agent: str, task: str, mem_available: int | None) -> tuple[bool, str]:
        """Grant or refuse a slot; an agent asking again replaces its own slot."""
        self.slots.pop(agent, None)
        if len(self.slots) >= self.max_active:
            busy = ", ".join(sorted(self.slots))
            return False, f"{len(self.slots)} sessions already run on this node ({busy})"
        if mem_available is not None:
            left = mem_available - self.memory_per_agent
            if left < self.min_free_bytes:
                mib = mem_available // 1024**2
                return False, f"only {mib} MiB of memory available on this node"
        self.slots[agent] = task
        return True, ""

    def release(self, agent: str) -> None:
        self.slots.pop(agent, None)

    def retain(self, agents: Iterable[str]) -> list[str]:
        """Drop the slots of agents that are no longer running; returns who was dropped."""
        keep = set(agents)
        gone = [a for a in self.slots if a not in keep]
        for agent in gone:
            del self.slots[agent]
        return gone


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable in bytes (None when the kernel does not say)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class ControlServer:
    """Per-agent control sockets under ``root/<fleet>/<agent>/control.sock``."""

    def __init__(
        self,
        root: Path,
        fleet: str,
        gate: LocalGate,
        *,
        memory: Callable[[], int | None] = mem_available,
    ) -> None:
        self.root = root / fleet
        self.gate = gate
        self.memory = memory
        self.servers: dict[str, asyncio.AbstractServer] = {}

    def socket_path(self, agent: str) -> Path:
        return self.root / agent / SOCKET_NAME

    async def ensure(self, agents: Iterable[str]) -> None:
        """Listen for exactly these agents (new ones added, departed ones closed)."""
        wanted = set(agents)
        for agent in sorted(wanted - set(self.servers)):
            path = self.socket_path(agent)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a socket left by a previous `up`: replace it
            server = await asyncio.start_unix_server(
                lambda r, w, a=agent: self._serve(a, r, w), path=str(path)
            )
            # The agent's uid is a subordinate id of its user namespace: the socket
            # (in a directory mounted into that one container only) must admit it.
            os.chmod(path, 0o666)
            self.servers[agent] = server
        for agent in sorted(set(self.servers) - wanted):
            await self._close(agent)

    async def close(self) -> None:
        for agent in list(self.servers):
            await self._close(agent)

    async def _close(self, agent: str) -> None:
        server = self.servers.pop(agent)
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path(agent).unlink()

    async def _serve(
        self, agent: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            raw = await asyncio.wait_for(reader.readline(), 5)
            request = json.loads(raw[:MAX_REQUEST] or b"{}")
            op = request.get("op") if isinstance(request, dict) else None
            if op == "slot":
                task = str(request.get("task") or "?")[:64]
                ok, reason = self.gate.request(agent, task, self.memory())
                log_event(log, "gate.slot", agent=agent, task=task, granted=ok, reason=reason)
                answer: dict[str, object] = {"ok": ok, "reason": reason}
            elif op == "release":
                self.gate.release(agent)
                answer = {"ok": True}
            else:
                answer = {"ok": False, "reason": f"unknown request {op!r}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ValueError, OSError):
            pass
        finally:
            writer.close()
