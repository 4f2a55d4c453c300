"""CLI commands: ``agentctl chat send|tail|whoami`` (AgentChat for people).

Argument parsing and output only; the work is done by ``agentctl_swarm.chat.client``.
Identities live where upstream keeps them: ``--as NAME`` uses the MCP server's
``~/.agentchat/identities/NAME.json`` (so a person can speak as an agent's identity),
and without ``--as`` the upstream CLI default ``~/.agentchat/identity.json``.

Failures are raised as :class:`~agentctl_swarm.core.errors.AgentctlError` (the client's
errors already are); ``agentctl_swarm/cli/errors.py`` prints them as one line with their
exit code: 2 for bad input, 3 when the server cannot be reached, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import secrets
import sys
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from agentctl_swarm.chat import protocol
from agentctl_swarm.chat.client import AgentChatClient, ChatError, ServerError
from agentctl_swarm.chat.identity import (
    Identity,
    IdentityError,
    identity_path,
    load_or_create,
    sanitise_name,
)
from agentctl_swarm.config import DEFAULT_CHAT_URL
from agentctl_swarm.core.errors import UsageError

chat_app = typer.Typer(
    name="chat",
    help="Talk on an AgentChat server: send a message, tail a channel, show your identity.",
    no_args_is_help=True,
)

ServerOpt = Annotated[
    str,
    typer.Option(
        "--server",
        "-s",
        envvar=["AGENTCHAT_URL", "AGENTCTL_SERVER_URL"],
        help="Server URL (else $AGENTCHAT_URL, else $AGENTCTL_SERVER_URL).",
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


def _identity_file(as_name: str | None) -> Path:
    if as_name is None:
        return Path.home() / ".agentchat" / "identity.json"
    try:
        return identity_path(as_name)
    except IdentityError as exc:
        raise IdentityError(f"--as: {exc.message}") from exc


def _login_name() -> str:
    try:
        return sanitise_name(getpass.getuser())
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return ""


def person_identity(as_name: str | None) -> tuple[Identity, Path, bool]:
    """The identity a person speaks as: ``--as NAME``'s file, else the upstream CLI
    default; created on first use (``chat.identity.load_or_create``). Returns
    ``(identity, file, created)``."""
    path = _identity_file(as_name)
    name = sanitise_name(as_name) if as_name else (_login_name() or "person")
    ident, created = load_or_create(path, name[:32])
    return ident, path, created


#: Transitional: ``cli/task.py`` imports this old private name; use ``person_identity``.
_load_or_create = person_identity


def _check_channel(channel: str) -> None:
    if not protocol.is_valid_channel(channel):
        raise UsageError(
            f"{channel!r} is not a channel name; use '#' and 1-31 of [A-Za-z0-9_-], "
            "e.g. '#general' (quote it in the shell)"
        )


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run a command's coroutine; a refusal by the server is said in the user's words."""
    try:
        asyncio.run(coro)
    except ServerError as exc:
        raise ChatError(f"the server refused: {exc}") from exc


def _clock(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(ts / 1000).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):  # not a time we can show
        return "--"


def _format(frame: dict[str, Any], output: str) -> str:
    if output == "json":
        return json.dumps(frame, ensure_ascii=False, allow_nan=False)
    ts = frame.get("ts")
    when = _clock(ts) if isinstance(ts, int) else "--"
    if frame.get("from") == "@server":
        return f"[{when}] * {frame.get('content', '')}"
    who = f"{frame.get('from_name', '?')} ({frame.get('from', '?')})"
    return f"[{when}] {who}: {frame.get('content', '')}"


# --------------------------------------------------------------------------- commands


@chat_app.command("send")
def send(
    channel: Annotated[str, typer.Argument(help="Channel, e.g. '#general'.")],
    text: Annotated[str, typer.Argument(help="Message text.")],
    server: ServerOpt = DEFAULT_CHAT_URL,
    as_name: AsOpt = None,
    reply_to: Annotated[
        str | None, typer.Option("--reply-to", help="msg_id this message answers.")
    ] = None,
) -> None:
    """Send one message to a channel and print its msg_id."""
    _check_channel(channel)
    ident, path, created = person_identity(as_name)
    if created:
        typer.echo(f"created identity {ident.name} (@{ident.agent_id}) at {path}", err=True)

    async def go() -> None:
        async with AgentChatClient(server, ident, reconnect=False) as client:
            await client.join(channel)
            echo = await client.send(channel, text, in_reply_to=reply_to, echo=True, timeout=30)
            assert echo is not None
            typer.echo(
                f"sent {echo.get('msg_id')} to {channel} as {client.name} ({client.agent_id})"
            )

    _run(go())


@chat_app.command("tail")
def tail(
    channel: Annotated[str, typer.Argument(help="Channel, e.g. '#general'.")],
    server: ServerOpt = DEFAULT_CHAT_URL,
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
        raise UsageError(f"-o {output!r}: use 'text' or 'json'")
    ident = person_identity(as_name)[0] if as_name else None
    name = None if ident else f"tail_{secrets.token_hex(3)}"

    def shown(frame: dict[str, Any]) -> bool:
        return (
            frame.get("type") == "MSG"
            and frame.get("to") == channel
            and (notices or frame.get("from") != "@server")
        )

    async def go() -> None:
        async with AgentChatClient(server, ident, name=name, reconnect=follow) as client:
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
                return
            async for frame in client:
                if shown(frame):
                    typer.echo(_format(frame, output))
                    sys.stdout.flush()
                elif frame.get("type") == "SESSION_DISPLACED":
                    raise ChatError(
                        "displaced by another connection using the same identity",
                        hint="stop the other session, or use another --as NAME",
                    )

    _run(go())


@chat_app.command("whoami")
def whoami(
    as_name: AsOpt = None,
    output: Annotated[str, typer.Option("-o", "--output", help="text or json.")] = "text",
) -> None:
    """Show the identity (created on first use): name, agent id, file."""
    ident, path, created = person_identity(as_name)
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
