"""The use cases behind `apply`, `diff` and `delete`: load -> lock -> observe -> plan -> act.

This is the seam between the CLI (which only parses and prints) and the parts that do
the work. Every function takes a backend, so tests and benchmarks drive exactly the code
path a user does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agentctl_swarm.config import settings
from agentctl_swarm.controller import preflight
from agentctl_swarm.controller.executor import EventSink, Executor, Outcome
from agentctl_swarm.controller.hooks import LifecycleHooks, hooks_for
from agentctl_swarm.controller.lock import fleet_lock
from agentctl_swarm.controller.planner import Plan, deletion_plan, plan
from agentctl_swarm.fleet.loader import LoadedFleet
from agentctl_swarm.fleet.render import ContainerSpec, render_fleet
from agentctl_swarm.podman.backend import PodmanBackend


@dataclass
class Result:
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def desired(loaded: LoadedFleet) -> list[ContainerSpec]:
    return render_fleet(loaded.fleet, home=Path.home(), server_url=settings().server_url)


def diff_fleet(loaded: LoadedFleet, backend: PodmanBackend, *, prune: bool = False) -> Plan:
    """What `apply` would do (reads only)."""
    return plan(desired(loaded), backend.list_owned(loaded.fleet.name), prune=prune)


def apply_fleet(
    loaded: LoadedFleet,
    backend: PodmanBackend,
    *,
    prune: bool = False,
    dry_run: bool = False,
    force: bool = False,
    concurrency: int | None = None,
    hooks: LifecycleHooks | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_done: EventSink | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Result:
    """Make Podman match the fleet. A no-op apply costs one list call."""
    specs = desired(loaded)
    with fleet_lock(settings().state_dir, loaded.fleet.name, on_wait=on_wait):
        the_plan = plan(specs, backend.list_owned(loaded.fleet.name), prune=prune)
        if on_plan is not None:
            on_plan(the_plan)
        if dry_run or not the_plan.has_changes:
            return Result(the_plan)
        creating = [a.spec for a in the_plan.changes if a.spec is not None]
        secrets = preflight.secret_values(loaded) if creating else {}
        if creating:
            preflight.check_host(loaded, creating, backend)
        executor = _executor(loaded, backend, hooks, concurrency, force, on_done, secrets)
        return Result(the_plan, executor.run(the_plan))


def delete_fleet(
    loaded: LoadedFleet,
    backend: PodmanBackend,
    *,
    volumes: bool = False,
    force: bool = False,
    concurrency: int | None = None,
    hooks: LifecycleHooks | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_done: EventSink | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> tuple[Result, list[str]]:
    """Remove every container of the fleet (final sync first); volumes only when asked."""
    name = loaded.fleet.name
    with fleet_lock(settings().state_dir, name, on_wait=on_wait):
        the_plan = deletion_plan(backend.list_owned(name))
        if on_plan is not None:
            on_plan(the_plan)
        executor = _executor(loaded, backend, hooks, concurrency, force, on_done)
        result = Result(the_plan, executor.run(the_plan))
        removed_volumes: list[str] = []
        if volumes and not result.failed:
            for volume in backend.list_volumes(name):
                if backend.remove_volume(volume):
                    removed_volumes.append(volume)
            for spec in desired(loaded):
                for secret in spec.secrets:
                    backend.remove_secret(secret.podman_name)
        return result, removed_volumes


def _executor(
    loaded: LoadedFleet,
    backend: PodmanBackend,
    hooks: LifecycleHooks | None,
    concurrency: int | None,
    force: bool,
    on_done: EventSink | None,
    secrets: dict[str, bytes] | None = None,
) -> Executor:
    return Executor(
        backend,
        hooks=hooks if hooks is not None else hooks_for(loaded.fleet),
        secrets=secrets,
        concurrency=concurrency or settings().api_concurrency,
        force=force,
        on_done=on_done,
    )
