"""Checks that need the host but must pass before anything changes.

A missing tool, a missing image, a missing bind-mount source or a mount that resolves to a
sensitive host path is reported at its place in the fleet file, and the apply stops
before touching Podman. (Secret values are read by controller/secrets.py.)
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agentctl_swarm.core.errors import AgentctlError
from agentctl_swarm.fleet.loader import (
    FleetError,
    LoadedFleet,
    Loc,
    Problem,
    agent_field_sources,
    unique_problems,
)
from agentctl_swarm.fleet.model import VolumeSpec
from agentctl_swarm.fleet.paths import sensitive_match
from agentctl_swarm.fleet.render import DEFAULT_RESOURCES, ContainerSpec
from agentctl_swarm.podman import engine as eng

if TYPE_CHECKING:
    from agentctl_swarm.podman.backend import PodmanBackend


class MissingTool(AgentctlError):
    """A program agentctl needs on the host is not installed."""


def check_tools(path: str | None = None) -> None:
    """git must be on PATH: without it no workspace is seeded and no final sync runs.

    Called before anything that creates or removes containers (and before the sync
    machinery, which needs git, is even imported), so a missing git stops the command
    with the fix instead of silently skipping the sync that keeps work from being lost.
    """
    if shutil.which("git", path=path) is None:
        raise MissingTool(
            "git is not installed (or not on PATH); agentctl needs it to seed workspaces and "
            "to bring agents' work out before any container is removed",
            hint="install it (e.g. `apt-get install git`) and run the command again",
        )


def check_host(
    loaded: LoadedFleet,
    specs: Sequence[ContainerSpec],
    backend: PodmanBackend,
    *,
    protect: tuple[str, ...] = (),
    node: str | None = None,
    local: bool = True,
) -> None:
    """Images exist, bind-mount sources exist and do not resolve (through symlinks) to a
    sensitive host path; FleetError naming the place otherwise.

    ``protect``: more host paths no agent may mount (the state dir, the Podman socket).
    ``node``: the fleet node ``backend`` is (named in the errors); host paths are checked
    only when it is ``local`` (this machine's files).
    """
    problems: list[Problem] = []
    on_node = f" on node {node}" if node else ""
    home = os.path.realpath(os.path.expanduser("~"))
    extra = tuple(os.path.realpath(p) for p in protect)
    for loc, volume in _volumes(loaded) if local else ():
        if not volume.is_host_path or volume.allow_sensitive:
            continue
        resolved = os.path.realpath(os.path.expanduser(volume.source))
        hit = sensitive_match(resolved, extra=extra, home=home)
        if hit:
            problems.append(
                loaded.locate(
                    (*loc, "source"),
                    f"{volume.source!r} resolves to {resolved}, which exposes {hit} "
                    "(credentials or host control) to the agent; set `allow_sensitive: true` "
                    "on this volume if you mean it",
                )
            )
    images_seen: dict[str, bool] = {}
    for index, agent in enumerate(loaded.fleet.agents):
        image = next((s.image for s in specs if s.role == agent.role), None)
        if image is None:
            continue
        if image not in images_seen:
            images_seen[image] = backend.image_exists(image)
        if not images_seen[image]:
            loc: Loc = ("agents", index, "image") if agent.image else ("defaults", "image")
            problems.append(
                loaded.locate(
                    loc,
                    f"image {image} is not present{on_node}; run `agentctl build` there "
                    "(or podman pull / podman load it)",
                )
            )
    for loc, source in _bind_sources(loaded) if local else ():
        if not Path(source).expanduser().exists():
            problems.append(loaded.locate(loc, f"host path {source} does not exist"))
    for loc, repo_path in _repo_paths(loaded):
        path = Path(repo_path).expanduser()
        if not (path / ".git").exists() and not (path / "HEAD").is_file():
            problems.append(
                loaded.locate(
                    loc,
                    f"{path} is not a git repository; create it (git init) or fix repo.path",
                )
            )
    if problems:
        raise FleetError(unique_problems(problems))


# -- what the engine can enforce (rootless Podman) ------------------------------------------

log = logging.getLogger("agentctl.controller")


class UnenforceableLimits(FleetError):
    """The fleet sets memory/CPU/pids limits this Podman would silently drop (rootless
    without delegated cgroup controllers); the summary line carries the fix."""

    def __init__(self, problems: list[Problem], fix: str) -> None:
        super().__init__(problems)
        self.hint = fix

    def one_line(self) -> str:
        return f"{super().one_line()}; {self.hint}"


def check_engine(
    loaded: LoadedFleet,
    specs: Sequence[ContainerSpec],
    facts: eng.EngineFacts,
    *,
    allow_unenforced: bool = False,
) -> list[str]:
    """Refuse containers the engine would not run as the fleet says; return warnings.

    Limits are refused, not warned about, by default: the fleet promises agents a cage
    (the README's hardening), and rootless Podman on cgroup v1 (or without delegated
    controllers) accepts the limits and drops them, so an agent could take the host's
    memory and processes while `apply` looked successful. ``allow_unenforced``
    (AGENTCTL_ALLOW_UNENFORCED_LIMITS=1) runs them anyway, with a warning logged every
    time containers are created that way. `network: bridge` without slirp4netns is
    refused always: those containers could not start.
    """
    problems: list[Problem] = []
    limited: dict[Loc, dict[str, str]] = {}  # where a limit comes from -> {name: value}
    bridge: set[Loc] = set()
    dropped: set[str] = set()
    for index, agent in enumerate(loaded.fleet.agents):
        spec = next((s for s in specs if s.role == agent.role), None)
        if spec is None:
            continue
        wanted = [
            name
            for name, value in (
                ("memory", spec.memory_bytes),
                ("cpus", spec.nano_cpus),
                ("pids", spec.pids),
            )
            if value
        ]
        missing = eng.unenforced(facts, wanted)
        dropped.update(missing)
        for name in missing:
            loc, value = _limit_source(loaded, index, name)
            limited.setdefault(loc, {})[name] = value
        if spec.network == "bridge" and eng.bridge_reason(facts):
            own = agent.network is not None
            bridge.add(("agents", index, "network") if own else ("defaults", "network"))
    for loc in sorted(bridge, key=str):
        problems.append(loaded.locate(loc, f"{eng.bridge_reason(facts)}; {eng.BRIDGE_FIX}"))
    reason = eng.limits_reason(facts, sorted(dropped)) if dropped else ""
    if limited and not allow_unenforced:
        for loc, items in limited.items():
            builtin = loc[-1] == "role"
            what = ("the built-in limits " if builtin else "") + ", ".join(
                f"{name} {value}" for name, value in items.items()
            )
            problems.append(loaded.locate(loc, f"{what} would not be enforced: {reason}"))
        raise UnenforceableLimits(unique_problems(problems), eng.limits_fix(facts))
    if problems:
        raise FleetError(unique_problems(problems))
    if not limited:
        return []
    warning = (
        f"limits not enforced: {eng.OPT_OUT_ENV}=1: creating containers WITHOUT their "
        f"{'/'.join(sorted(dropped))} limits ({reason}); each agent can use all of this "
        "host's memory, CPU and processes"
    )
    log.warning(warning)
    return [warning]


def _limit_source(loaded: LoadedFleet, index: int, name: str) -> tuple[Loc, str]:
    """Where agent ``index`` takes limit ``name`` from, and its value as written."""
    fleet = loaded.fleet
    for loc, resources in (
        (("agents", index, "resources", name), fleet.agents[index].resources),
        (("defaults", "resources", name), fleet.defaults.resources),
    ):
        value = getattr(resources, name, None) if resources is not None else None
        if value is not None:
            return loc, f"{value:g}" if isinstance(value, float) else str(value)
    value = getattr(DEFAULT_RESOURCES, name)
    return ("agents", index, "role"), f"{value:g}" if isinstance(value, float) else str(value)


def _bind_sources(loaded: LoadedFleet) -> Iterator[tuple[Loc, str]]:
    for loc, volume in _volumes(loaded):
        if volume.is_host_path:
            yield (*loc, "source"), volume.source


def _volumes(loaded: LoadedFleet) -> Iterator[tuple[Loc, VolumeSpec]]:
    for base, spec in agent_field_sources(loaded.fleet):
        for index, volume in enumerate(spec.volumes or []):
            yield (*base, "volumes", index), volume


def _repo_paths(loaded: LoadedFleet) -> Iterator[tuple[Loc, str]]:
    fleet = loaded.fleet
    if fleet.repo is not None and fleet.repo.path:
        yield ("repo", "path"), fleet.repo.path
    for base, spec in agent_field_sources(fleet):
        if spec.repo is not None and spec.repo.path:
            yield (*base, "repo", "path"), spec.repo.path
