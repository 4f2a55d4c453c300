"""CLI commands: ``agentctl task add|list|show|cancel|retry``.

Argument parsing and output only. Mutations go over chat as the same lines a person
could type in any AgentChat client (``TASK ...``, ``CANCEL id=...``, ``RETRY id=...``),
so the CLI has no powers a person on the channel lacks. Reads come from the
coordinator's board over HTTP: ``GET /api/v1/tasks`` on the chat server's port when the
coordinator is embedded in ``agentctl server``, or on ``agentctl coordinator --http``'s
port (``--api``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from agentctl_swarm.cli import common
from agentctl_swarm.cli.coordinator import ServerOpt, check_channel
from agentctl_swarm.config import DEFAULT_CHAT_URL
from agentctl_swarm.controller.fleet_view import human_age
from agentctl_swarm.coordinator import grammar as g
from agentctl_swarm.coordinator.board import new_task_id
from agentctl_swarm.coordinator.board_client import BoardClient, board_url
from agentctl_swarm.core.errors import AgentctlError, UnavailableError, UsageError

task_app = typer.Typer(
    name="task",
    help="Add, list, show, cancel and retry tasks on the coordinator's board.",
    no_args_is_help=True,
)

ApiOpt = Annotated[
    str | None,
    typer.Option(
        "--api",
        envvar="AGENTCTL_COORDINATOR_URL",
        help="Task board URL, http://HOST:PORT (default: the server's own port, where "
        "`agentctl server` serves it; for `agentctl coordinator --http PORT` pass that).",
        show_default=False,
    ),
]
ChannelOpt = Annotated[str, typer.Option("--channel", help="The coordinator's work channel.")]
AsOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="Post as the identity NAME (~/.agentchat/identities/NAME.json); default: a "
        "fresh key named after $USER.",
        show_default=False,
    ),
]
OutputOpt = Annotated[common.Output, typer.Option("-o", "--output", help="Output format.")]
WaitOpt = Annotated[
    float, typer.Option(help="Seconds to wait for the coordinator to confirm (0: do not wait).")
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `agentctl` app."""
    app.add_typer(task_app, name="task")


# --------------------------------------------------------------------------- helpers


def _server_url(server: str | None) -> str:
    return (
        server
        or common.settings().server_url
        or os.environ.get("AGENTCHAT_URL")
        or DEFAULT_CHAT_URL
    )


def _board(api: str | None, server: str | None) -> BoardClient:
    """The board at --api, else on the chat server's own port."""
    if api:
        return BoardClient(api, unreachable_hint="check --api / $AGENTCTL_COORDINATOR_URL")
    url = _server_url(server)
    try:
        base = board_url(url)
    except UsageError as exc:
        raise UsageError(f"--server {exc.message}", hint=exc.hint) from None
    return BoardClient(
        base,
        unreachable_hint="start it with `agentctl server`, or pass --server / $AGENTCTL_SERVER_URL",
    )


def _post(server: str | None, channel: str, line: str, as_name: str | None) -> None:
    """Post one line to the work channel and wait for the server's echo."""
    from agentctl_swarm.chat.client import AgentChatClient, ChatError, ConnectError, ServerError
    from agentctl_swarm.chat.identity import Identity, sanitise_name

    if as_name is not None:
        from agentctl_swarm.cli.chat import _load_or_create

        ident = _load_or_create(as_name)[0]
    else:
        # A fresh key per run: two CLIs at once never displace each other's session.
        name = (sanitise_name(os.environ.get("USER", "")) or "person")[:32]
        ident = Identity.generate(name)
    url = _server_url(server)

    async def go() -> None:
        async with AgentChatClient(url, ident, reconnect=False) as client:
            await client.join(channel)
            await client.send(channel, line, echo=True, timeout=30)

    try:
        asyncio.run(go())
    except ConnectError as exc:
        raise UnavailableError(
            str(exc), hint="start the server with `agentctl server`, or pass --server"
        ) from None
    except ServerError as exc:
        if exc.code == "CHANNEL_NOT_FOUND":
            raise UnavailableError(
                f"{channel} does not exist on {url}: no coordinator has created it",
                hint="run `agentctl server` (coordinator embedded) or `agentctl coordinator`",
            ) from None
        raise AgentctlError(f"the server at {url} refused the message: {exc}") from None
    except (ChatError, TimeoutError) as exc:
        raise UnavailableError(f"posting to {channel} on {url} failed: {exc}") from None


def _age(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return human_age(max(0.0, time.time() - ts))


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _emit(doc: Any, output: common.Output) -> bool:
    """Print ``doc`` as json/yaml; False for table (the caller prints it)."""
    if output is common.Output.json:
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return True
    if output is common.Output.yaml:
        common.dump_yaml(doc)
        return True
    return False


def _one_line(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# --------------------------------------------------------------------------- commands


@task_app.command("add")
def add(
    prompt: Annotated[str, typer.Argument(help="What the agent should do.")],
    role: Annotated[
        str, typer.Option("--role", "-r", help="Role that may claim it ('any': every role).")
    ] = "any",
    priority: Annotated[int | None, typer.Option(help="Higher runs first.")] = None,
    timeout: Annotated[
        int | None, typer.Option(min=0, help="Seconds before the attempt is stopped.")
    ] = None,
    retries: Annotated[
        int | None, typer.Option(min=0, help="Retries after a failure (coordinator default: 2).")
    ] = None,
    repo: Annotated[str | None, typer.Option(help="Repository the task is about.")] = None,
    branch: Annotated[str | None, typer.Option(help="Branch to work on.")] = None,
    task_id: Annotated[
        str | None, typer.Option("--id", help="Task id (default: a fresh t-XXXXXXXX).")
    ] = None,
    server: ServerOpt = None,
    api: ApiOpt = None,
    channel: ChannelOpt = "#work",
    as_name: AsOpt = None,
    wait: WaitOpt = 10.0,
    output: Annotated[
        str, typer.Option("-o", "--output", help="id (just the id), json or yaml.")
    ] = "id",
) -> None:
    """Post a TASK line on the work channel and print the task's id.

    The same as typing `TASK role=ROLE -- PROMPT` in any AgentChat client; the command
    then waits (--wait) until the coordinator's board has the task.
    """
    check_channel(channel)
    if output not in ("id", "json", "yaml"):
        raise UsageError(f"-o {output!r}: use id, json or yaml")
    tid = task_id or new_task_id()
    if not g.is_valid_id(tid):
        raise UsageError(f"--id {tid!r}: ids are 1-64 of [A-Za-z0-9_.:-]")
    if not g.is_valid_name(role):
        raise UsageError(f"--role {role!r}: roles are 1-64 of [A-Za-z0-9_.-]")
    if not prompt.strip():
        raise UsageError("the prompt is empty; say what the agent should do")
    msg = g.Task(
        id=tid,
        role=role,
        priority=priority,
        timeout=timeout,
        retries=retries,
        repo=repo,
        branch=branch,
        text=prompt,
    )
    board = _board(api, server)
    if wait > 0:
        existing = board.task(tid)  # also: is the board there at all?
        if existing is not None:
            raise UsageError(f"task id {tid!r} is taken", hint="pass another --id or none")
    _post(server, channel, g.format_line(msg), as_name)
    doc = board.wait_for(tid, lambda d: True, wait) if wait > 0 else None
    if wait > 0 and doc is None:
        common.err.print(
            f"warning: the coordinator at {board.base} has not recorded {tid} within "
            f"{wait:g} s; it stays in the channel's history and is picked up when a "
            "coordinator catches up",
            soft_wrap=True,
        )
    if output == "id":
        typer.echo(tid)
        return
    _emit(doc or {"id": tid, "state": "posted"}, common.Output(output))


@task_app.command("list")
def list_(
    server: ServerOpt = None,
    api: ApiOpt = None,
    state: Annotated[
        str | None,
        typer.Option(help="Only tasks in this state (queued, assigned, running, done, ...)."),
    ] = None,
    role: Annotated[str | None, typer.Option(help="Only tasks for this role.")] = None,
    output: OutputOpt = common.Output.table,
) -> None:
    """List the tasks on the coordinator's board, oldest first."""
    board = _board(api, server)
    doc = board.tasks()
    tasks = [
        t
        for t in doc.get("tasks") or []
        if (state is None or t.get("state") == state) and (role is None or t.get("role") == role)
    ]
    if _emit(tasks, output):
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("ID", "STATE", "ROLE", "PRI", "TRIES", "AGENT", "AGE", "TOKENS", "PROMPT"):
        table.add_column(col, no_wrap=col != "PROMPT", overflow="ellipsis")
    for t in tasks:
        tokens = int(t.get("tokens_in") or 0) + int(t.get("tokens_out") or 0)
        table.add_row(
            escape(str(t.get("id"))),
            str(t.get("state")),
            escape(str(t.get("role"))),
            str(t.get("priority")),
            f"{t.get('attempts')}/{int(t.get('retries') or 0) + 1}",
            escape(str(t.get("assignee") or "-")),
            _age(t.get("created_at")),
            str(tokens) if tokens else "-",
            escape(_one_line(str(t.get("prompt") or ""))),
        )
    common.out.print(table)
    gate = doc.get("gate")
    if gate:
        common.out.print(f"assigning paused: {escape(str(gate))}")
    if not tasks:
        common.err.print("no tasks" + (" matching the filters" if state or role else ""))


@task_app.command("show")
def show(
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    server: ServerOpt = None,
    api: ApiOpt = None,
    output: OutputOpt = common.Output.table,
) -> None:
    """Show one task: state, assignee, usage, and every attempt with how it ended."""
    board = _board(api, server)
    t = board.require(task_id)
    if _emit(t, output):
        return
    p = common.out.print
    p(f"id:        {escape(str(t['id']))}")
    p(
        f"state:     {t.get('state')}"
        + (f" ({t['cancel_reason']})" if t.get("cancel_reason") else "")
    )
    p(f"role:      {escape(str(t.get('role')))}   priority: {t.get('priority')}")
    p(f"attempts:  {t.get('attempts')} of {int(t.get('retries') or 0) + 1}   "
      f"timeout: {t.get('timeout')} s")  # fmt: skip
    p(f"assignee:  {escape(str(t.get('assignee') or '-'))}")
    p(f"created:   {_when(t.get('created_at'))} by {escape(str(t.get('posted_by') or '?'))}")
    if t.get("finished_at"):
        p(f"finished:  {_when(t.get('finished_at'))}")
    p(f"usage:     {t.get('tokens_in')} in / {t.get('tokens_out')} out tokens, "
      f"${float(t.get('cost_usd') or 0):.4f}")  # fmt: skip
    for key in ("repo", "branch"):
        if t.get(key):
            p(f"{key}:{' ' * (10 - len(key))}{escape(str(t[key]))}")
    if t.get("last_status"):
        p(f"status:    {escape(str(t['last_status']))}")
    if t.get("summary"):
        p(f"summary:   {escape(str(t['summary']))}")
    p("prompt:")
    for line in str(t.get("prompt") or "").splitlines() or [""]:
        p(f"  {escape(line)}", soft_wrap=True)
    history = t.get("history") or []
    if history:
        p("attempts:")
        for a in history:
            end = a.get("outcome") or "open"
            why = f": {a.get('reason')}" if a.get("reason") and a.get("outcome") != "done" else ""
            counted = "" if a.get("counted", True) else " (not counted)"
            p(f"  #{a.get('n')} {escape(str(a.get('agent')))} {_when(a.get('assigned_at'))} → "
              f"{escape(str(end))}{escape(str(why))}{counted}", soft_wrap=True)  # fmt: skip
            if a.get("detail"):
                p(f"     {escape(_one_line(str(a['detail']), 200))}", soft_wrap=True)


def _mutate(
    kind: type[g.Cancel] | type[g.Retry],
    task_id: str,
    server: str | None,
    api: str | None,
    channel: str,
    as_name: str | None,
    wait: float,
    *,
    allowed: tuple[str, ...],
    want: tuple[str, ...],
    verb: str,
) -> None:
    check_channel(channel)
    if not g.is_valid_id(task_id):
        raise UsageError(f"{task_id!r} is not a task id", hint="`agentctl task list` shows them")
    board = _board(api, server)
    t = board.require(task_id)
    if t.get("state") not in allowed:
        raise UsageError(
            f"task {task_id} is {t.get('state')}; only {', '.join(allowed)} tasks can be {verb}",
            hint="`agentctl task show " + task_id + "` shows its history",
        )
    _post(server, channel, g.format_line(kind(id=task_id)), as_name)
    if wait <= 0:
        typer.echo(f"{task_id}: {verb} requested")
        return
    doc = board.wait_for(task_id, lambda d: d.get("state") in want, wait)
    if doc is None or doc.get("state") not in want:
        raise AgentctlError(
            f"the coordinator at {board.base} has not {verb} {task_id} within {wait:g} s "
            f"(state: {doc.get('state') if doc else 'unknown'})",
            hint="is the coordinator on the channel? `agentctl task show " + task_id + "`",
        )
    typer.echo(f"{task_id}: {doc.get('state')}")


@task_app.command("cancel")
def cancel(
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    server: ServerOpt = None,
    api: ApiOpt = None,
    channel: ChannelOpt = "#work",
    as_name: AsOpt = None,
    wait: WaitOpt = 10.0,
) -> None:
    """Cancel a queued or running task (posts `CANCEL id=ID`; a running agent stops)."""
    _mutate(
        g.Cancel, task_id, server, api, channel, as_name, wait,
        allowed=("queued", "assigned", "running"), want=("cancelled",), verb="cancelled",
    )  # fmt: skip


@task_app.command("retry")
def retry(
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    server: ServerOpt = None,
    api: ApiOpt = None,
    channel: ChannelOpt = "#work",
    as_name: AsOpt = None,
    wait: WaitOpt = 10.0,
) -> None:
    """Queue a failed or cancelled task again with fresh retries (posts `RETRY id=ID`)."""
    _mutate(
        g.Retry, task_id, server, api, channel, as_name, wait,
        allowed=("failed", "cancelled"), want=("queued", "assigned", "running", "done"),
        verb="retried",
    )  # fmt: skip
