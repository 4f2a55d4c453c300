"""What every CLI module shares: consoles, the -o choice, settings, the Podman backend,
fleet loading and YAML output.

Settings are read here, once per process, at the edge; everything below the CLI gets
them passed in. Failures are raised as AgentctlError and printed by cli/errors.py.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from agentctl_swarm.config import Settings, load_settings
from agentctl_swarm.fleet.source import LoadedFleet, read_fleet

if TYPE_CHECKING:
    from agentctl_swarm.controller.nodes import NodeSet
    from agentctl_swarm.podman.backend import PodmanBackend

out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False)


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


@lru_cache(maxsize=1)
def settings() -> Settings:
    """This process's ``AGENTCTL_*`` settings (a bad value is a UsageError naming it)."""
    return load_settings(Settings)


def backend(*, ping: bool = True) -> PodmanBackend:
    """The Podman backend on the configured socket; UnavailableError with the fix if down."""
    from agentctl_swarm.podman.backend import PodmanBackend

    podman = PodmanBackend(settings().podman_url)
    if ping:
        podman.ping()
    return podman


def fleet_backend(loaded: LoadedFleet) -> PodmanBackend | NodeSet:
    """The fleet's Podman: its `nodes:` (each looked at in parallel; a node that does not
    answer is reported, not fatal), else the configured socket as for :func:`backend`."""
    if not loaded.fleet.nodes:
        return backend()
    from agentctl_swarm.controller.nodes import NodeSet

    nodes = NodeSet.for_fleet(loaded.fleet, settings().podman_url)
    nodes.ping()  # raises only when no node answers
    return nodes


def load(path: Path) -> LoadedFleet:
    """The validated fleet; FleetError (every problem, exit 2) otherwise."""
    return read_fleet(path)


def dump_yaml(rows: Any) -> None:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(rows, sys.stdout)
