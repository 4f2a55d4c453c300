"""Checks that need the host but must pass before anything changes.

Secret values are read here (from the host env or a file) and handed to the executor
in memory only; an unreadable secret, a missing image or a missing bind-mount source is
reported at its place in the fleet file, and the apply stops before touching Podman.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agentctl_swarm.core.errors import AgentctlError
from agentctl_swarm.fleet.loader import FleetError, LoadedFleet, Loc, Problem, agent_field_sources
from agentctl_swarm.fleet.model import SecretSpec
from agentctl_swarm.fleet.render import ContainerSpec, secret_name

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


def secret_values(
    loaded: LoadedFleet, *, environ: dict[str, str] | None = None
) -> dict[str, bytes]:
    """Podman secret name -> value for every secret the fleet uses; FleetError if any is missing."""
    env = os.environ if environ is None else environ
    values: dict[str, bytes] = {}
    problems: list[Problem] = []
    for loc, secret in _secrets(loaded):
        name = secret_name(loaded.fleet.name, secret.name)
        if secret.from_env is not None:
            value = env.get(secret.from_env)
            if value is None:
                problems.append(
                    loaded.locate(
                        (*loc, "from_env"),
                        f"environment variable {secret.from_env} is not set; "
                        "export it before applying",
                    )
                )
                continue
            values[name] = value.encode()
        elif secret.from_file is not None:
            path = Path(secret.from_file).expanduser()
            if not path.is_absolute():
                path = loaded.path.parent / path
            try:
                values[name] = path.read_bytes()
            except OSError as exc:
                problems.append(
                    loaded.locate((*loc, "from_file"), f"cannot read {path}: {exc.strerror or exc}")
                )
    if problems:
        raise FleetError(problems)
    return values


def check_host(loaded: LoadedFleet, specs: Sequence[ContainerSpec], backend: PodmanBackend) -> None:
    """Images exist and bind-mount sources exist; FleetError naming the place otherwise."""
    problems: list[Problem] = []
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
                    loc, f"image {image} is not present; run `agentctl build` (or podman pull it)"
                )
            )
    for loc, source in _bind_sources(loaded):
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
        raise FleetError(_unique(problems))


def _secrets(loaded: LoadedFleet) -> Iterator[tuple[Loc, SecretSpec]]:
    for base, spec in agent_field_sources(loaded.fleet):
        for index, secret in enumerate(spec.secrets or []):
            yield (*base, "secrets", index), secret


def _bind_sources(loaded: LoadedFleet) -> Iterator[tuple[Loc, str]]:
    for base, spec in agent_field_sources(loaded.fleet):
        for index, volume in enumerate(spec.volumes or []):
            if volume.is_host_path:
                yield (*base, "volumes", index, "source"), volume.source


def _repo_paths(loaded: LoadedFleet) -> Iterator[tuple[Loc, str]]:
    fleet = loaded.fleet
    if fleet.repo is not None and fleet.repo.path:
        yield ("repo", "path"), fleet.repo.path
    for base, spec in agent_field_sources(fleet):
        if spec.repo is not None and spec.repo.path:
            yield (*base, "repo", "path"), spec.repo.path


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            out.append(problem)
    return out
