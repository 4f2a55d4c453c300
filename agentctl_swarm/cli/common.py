"""What every CLI module shares: consoles, the -o choice, one-line failures, fleet loading.

Kept in one place so every command fails, loads fleets and prints YAML the same way.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from agentctl_swarm.fleet.loader import FleetError, LoadedFleet, load_fleet

out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False)


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    err.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(code)


def print_problems(exc: FleetError) -> None:
    for problem in exc.problems:
        err.print(str(problem), soft_wrap=True, markup=False)


def load_or_exit(path: Path) -> LoadedFleet:
    """The validated fleet, or every problem printed and exit 2 (nothing changed)."""
    try:
        return load_fleet(path)
    except FleetError as exc:
        print_problems(exc)
        n = len(exc.problems)
        err.print(f"{n} problem{'s' if n != 1 else ''} in {path}; nothing was changed.")
        raise typer.Exit(2) from None


def dump_yaml(rows: Any) -> None:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(rows, sys.stdout)
