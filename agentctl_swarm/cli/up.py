"""``agentctl up -f FLEET``: run the fleet's controller until Ctrl-C (parsing and output).

The work is in agentctl_swarm.controller.up; this module starts it, prints what it
reports, shows a live table of agents and tasks on a terminal, and turns SIGINT/SIGTERM
into a graceful stop and SIGHUP into a reload of the fleet file.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from agentctl_swarm.cli.common import err, fleet_backend, load, out, settings
from agentctl_swarm.controller.preflight import check_tools

if TYPE_CHECKING:
    from agentctl_swarm.controller.up import UpView

FleetFile = Annotated[
    Path, typer.Option("-f", "--file", help="The fleet file (YAML).", show_default=False)
]


def register(app: typer.Typer) -> None:
    """Add `up` to the `agentctl` app."""
    app.command()(up)


def up(
    file: FleetFile,
    interval: Annotated[
        float, typer.Option(help="Seconds between looks at the fleet (and table refreshes).")
    ] = 5.0,
) -> None:
    """Run the fleet: embedded chat server and coordinator (unless the fleet names a
    server), apply, local gate, sync-daemon; Ctrl-C stops it gracefully.

    Tasks are added with `agentctl task add "..." --role ROLE` (or a TASK line posted on
    the work channel). On Ctrl-C (or SIGTERM) the agents' work is synced one last time and
    the agents are stopped; their unfinished tasks go back to the queue.
    """
    from agentctl_swarm.core.logs import setup_logging

    loaded = load(file)
    check_tools()
    from agentctl_swarm.controller.up import FleetUp

    cfg = settings()
    setup_logging("up", fmt=cfg.log_format, stream=sys.stderr)
    podman = fleet_backend(loaded)
    live_table = Live(console=out, auto_refresh=False) if out.is_terminal else None

    def report(line: str) -> None:
        (live_table.console if live_table else err).print(line, markup=False, soft_wrap=True)

    def show(view: UpView) -> None:
        if live_table is not None:
            live_table.update(_table(view), refresh=True)

    runner = FleetUp(loaded, podman, cfg, report=report, interval=interval, on_view=show)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # `agentctl reload` (and `scale`) send SIGHUP: re-read the fleet file and roll.
        loop.add_signal_handler(signal.SIGHUP, runner.request_reload)
        await runner.run(stop)

    if live_table is not None:
        with live_table:
            asyncio.run(main())
    else:
        asyncio.run(main())


def _table(view: UpView) -> Table:
    table = Table(title=f"fleet on {view.url}", box=None, header_style="bold")
    for column in ("AGENT", "ROLE", "CONTAINER", "TASK"):
        table.add_column(column)
    for row in view.agents:
        table.add_row(row["agent"], row["role"], row["state"], row.get("slot") or "-")
    tasks: list[dict[str, Any]] = list(view.board.get("tasks", []))[-10:]
    if tasks:
        table.add_row("", "", "", "")
        table.add_row(
            "[bold]TASK[/bold]", "[bold]STATE[/bold]", "[bold]AGENT[/bold]", "[bold]TOKENS[/bold]"
        )
        for task in tasks:
            tokens = int(task.get("tokens_in") or 0) + int(task.get("tokens_out") or 0)
            table.add_row(
                str(task.get("id")), str(task.get("state")), str(task.get("assignee") or "-"),
                str(tokens),
            )  # fmt: skip
    return table
