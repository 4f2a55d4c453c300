"""The use cases behind `apply`, `diff` and `delete`: load -> lock -> observe -> plan -> act.

This is the seam between the CLI (which only parses and prints) and the parts that do
the work. Every function takes the backend and the settings, so tests and benchmarks
drive exactly the code path a user does.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from agentctl_swarm.config import Settings
from agentctl_swarm.controller import preflight, secrets
from agentctl_swarm.controller.executor import EventSink, Executor, Outcome
from agentctl_swarm.controller.hooks import WorkspaceHooks
from agentctl_swarm.controller.lifecycle import LifecycleHooks
from agentctl_swarm.controller.nodes import (
    NodeSet,
    as_nodes,
    load_placement,
    placement_file,
    save_placement,
)
from agentctl_swarm.controller.planner import Kind, Plan, deletion_plan, plan
from agentctl_swarm.controller.scale import Member, ScaleChoice, choose
from agentctl_swarm.controller.secrets import SecretValues
from agentctl_swarm.core.errors import AgentctlError, UsageError
from agentctl_swarm.core.files import LockBusy, file_lock
from agentctl_swarm.fleet.edit import set_instances
from agentctl_swarm.fleet.loader import LoadedFleet
from agentctl_swarm.fleet.placement import PlacementError, place
from agentctl_swarm.fleet.render import ContainerSpec, agent_name, fleet_secret_prefix, render_fleet
from agentctl_swarm.fleet.source import read_fleet
from agentctl_swarm.podman.backend import PodmanBackend
from agentctl_swarm.podman.types import ObservedContainer

LOCK_TIMEOUT = 300.0


@dataclass
class Result:
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def desired(
    loaded: LoadedFleet,
    settings: Settings,
    values: SecretValues | None = None,
    *,
    home: Path | None = None,
    coordinators: tuple[str, ...] = (),
    placement: Mapping[str, str] | None = None,
) -> list[ContainerSpec]:
    """The containers the fleet asks for (``home`` expands ``~``; default: this user's).

    ``values``: the secrets' current values; their versions are part of each spec, so a
    rotated secret shows as a change. ``coordinators``: chat ids runners take work from
    (`agentctl up` knows its embedded coordinator's). ``placement``: agent -> node name
    (see :func:`survey`; default: every agent on this machine's Podman).
    """
    nodes = {n.name: n for n in loaded.fleet.nodes}
    return render_fleet(
        loaded.fleet,
        home=home or Path.home(),
        server_url=settings.server_url,
        secret_versions=values.versions if values else None,
        control_root=settings.state_dir / "control",
        coordinators=coordinators,
        placement={a: nodes[n] for a, n in (placement or {}).items() if n in nodes},
    )


@dataclass
class Survey:
    """One look at every node: what is there, where each agent goes, what it should be."""

    specs: list[ContainerSpec]  # desired containers on nodes that answered
    observed: list[ObservedContainer]  # what those nodes run
    placement: dict[str, str]  # agent -> node, for every agent
    unreachable: dict[str, str]  # node -> why it did not answer
    skipped: list[ContainerSpec]  # desired on nodes that did not answer (left alone)

    def plan(self, *, prune: bool = False) -> Plan:
        found = plan(self.specs, self.observed, prune=prune)
        return replace(found, unreachable=self.unreachable)


def survey(
    loaded: LoadedFleet,
    backend: PodmanBackend | NodeSet,
    settings: Settings,
    values: SecretValues | None = None,
    *,
    coordinators: tuple[str, ...] = (),
) -> Survey:
    """Observe every node, place the agents (stable: where they are, or were last put),
    and render the desired containers. One list call per node; nodes that do not answer
    are reported, and their agents are neither created elsewhere nor deleted."""
    nodes = as_nodes(backend)
    fleet = loaded.fleet
    observed = nodes.list_owned(fleet.name)
    current = {**load_placement(settings.state_dir, fleet.name)}
    current.update({o.agent: o.node for o in observed})
    try:
        placement = place(fleet, current, avoid=nodes.unreachable)
    except PlacementError as exc:
        agent = fleet.agents[exc.index]
        field_ = "node_selector" if agent.node_selector else "replicas"
        raise UsageError(str(loaded.locate(("agents", exc.index, field_), str(exc)))) from None
    specs = desired(loaded, settings, values, coordinators=coordinators, placement=placement)
    down = dict(nodes.unreachable)
    return Survey(
        specs=[s for s in specs if s.node not in down],
        observed=observed,
        placement=placement,
        unreachable=down,
        skipped=[s for s in specs if s.node in down],
    )


def protected_paths(settings: Settings) -> tuple[str, ...]:
    """Host paths no agent may mount: where agentctl keeps its state, Podman's socket."""
    paths = [str(settings.state_dir)]
    if settings.podman_url.startswith("unix://"):
        paths.append(str(Path(settings.podman_url.removeprefix("unix://")).parent))
    return tuple(paths)


@contextmanager
def fleet_lock(
    settings: Settings, fleet: str, on_wait: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """One apply/delete/up at a time per fleet on this machine (flock; dies with us)."""
    with file_lock(
        settings.state_dir / "locks" / f"{fleet}.lock",
        timeout=LOCK_TIMEOUT,
        what=f"fleet {fleet!r}",
        on_wait=on_wait,
    ) as path:
        yield path


class FleetIsUp(AgentctlError):
    """`agentctl up` runs this fleet; the command would fight it."""

    def __init__(self, message: str, *, holder: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder = holder  # the pid of that `agentctl up`


@contextmanager
def up_lock(settings: Settings, fleet: str, *, purpose: str) -> Iterator[Path]:
    """Hold the fleet's `up` lock: `agentctl up` holds it while it runs the fleet."""
    try:
        with file_lock(
            settings.state_dir / "locks" / f"{fleet}.up.lock", timeout=0, what=f"fleet {fleet!r}"
        ) as path:
            yield path
    except LockBusy as exc:
        raise FleetIsUp(
            f"`agentctl up` runs fleet {fleet!r} on this machine (pid {exc.holder})",
            hint=f"stop it first (Ctrl-C, or kill -TERM {exc.holder}), then {purpose}",
            holder=exc.holder,
        ) from exc


def diff_fleet(
    loaded: LoadedFleet,
    backend: PodmanBackend | NodeSet,
    settings: Settings,
    *,
    prune: bool = False,
) -> Plan:
    """What `apply` would do (reads only; secret values are read to see rotations)."""
    values = secrets.load(loaded, settings.state_dir)
    return survey(loaded, backend, settings, values).plan(prune=prune)


def apply_fleet(
    loaded: LoadedFleet,
    backend: PodmanBackend | NodeSet,
    settings: Settings,
    *,
    prune: bool = False,
    dry_run: bool = False,
    force: bool = False,
    concurrency: int | None = None,
    hooks: LifecycleHooks | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_done: EventSink | None = None,
    on_wait: Callable[[str], None] | None = None,
    coordinators: tuple[str, ...] = (),
) -> Result:
    """Make Podman match the fleet. A no-op apply costs one list call (per node).

    Nodes that do not answer are left out (reported in ``Result.plan.unreachable``); the
    others are reconciled all the same.
    """
    values = secrets.load(loaded, settings.state_dir)
    nodes = as_nodes(backend)
    with fleet_lock(settings, loaded.fleet.name, on_wait):
        seen = survey(loaded, nodes, settings, values, coordinators=coordinators)
        the_plan = seen.plan(prune=prune)
        if on_plan is not None:
            on_plan(the_plan)
        if dry_run or not the_plan.has_changes:
            return Result(the_plan)
        preflight.check_tools()
        creating = [a.spec for a in the_plan.changes if a.spec is not None]
        check_nodes(loaded, creating, nodes, settings)
        executor = _executor(
            loaded,
            nodes,
            settings,
            hooks,
            concurrency,
            force,
            on_done,
            values.by_podman_name(creating),
        )
        result = Result(the_plan, executor.run(the_plan))
        save_placement(settings.state_dir, loaded.fleet.name, seen.placement)
        if not result.failed and not seen.unreachable:
            _drop_unused_secrets(nodes, loaded.fleet.name, [*seen.specs, *seen.skipped])
        return result


def check_nodes(
    loaded: LoadedFleet, creating: list[ContainerSpec], nodes: NodeSet, settings: Settings
) -> None:
    """Preflight for the containers about to be created, node by node: images there,
    host paths (on this machine's nodes), and what each engine can enforce."""
    if not creating:
        return
    named = bool(loaded.fleet.nodes)
    for name in sorted({s.node for s in creating}):
        here = [s for s in creating if s.node == name]
        node = nodes.nodes[name]
        preflight.check_host(
            loaded, here, node.backend, protect=protected_paths(settings),
            node=name if named else None, local=node.local,
        )  # fmt: skip
        preflight.check_engine(
            loaded, here, node.backend.engine, allow_unenforced=settings.allow_unenforced_limits
        )


def delete_fleet(
    loaded: LoadedFleet,
    backend: PodmanBackend | NodeSet,
    settings: Settings,
    *,
    volumes: bool = False,
    force: bool = False,
    concurrency: int | None = None,
    hooks: LifecycleHooks | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_done: EventSink | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> tuple[Result, list[str]]:
    """Remove every container of the fleet (final sync first); volumes only when asked.

    Refused while `agentctl up` runs the fleet (it would start the agents again): stop it
    first. With ``volumes`` the fleet's secrets and this machine's task board and chat
    history of its embedded server go too.
    """
    name = loaded.fleet.name
    nodes = as_nodes(backend)
    with up_lock(settings, name, purpose="delete it"), fleet_lock(settings, name, on_wait):
        observed = nodes.list_owned(name)
        the_plan = replace(deletion_plan(observed), unreachable=dict(nodes.unreachable))
        if on_plan is not None:
            on_plan(the_plan)
        if the_plan.has_changes:
            preflight.check_tools()
        executor = _executor(loaded, nodes, settings, hooks, concurrency, force, on_done)
        result = Result(the_plan, executor.run(the_plan))
        removed: list[str] = []
        if volumes and not result.failed and not nodes.unreachable:
            for volume in nodes.list_volumes(name):
                if nodes.remove_volume(volume):
                    removed.append(f"volume {volume}")
            for secret in nodes.list_secrets(fleet_secret_prefix(name)):
                nodes.remove_secret(secret)
                removed.append(f"secret {secret}")
            for local in (
                settings.state_dir / "chat" / name,
                settings.state_dir / "control" / name,
                placement_file(settings.state_dir, name),
            ):
                if local.is_dir():
                    shutil.rmtree(local, ignore_errors=True)
                    removed.append(f"local data {local}")
                elif local.is_file():
                    local.unlink()
        return result, removed


def leftovers(backend: PodmanBackend | NodeSet, fleet: str) -> tuple[list[str], list[str]]:
    """(volumes, secrets) of ``fleet`` still in Podman (what `delete` left behind)."""
    return backend.list_volumes(fleet), backend.list_secrets(fleet_secret_prefix(fleet))


def _drop_unused_secrets(backend: NodeSet, fleet: str, specs: list[ContainerSpec]) -> None:
    """Remove this fleet's secrets no desired container mounts any more (old versions)."""
    wanted = {ref.podman_name for spec in specs for ref in spec.secrets}
    for secret in backend.list_secrets(fleet_secret_prefix(fleet)):
        if secret not in wanted:
            backend.remove_secret(secret)


def _executor(
    loaded: LoadedFleet,
    backend: PodmanBackend | NodeSet,
    settings: Settings,
    hooks: LifecycleHooks | None,
    concurrency: int | None,
    force: bool,
    on_done: EventSink | None,
    secrets: dict[str, bytes] | None = None,
) -> Executor:
    if hooks is None:
        hooks = WorkspaceHooks(loaded.fleet, settings.state_dir, loaded.path.parent.absolute())
    return Executor(
        backend,
        hooks=hooks,
        secrets=secrets,
        concurrency=concurrency or settings.api_concurrency,
        force=force,
        on_done=on_done,
    )


# Words in Podman's and runc's refusals, and the fleet field that decides each.
_FAILURE_FIELDS = (
    (("cpu",), ("resources", "cpus")),
    (("memory", "oom"), ("resources", "memory")),
    (("pids",), ("resources", "pids")),
    (("image", "manifest", "registry"), ("image",)),
    (("mount", "bind", "volume"), ("volumes",)),
    (("secret",), ("secrets",)),
)


def locate_failure(loaded: LoadedFleet, outcome: Outcome) -> str:
    """``FILE:LINE:COL: field: error`` for a failed create, at the field that caused it.

    The field is guessed from the words of the refusal (CPUs, memory, pids, image,
    mounts, secrets), looked up where that agent takes it from (its own entry, else
    `defaults`); anything else points at the agent's `role:` line.
    """
    spec = outcome.action.spec or None
    role = spec.role if spec else None
    index = next((i for i, a in enumerate(loaded.fleet.agents) if a.role == role), None)
    error = outcome.error or "failed"
    if index is None:
        return error
    agent = loaded.fleet.agents[index]
    text = error.lower()
    for words, field_path in _FAILURE_FIELDS:
        if not any(w in text for w in words):
            continue
        head = field_path[0]
        own = getattr(agent, head, None)
        if head == "resources" and own is not None:
            own = getattr(own, field_path[1], None)
        base: tuple[str | int, ...] = ("agents", index) if own is not None else ("defaults",)
        if base == ("defaults",) and getattr(loaded.fleet.defaults, head, None) is None:
            break
        return str(loaded.locate((*base, *field_path), error))
    return str(loaded.locate(("agents", index, "role"), error))


@dataclass
class ScaleResult:
    role: str
    before: list[int]
    choice: ScaleChoice
    applied: Result | None  # None when `agentctl up` carries the change out
    up_pid: str | None


def scale_role(
    path: Path,
    role: str,
    target: int,
    backend: PodmanBackend | NodeSet,
    settings: Settings,
    *,
    busy: Callable[[LoadedFleet], dict[str, bool]],
    on_done: EventSink | None = None,
) -> ScaleResult:
    """Scale ``role`` to ``target`` agents and write that into the fleet file.

    ``busy(loaded)`` says which running agents are working (their coordinator's view).
    The choice (controller/scale.py) goes into the file first — the desired state — then:
    when `agentctl up` runs the fleet it is told to reload (SIGHUP) and carries it out,
    removing busy agents once they are idle; otherwise it is applied here, where busy
    agents are kept until a later `apply --prune` (or `up`) finds them idle.
    """
    loaded = read_fleet(path)
    spec = next((a for a in loaded.fleet.agents if a.role == role), None)
    if spec is None:
        roles = ", ".join(a.role for a in loaded.fleet.agents)
        raise UsageError(f"{path}: no role {role!r}", hint=f"the roles are: {roles}")
    if not 0 <= target <= 999:
        raise UsageError(f"{target} agents: a role has 0 to 999")
    found = as_nodes(backend).list_owned(loaded.fleet.name)
    observed = {o.agent: o for o in found if o.role == role}
    working = busy(loaded)
    members = []
    for i in spec.indexes:
        o = observed.get(agent_name(role, i))
        started = o.started_at.timestamp() if o is not None and o.started_at else None
        members.append(
            Member(index=i, busy=working.get(agent_name(role, i), False), started=started)
        )
    choice = choose(members, target)
    written = set_instances(path, role, choice.keep)
    holder = _up_holder(settings, loaded.fleet.name)
    if holder is not None:
        os.kill(int(holder), signal.SIGHUP)
        return ScaleResult(role, spec.indexes, choice, None, holder)
    keep_busy = {agent_name(role, i) for i in choice.draining}
    result = _apply_pruning(
        LoadedFleet(written.fleet, path, written.tree), backend, settings, keep_busy, on_done
    )
    return ScaleResult(role, spec.indexes, choice, result, None)


def _up_holder(settings: Settings, fleet: str) -> str | None:
    """The pid of the `agentctl up` running ``fleet`` here, if one does."""
    try:
        with up_lock(settings, fleet, purpose="retry"):
            return None
    except FleetIsUp as exc:
        return exc.holder if exc.holder.isdigit() else None


def _apply_pruning(
    loaded: LoadedFleet,
    backend: PodmanBackend | NodeSet,
    settings: Settings,
    keep: set[str],
    on_done: EventSink | None,
) -> Result:
    """apply --prune, except for the agents in ``keep`` (busy ones leave when idle)."""
    values = secrets.load(loaded, settings.state_dir)
    nodes = as_nodes(backend)
    with fleet_lock(settings, loaded.fleet.name):
        seen = survey(loaded, nodes, settings, values)
        full = seen.plan(prune=True)
        actions = tuple(a for a in full.actions if not (a.kind is Kind.DELETE and a.agent in keep))
        the_plan = replace(full, actions=actions)
        if not the_plan.has_changes:
            return Result(the_plan)
        preflight.check_tools()
        creating = [a.spec for a in the_plan.changes if a.spec is not None]
        check_nodes(loaded, creating, nodes, settings)
        executor = _executor(
            loaded, nodes, settings, None, None, False, on_done, values.by_podman_name(creating)
        )
        result = Result(the_plan, executor.run(the_plan))
        save_placement(settings.state_dir, loaded.fleet.name, seen.placement)
        return result


def server_url_for(loaded: LoadedFleet, settings: Settings) -> str:
    """Where the fleet's chat server (and its coordinator) is: the fleet's `server:`, else
    AGENTCTL_SERVER_URL, else the embedded server `agentctl up` runs."""
    fleet = loaded.fleet
    return (
        fleet.server or settings.server_url or f"ws://{fleet.embedded.host}:{fleet.embedded.port}"
    )


def busy_agents(loaded: LoadedFleet, settings: Settings) -> dict[str, bool]:
    """Which task-taking agents are working now, per their coordinator.

    An agent the coordinator does not know (or a coordinator that cannot be reached)
    counts as busy: never remove work on a guess. Agents that take no tasks are never
    busy.
    """
    from agentctl_swarm.coordinator.board_client import board_url, read

    runners = {
        agent_name(a.role, i) for a in loaded.fleet.agents if a.takes_tasks for i in a.indexes
    }
    try:
        doc = read(board_url(server_url_for(loaded, settings)), "agents", timeout=5)
        views = {a["name"]: a for a in doc.get("agents", []) if isinstance(a, dict)}
    except AgentctlError:
        views = {}
    out = {}
    for name in runners:
        view = views.get(name)
        out[name] = view is None or bool(
            view.get("task") or view.get("state") in {"promoting", "active", "demoting"}
        )
    return out
