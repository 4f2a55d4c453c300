"""The ``agentctl`` command: argument parsing and output only, no logic.

Each module in this package registers its commands on the one Typer app; the work is
done by the packages they call (fleet, controller, podman, chat, sync).
"""

from __future__ import annotations

import typer

from agentctl_swarm.cli import (
    chat,
    coordinator,
    errors,
    export,
    fleet,
    host,
    model,
    server,
    status,
    sync,
    task,
    up,
)

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

for _module in (fleet, up, status, host, server, chat, sync, model, task, coordinator, export):
    _module.register(app)


def main() -> None:
    """Entry point of the ``agentctl`` console script.

    Commands raise AgentctlError for expected failures; cli/errors.py prints them and
    exits with their code. Anything else is a bug, shown as one line unless
    AGENTCTL_DEBUG=1 asks for the traceback.
    """
    errors.run(app)
