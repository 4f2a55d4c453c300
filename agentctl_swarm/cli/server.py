"""CLI commands: ``agentctl server`` (registered on the main app by `register`).

Argument parsing and output only; the server lives in ``agentctl_swarm.chat.server``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentctl_swarm.chat.protocol import DEFAULT_BUFFER_SIZE, DEFAULT_PORT
from agentctl_swarm.cli.coordinator import (
    ChannelOpt,
    CostBudgetOpt,
    HeartbeatOpt,
    MaxActiveOpt,
    ProbeOpt,
    RetriesOpt,
    TimeoutOpt,
    TokenBudgetOpt,
    board_config,
    check_channel,
)


def server(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port (0 picks a free one).")] = (
        DEFAULT_PORT
    ),
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Directory for the SQLite store; without it nothing survives a restart."),
    ] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(
            envvar="AGENTCHAT_ADMIN_KEY",
            help="Key for admin frames and /api/connections. Prefer the env var AGENTCHAT_ADMIN_KEY"
            " (argv is visible in `ps`).",
            show_default=False,
        ),
    ] = None,
    allow_dm: Annotated[
        bool, typer.Option("--allow-dm", help="Deliver MSG to @id (upstream refuses DMs).")
    ] = False,
    lurk_seconds: Annotated[
        float | None,
        typer.Option(help="Keep new keys read-only this long (upstream: 3600). Off by default."),
    ] = None,
    buffer_size: Annotated[
        int, typer.Option(help="Messages replayed per channel on JOIN.")
    ] = DEFAULT_BUFFER_SIZE,
    name: Annotated[str, typer.Option(help="Server name sent in WELCOME.")] = "agentchat",
    motd: Annotated[str | None, typer.Option(help="Message of the day sent in WELCOME.")] = None,
    with_coordinator: Annotated[
        bool,
        typer.Option(
            "--coordinator/--no-coordinator",
            help="Run the task coordinator inside the server (its board is served at "
            "/api/v1/tasks; with --data-dir it survives restarts).",
        ),
    ] = True,
    trust: Annotated[
        list[str] | None,
        typer.Option(
            "--trust",
            help="Agent id (16 hex) exempt from the 1 msg/s limit and verified, e.g. a "
            "standalone `agentctl coordinator --unpaced`. Repeatable.",
            show_default=False,
        ),
    ] = None,
    channel: ChannelOpt = "#work",
    max_active: MaxActiveOpt = 0,
    token_budget: TokenBudgetOpt = 0,
    cost_budget: CostBudgetOpt = 0.0,
    heartbeat_interval: HeartbeatOpt = 30.0,
    probe_interval: ProbeOpt = 300.0,
    task_timeout: TimeoutOpt = 1800,
    task_retries: RetriesOpt = 2,
) -> None:
    """Run the AgentChat server (wire-compatible with upstream agentchat), with the task
    coordinator embedded unless --no-coordinator."""
    import re

    from agentctl_swarm.chat.server import ServerConfig, StoreError, run_forever

    problems = []
    if not 0 <= port <= 65535:
        problems.append(f"--port {port}: must be between 0 and 65535")
    if buffer_size < 1:
        problems.append(f"--buffer-size {buffer_size}: must be at least 1")
    if lurk_seconds is not None and lurk_seconds < 0:
        problems.append(f"--lurk-seconds {lurk_seconds}: must be 0 or more")
    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        problems.append(f"--data-dir {data_dir}: exists and is not a directory; pass a directory")
    trusted = {t.removeprefix("@") for t in trust or []}
    problems += [
        f"--trust {t}: not an agent id (16 hex digits)"
        for t in sorted(trusted)
        if not re.fullmatch(r"[0-9a-f]{16}", t)
    ]
    if problems:
        for line in problems:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2)
    attach = None
    extra_channels: tuple[str, ...] = ()
    if with_coordinator:
        from agentctl_swarm.coordinator.service import coordinator_identity, embedded
        from agentctl_swarm.coordinator.store import DB_NAME, TaskStore

        check_channel(channel)
        board = board_config(
            max_active=max_active,
            token_budget=token_budget,
            cost_budget=cost_budget,
            heartbeat_interval=heartbeat_interval,
            probe_interval=probe_interval,
            task_timeout=task_timeout,
            task_retries=task_retries,
        )
        ident = coordinator_identity(data_dir / "coordinator-identity.json" if data_dir else None)
        store = TaskStore(data_dir / DB_NAME if data_dir else None)
        trusted.add(ident.agent_id)
        extra_channels = (channel,)
        attach = embedded(ident, store, channel=channel, board=board)
        if data_dir is None:
            typer.echo(
                "note: without --data-dir the task board lives in memory and a restart "
                "loses its tasks",
                err=True,
            )
    config = ServerConfig(
        host=host,
        port=port,
        data_dir=data_dir,
        admin_key=admin_key or None,
        allow_dm=allow_dm,
        lurk_seconds=lurk_seconds,
        buffer_size=buffer_size,
        name=name,
        motd=motd,
        trusted_ids=frozenset(trusted),
        extra_channels=extra_channels,
    )
    try:
        run_forever(config, attach)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(
            f"error: cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "pick another --port or stop what uses it",
            err=True,
        )
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `agentctl` app."""
    app.command("server")(server)
