"""CLI commands for fleets: validate, schema, apply, diff, get, delete, logs, restart, stop.

Only parsing and printing live here; the work is in agentctl_swarm.controller.
Exit codes: 0 success; 1 an operation failed (or, for `diff`, there are changes);
2 the fleet file or the arguments are wrong (nothing was changed); 3 Podman is unreachable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

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
from agentctl_swarm.controller.executor import Outcome
from agentctl_swarm.controller.fleet_view import human_age
from agentctl_swarm.controller.planner import Kind, Plan
from agentctl_swarm.controller.preflight import check_tools
from agentctl_swarm.controller.status import find_container
from agentctl_swarm.core.errors import AgentctlError, UnavailableError
from agentctl_swarm.fleet.loader import LoadedFleet
from agentctl_swarm.fleet.render import LOCAL_NODE

AgentArg = Annotated[str, typer.Argument(help="Agent (swarm-role-NNN) or container name.")]
FleetOpt = Annotated[str | None, typer.Option(help="The fleet, when the name is ambiguous.")]
FleetFile = Annotated[
    Path, typer.Option("-f", "--file", help="The fleet file (YAML).", show_default=False)
]
NodesFile = Annotated[
    Path | None,
    typer.Option(
        "-f", "--file", help="The fleet file: look on its `nodes:` (default: this machine).",
        show_default=False,
    ),
]  # fmt: skip


def _podman(file: Path | None) -> Any:
    """This machine's Podman, or every node of the fleet file's `nodes:`."""
    return fleet_backend(load(file)) if file else backend()


def register(app: typer.Typer) -> None:
    """Add the fleet commands to the `agentctl` app."""
    for command in (validate, schema, apply, diff, get, delete, scale, reload, logs, restart, stop):
        app.command()(command)


# -- helpers ----------------------------------------------------------------------------


def _print_plan(plan: Plan) -> None:
    styles = {
        Kind.CREATE: ("+", "green"),
        Kind.RECREATE: ("~", "yellow"),
        Kind.START: ("^", "cyan"),
        Kind.DELETE: ("-", "red"),
        Kind.ORPHAN: ("?", "magenta"),
    }
    for action in plan.actions:
        if action.kind in styles:
            mark, style = styles[action.kind]
            where = f" on {action.node}" if action.node != LOCAL_NODE else ""
            out.print(
                f"[{style}]{mark} {action.kind.value:<8} {action.name}{where}[/{style}]"
                f"  ({action.reason})"
            )
    for node, why in sorted(plan.unreachable.items()):
        err.print(
            f"[yellow]! node {node} does not answer[/yellow] ({escape(why)}); its agents are "
            "left as they are"
        )
    out.print(f"plan: {plan.summary()}")


_PAST = {
    Kind.CREATE: "created",
    Kind.RECREATE: "recreated",
    Kind.START: "started",
    Kind.DELETE: "deleted",
    Kind.KEEP: "kept",
    Kind.ORPHAN: "left",
}


@contextmanager
def _progress(
    total_label: str, loaded: LoadedFleet | None = None
) -> Iterator[tuple[Callable[[Plan], None], Callable[[Outcome], None]]]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task: dict[str, Any] = {}

    def on_plan(plan: Plan) -> None:
        _print_plan(plan)
        task["id"] = progress.add_task(total_label, total=len(plan.changes))

    def on_done(outcome: Outcome) -> None:
        action = outcome.action
        if outcome.ok:
            out.print(f"  {_PAST[action.kind]} {action.name} ({outcome.seconds:.1f}s)")
        else:
            from agentctl_swarm.controller.apply import locate_failure

            where = locate_failure(loaded, outcome) if loaded else outcome.error
            err.print(
                f"  [red]failed[/red] to {action.kind.value} {action.name}: {escape(str(where))}",
                soft_wrap=True,
            )
        if "id" in task:
            progress.advance(task["id"])

    with progress:
        yield on_plan, on_done


def _emit(rows: list[dict[str, Any]], output: Output, columns: list[tuple[str, str]]) -> None:
    if output is Output.json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
    elif output is Output.yaml:
        dump_yaml(rows)
    else:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for _, title in columns:
            table.add_column(title)
        for row in rows:
            table.add_row(*[_cell(row.get(key)) for key, _ in columns])
        out.print(table)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _uptime(seconds: float | None) -> str | None:
    return None if seconds is None else human_age(seconds)


# -- commands ---------------------------------------------------------------------------


def validate(file: Annotated[Path, typer.Argument(help="The fleet file to check.")]) -> None:
    """Check a fleet file and report every problem as FILE:LINE:COL: field: message."""
    loaded = load(file)
    n = sum(a.replicas for a in loaded.fleet.agents)
    out.print(
        f"{file}: fleet {loaded.fleet.name!r} is valid "
        f"({len(loaded.fleet.agents)} roles, {n} agents)"
    )


def schema() -> None:
    """Print the fleet file's JSON Schema (point your editor's YAML plugin at it)."""
    from agentctl_swarm.fleet.model import Fleet

    data = Fleet.model_json_schema(by_alias=True)
    data["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    data["title"] = "agentctl fleet file (apiVersion agentctl.io/v1)"
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def apply(
    file: FleetFile,
    prune: Annotated[
        bool, typer.Option(help="Delete this fleet's agents that the file no longer lists.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and change nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option(help="Remove containers even when their final sync fails.")
    ] = False,
    concurrency: Annotated[
        int | None, typer.Option(help="Parallel Podman operations (default 8).")
    ] = None,
) -> None:
    """Make Podman match the fleet file: create, recreate changed agents, start stopped ones.

    Re-applying an unchanged file changes nothing. Changing one agent recreates only it.
    Containers without agentctl's labels are never touched.
    """
    loaded = load(file)
    check_tools()
    from agentctl_swarm.controller.apply import apply_fleet

    podman = fleet_backend(loaded)
    with _progress("applying", loaded) as (on_plan, on_done):
        result = apply_fleet(
            loaded,
            podman,
            settings(),
            prune=prune,
            dry_run=dry_run,
            force=force,
            concurrency=concurrency,
            on_plan=on_plan,
            on_done=on_done,
            on_wait=lambda m: err.print(m),
        )
    if dry_run:
        out.print("dry run: nothing was changed.")
        return
    _fail_on_unreachable(result.plan, file)
    if result.failed:
        raise AgentctlError(
            f"{len(result.failed)} of {len(result.outcomes)} changes failed",
            hint="fix the cause shown above and re-run apply (it repairs what was half done)",
        )
    if result.outcomes:
        out.print(f"fleet {loaded.fleet.name!r}: {len(result.outcomes)} changed.")


def diff(
    file: FleetFile,
    prune: Annotated[
        bool, typer.Option(help="Show deletions that apply --prune would make.")
    ] = False,
) -> None:
    """Show what apply would change. Exit 0: nothing; 1: changes; 2 or more: error."""
    from agentctl_swarm.controller.apply import diff_fleet

    loaded = load(file)
    plan = diff_fleet(loaded, fleet_backend(loaded), settings(), prune=prune)
    _print_plan(plan)
    _fail_on_unreachable(plan, file)
    raise typer.Exit(1 if plan.has_changes else 0)


def _fail_on_unreachable(plan: Plan, file: Path) -> None:
    """Exit 3 when some node did not answer (after the others were done)."""
    if plan.unreachable:
        names = ", ".join(sorted(plan.unreachable))
        raise UnavailableError(
            f"node(s) {names} did not answer; their agents were left as they are",
            hint=f"check those nodes' Podman API, then run `agentctl apply -f {file}` again",
        )


def get(
    file: Annotated[
        Path | None, typer.Option("-f", "--file", help="Only this fleet's agents.")
    ] = None,
    fleet: Annotated[str | None, typer.Option(help="Only this fleet (by name).")] = None,
    output: Annotated[
        Output, typer.Option("-o", "--output", help="table, json or yaml.")
    ] = Output.table,
) -> None:
    """List agents: name, role, state, restarts, container id, uptime."""
    from agentctl_swarm.controller.status import fleet_status

    name = load(file).fleet.name if file else fleet
    rows = [
        s.as_dict() for s in fleet_status(fleet_backend(load(file)) if file else backend(), name)
    ]
    for row in rows:
        row["uptime"] = _uptime(row["uptime_seconds"])
    if not rows and output is Output.table:
        out.print("no agents" + (f" in fleet {name!r}" if name else ""))
        return
    _emit(
        rows,
        output,
        [
            ("agent", "AGENT"),
            ("fleet", "FLEET"),
            *([("node", "NODE")] if any(r["node"] != LOCAL_NODE for r in rows) else []),
            ("role", "ROLE"),
            ("state", "STATE"),
            ("agent_status", "STATUS"),
            ("restarts", "RESTARTS"),
            ("container_id", "CONTAINER"),
            ("uptime", "UPTIME"),
        ],
    )


def delete(
    file: FleetFile,
    volumes: Annotated[
        bool, typer.Option("--volumes", help="Also delete workspaces, state and secrets.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Remove even when the final sync fails.")] = False,
) -> None:
    """Remove the fleet's containers (after a final sync). Volumes stay unless --volumes."""
    loaded = load(file)
    check_tools()
    from agentctl_swarm.controller.apply import delete_fleet

    podman = fleet_backend(loaded)
    with _progress("deleting") as (on_plan, on_done):
        result, removed = delete_fleet(
            loaded,
            podman,
            settings(),
            volumes=volumes,
            force=force,
            on_plan=on_plan,
            on_done=on_done,
            on_wait=lambda m: err.print(m),
        )
    if result.failed:
        raise AgentctlError(
            f"{len(result.failed)} removals failed; nothing else was lost",
            hint="fix the cause shown above, or use --force",
        )
    for item in removed:
        out.print(f"  removed {item}")
    if not volumes:
        from agentctl_swarm.controller.apply import leftovers

        kept_volumes, kept_secrets = leftovers(podman, loaded.fleet.name)
        if kept_volumes or kept_secrets:
            out.print(
                f"kept {len(kept_volumes)} volumes (workspaces and state) and "
                f"{len(kept_secrets)} secrets of fleet {loaded.fleet.name!r}; "
                "`agentctl delete --volumes` removes them."
            )


def scale(
    file: FleetFile,
    role: Annotated[str, typer.Argument(help="The role to scale, e.g. builder.")],
    replicas: Annotated[
        int, typer.Argument(help="How many agents the role should have (0 stops it).")
    ],
) -> None:
    """Scale a role and write it into the fleet file (the desired state).

    Up creates the next agents (swarm-ROLE-NNN after the highest number). Down removes
    idle agents first, the one running longest first, after a final sync; an agent that
    is working on a task is never stopped for it: `agentctl up` removes it once it is
    idle. The fleet file gets `replicas:` (and `instances:` when the numbers left are not
    0..N-1), so the next apply or reload keeps the new size. When `agentctl up` runs the
    fleet it is told to reload and does the work; otherwise it is done here.

    Example: agentctl scale -f fleet.yaml builder 3
    """
    from agentctl_swarm.controller.apply import busy_agents, scale_role

    check_tools()
    podman = fleet_backend(load(file))
    with _progress("scaling") as (_on_plan, on_done):
        result = scale_role(
            file,
            role,
            replicas,
            podman,
            settings(),
            busy=lambda loaded: busy_agents(loaded, settings()),
            on_done=on_done,
        )
    choice = result.choice
    names = lambda ids: ", ".join(f"swarm-{role}-{i:03d}" for i in ids) or "none"  # noqa: E731
    out.print(f"{role}: {len(result.before)} -> {len(choice.keep)} agents (written to {file})")
    if choice.added:
        out.print(f"  new: {names(choice.added)}")
    if choice.removed:
        out.print(f"  removed (idle): {names(choice.removed)}")
    if choice.draining:
        out.print(f"  busy, removed once idle by `agentctl up`: {names(choice.draining)}")
    if result.up_pid:
        out.print(f"`agentctl up` (pid {result.up_pid}) was told to reload and carries it out.")
    elif result.applied is not None and result.applied.failed:
        raise AgentctlError(
            f"{len(result.applied.failed)} changes failed", hint="fix the cause and run apply"
        )


def reload(file: FleetFile) -> None:
    """Tell the `agentctl up` running this fleet to re-read its fleet file (SIGHUP).

    Max-active, budgets and heartbeat settings take effect at once; a changed image or
    template rolls to idle agents only, never interrupting a task.
    """
    import os
    import signal

    from agentctl_swarm.controller.apply import FleetIsUp, up_lock

    loaded = load(file)
    try:
        with up_lock(settings(), loaded.fleet.name, purpose="reload it"):
            pass
    except FleetIsUp as exc:
        pid = exc.holder
        os.kill(int(pid), signal.SIGHUP)
        out.print(f"told `agentctl up` (pid {pid}) to reload {file}")
        return
    raise AgentctlError(
        f"`agentctl up` is not running fleet {loaded.fleet.name!r} on this machine",
        hint=f"start it with `agentctl up -f {file}`, or use `agentctl apply -f {file}`",
    )


def logs(
    agent: AgentArg,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[int | None, typer.Option("--tail", help="Only the last N lines.")] = None,
    fleet: Annotated[
        str | None, typer.Option(help="The fleet, when the name is ambiguous.")
    ] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the JSON log records as they are.")
    ] = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="The fleet file: look on its `nodes:` (default: this machine).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print an agent's output (its supervisor and agent process), as readable lines."""
    from agentctl_swarm.core.logs import render_record

    podman = _podman(file)
    name = find_container(podman, agent, fleet)
    try:
        for chunk in podman.logs(name, follow=follow, tail=tail):
            for raw_line in chunk.decode("utf-8", "replace").splitlines():
                sys.stdout.write((raw_line if raw else render_record(raw_line)) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


def restart(
    agent: AgentArg,
    fleet: FleetOpt = None,
    file: NodesFile = None,
) -> None:
    """Restart one agent's container (gracefully: SIGTERM, grace period, then SIGKILL).

    Also clears a `degraded` mark: `agentctl up` stops restarting an agent that crashed
    more than 5 times in 30 minutes until a person restarts it this way.
    """
    from agentctl_swarm.controller.health_store import request_clear

    podman = _podman(file)
    name = find_container(podman, agent, fleet)
    observed = podman.observe(name)
    if observed is not None:
        request_clear(settings().state_dir, observed.fleet, observed.agent)
    podman.restart(name)
    out.print(f"restarted {name}")


def stop(
    agent: AgentArg,
    fleet: FleetOpt = None,
    file: NodesFile = None,
) -> None:
    """Stop one agent's container; `agentctl apply` starts it again."""
    podman = _podman(file)
    name = find_container(podman, agent, fleet)
    podman.stop(name)
    out.print(f"stopped {name}")
