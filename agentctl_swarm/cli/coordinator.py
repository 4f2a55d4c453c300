"""CLI commands: ``agentctl coordinator`` (the task coordinator on its own).

Argument parsing and output only; the coordinator lives in
``agentctl_swarm.coordinator``. The dispatch options are shared with ``agentctl server``
(which runs the same coordinator embedded, by default).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from agentctl_swarm.chat import protocol
from agentctl_swarm.cli import common
from agentctl_swarm.config import DEFAULT_CHAT_URL
from agentctl_swarm.coordinator.board import BoardConfig
from agentctl_swarm.core.errors import UsageError

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        "-s",
        help=f"AgentChat server URL (default: $AGENTCTL_SERVER_URL, {DEFAULT_CHAT_URL}).",
        show_default=False,
    ),
]
ChannelOpt = Annotated[
    str, typer.Option("--channel", help="Work channel the coordinator runs (created if missing).")
]
MaxActiveOpt = Annotated[
    int, typer.Option(help="Fleet-wide most tasks running at once (0: no limit).")
]
TokenBudgetOpt = Annotated[
    int, typer.Option(help="Stop assigning once tasks used this many tokens (0: no budget).")
]
CostBudgetOpt = Annotated[
    float, typer.Option(help="Stop assigning once tasks cost this many USD (0: no budget).")
]
HeartbeatOpt = Annotated[
    float,
    typer.Option(help="Seconds between runners' HEARTBEATs; 3 missed = the runner is dead."),
]
ProbeOpt = Annotated[
    float, typer.Option(help="Seconds between quota PROBEs while the fleet is paused.")
]
TimeoutOpt = Annotated[
    int, typer.Option(help="Default task timeout in seconds (a TASK's timeout= wins).")
]
RetriesOpt = Annotated[
    int, typer.Option(help="Default retries after a failure (a TASK's retries= wins).")
]


def board_config(
    *,
    max_active: int,
    token_budget: int,
    cost_budget: float,
    heartbeat_interval: float,
    probe_interval: float,
    task_timeout: int,
    task_retries: int,
) -> BoardConfig:
    """The dispatch options as a BoardConfig; UsageError naming every bad one."""
    problems = []
    for flag, value in (
        ("--max-active", max_active),
        ("--token-budget", token_budget),
        ("--cost-budget", cost_budget),
        ("--task-timeout", task_timeout),
        ("--task-retries", task_retries),
    ):
        if value < 0:
            problems.append(f"{flag} {value}: must be 0 or more")
    for flag, value in (
        ("--heartbeat-interval", heartbeat_interval),
        ("--probe-interval", probe_interval),
    ):
        if not value > 0:
            problems.append(f"{flag} {value}: must be more than 0")
    if problems:
        raise UsageError("; ".join(problems))
    return BoardConfig(
        max_active=max_active,
        token_budget=token_budget,
        cost_budget_usd=cost_budget,
        heartbeat_interval=heartbeat_interval,
        probe_interval=probe_interval,
        default_timeout=task_timeout,
        default_retries=task_retries,
    )


def check_channel(channel: str) -> None:
    """UsageError unless ``channel`` is a valid AgentChat channel name."""
    if not protocol.is_valid_channel(channel):
        raise UsageError(
            f"--channel {channel!r}: not a channel name",
            hint="use '#' and 1-31 of [A-Za-z0-9_-], e.g. '#work' (quote it in the shell)",
        )


def coordinator(
    server: ServerOpt = None,
    channel: ChannelOpt = "#work",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the task board (SQLite) and the coordinator's identity live "
            "(default: $AGENTCTL_STATE_DIR/coordinator).",
            show_default=False,
        ),
    ] = None,
    http: Annotated[
        int | None,
        typer.Option(
            help="Serve the task board (GET /api/v1/tasks) on this port (0 picks one) for "
            "`agentctl task list/show --api`.",
            show_default=False,
        ),
    ] = None,
    http_host: Annotated[str, typer.Option(help="Address for --http.")] = "127.0.0.1",
    admin_key: Annotated[
        str | None,
        typer.Option(
            envvar="AGENTCHAT_ADMIN_KEY",
            help="The server's admin key: lets the coordinator verify itself to create the "
            "channel (upstream servers). Prefer the env var AGENTCHAT_ADMIN_KEY.",
            show_default=False,
        ),
    ] = None,
    unpaced: Annotated[
        bool,
        typer.Option(
            "--unpaced",
            help="Do not pace replies to 1 msg/s: only for a server started with "
            "--trust <this coordinator's id>.",
        ),
    ] = False,
    max_active: MaxActiveOpt = 0,
    token_budget: TokenBudgetOpt = 0,
    cost_budget: CostBudgetOpt = 0.0,
    heartbeat_interval: HeartbeatOpt = 30.0,
    probe_interval: ProbeOpt = 300.0,
    task_timeout: TimeoutOpt = 1800,
    task_retries: RetriesOpt = 2,
) -> None:
    """Run the task coordinator against an AgentChat server (ours or upstream).

    It records tasks posted on the work channel durably, assigns each to one claiming
    agent, enforces max-active and budgets, pauses on quota and requeues the tasks of
    agents that fail, die or time out. `agentctl server` runs one embedded by default.
    """
    from agentctl_swarm.coordinator.service import run_standalone
    from agentctl_swarm.core.files import file_lock
    from agentctl_swarm.core.logs import setup_logging

    check_channel(channel)
    config = board_config(
        max_active=max_active,
        token_budget=token_budget,
        cost_budget=cost_budget,
        heartbeat_interval=heartbeat_interval,
        probe_interval=probe_interval,
        task_timeout=task_timeout,
        task_retries=task_retries,
    )
    if http is not None and not 0 <= http <= 65535:
        raise UsageError(f"--http {http}: must be between 0 and 65535")
    url = server or common.settings().server_url or DEFAULT_CHAT_URL
    directory = data_dir or common.settings().state_dir / "coordinator"
    setup_logging("coordinator")
    with file_lock(directory / "coordinator.lock", timeout=0, what=f"coordinator data {directory}"):

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await run_standalone(
                url,
                directory,
                stop=stop,
                channel=channel,
                board=config,
                http=(http_host, http) if http is not None else None,
                admin_key=admin_key or None,
                paced=not unpaced,
                on_ready=lambda line: print(line, flush=True),
            )

        asyncio.run(main())


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `agentctl` app."""
    app.command("coordinator")(coordinator)
