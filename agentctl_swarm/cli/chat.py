"""CLI commands: ``agentctl chat send|tail|whoami`` (AgentChat for people).

Argument parsing and output only; the work is done by ``agentctl_swarm.chat.client``.
Identities live where upstream keeps them: ``--as NAME`` uses the MCP server's
``~/.agentchat/identities/NAME.json`` (so a person can speak as an agent's identity),
and without ``--as`` the upstream CLI default ``~/.agentchat/identity.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from agentctl_swarm.chat import protocol
from agentctl_swarm.chat.client import AgentChatClient, ChatError, ConnectError, ServerError
from agentctl_swarm.chat.identity import Identity, IdentityError, identity_path, sanitise_name

DEFAULT_URL = "ws://localhost:6667"

chat_app = typer.Typer(
    name="chat",
    help="Talk on an AgentChat server: send a message, tail a channel, show your identity.",
    no_args_is_help=True,
)

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        "-s",
        help="Server URL (default: $AGENTCHAT_URL, $AGENTCTL_SERVER_URL, ws://localhost:6667).",
        show_default=False,
    ),
]
AsOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="Identity NAME (~/.agentchat/identities/NAME.json, created if missing); "
        "default ~/.agentchat/identity.json. An identity a running agent is using gets "
        "taken over (the server displaces the agent's session).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `agentctl` app."""
    app.add_typer(chat_app, name="chat")


# --------------------------------------------------------------------------- helpers


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"agentctl chat: {message}", err=True)
    return typer.Exit(code)


def _server_url(server: str | None) -> str:
    return (
        server
        or os.environ.get("AGENTCHAT_URL")
        or os.environ.get("AGENTCTL_SERVER_URL")
        or DEFAULT_URL
    )


def _identity_file(as_name: str | None) -> Path:
    if as_name is None:
        return Path.home() / ".agentchat" / "identity.json"
    try:
        return identity_path(as_name)
    except IdentityError as exc:
        raise _fail(f"--as: {exc}", 2) from None


def _load_or_create(as_name: str | None) -> tuple[Identity, Path, bool]:
    """The identity for ``--as`` (or the default one); create it on first use."""
    path = _identity_file(as_name)
    try:
        if path.exists():
            return Identity.load(path), path, False
        default = sanitise_name(os.environ.get("USER", "")) or "person"
        name = sanitise_name(as_name)[:32] if as_name else default[:32]
        ident = Identity.generate(name)
        ident.save(path)
        return ident, path, True
    except IdentityError as exc:
        raise _fail(str(exc), 2) from None
    except OSError as exc:
        raise _fail(f"{path}: cannot write the identity file ({exc.strerror})", 2) from None


def _check_channel(channel: str) -> None:
    if not protocol.is_valid_channel(channel):
        raise _fail(
            f"{channel!r} is not a channel name; use '#' and 1-31 of [A-Za-z0-9_-], "
            "e.g. '#general' (quote it in the shell)",
            2,
        )


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine; map client errors to one clear line."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        return 130
    except ConnectError as exc:
        raise _fail(str(exc)) from None
    except ServerError as exc:
        raise _fail(f"the server refused: {exc}") from None
    except ChatError as exc:
        raise _fail(str(exc)) from None


def _format(frame: dict[str, Any], output: str) -> str:
    if output == "json":
        return json.dumps(frame, ensure_ascii=False)
    ts = frame.get("ts")
    when = datetime.fromtimestamp(ts / 1000).strftime("%H:%M:%S") if isinstance(ts, int) else "--"
    if frame.get("from") == "@server":
        return f"[{when}] * {frame.get('content', '')}"
    who = f"{frame.get('from_name', '?')} ({frame.get('from', '?')})"
    return f"[{when}] {who}: {frame.get('content', '')}"


# --------------------------------------------------------------------------- commands


@chat_app.command("send")
def send(
    channel: Annotated[str, typer.Argument(help="Channel, e.g. '#general'.")],
    text: Annotated[str, typer.Argument(help="Message text.")],
    server: ServerOpt = None,
    as_name: AsOpt = None,
    reply_to: Annotated[
        str | None, typer.Option("--reply-to", help="msg_id this message answers.")
    ] = None,
) -> None:
    """Send one message to a channel and print its msg_id."""
    _check_channel(channel)
    ident, path, created = _load_or_create(as_name)
    if created:
        typer.echo(f"created identity {ident.name} (@{ident.agent_id}) at {path}", err=True)
    url = _server_url(server)

    async def go() -> int:
        async with AgentChatClient(url, ident, reconnect=False) as client:
            await client.join(channel)
            echo = await client.send(channel, text, in_reply_to=reply_to, echo=True, timeout=30)
            assert echo is not None
            typer.echo(
                f"sent {echo.get('msg_id')} to {channel} as {client.name} ({client.agent_id})"
            )
        return 0

    raise typer.Exit(_run(go()))


@chat_app.command("tail")
def tail(
    channel: Annotated[str, typer.Argument(help="Channel, e.g. '#general'.")],
    server: ServerOpt = None,
    as_name: AsOpt = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="Show the last N.")] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new messages (Ctrl-C stops).")
    ] = False,
    output: Annotated[str, typer.Option("-o", "--output", help="text or json.")] = "text",
    notices: Annotated[
        bool, typer.Option("--notices", help="Also show @server notices (came online, ...).")
    ] = False,
) -> None:
    """Print a channel's recent messages (the server's replay buffer), optionally follow."""
    _check_channel(channel)
    if output not in ("text", "json"):
        raise _fail(f"-o {output!r}: use 'text' or 'json'", 2)
    ident = _load_or_create(as_name)[0] if as_name else None
    url = _server_url(server)
    name = None if ident else f"tail_{secrets.token_hex(3)}"

    def shown(frame: dict[str, Any]) -> bool:
        return (
            frame.get("type") == "MSG"
            and frame.get("to") == channel
            and (notices or frame.get("from") != "@server")
        )

    async def go() -> int:
        async with AgentChatClient(url, ident, name=name, reconnect=follow) as client:
            await client.join(channel)
            await client.ping()  # the replay precedes PONG on the socket
            history: list[dict[str, Any]] = []
            while (frame := await client.recv(timeout=0)) is not None:
                if shown(frame):
                    history.append(frame)
            for frame in history[-lines:] if lines else []:
                typer.echo(_format(frame, output))
            sys.stdout.flush()
            if not follow:
                return 0
            async for frame in client:
                if shown(frame):
                    typer.echo(_format(frame, output))
                    sys.stdout.flush()
                elif frame.get("type") == "SESSION_DISPLACED":
                    typer.echo("agentctl chat: displaced by another connection", err=True)
                    return 1
            return 0

    raise typer.Exit(_run(go()))


@chat_app.command("whoami")
def whoami(
    as_name: AsOpt = None,
    output: Annotated[str, typer.Option("-o", "--output", help="text or json.")] = "text",
) -> None:
    """Show the identity (created on first use): name, agent id, file."""
    ident, path, created = _load_or_create(as_name)
    info = {
        "name": ident.name,
        "agent_id": f"@{ident.agent_id}",
        "identity_path": str(path),
        "created": ident.created,
        "new": created,
    }
    if output == "json":
        typer.echo(json.dumps(info))
        return
    typer.echo(f"name:     {info['name']}")
    typer.echo(f"agent_id: {info['agent_id']}")
    typer.echo(f"file:     {info['identity_path']}" + ("  (just created)" if created else ""))
    typer.echo(f"created:  {info['created']}")
