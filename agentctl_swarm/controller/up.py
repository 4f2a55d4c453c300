"""``agentctl up``: the controller you leave running for a fleet on this machine.

It holds the fleet's "up" lock (one `up` per fleet per machine), starts an embedded
AgentChat server with the task coordinator inside when the fleet names no server,
listens on the runners' control sockets (the local gate), applies the fleet, runs the
sync-daemon, and reports what happens until it is told to stop; then it brings the
agents' work out one last time and stops the agents gracefully (their tasks go back to
the queue).

Everything blocking (Podman, git) runs in worker threads; the chat server, the
coordinator and the control sockets share this process's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentctl_swarm.config import Settings
from agentctl_swarm.controller.apply import apply_fleet, up_lock
from agentctl_swarm.controller.gate import ControlServer, LocalGate
from agentctl_swarm.core.errors import AgentctlError
from agentctl_swarm.core.logs import log_event
from agentctl_swarm.fleet.loader import LoadedFleet
from agentctl_swarm.fleet.model import parse_memory
from agentctl_swarm.podman.backend import PodmanBackend
from agentctl_swarm.sync.daemon import SyncDaemon

log = logging.getLogger("agentctl.controller")


@dataclass
class UpView:
    """What `up` shows: the agents and the coordinator's board, refreshed each pass."""

    url: str = ""
    embedded: bool = False
    agents: list[dict[str, Any]] = field(default_factory=list)
    board: dict[str, Any] = field(default_factory=dict)


Report = Callable[[str], None]


def control_root(settings: Settings) -> Path:
    """Where the runners' control sockets live on this machine."""
    return settings.state_dir / "control"


class FleetUp:
    """One `agentctl up` run (see the module docstring)."""

    def __init__(
        self,
        loaded: LoadedFleet,
        backend: PodmanBackend,
        settings: Settings,
        *,
        report: Report = lambda _line: None,
        interval: float = 5.0,
        on_view: Callable[[UpView], None] | None = None,
    ) -> None:
        self.loaded = loaded
        self.fleet = loaded.fleet
        self.backend = backend
        self.settings = settings
        self.report = report
        self.interval = interval
        self.on_view = on_view
        self.view = UpView()
        self._chat: Any = None  # the embedded server's handle
        self._detach: Callable[[], Any] | None = None
        self._coordinator: Any = None
        self._sync_stop = threading.Event()
        self._sync_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (one `up` per fleet per machine: the up lock)."""
        with up_lock(self.settings, self.fleet.name, purpose="start it again"):
            await self._run(stop)

    async def _run(self, stop: asyncio.Event) -> None:
        url, coordinators = await self._start_chat()
        self.view.url = url
        settings = self.settings.model_copy(update={"server_url": url})
        gate = LocalGate(
            max_active=self.fleet.work.max_active,
            memory_per_agent=self._agent_memory(),
        )
        control = ControlServer(control_root(self.settings), self.fleet.name, gate)
        try:
            self.report(f"applying fleet {self.fleet.name!r} (agents talk to {url})")
            result = await asyncio.to_thread(
                apply_fleet,
                self.loaded,
                self.backend,
                settings,
                coordinators=coordinators,
                on_done=lambda o: self.report(
                    f"  {o.action.kind.value} {o.action.name}: {'ok' if o.ok else o.error}"
                ),
            )
            if result.failed:
                self.report(f"{len(result.failed)} agents could not be set up; see above")
            self._start_sync()
            while not stop.is_set():
                await self._pass(control, gate)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
            self.report("stopping: final sync, then the agents (their tasks go back to the queue)")
        finally:
            await self._stop_all(control)

    async def _pass(self, control: ControlServer, gate: LocalGate) -> None:
        """One look at the world: sockets for the agents there are, slots of dead agents
        freed, and the view refreshed."""
        try:
            observed = await asyncio.to_thread(self.backend.list_owned, self.fleet.name)
        except AgentctlError as exc:
            self.report(f"cannot list the fleet's containers: {exc}")
            return
        await control.ensure(o.agent for o in observed)
        running = [o.agent for o in observed if o.running]
        for agent in gate.retain(running):
            log_event(log, "gate.freed", agent=agent, reason="its container is not running")
        self.view.agents = [
            {"agent": o.agent, "role": o.role, "state": o.state, "slot": gate.slots.get(o.agent)}
            for o in observed
        ]
        if self._coordinator is not None:
            answer = self._coordinator.http_get("/api/v1/tasks")
            if answer is not None:
                self.view.board = answer[1]
        if self.on_view is not None:
            self.on_view(self.view)

    # ------------------------------------------------------------------ chat

    async def _start_chat(self) -> tuple[str, tuple[str, ...]]:
        """The fleet's server URL, and the coordinator ids runners may trust."""
        external = self.fleet.server or self.settings.server_url
        if external:  # a server node runs the server and coordinator (lima/README.md)
            return external, ()
        from agentctl_swarm.chat.server import ServerConfig, serve
        from agentctl_swarm.coordinator.board import BoardConfig
        from agentctl_swarm.coordinator.service import coordinator_identity, embedded
        from agentctl_swarm.coordinator.store import DB_NAME, TaskStore

        data = self.settings.state_dir / "chat" / self.fleet.name
        data.mkdir(parents=True, exist_ok=True)
        work = self.fleet.work
        ident = coordinator_identity(data / "coordinator-identity.json")
        store = TaskStore(data / DB_NAME)
        budget = work.budget
        board = BoardConfig(
            max_active=work.max_active,
            token_budget=budget.tokens or 0,
            cost_budget_usd=budget.cost_usd or 0.0,
            heartbeat_interval=work.heartbeat_interval,
            default_timeout=int(work.task_timeout),
            default_retries=work.retries,
            probe_interval=work.probe_interval,
        )
        config = ServerConfig(
            environ=dict(os.environ),  # the server redacts this process's secret values
            host=self.fleet.embedded.host,
            port=self.fleet.embedded.port,
            data_dir=data,
            trusted_ids=frozenset({ident.agent_id}),
            extra_channels=(work.channel,),
        )
        try:
            handle = await serve(config)
        except OSError as exc:
            raise AgentctlError(
                f"cannot run the embedded AgentChat server on {config.host}:{config.port} "
                f"({exc.strerror or exc})",
                hint="stop what uses that port, or set `embedded: {port: N}` in the fleet",
            ) from exc
        self._chat = handle
        attach = embedded(ident, store, channel=work.channel, board=board)
        self._detach = await attach(handle)
        self._coordinator = _find_coordinator(handle)
        self.view.embedded = True
        self.report(f"embedded AgentChat server and coordinator on {handle.url}")
        return handle.url, (ident.agent_id,)

    # ------------------------------------------------------------------ sync and stop

    def _start_sync(self) -> None:
        daemon = SyncDaemon(
            self.fleet,
            self.backend,
            state_dir=self.settings.state_dir,
            base_dir=self.loaded.path.parent.absolute(),
        )
        self._sync_daemon = daemon
        self._sync_thread = threading.Thread(
            target=daemon.run, args=(self._sync_stop,), daemon=True, name="sync-daemon"
        )
        self._sync_thread.start()

    async def _stop_all(self, control: ControlServer) -> None:
        self._sync_stop.set()
        if self._sync_thread is not None:
            await asyncio.to_thread(self._sync_thread.join, 120)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._sync_daemon.run_once)  # the final sync
        with contextlib.suppress(AgentctlError):
            observed = await asyncio.to_thread(self.backend.list_owned, self.fleet.name)
            stops = [
                asyncio.to_thread(self.backend.stop, o.name, None) for o in observed if o.running
            ]
            await asyncio.gather(*stops, return_exceptions=True)
        await control.close()
        if self._detach is not None:
            with contextlib.suppress(Exception):
                await self._detach()
        if self._chat is not None:
            with contextlib.suppress(Exception):
                await self._chat.close()
        self.report("stopped")

    def _agent_memory(self) -> int:
        """Memory one agent may use (its limit), for the gate's free-memory check."""
        limits = [
            a.resources.memory for a in self.fleet.agents if a.resources and a.resources.memory
        ]
        default = self.fleet.defaults.resources
        if default is not None and default.memory is not None:
            limits.append(default.memory)
        return max((parse_memory(m) for m in limits), default=512 * 1024**2)


def _find_coordinator(handle: Any) -> Any:
    """The embedded coordinator object behind the server's /api/v1 route."""
    for route in getattr(handle, "http_routes", []):
        owner = getattr(route, "__self__", None)
        if owner is not None and hasattr(owner, "board"):
            return owner
    return None
