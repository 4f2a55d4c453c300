"""The use cases behind `apply`, `diff` and `delete`: load -> lock -> observe -> plan -> act.

This is the seam between the CLI (which only parses and prints) and the parts that do
the work. Every function takes the backend and the settings, so tests and benchmarks
drive exactly the code path a user does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from agentctl_swarm.config import Settings
from agentctl_swarm.controller import preflight
from agentctl_swarm.controller.executor import EventSink, Executor, Outcome
from agentctl_swarm.controller.hooks import WorkspaceHooks
from agentctl_swarm.controller.lifecycle import LifecycleHooks
from agentctl_swarm.controller.planner import Plan, deletion_plan, plan
from agentctl_swarm.core.files import file_lock
from agentctl_swarm.fleet.loader import LoadedFleet
from agentctl_swarm.fleet.render import ContainerSpec, render_fleet
from agentctl_swarm.podman.backend import PodmanBackend

LOCK_TIMEOUT = 300.0


@dataclass
class Result:
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def desired(
    loaded: LoadedFleet, settings: Settings, *, home: Path | None = None
) -> list[ContainerSpec]:
    """The containers the fleet asks for (``home`` expands ``~``; default: this user's)."""
    return render_fleet(loaded.fleet, home=home or Path.home(), server_url=settings.server_url)


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


def diff_fleet(
    loaded: LoadedFleet, backend: PodmanBackend, settings: Settings, *, prune: bool = False
) -> Plan:
    """What `apply` would do (reads only)."""
    return plan(desired(loaded, settings), backend.list_owned(loaded.fleet.name), prune=prune)


def apply_fleet(
    loaded: LoadedFleet,
    backend: PodmanBackend,
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
) -> Result:
    """Make Podman match the fleet. A no-op apply costs one list call."""
    specs = desired(loaded, settings)
    with fleet_lock(settings, loaded.fleet.name, on_wait):
        the_plan = plan(specs, backend.list_owned(loaded.fleet.name), prune=prune)
        if on_plan is not None:
            on_plan(the_plan)
        if dry_run or not the_plan.has_changes:
            return Result(the_plan)
        preflight.check_tools()
        creating = [a.spec for a in the_plan.changes if a.spec is not None]
        secrets = preflight.secret_values(loaded) if creating else {}
        if creating:
            preflight.check_host(loaded, creating, backend)
        executor = _executor(loaded, backend, settings, hooks, concurrency, force, on_done, secrets)
        return Result(the_plan, executor.run(the_plan))


def delete_fleet(
    loaded: LoadedFleet,
    backend: PodmanBackend,
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
    """Remove every container of the fleet (final sync first); volumes only when asked."""
    name = loaded.fleet.name
    with fleet_lock(settings, name, on_wait):
        the_plan = deletion_plan(backend.list_owned(name))
        if on_plan is not None:
            on_plan(the_plan)
        if the_plan.has_changes:
            preflight.check_tools()
        executor = _executor(loaded, backend, settings, hooks, concurrency, force, on_done)
        result = Result(the_plan, executor.run(the_plan))
        removed_volumes: list[str] = []
        if volumes and not result.failed:
            for volume in backend.list_volumes(name):
                if backend.remove_volume(volume):
                    removed_volumes.append(volume)
            for spec in desired(loaded, settings):
                for secret in spec.secrets:
                    backend.remove_secret(secret.podman_name)
        return result, removed_volumes


def _executor(
    loaded: LoadedFleet,
    backend: PodmanBackend,
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
