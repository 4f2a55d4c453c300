"""The ``agentctl`` command: argument parsing and output only, no logic.

Each module in this package registers its commands on the one Typer app; the work is
done by the packages they call (fleet, controller, podman, chat, sync).
"""

from __future__ import annotations

import os
import sys

import typer

from agentctl_swarm.cli import chat, fleet, host, server, sync

app = typer.Typer(
    name="agentctl",
    help=(
        "Run a fleet of AI coding agents in Podman containers.\n\n"
        "Write a fleet file (see `agentctl schema` and examples/demo/fleet.yaml), then "
        "`agentctl apply -f fleet.yaml` makes Podman match it; `agentctl get` shows what "
        "runs; `agentctl delete -f fleet.yaml` removes it again."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in (fleet, host, server, chat, sync):
    _module.register(app)


def main() -> None:
    """Entry point of the ``agentctl`` console script.

    Expected failures are turned into clear messages by each command; anything else is
    a bug, shown as one line unless AGENTCTL_DEBUG=1 asks for the traceback.
    """
    try:
        app()
    except Exception as exc:  # a bug: keep the user's terminal readable
        if os.environ.get("AGENTCTL_DEBUG"):
            raise
        print(
            f"agentctl: internal error: {type(exc).__name__}: {exc}\n"
            "(set AGENTCTL_DEBUG=1 to see the traceback, and please report it)",
            file=sys.stderr,
        )
        raise SystemExit(70) from None
