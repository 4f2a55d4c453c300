"""CLI commands: ``agentctl sync`` (the sync-daemon) and ``agentctl sync status``.

Parsing and printing only; the work is in agentctl_swarm.sync. Exit codes: 0 success;
1 a sync failed (with --once) ; 2 bad fleet file or arguments; 3 Podman unreachable.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from agentctl_swarm.cli.common import Output, dump_yaml, fleet_backend, load, out, settings
from agentctl_swarm.core.errors import UsageError
from agentctl_swarm.core.logs import setup_logging
from agentctl_swarm.fleet.loader import LoadedFleet

FleetOpt = Annotated[
    Path | None, typer.Option("-f", "--file", help="The fleet file (YAML).", show_default=False)
]


sync_app = typer.Typer(
    help=(
        "Bring agents' work out of their containers into host git repos.\n\n"
        "`agentctl sync -f fleet.yaml` runs the sync-daemon (Ctrl-C stops it); "
        "`--once` does one pass; `agentctl sync status -f fleet.yaml` shows per-agent state."
    ),
    no_args_is_help=False,
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `agentctl` app."""
    app.add_typer(sync_app, name="sync")


def _load(path: Path | None) -> LoadedFleet:
    if path is None:
        raise UsageError("no fleet file given", hint="run: agentctl sync -f fleet.yaml")
    return load(path)


def _setup_logging(verbose: bool) -> None:
    setup_logging(
        "sync",
        fmt=settings().log_format,
        level=logging.DEBUG if verbose else logging.INFO,
    )


def _daemon(file: Path | None, once: bool, interval: float | None, output: Output) -> None:
    from agentctl_swarm.controller.preflight import check_tools

    loaded = _load(file)
    if interval is not None and interval <= 0:
        raise UsageError(f"--interval {interval:g}: must be greater than 0 seconds")
    check_tools()
    from agentctl_swarm.sync.daemon import SyncDaemon

    daemon = SyncDaemon(
        loaded.fleet,
        fleet_backend(loaded),
        state_dir=settings().state_dir,
        base_dir=loaded.path.parent.absolute(),
        interval=interval,
    )
    if once:
        results = daemon.run_once()
        if output == Output.json:
            out.print_json(json.dumps([_result_dict(r) for r in results]))
        elif output == Output.yaml:
            dump_yaml([_result_dict(r) for r in results])
        else:
            table = Table("AGENT", "OK", "COMMITS", "BYTES", "REFS", "ERROR", box=None)
            for r in results:
                table.add_row(
                    r.agent, "yes" if r.ok else "no", str(r.commits), str(r.bytes),
                    str(len(r.updates)), r.error or "",
                )  # fmt: skip
            out.print(table)
        raise typer.Exit(0 if all(r.ok for r in results) else 1)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    daemon.run(stop)


def _result_dict(result: object) -> dict:
    data = asdict(result)  # type: ignore[call-overload]
    data["updates"] = [
        {"ref": u["ref"], "new": u["new"], "reason": u["reason"]} for u in data["updates"]
    ]
    return data


@sync_app.callback(invoke_without_command=True)
def sync(
    ctx: typer.Context,
    file: FleetOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="One pass over all agents, then exit.")
    ] = False,
    interval: Annotated[
        float | None,
        typer.Option("--interval", help="Seconds between passes (default: sync.interval)."),
    ] = None,
    output: Annotated[
        Output, typer.Option("-o", "--output", help="Output of --once.")
    ] = Output.table,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Run the sync-daemon for a fleet (see `agentctl sync --help`)."""
    if ctx.invoked_subcommand is not None:
        return
    _setup_logging(verbose)
    _daemon(file, once, interval, output)


@sync_app.command("run")
def run(
    file: FleetOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="One pass over all agents, then exit.")
    ] = False,
    interval: Annotated[
        float | None, typer.Option("--interval", help="Seconds between passes.")
    ] = None,
    output: Annotated[Output, typer.Option("-o", "--output")] = Output.table,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Same as `agentctl sync -f FLEET`: run the sync-daemon."""
    _setup_logging(verbose)
    _daemon(file, once, interval, output)


@sync_app.command("status")
def status(
    file: FleetOpt = None,
    output: Annotated[Output, typer.Option("-o", "--output")] = Output.table,
) -> None:
    """Per agent: last sync time, syncs, commits and bytes brought out, last error."""
    from agentctl_swarm.sync.state import SyncStateStore

    loaded = _load(file)
    states = SyncStateStore(settings().state_dir).list(loaded.fleet.name)
    if output == Output.json:
        out.print_json(json.dumps([asdict(s) for s in states]))
        return
    if output == Output.yaml:
        dump_yaml([asdict(s) for s in states])
        return
    if not states:
        out.print(f"no agent of fleet {loaded.fleet.name} has been synced yet")
        return
    table = Table("AGENT", "LAST SYNC", "SYNCS", "COMMITS", "BYTES", "INTO", "LAST ERROR", box=None)
    for s in states:
        table.add_row(
            s.agent, s.last_sync or "never", str(s.syncs), str(s.commits_total),
            str(s.bytes_total), s.into, s.last_error or "",
        )  # fmt: skip
    out.print(table)
