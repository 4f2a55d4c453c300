"""CLI commands for the host: `agentctl doctor` (Podman setup) and `agentctl build` (images).

Only parsing and printing live here; the work is in agentctl_swarm.podman.host and
agentctl_swarm.podman.images. Exit codes: 0 all well; 1 a problem remains or the build
failed; 2 the arguments are wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from agentctl_swarm.cli.common import err, out, settings
from agentctl_swarm.core.errors import AgentctlError, UsageError
from agentctl_swarm.podman.claude_code import CLAUDE_CODE_VERSION


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `agentctl` app."""
    app.command()(doctor)
    app.command()(build)


def doctor(
    fix: Annotated[
        bool,
        typer.Option("--fix/--check", help="Fix what is wrong (default), or only report."),
    ] = True,
    no_install: Annotated[
        bool, typer.Option("--no-install", help="Never install packages (apt-get).")
    ] = False,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe/--no-probe",
            help="Start a throw-away container from a local agentctl image to prove it works.",
        ),
    ] = True,
) -> None:
    """Check the host for Podman and fix what keeps containers from running.

    Finds podman (installs it with apt-get where missing and allowed), switches the OCI
    runtime when crun cannot work on this cgroup layout, caps container rlimits to the
    host's hard limits (containers.conf drop-in), and finds or starts the Podman API
    socket. On a healthy host it changes nothing.
    """
    from agentctl_swarm.podman import host

    cfg = settings()
    images = (cfg.agent_image, cfg.base_image) if probe else ()
    report = host.doctor(
        cfg.podman_url,
        fix=fix,
        allow_install=not no_install,
        probe_images=images,
        log_dir=cfg.state_dir,
        on_change=lambda line: err.print(f"[cyan]→[/cyan] {line}", markup=True),
    )
    for f in report.diagnosis.findings:
        mark = "[green]✓[/green]" if f.severity == "ok" else "[red]✗[/red]"
        out.print(f"{mark} {f.check:<8} ", end="", markup=True)
        out.print(f.message, markup=False, soft_wrap=True)
        if f.severity == "problem" and f.hint:
            out.print(f"           fix: {f.hint}", markup=False, soft_wrap=True)
    if not fix and report.diagnosis.actions:
        out.print("would change (run `agentctl doctor --fix`):")
        for action in report.diagnosis.actions:
            out.print(f"  - {action.describe()}", markup=False)
    if report.changes:
        out.print("changed:")
        for line in report.changes:
            out.print(f"  - {line}", markup=False)
    elif fix:
        out.print("changed: nothing")
    for note in report.notes:
        out.print(f"[yellow]note:[/yellow] {note}", markup=True, soft_wrap=True)
    for failure in report.failures:
        err.print(f"[red]failed:[/red] {failure}", markup=True, soft_wrap=True)
    out.print(f"Podman API: {report.socket_url}", markup=False)
    if report.ok:
        out.print("[green]host is ready[/green]", markup=True)
    raise typer.Exit(0 if report.ok else 1)


def build(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when up to date.")] = False,
    base_image: Annotated[
        str | None,
        typer.Option(
            "--base-image",
            help="Base image (default AGENTCTL_BASE_IMAGE, localhost/agentctl-base:bookworm, "
            "built offline with debootstrap when missing).",
            show_default=False,
        ),
    ] = None,
    slim: Annotated[
        bool,
        typer.Option(
            "--slim",
            help="Build without Claude Code (by default its native binary is installed with "
            "npm on this host and copied into the image).",
        ),
    ] = False,
    claude_version: Annotated[
        str,
        typer.Option(
            "--claude-version",
            help="The @anthropic-ai/claude-code version to put into the image (pinned).",
        ),
    ] = CLAUDE_CODE_VERSION,
    image: Annotated[
        str | None,
        typer.Option(
            "--image", help="Tag to build (default AGENTCTL_AGENT_IMAGE).", show_default=False
        ),
    ] = None,
    project_dir: Annotated[
        Path | None,
        typer.Option(
            "--project-dir", help="The checkout with the Containerfile.", show_default=False
        ),
    ] = None,
    mirror: Annotated[
        str, typer.Option("--mirror", help="Debian mirror for the offline base image.")
    ] = "http://deb.debian.org/debian",
) -> None:
    """Build the agent image (and the offline base image when it is missing).

    Skips the build when nothing that goes into the image changed (content hash in the
    image label io.agentctl.build-hash); --force rebuilds.
    """
    from agentctl_swarm.podman import images as img

    cfg = settings()
    try:
        root = img.find_project_dir(project_dir)
    except img.BuildError as exc:
        raise UsageError(str(exc)) from exc
    if project_dir is not None and root != project_dir.resolve():
        raise UsageError(f"--project-dir {project_dir}: no Containerfile and pyproject.toml there")
    opts = img.BuildOptions(
        project_dir=root,
        image=image or cfg.agent_image,
        base_image=base_image or cfg.base_image,
        with_claude=not slim,
        claude_version=claude_version,
        force=force,
        mirror=mirror,
        lock_dir=cfg.state_dir,
    )
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[stage]:<6}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}", markup=False),
        console=err,
        transient=True,
    )
    task = progress.add_task("", total=None, stage="start")

    def on_event(ev: img.BuildEvent) -> None:
        text = ev.message if len(ev.message) <= 70 else ev.message[:67] + "..."
        if ev.step is not None and ev.total:
            progress.update(task, total=ev.total, completed=ev.step - 1, description=text)
        else:
            progress.update(task, description=text, stage=ev.stage)
        if ev.stage in {"base", "check", "wheels", "claude"} and ev.message[:1].islower():
            progress.console.print(f"[cyan]→[/cyan] {ev.message}", markup=True, soft_wrap=True)

    try:
        with progress:
            result = img.build_agent_image(opts, on_event)
    except img.BuildError as exc:
        raise AgentctlError(str(exc)) from exc
    if result.base_built:
        out.print(f"built base image {opts.base_image}", markup=False)
    if result.skipped:
        out.print(
            f"{result.image} is up to date (build hash {result.build_hash[:12]}); "
            "nothing to do (--force rebuilds)",
            markup=False,
            soft_wrap=True,
        )
    else:
        out.print(
            f"built {result.image} in {result.seconds:.0f} s (build hash {result.build_hash[:12]})",
            markup=False,
            soft_wrap=True,
        )
