"""``agentctl up``: the controller you leave running for a fleet on this machine.

It holds the fleet's "up" lock (one `up` per fleet per machine), starts an embedded
AgentChat server with the task coordinator inside when the fleet names no server,
listens on the runners' control sockets (the local gate), runs the sync-daemon, and
then loops — every ``interval`` seconds and at once on a Podman event of the fleet —
comparing what should be (the fleet file), what is (Podman's containers) and what the
runners report (through the coordinator), and acting on the difference:

- missing agents are created; agents whose spec changed (image, template, a rotated
  secret) are recreated **only while idle** — a task is never interrupted for a roll;
- agents no longer in the fleet (scaled down) are removed once idle, after a final sync;
- the health monitor (controller/health.py) decides about exited containers (backoff,
  degraded), stuck idle runners (missed heartbeats) and quiet active ones (checked,
  never killed for lateness alone), and memory near the limit;
- every decision goes to the events log with its reason (controller/events.py).

Level-triggered: nothing depends on having seen an event; a crash of `up` at any point is
repaired by starting it again (its health memory is persisted). SIGHUP (or
`agentctl reload`) re-reads the fleet file; SIGTERM/Ctrl-C stops assigning, gives
working agents ``work.drain_seconds`` to finish, syncs one last time, stops the agents
(their unfinished tasks go back to the queue) and releases the lock.

Everything blocking (Podman, git) runs in worker threads; the chat server, the
coordinator and the control sockets share this process's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentctl_swarm.config import Settings
from agentctl_swarm.controller import secrets
from agentctl_swarm.controller.apply import _executor, apply_fleet, server_url_for, survey, up_lock
from agentctl_swarm.controller.events import EventLog
from agentctl_swarm.controller.gate import ControlServer, LocalGate
from agentctl_swarm.controller.health import AgentFacts, HealthMonitor, Verdict
from agentctl_swarm.controller.health_store import load_health, save_health, take_clear_requests
from agentctl_swarm.controller.nodes import NodeSet, as_nodes, save_placement
from agentctl_swarm.controller.observe import container_stats
from agentctl_swarm.controller.planner import Action, Kind, Plan, plan
from agentctl_swarm.core.errors import AgentctlError
from agentctl_swarm.core.logs import log_event
from agentctl_swarm.fleet.loader import FleetError, LoadedFleet
from agentctl_swarm.fleet.model import parse_memory
from agentctl_swarm.fleet.render import ContainerSpec, role_of
from agentctl_swarm.fleet.source import read_fleet
from agentctl_swarm.podman.backend import PodmanBackend
from agentctl_swarm.podman.types import ContainerStats, ObservedContainer
from agentctl_swarm.sync.daemon import SyncDaemon

log = logging.getLogger("agentctl.controller")

BUSY_STATES = frozenset({"promoting", "active", "demoting"})
# A session counts as alive while its transcript was written this recently (seconds).
SESSION_QUIET_LIMIT = 120.0


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
        backend: PodmanBackend | NodeSet,
        settings: Settings,
        *,
        report: Report = lambda _line: None,
        interval: float = 5.0,
        on_view: Callable[[UpView], None] | None = None,
    ) -> None:
        self.loaded = loaded
        self.backend = as_nodes(backend)
        self.settings = settings
        self.report = report
        self.interval = interval
        self.on_view = on_view
        self.view = UpView()
        self.events = EventLog(settings.state_dir, loaded.fleet.name)
        self.health = HealthMonitor.restore(
            loaded.fleet.work.heartbeat_interval,
            load_health(settings.state_dir, loaded.fleet.name),
        )
        self.wake = asyncio.Event()
        self.reload_requested = False
        self._chat: Any = None  # the embedded server's handle
        self._detach: Callable[[], Any] | None = None
        self._coordinator: Any = None
        self._coordinators: tuple[str, ...] = ()
        self._url = ""
        self._specs: list[ContainerSpec] = []
        self._values: secrets.SecretValues | None = None
        self._sync_stop = threading.Event()
        self._sync_thread: threading.Thread | None = None
        self._sync_daemon: SyncDaemon | None = None
        self._watching = threading.Event()
        self._noted: dict[tuple[str, str], str] = {}  # (agent, kind) -> last reason told
        self._started = time.time()
        self._board_answered = True  # the last read of the coordinator's board worked
        self._stats: dict[str, ContainerStats] = {}  # this pass's memory/CPU samples

    @property
    def fleet(self) -> Any:
        return self.loaded.fleet

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (one `up` per fleet per machine: the up lock)."""
        with up_lock(self.settings, self.fleet.name, purpose="start it again"):
            await self._run(stop)

    def request_reload(self) -> None:
        """SIGHUP: re-read the fleet file on the next pass (which starts at once)."""
        self.reload_requested = True
        self.wake.set()

    async def _run(self, stop: asyncio.Event) -> None:
        self._url, self._coordinators = await self._start_chat()
        self.view.url = self._url
        gate = LocalGate(
            max_active=self.fleet.work.max_active, memory_per_agent=self._agent_memory()
        )
        control = ControlServer(control_root(self.settings), self.fleet.name, gate)
        self.events.emit("up.start", reason=f"agents talk to {self._url}", pid=os.getpid())
        try:
            self.report(f"applying fleet {self.fleet.name!r} (agents talk to {self._url})")
            result = await asyncio.to_thread(
                apply_fleet,
                self.loaded,
                self.backend,
                self._settings(),
                coordinators=self._coordinators,
                on_done=lambda o: self.report(
                    f"  {o.action.kind.value} {o.action.name}: {'ok' if o.ok else o.error}"
                ),
            )
            if result.failed:
                self.report(f"{len(result.failed)} agents could not be set up; see above")
            await asyncio.to_thread(self._load_specs)
            self._start_sync()
            self._watch_events(asyncio.get_running_loop())
            while not stop.is_set():
                # cleared before the pass looks, so an event during the pass (an agent
                # that died after the pass listed it running) starts the next one at once
                self.wake.clear()
                if self.reload_requested:
                    self.reload_requested = False
                    await self._reload(gate)
                await self._pass(control, gate)
                waits = {
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self.wake.wait()),
                }
                _, pending = await asyncio.wait(
                    waits, timeout=self._until_next_pass(), return_when=asyncio.FIRST_COMPLETED
                )
                for task in pending:
                    task.cancel()
            await self._drain()
        finally:
            await self._stop_all(control)

    def _until_next_pass(self) -> float:
        """Seconds to the next pass: the interval, or less when an exited agent's backoff
        is over sooner (its start must not wait for the next interval)."""
        now = time.time()
        due = self.health.next_start(now)
        return self.interval if due is None else max(0.0, min(self.interval, due - now))

    def _settings(self) -> Settings:
        return self.settings.model_copy(update={"server_url": self._url})

    def _load_specs(self) -> None:
        """The desired containers (with the secrets' current versions), each placed on its
        node (stable: agents stay where they run, or where they were last put)."""
        self._values = secrets.load(self.loaded, self.settings.state_dir)
        seen = survey(
            self.loaded, self.backend, self._settings(), self._values,
            coordinators=self._coordinators,
        )  # fmt: skip
        self._specs = [*seen.specs, *seen.skipped]
        save_placement(self.settings.state_dir, self.fleet.name, seen.placement)

    # ------------------------------------------------------------------ one pass

    async def _pass(self, control: ControlServer, gate: LocalGate) -> None:
        """One look at the world and the actions that close the gap (level-triggered)."""
        try:
            observed = await asyncio.to_thread(self.backend.list_owned, self.fleet.name)
        except AgentctlError as exc:
            self.report(f"cannot list the fleet's containers: {exc}")
            return
        for agent in take_clear_requests(self.settings.state_dir, self.fleet.name):
            self.health.clear(agent)
            self._noted.pop((agent, "degraded"), None)  # a new crash loop is told again
            self.events.emit("health.cleared", agent=agent, reason="restarted by a person")
        for node, why in self.backend.unreachable.items():
            self._note(node, "node", f"node {node} does not answer ({why}); its agents are "
                       "left as they are", event="up.node_unreachable", node=node)  # fmt: skip
        views = await self._runner_views()
        now = time.time()
        down = self.backend.unreachable
        the_plan = plan([s for s in self._specs if s.node not in down], observed, prune=True)
        self._stats = await asyncio.to_thread(
            container_stats, self.backend, [o.name for o in observed if o.running]
        )
        todo: list[Action] = []
        for action in the_plan.actions:
            todo += await self._decide(action, views, now)
        if todo:
            await asyncio.to_thread(self._execute, Plan(tuple(todo)))
        await control.ensure(o.agent for o in observed)
        for agent in gate.retain([o.agent for o in observed if o.running]):
            log_event(log, "gate.freed", agent=agent, reason="its container is not running")
        await asyncio.to_thread(
            save_health, self.settings.state_dir, self.fleet.name, self.health.snapshot()
        )
        self._refresh_view(observed, gate, views)

    async def _decide(
        self, action: Action, views: dict[str, dict[str, Any]], now: float
    ) -> list[Action]:
        agent = action.agent
        busy = self._busy(agent, views, action.observed)
        if action.kind is Kind.CREATE:
            self.events.emit("reconcile.create", agent=agent, reason=action.reason)
            return [action]
        if action.kind is Kind.RECREATE:
            if busy:
                self._note(agent, "roll", "spec changed; waiting until it is idle to recreate it")
                return []
            self.events.emit("reconcile.recreate", agent=agent, reason=action.reason)
            return [action]
        if action.kind is Kind.DELETE:
            if busy:
                self._note(agent, "delete", "no longer in the fleet; removed once it is idle")
                return []
            self.events.emit(
                "reconcile.delete", agent=agent, reason="not in the fleet (scaled down)"
            )
            return [action]
        observed = action.observed
        if observed is None:
            return []
        facts = self._facts(observed, views.get(agent))
        decision = self.health.assess(facts, now)
        if decision.verdict is Verdict.CHECK:
            alive = await asyncio.to_thread(self._session_alive, observed.name)
            facts = AgentFacts(**{**facts.__dict__, "session_alive": alive})
            self.events.emit(
                "health.check", agent=agent, reason=decision.reason, session_alive=alive
            )
            decision = self.health.assess(facts, now)
        if decision.verdict is Verdict.START:
            self._noted.pop((agent, "wait"), None)  # the next crash's backoff is told again
            self.events.emit("health.start", agent=agent, reason=decision.reason,
                             restarts=self.health.health(agent).restarts)  # fmt: skip
            return [Action(Kind.START, observed.name, agent, decision.reason, observed=observed)]
        if decision.verdict is Verdict.RESTART:
            self.events.emit("health.restart", agent=agent, reason=decision.reason,
                             restarts=self.health.health(agent).restarts)  # fmt: skip
            await asyncio.to_thread(self._restart, observed.name)
        elif decision.verdict is Verdict.DEGRADED:
            self._note(agent, "degraded", decision.reason, event="health.degraded")
        elif decision.verdict is Verdict.WAIT:
            self._note(agent, "wait", "exited; restarting with backoff", event="health.backoff",
                       delay=round(decision.delay, 1))  # fmt: skip
        elif decision.verdict is Verdict.ALERT:
            self.events.emit("health.alert", agent=agent, reason=decision.reason)
            self.report(f"{agent}: {decision.reason}")
        return []

    def _note(
        self, agent: str, kind: str, reason: str, *, event: str | None = None, **fields: Any
    ) -> None:
        """An event for a lasting condition, written once (not every pass)."""
        if self._noted.get((agent, kind)) != reason:
            self._noted[(agent, kind)] = reason
            self.events.emit(
                event or f"reconcile.{kind}_deferred", agent=agent, reason=reason, **fields
            )

    def _busy(
        self, agent: str, views: dict[str, dict[str, Any]], observed: ObservedContainer | None
    ) -> bool:
        """Working on a task (the coordinator's view). A task-taking agent whose state is
        not known yet counts as busy while its container runs, for up to three heartbeat
        intervals after `up` started: never interrupt work on a guess."""
        role = role_of(agent)
        spec = next((a for a in self.fleet.agents if a.role == role), None)
        if spec is not None and not spec.takes_tasks:
            return False
        view = views.get(agent)
        if view is None:
            running = observed is not None and observed.running
            young = time.time() - self._started < 3 * self.fleet.work.heartbeat_interval
            # a board that does not answer knows nothing: busy, as apply.busy_agents says
            return running and (young or not self._board_answered)
        return bool(view.get("task")) or view.get("state") in BUSY_STATES

    def _facts(self, observed: ObservedContainer, view: dict[str, Any] | None) -> AgentFacts:
        last = view.get("last_seen") if view else None
        alive = view.get("alive") if view else None
        role = role_of(observed.agent)
        spec = next((a for a in self.fleet.agents if a.role == role), None)
        takes_tasks = spec is not None and spec.takes_tasks
        sample = self._stats.get(observed.name)
        return AgentFacts(
            agent=observed.agent,
            container_state=observed.state,
            runner_state=view.get("state") if view else None,
            # heartbeats only mean something for agents that send them, and only once the
            # coordinator has heard from them at all
            last_heard=float(last) if takes_tasks and last and alive is not None else None,
            exit_code=observed.exit_code,
            memory_used=sample.mem_usage if sample else None,
            memory_limit=sample.mem_limit if sample and sample.mem_limit else None,
        )

    def _session_alive(self, container: str) -> bool:
        """Is Claude Code running in ``container`` and still writing its stream?"""
        probe = (
            "import os, time, glob\n"
            "live = False\n"
            "for p in os.listdir('/proc'):\n"
            "    if p.isdigit():\n"
            "        try: argv = open(f'/proc/{p}/cmdline', 'rb').read()\n"
            "        except OSError: continue\n"
            "        live = live or b'--output-format' in argv\n"
            "files = glob.glob('/state/transcripts/*.jsonl')\n"
            "age = time.time() - max((os.path.getmtime(f) for f in files), default=0)\n"
            f"print('alive' if live and age < {SESSION_QUIET_LIMIT} else 'gone')\n"
        )
        try:
            res = self.backend.exec(
                container, ["python3", "-c", probe], user="1000:1000", timeout=20
            )
        except AgentctlError:
            return False
        return res.stdout.decode().strip() == "alive"

    def _restart(self, container: str) -> None:
        with contextlib.suppress(AgentctlError):
            self.backend.restart(container)

    def _execute(self, the_plan: Plan) -> None:
        assert self._values is not None
        creating = [a.spec for a in the_plan.changes if a.spec is not None]
        executor = _executor(
            self.loaded, self.backend, self._settings(), None, None, False,
            self._outcome, self._values.by_podman_name(creating),
        )  # fmt: skip
        executor.run(the_plan)

    def _outcome(self, outcome: Any) -> None:
        action = outcome.action
        if outcome.ok:
            self.report(f"  {action.kind.value} {action.name}: ok ({outcome.seconds:.1f}s)")
        else:
            self.events.emit(f"reconcile.{action.kind.value}_failed", agent=action.agent,
                             reason=outcome.error or "failed")  # fmt: skip
            self.report(f"  {action.kind.value} {action.name} failed: {outcome.error}")

    async def _runner_views(self) -> dict[str, dict[str, Any]]:
        """The coordinator's view of the agents (state, task, last heartbeat)."""
        try:
            if self._coordinator is not None:
                answer = self._coordinator.http_get("/api/v1/agents")
                doc = answer[1] if answer else {}
            else:
                from agentctl_swarm.coordinator.board_client import board_url, read

                doc = await asyncio.to_thread(read, board_url(self._url), "agents", timeout=5)
        except AgentctlError as exc:
            self._board_answered = False
            self._note(
                "-",
                "board",
                f"cannot read the coordinator's board: {exc}",
                event="up.board_unreachable",
            )
            return {}
        self._board_answered = True
        agents = doc.get("agents", []) if isinstance(doc, dict) else []
        return {a["name"]: a for a in agents if isinstance(a, dict) and "name" in a}

    def _refresh_view(
        self, observed: list[ObservedContainer], gate: LocalGate, views: dict[str, dict[str, Any]]
    ) -> None:
        self.view.agents = [
            {
                "agent": o.agent,
                "role": o.role,
                "state": o.state,
                "runner": (views.get(o.agent) or {}).get("state"),
                "slot": gate.slots.get(o.agent),
                "health": "degraded" if self.health.health(o.agent).degraded else "ok",
            }
            for o in observed
        ]
        if self._coordinator is not None:
            answer = self._coordinator.http_get("/api/v1/tasks")
            if answer is not None:
                self.view.board = answer[1]
        if self.on_view is not None:
            self.on_view(self.view)

    # ------------------------------------------------------------------ reload

    async def _reload(self, gate: LocalGate) -> None:
        """Re-read the fleet file: limits now, template changes rolled to idle agents."""
        try:
            loaded = await asyncio.to_thread(read_fleet, self.loaded.path)
        except FleetError as exc:
            self.events.emit("reload.failed", reason=exc.one_line(), problems=exc.details())
            self.report(f"reload refused, the fleet file has problems: {exc.one_line()}")
            for line in exc.details():
                self.report(f"  {line}")
            return
        if loaded.fleet.nodes != self.fleet.nodes:
            self.backend = NodeSet.for_fleet(loaded.fleet, self.settings.podman_url)
        self.loaded = loaded
        await asyncio.to_thread(self._load_specs)
        gate.max_active = loaded.fleet.work.max_active_per_node or loaded.fleet.work.max_active
        self.health = self.health.with_interval(loaded.fleet.work.heartbeat_interval)
        if self._coordinator is not None:
            self._coordinator.reconfigure(self._board_config())
        self.events.emit("reload.ok", reason=f"re-read {self.loaded.path}")
        self.report(f"reloaded {self.loaded.path}")

    def _board_config(self) -> Any:
        from agentctl_swarm.coordinator.board import BoardConfig

        work = self.fleet.work
        roles = tuple(
            (a.role, a.budget.tokens or 0, a.budget.cost_usd or 0.0)
            for a in self.fleet.agents
            if a.budget is not None
        )
        return BoardConfig(
            max_active=work.max_active,
            token_budget=work.budget.tokens or 0,
            cost_budget_usd=work.budget.cost_usd or 0.0,
            role_budgets=roles,
            heartbeat_interval=work.heartbeat_interval,
            default_timeout=int(work.task_timeout),
            default_retries=work.retries,
            probe_interval=work.probe_interval,
        )

    # ------------------------------------------------------------------ chat

    async def _start_chat(self) -> tuple[str, tuple[str, ...]]:
        """The fleet's server URL, and the coordinator ids runners may trust."""
        external = self.fleet.server or self.settings.server_url
        if external:  # a server node runs the server and coordinator (lima/README.md)
            return external, ()
        from agentctl_swarm.chat.server import ServerConfig, serve
        from agentctl_swarm.coordinator.service import coordinator_identity, embedded
        from agentctl_swarm.coordinator.store import DB_NAME, TaskStore

        data = self.settings.state_dir / "chat" / self.fleet.name
        data.mkdir(parents=True, exist_ok=True)
        ident = coordinator_identity(data / "coordinator-identity.json")
        store = TaskStore(data / DB_NAME)
        config = ServerConfig(
            environ=dict(os.environ),  # the server redacts this process's secret values
            host=self.fleet.embedded.host,
            port=self.fleet.embedded.port,
            data_dir=data,
            trusted_ids=frozenset({ident.agent_id}),
            extra_channels=(self.fleet.work.channel,),
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
        attach = embedded(ident, store, channel=self.fleet.work.channel, board=self._board_config())
        self._detach = await attach(handle)
        self._coordinator = _find_coordinator(handle)
        self.view.embedded = True
        self.report(f"embedded AgentChat server and coordinator on {handle.url}")
        return handle.url, (ident.agent_id,)

    # ------------------------------------------------------------------ events, sync, stop

    def _watch_events(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the loop at once when Podman reports something about the fleet."""

        def watch() -> None:
            while not self._watching.is_set():
                try:
                    for event in self.backend.events(self.fleet.name):
                        if self._watching.is_set():
                            return
                        if wakes(event):
                            loop.call_soon_threadsafe(self.wake.set)
                except Exception:  # the stream broke (Podman restarted): watch again
                    time.sleep(2)

        threading.Thread(target=watch, daemon=True, name="podman-events").start()

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

    async def _drain(self) -> None:
        """Stop assigning; give working agents ``work.drain_seconds`` to finish."""
        if self._coordinator is not None:
            self._coordinator.hold("agentctl up is stopping")
        deadline = time.monotonic() + self.fleet.work.drain_seconds
        while time.monotonic() < deadline:
            views = await self._runner_views()
            working = sorted(
                n for n, v in views.items() if v.get("task") or v.get("state") in BUSY_STATES
            )
            if not working:
                return
            self._note(
                "-", "drain", f"waiting for {', '.join(working)} to finish", event="up.draining"
            )
            await asyncio.sleep(1.0)
        self.events.emit(
            "up.drain_timeout", reason="working agents are stopped; their tasks go back"
        )

    async def _stop_all(self, control: ControlServer) -> None:
        self.report("stopping: final sync, then the agents (unfinished tasks go back to the queue)")
        self._watching.set()
        self._sync_stop.set()
        if self._sync_thread is not None:
            await asyncio.to_thread(self._sync_thread.join, 120)
            if self._sync_daemon is not None:
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
        self.events.emit("up.stop", reason="stopped on request")
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


def wakes(event: dict[str, Any]) -> bool:
    """Does this Podman event of the fleet's call for a look now? Not the execs (the
    sync-daemon's, a session check's, anyone's `podman exec`): they change nothing up
    decides about, and a pass that checks a session would otherwise wake itself."""
    action = str(event.get("Action") or event.get("status") or "")
    return not action.startswith("exec")


def _find_coordinator(handle: Any) -> Any:
    """The embedded coordinator object behind the server's /api/v1 route."""
    for route in getattr(handle, "http_routes", []):
        owner = getattr(route, "__self__", None)
        if owner is not None and hasattr(owner, "board"):
            return owner
    return None


__all__ = ["FleetUp", "UpView", "control_root", "server_url_for"]
