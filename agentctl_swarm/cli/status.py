"""CLI commands that show a fleet at work: status, top, events, transcript.

Parsing and printing only. What the rows and lines say is decided in
controller/fleet_view.py and controller/transcript.py (pure); the reading of Podman,
the coordinator's board and the controller's files is controller/observe.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from agentctl_swarm.cli.common import (
    Output,
    backend,
    dump_yaml,
    err,
    fleet_backend,
    load,
    out,
    settings,
)
from agentctl_swarm.controller import fleet_view as fv
from agentctl_swarm.core.errors import AgentctlError, UsageError

FleetFile = Annotated[
    Path, typer.Option("-f", "--file", help="The fleet file (YAML).", show_default=False)
]
OptionalFleetFile = Annotated[
    Path | None,
    typer.Option("-f", "--file", help="The fleet file (YAML).", show_default=False),
]
FleetName = Annotated[
    str | None,
    typer.Option("--fleet", help="The fleet by name (instead of -f FILE).", show_default=False),
]


class EventsOutput(StrEnum):
    table = "table"
    json = "json"


class TranscriptOutput(StrEnum):
    text = "text"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add status, top, events and transcript to the `agentctl` app."""
    for command in (status, top, events, transcript):
        app.command()(command)


# --------------------------------------------------------------------------- status


def status(
    file: FleetFile,
    output: Annotated[
        Output, typer.Option("-o", "--output", help="table, json or yaml.")
    ] = Output.table,
) -> None:
    """What every agent of the fleet is doing, and the fleet's totals.

    Per agent: STATE (idle, assigned, promoting, active, demoting,
    starting, restarting, silent, blocked, crashed, degraded, stopped,
    missing), its task, restarts, tokens and cost of its tasks so far,
    last heartbeat, memory and CPU. Below: agents per state, tasks per
    state, tokens, cost and how much of the budget is used.

    It combines Podman's view of the containers, the coordinator's task
    board (the fleet's `server:`, else $AGENTCTL_SERVER_URL, else the
    server `agentctl up` runs) and `agentctl up`'s health record. When
    the board does not answer it says so in one line and shows what
    Podman knows.

    Examples:
      agentctl status -f fleet.yaml
      agentctl status -f fleet.yaml -o json | jq '.agents[] | {agent, state, task}'
    """
    from agentctl_swarm.controller.observe import gather

    loaded = load(file)
    view, _ = gather(loaded, fleet_backend(loaded), settings(), cpu_window=0.5)
    for note in view.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}", soft_wrap=True)
    if output is Output.json:
        sys.stdout.write(json.dumps(view.as_dict(), indent=2) + "\n")
    elif output is Output.yaml:
        dump_yaml(view.as_dict())
    else:
        table, left_out = _agents_table(view)
        out.print(table)
        if left_out:
            err.print(
                f"(no room for {', '.join(left_out)}: a wider terminal or -o json shows them)"
            )
        for line in fv.summary_lines(view):
            out.print(line, markup=False, highlight=False)


_STATE_STYLE = {
    "active": "bold green",
    "promoting": "green",
    "assigned": "green",
    "demoting": "green",
    "idle": "",
    "starting": "cyan",
    "running": "cyan",
    "restarting": "yellow",
    "silent": "yellow",
    "blocked": "bold yellow",
    "crashed": "bold red",
    "degraded": "bold red",
    "stopped": "dim",
    "missing": "dim",
}


def _agents_table(view: fv.FleetView, *, fit: bool = False) -> tuple[Table, list[str]]:
    """The agents as a table, and the titles of the columns left out for lack of room.

    ``fit`` (`top`): one line per agent. On a terminal, the columns that do not fit its
    width whole are left out (by fleet_view.PRIORITY) rather than squeezed.
    """
    rows = [fv.cells(r) for r in view.rows]
    columns = list(fv.COLUMNS)
    if any(r.node != "local" for r in view.rows):
        columns.insert(1, ("node", "NODE"))
    shown = fv.choose_columns(rows, out.width, columns) if out.is_terminal else columns
    table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 1))
    for key, title in shown:
        table.add_column(
            title,
            no_wrap=fit or key != "detail",
            overflow="ellipsis",
            justify="right" if key in {"restarts", "tokens", "cost", "cpu"} else "left",
        )
    for row, cells in zip(view.rows, rows, strict=True):
        style = _STATE_STYLE.get(row.state, "")
        table.add_row(
            *[Text(cells[key], style=style if key == "state" else "") for key, _ in shown]
        )
    if not view.rows:
        table.add_row(Text("no agents: the fleet file declares none", style="dim"))
    return table, [title for key, title in columns if (key, title) not in shown]


# --------------------------------------------------------------------------- top


def top(
    file: FleetFile,
    interval: Annotated[
        float, typer.Option("--interval", "-d", help="Seconds between refreshes.", min=0.5)
    ] = 2.0,
    iterations: Annotated[
        int | None,
        typer.Option(
            "-n", "--iterations", help="Stop after N refreshes (default: until q).", min=1
        ),
    ] = None,
) -> None:
    """`agentctl status`, live: refreshed every 2 seconds, working agents first.

    q (or Ctrl-C) quits. CPU is the use between two refreshes. The
    header says when the task board or Podman does not answer; the
    last rows stay on screen meanwhile.

    Examples:
      agentctl top -f fleet.yaml
      agentctl top -f fleet.yaml -d 5        # refresh every 5 s
      agentctl top -f fleet.yaml -n 1 > snapshot.txt
    """
    from agentctl_swarm.controller.observe import gather

    loaded = load(file)
    podman = fleet_backend(loaded)
    cfg = settings()
    latest = _Latest()
    stop = threading.Event()

    def poll() -> None:
        previous = None
        while not stop.is_set():
            try:
                view, previous = gather(
                    loaded,
                    podman,
                    cfg,
                    previous=previous,
                    cpu_window=0.5 if previous is None else 0.0,
                    board_timeout=min(3.0, interval),
                )
                latest.put(view, None)
            except AgentctlError as exc:
                latest.put(None, exc.one_line())
            except Exception as exc:  # keep the screen; say what broke
                latest.put(None, f"{type(exc).__name__}: {exc}")
            stop.wait(interval)

    threading.Thread(target=poll, daemon=True, name="top-poll").start()
    name = loaded.fleet.name
    view: fv.FleetView | None = None
    problem: str | None = None
    shown = 0
    try:
        with (
            _keyboard() as key,
            Live(
                _frame(name, None, None, interval),
                console=out,
                screen=out.is_terminal,
                auto_refresh=False,
                transient=False,
            ) as live,
        ):
            while iterations is None or shown < iterations:
                if key(0.1) in ("q", "Q"):
                    break
                fresh = latest.take()
                if fresh is None:
                    continue
                new_view, problem = fresh
                view = new_view or view
                live.update(_frame(name, view, problem, interval), refresh=True)
                shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()


class _Latest:
    """The newest result of the poller (older ones are dropped, never queued)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: tuple[fv.FleetView | None, str | None] | None = None

    def put(self, view: fv.FleetView | None, problem: str | None) -> None:
        with self._lock:
            self._item = (view, problem)

    def take(self) -> tuple[fv.FleetView | None, str | None] | None:
        with self._lock:
            item, self._item = self._item, None
            return item


def _frame(fleet: str, view: fv.FleetView | None, problem: str | None, interval: float) -> Group:
    head = Text()
    head.append(f"agentctl top · fleet {fleet}", style="bold")
    head.append(f" · {time.strftime('%H:%M:%S')} · every {interval:g}s · q quits")
    parts: list[Any] = [head]
    if problem:
        parts.append(Text(f"! {problem} (showing the last look)", style="bold red"))
    if view is None:
        parts.append(Text("looking at the fleet ...", style="dim"))
        return Group(*parts)
    board = view.board
    parts.append(
        Text(f"board {board.url}: ok", style="dim")
        if board.reachable
        else Text(f"! {fv.board_note(board)}", style="yellow")
    )
    parts.append(Text(""))
    parts.append(_agents_table(view, fit=True)[0])
    parts.append(Text(""))
    parts += [Text(line) for line in fv.summary_lines(view)]
    return Group(*parts)


@contextlib.contextmanager
def _keyboard() -> Iterator[Callable[[float], str | None]]:
    """``key(timeout)``: the key pressed within ``timeout`` seconds, or None. The terminal
    is in cbreak mode meanwhile (keys arrive without Enter; Ctrl-C still interrupts)."""
    if not sys.stdin.isatty():  # no keyboard (a pipe, a script): only wait

        def wait(timeout: float) -> str | None:
            time.sleep(timeout)
            return None

        yield wait
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def key(timeout: float) -> str | None:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 1).decode("utf-8", "ignore") if ready else None

    try:
        yield key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


# --------------------------------------------------------------------------- events


def events(
    file: OptionalFleetFile = None,
    fleet: FleetName = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-F", help="Keep printing new events (survives the log's rotation)."
        ),
    ] = False,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only events about this agent.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only events since this long ago (30s, 10m, 2h, 1d) or this time "
            "(2026-11-28T08:00).",
        ),
    ] = None,
    tail: Annotated[
        int | None, typer.Option("--tail", "-n", help="Only the last N events.", min=0)
    ] = None,
    output: Annotated[
        EventsOutput,
        typer.Option("-o", "--output", help="table (readable lines) or json (raw JSON lines)."),
    ] = EventsOutput.table,
) -> None:
    """The fleet's events log: every decision `agentctl up` took, and why.

    One line per event: time, agent, event (health.restart,
    health.degraded, reconcile.create, up.start, ...), reason, and the
    event's other fields as key=value. `-o json` prints the log's own
    JSON lines, for jq.

    Examples:
      agentctl events -f fleet.yaml --since 1h
      agentctl events -f fleet.yaml --agent swarm-builder-000 -F
      agentctl events --fleet demo -o json | jq -r 'select(.event == "health.restart")'
    """
    from agentctl_swarm.controller.observe import follow_events

    name = _fleet_name(file, fleet)
    try:
        since_at = fv.parse_since(since, time.time()) if since else None
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None

    def keep(record: dict[str, Any]) -> bool:
        return fv.keep_event(record, agent=agent, since=since_at)

    state_dir = settings().state_dir
    table = output is EventsOutput.table

    def show(line: str, record: dict[str, Any]) -> None:
        if table:
            out.print(fv.event_line(record), markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()

    if not follow:
        from agentctl_swarm.controller.events import events_path, read_events

        records = [r for r in read_events(state_dir, name) if keep(r)]
        if tail is not None:
            records = records[-tail:] if tail else []
        if not records:
            path = events_path(state_dir, name)
            why = "matching the filters" if agent or since else f"yet ({path})"
            err.print(f"no events of fleet {name!r} {why}", markup=False)
            return
        if table:
            out.print(fv.EVENT_HEADER, markup=False, highlight=False, style="bold")
        for record in records:
            show(json.dumps(record), record)
        return
    stop = threading.Event()
    if table:
        out.print(fv.EVENT_HEADER, markup=False, highlight=False, style="bold")
    try:
        for line, record in follow_events(state_dir, name, keep=keep, backlog=tail, stop=stop):
            show(line, record)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()


def _fleet_name(file: Path | None, fleet: str | None) -> str:
    if file is not None and fleet is not None:
        raise UsageError("give the fleet once: -f FILE or --fleet NAME, not both")
    if file is not None:
        return load(file).fleet.name
    if fleet is not None:
        return fleet
    raise UsageError("which fleet?", hint="pass -f FLEET_FILE or --fleet NAME")


# --------------------------------------------------------------------------- transcript


def transcript(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TASK|AGENT",
            help="A task id (every attempt) or an agent, swarm-ROLE-NNN (its latest task).",
        ),
    ],
    file: OptionalFleetFile = None,
    fleet: FleetName = None,
    attempt: Annotated[
        int | None, typer.Option("--attempt", help="Only this attempt of the task.", min=1)
    ] = None,
    output: Annotated[
        TranscriptOutput, typer.Option("-o", "--output", help="text or json.")
    ] = TranscriptOutput.text,
    full: Annotated[
        bool, typer.Option("--full", help="Show tool results whole (default: a few lines).")
    ] = False,
    max_bytes: Annotated[
        int,
        typer.Option(
            "--max-bytes", help="Above this size, leave out the middle of a transcript.", min=1024
        ),
    ] = 8 * 1024 * 1024,
) -> None:
    """A task's Claude Code session, readable: the prompt, what the model
    said, each tool call with its input, what the tool answered (errors
    marked), API retries and how it ended (outcome, turns, tokens, cost).

    A task id shows every attempt, each from the container of the agent
    that ran it (the coordinator's board says which); an agent shows its
    latest task. Stopped containers can still be read. Without the board
    (-f names the fleet's server) the fleet's containers are searched.

    Examples:
      agentctl transcript t-1a2b3c4d -f fleet.yaml
      agentctl transcript t-1a2b3c4d -f fleet.yaml --attempt 2 --full
      agentctl transcript swarm-builder-000 --fleet demo
      agentctl transcript t-1a2b3c4d -f fleet.yaml -o json | jq '.transcripts[0].summary'
    """
    from agentctl_swarm.controller.apply import server_url_for
    from agentctl_swarm.controller.observe import find_transcripts

    if file is not None and fleet is not None:
        raise UsageError("give the fleet once: -f FILE or --fleet NAME, not both")
    loaded = load(file) if file is not None else None
    podman = fleet_backend(loaded) if loaded is not None else backend()
    found = find_transcripts(
        target,
        podman,
        fleet=loaded.fleet.name if loaded is not None else fleet,
        server_url=server_url_for(loaded, settings()) if loaded else settings().server_url,
        attempt=attempt,
        cap=max_bytes,
    )
    for note in found.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}", soft_wrap=True)
    limits = {"result_lines": 10**9, "result_chars": 10**12} if full else {}
    if output is TranscriptOutput.json:
        doc = {
            "target": found.target,
            "kind": found.kind,
            "notes": found.notes,
            "transcripts": [_transcript_doc(t, limits) for t in found.transcripts],
        }
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        return
    from agentctl_swarm.controller.transcript import render_text, session

    for i, t in enumerate(found.transcripts):
        if i:
            out.print()
        a = t.attempt
        how = f" · {a.outcome}" + (f" ({a.reason})" if a.reason else "") if a.outcome else ""
        where = f" · {t.container}" if t.container else ""
        out.print(
            f"── task {a.task} · attempt {a.n} · {a.agent}{where}{how} ──",
            style="bold",
            markup=False,
            highlight=False,
        )
        if t.text is None:
            out.print(f"no transcript: {t.problem}", style="yellow", markup=False)
            continue
        s = session(t.text, prompt=a.prompt, **limits)
        for tag, line in render_text(s.entries):
            out.print(line, style=_TAG_STYLE.get(tag, ""), markup=False, highlight=False)


_TAG_STYLE = {
    "session": "dim",
    "prompt": "bold",
    "tool_call": "cyan",
    "tool_result": "",
    "result": "bold green",
    "error": "red",
    "retry": "yellow",
    "end": "yellow",
    "omitted": "dim",
}


def _transcript_doc(t: Any, limits: dict[str, int]) -> dict[str, Any]:
    from agentctl_swarm.controller.transcript import session

    a = t.attempt
    doc: dict[str, Any] = {
        "task": a.task,
        "attempt": a.n,
        "agent": a.agent,
        "container": t.container,
        "path": a.path,
        "outcome": a.outcome,
        "reason": a.reason,
        "problem": t.problem,
    }
    if t.text is not None:
        s = session(t.text, prompt=a.prompt, **limits)
        doc["omitted_bytes"] = t.text.omitted_bytes
        doc["summary"] = s.summary
        doc["entries"] = [e.as_dict() for e in s.entries]
    return doc
