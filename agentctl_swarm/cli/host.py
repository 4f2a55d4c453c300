"""CLI commands for the host: `agentctl doctor` (Podman setup) and `agentctl build` (images).

Only parsing and printing live here; the work is in agentctl_swarm.podman.host and
agentctl_swarm.podman.images. Exit codes: 0 all well; 1 a problem remains or the build
failed; 2 the arguments are wrong.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from agentctl_swarm.podman.images import BuildOptions, BuildResult


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
    socket. For a non-root user (rootless Podman) it also checks subordinate ids, the
    runtime directory, the storage driver (moves an empty vfs store to overlay), whether
    memory/CPU/pids limits can be enforced (cgroup controllers; a problem unless
    AGENTCTL_ALLOW_UNENFORCED_LIMITS=1), and slirp4netns and /dev/net/tun for bridge
    networking. For both it makes `/` a shared mount (as root; a user gets the command),
    without which removing containers can fail. On a healthy host it changes nothing.
    Exit 0: no problems (warnings allowed); 1: a problem remains.
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
        allow_unenforced=cfg.allow_unenforced_limits,
    )
    marks = {"ok": "[green]✓[/green]", "warning": "[yellow]![/yellow]", "problem": "[red]✗[/red]"}
    for f in report.diagnosis.findings:
        out.print(f"{marks[f.severity]} {f.check:<8} ", end="", markup=True)
        out.print(f.message, markup=False, soft_wrap=True)
        if f.severity != "ok" and f.hint:
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
    for_user: Annotated[
        str | None,
        typer.Option(
            "--for-user",
            metavar="NAME",
            help="As root: afterwards copy the images into NAME's rootless Podman store "
            "(skipped when NAME has them already).",
            show_default=False,
        ),
    ] = None,
    base_only: Annotated[
        bool,
        typer.Option("--base-only", help="Only the base image (made when missing)."),
    ] = False,
) -> None:
    """Build the agent image (and the offline base image when it is missing).

    Skips the build when nothing that goes into the image changed (content hash in the
    image label io.agentctl.build-hash); --force rebuilds.

    Rootless Podman: every user has an image store of their own, and the offline base
    needs root (debootstrap). `sudo agentctl build --base-only --for-user NAME` makes the
    base and copies it to NAME, whose own `agentctl build` then builds the agent image;
    `sudo agentctl build --for-user NAME` builds both as root and copies both.
    """
    from agentctl_swarm.podman import images as img
    from agentctl_swarm.podman import user_store

    cfg = settings()
    target = user_store.target_user(for_user) if for_user else None  # a typo fails first
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
        if ev.stage in {"base", "check", "wheels", "claude", "copy"} and ev.message[:1].islower():
            progress.console.print(f"[cyan]→[/cyan] {ev.message}", markup=True, soft_wrap=True)

    if target is not None and os.geteuid() != 0:
        raise UsageError(
            "--for-user needs root: it copies from root's image store into the user's",
            hint=f"sudo {user_store.agentctl_command()} build --for-user {target.name}",
        )
    try:
        with progress:
            if base_only:
                if img.build_base_image(opts, on_event):
                    out.print(f"built base image {opts.base_image}", markup=False)
                else:
                    out.print(f"base image {opts.base_image} is present", markup=False)
            else:
                _report_build(opts, img.build_agent_image(opts, on_event))
            if target is not None:
                images = [opts.base_image] if base_only else [opts.base_image, opts.image]
                copied = user_store.copy_to_user(
                    images, target.name, lambda line: on_event(img.BuildEvent("copy", line))
                )
    except img.BuildError as exc:
        raise AgentctlError(str(exc)) from exc
    if target is not None:
        if copied.copied:
            out.print(
                f"copied {', '.join(copied.copied)} into {copied.user}'s image store "
                f"in {copied.seconds:.0f} s",
                markup=False,
                soft_wrap=True,
            )
        if copied.present:
            out.print(
                f"{copied.user}'s image store has {', '.join(copied.present)} already",
                markup=False,
                soft_wrap=True,
            )


def _report_build(opts: BuildOptions, result: BuildResult) -> None:
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
