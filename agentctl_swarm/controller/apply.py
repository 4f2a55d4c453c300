"""The use cases behind `apply`, `diff` and `delete`: load -> lock -> observe -> plan -> act.

This is the seam between the CLI (which only parses and prints) and the parts that do
the work. Every function takes the backend and the settings, so tests and benchmarks
drive exactly the code path a user does.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from agentctl_swarm.config import Settings
from agentctl_swarm.controller import preflight, secrets
from agentctl_swarm.controller.executor import EventSink, Executor, Outcome
from agentctl_swarm.controller.hooks import WorkspaceHooks
from agentctl_swarm.controller.lifecycle import LifecycleHooks
from agentctl_swarm.controller.planner import Plan, deletion_plan, plan
from agentctl_swarm.controller.secrets import SecretValues
from agentctl_swarm.core.errors import AgentctlError
from agentctl_swarm.core.files import LockBusy, file_lock
from agentctl_swarm.fleet.loader import LoadedFleet
from agentctl_swarm.fleet.render import ContainerSpec, fleet_secret_prefix, render_fleet
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
    loaded: LoadedFleet,
    settings: Settings,
    values: SecretValues | None = None,
    *,
    home: Path | None = None,
    coordinators: tuple[str, ...] = (),
) -> list[ContainerSpec]:
    """The containers the fleet asks for (``home`` expands ``~``; default: this user's).

    ``values``: the secrets' current values; their versions are part of each spec, so a
    rotated secret shows as a change. ``coordinators``: chat ids runners take work from
    (`agentctl up` knows its embedded coordinator's).
    """
    return render_fleet(
        loaded.fleet,
        home=home or Path.home(),
        server_url=settings.server_url,
        secret_versions=values.versions if values else None,
        control_root=settings.state_dir / "control",
        coordinators=coordinators,
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
        ) from exc


def diff_fleet(
    loaded: LoadedFleet, backend: PodmanBackend, settings: Settings, *, prune: bool = False
) -> Plan:
    """What `apply` would do (reads only; secret values are read to see rotations)."""
    values = secrets.load(loaded, settings.state_dir)
    return plan(
        desired(loaded, settings, values), backend.list_owned(loaded.fleet.name), prune=prune
    )


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
    coordinators: tuple[str, ...] = (),
) -> Result:
    """Make Podman match the fleet. A no-op apply costs one list call."""
    values = secrets.load(loaded, settings.state_dir)
    specs = desired(loaded, settings, values, coordinators=coordinators)
    with fleet_lock(settings, loaded.fleet.name, on_wait):
        the_plan = plan(specs, backend.list_owned(loaded.fleet.name), prune=prune)
        if on_plan is not None:
            on_plan(the_plan)
        if dry_run or not the_plan.has_changes:
            return Result(the_plan)
        preflight.check_tools()
        creating = [a.spec for a in the_plan.changes if a.spec is not None]
        if creating:
            preflight.check_host(loaded, creating, backend, protect=protected_paths(settings))
            preflight.check_engine(
                loaded, creating, backend.engine, allow_unenforced=settings.allow_unenforced_limits
            )
        executor = _executor(
            loaded,
            backend,
            settings,
            hooks,
            concurrency,
            force,
            on_done,
            values.by_podman_name(creating),
        )
        result = Result(the_plan, executor.run(the_plan))
        if not result.failed:
            _drop_unused_secrets(backend, loaded.fleet.name, specs)
        return result


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
    """Remove every container of the fleet (final sync first); volumes only when asked.

    Refused while `agentctl up` runs the fleet (it would start the agents again): stop it
    first. With ``volumes`` the fleet's secrets and this machine's task board and chat
    history of its embedded server go too.
    """
    name = loaded.fleet.name
    with up_lock(settings, name, purpose="delete it"), fleet_lock(settings, name, on_wait):
        the_plan = deletion_plan(backend.list_owned(name))
        if on_plan is not None:
            on_plan(the_plan)
        if the_plan.has_changes:
            preflight.check_tools()
        executor = _executor(loaded, backend, settings, hooks, concurrency, force, on_done)
        result = Result(the_plan, executor.run(the_plan))
        removed: list[str] = []
        if volumes and not result.failed:
            for volume in backend.list_volumes(name):
                if backend.remove_volume(volume):
                    removed.append(f"volume {volume}")
            for secret in backend.list_secrets(fleet_secret_prefix(name)):
                backend.remove_secret(secret)
                removed.append(f"secret {secret}")
            for local in (
                settings.state_dir / "chat" / name,
                settings.state_dir / "control" / name,
            ):
                if local.is_dir():
                    shutil.rmtree(local, ignore_errors=True)
                    removed.append(f"local data {local}")
        return result, removed


def leftovers(backend: PodmanBackend, fleet: str) -> tuple[list[str], list[str]]:
    """(volumes, secrets) of ``fleet`` still in Podman (what `delete` left behind)."""
    return backend.list_volumes(fleet), backend.list_secrets(fleet_secret_prefix(fleet))


def _drop_unused_secrets(backend: PodmanBackend, fleet: str, specs: list[ContainerSpec]) -> None:
    """Remove this fleet's secrets no desired container mounts any more (old versions)."""
    wanted = {ref.podman_name for spec in specs for ref in spec.secrets}
    for secret in backend.list_secrets(fleet_secret_prefix(fleet)):
        if secret not in wanted:
            backend.remove_secret(secret)


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
