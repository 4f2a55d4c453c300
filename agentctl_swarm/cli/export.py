"""CLI commands: ``agentctl export kube`` and ``agentctl export quadlet`` (parsing and output).

The manifests and units are built by the pure generators in agentctl_swarm.export; this
module reads the fleet, turns their problems into FILE:LINE:COL errors, and writes the
text: to stdout or a file (kube), into a directory (quadlet). Exit codes: 0 written;
2 the fleet file, an option, or something the target cannot express (nothing written).
"""

from __future__ import annotations

import ipaddress
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from agentctl_swarm.cli.common import err, load
from agentctl_swarm.core.errors import AgentctlError, UsageError
from agentctl_swarm.core.files import atomic_write
from agentctl_swarm.export import names
from agentctl_swarm.export.errors import ExportError
from agentctl_swarm.export.kube import KubeOptions, export_kube
from agentctl_swarm.export.quadlet import QuadletOptions, export_quadlet
from agentctl_swarm.export.yamltext import comment_block, dump_documents

FleetFile = Annotated[
    Path, typer.Option("-f", "--file", help="The fleet file (YAML).", show_default=False)
]
CoordinatorOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--coordinator-id",
        help="Chat id (16 hex) of the coordinator runners take assignments from; repeatable. "
        "Without it they accept one from any chat member.",
        show_default=False,
    ),
]

export_app = typer.Typer(
    help="Export the fleet for other runtimes: Kubernetes manifests, Podman Quadlet units.",
    no_args_is_help=True,
)


class For(StrEnum):
    kube = "kube"
    podman = "podman"


def register(app: typer.Typer) -> None:
    """Add `export kube` and `export quadlet` to the `agentctl` app."""
    app.add_typer(export_app, name="export")


@export_app.command("kube")
def kube(
    file: FleetFile,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Write the YAML here (default: stdout).", show_default=False
        ),
    ] = None,
    for_: Annotated[
        For,
        typer.Option(
            "--for",
            help="kube: StatefulSets, Services, NetworkPolicies for a cluster. podman: Pods "
            "and a Deployment that `podman kube play` (4.3) runs on this host's network.",
        ),
    ] = For.kube,
    namespace: Annotated[
        str | None, typer.Option("-n", "--namespace", help="Put every object in this namespace.")
    ] = None,
    storage_class: Annotated[
        str | None, typer.Option(help="storageClassName of every claim (default: the cluster's).")
    ] = None,
    workspace_size: Annotated[str, typer.Option(help="Each agent's workspace claim.")] = "10Gi",
    state_size: Annotated[str, typer.Option(help="Each agent's state claim.")] = "1Gi",
    server_image: Annotated[
        str | None, typer.Option(help="Image of the chat server (default: the agents' image).")
    ] = None,
    model_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--model-cidr",
            help="Allow agents to reach the model API only in this range (repeatable); "
            "NetworkPolicy cannot match its host name.",
            show_default=False,
        ),
    ] = None,
    coordinator_id: CoordinatorOpt = None,
) -> None:
    """Kubernetes manifests for the fleet (secrets referenced by name, never valued)."""
    loaded = load(file)
    problems = [
        f"--{flag} {problem}"
        for flag, value in (("workspace-size", workspace_size), ("state-size", state_size))
        if (problem := names.quantity(value))
    ]
    if namespace is not None and (problem := names.dns1123_label(namespace)):
        problems.append(f"--namespace {problem}")
    problems += _coordinator_problems(coordinator_id)
    for cidr in model_cidr or []:
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            problems.append(f"--model-cidr {cidr!r}: not a CIDR like 160.79.104.0/23")
    if problems:
        raise UsageError("; ".join(problems))
    options = KubeOptions(
        target=for_.value,
        namespace=namespace,
        storage_class=storage_class,
        workspace_size=workspace_size,
        state_size=state_size,
        server_image=server_image,
        model_cidrs=tuple(model_cidr or ()),
        coordinators=tuple(coordinator_id or ()),
    )
    try:
        result = export_kube(loaded.fleet, options, home=Path.home())
    except ExportError as exc:
        raise exc.located(loaded) from None
    header = [
        f"agentctl export kube --for {for_.value}: fleet {loaded.fleet.name!r} from {file}",
        *_section("Before applying", result.notes),
        *_section("Not expressible here", result.warnings),
    ]
    text = dump_documents(result.manifests, header)
    for line in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(line)}", soft_wrap=True)
    if output is None:
        sys.stdout.write(text)
        return
    _write(output, text)
    err.print(f"wrote {len(result.manifests)} objects to {escape(str(output))}", soft_wrap=True)
    for line in result.notes:
        err.print(escape(line), soft_wrap=True)


@export_app.command("quadlet")
def quadlet(
    file: FleetFile,
    directory: Annotated[
        Path | None,
        typer.Option("-d", "--dir", help="Write the units here (default: ./quadlet-<fleet>)."),
    ] = None,
    rootless: Annotated[
        bool,
        typer.Option(
            "--rootless",
            help="User units for rootless Podman (no per-agent user namespace: the user's "
            "own is one).",
        ),
    ] = False,
    coordinator_id: CoordinatorOpt = None,
) -> None:
    """Podman Quadlet .container and .volume units, one set per agent (Podman 4.7+)."""
    loaded = load(file)
    problems = _coordinator_problems(coordinator_id)
    if problems:
        raise UsageError("; ".join(problems))
    options = QuadletOptions(rootless=rootless, coordinators=tuple(coordinator_id or ()))
    try:
        result = export_quadlet(loaded.fleet, options, home=Path.home())
    except ExportError as exc:
        raise exc.located(loaded) from None
    target = directory or Path(f"quadlet-{loaded.fleet.name}")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AgentctlError(
            f"cannot create {target}: {exc.strerror or exc}", hint="pass another --dir"
        ) from exc
    wanted = {unit.name for unit in result.units}
    for unit in result.units:
        _write(target / unit.name, unit.text())
    stale = sorted(
        p.name
        for p in target.iterdir()
        if p.suffix in (".container", ".volume")
        and p.name not in wanted
        and _ours(p, loaded.fleet.name)
    )
    readme = comment_block(
        [f"agentctl export quadlet: fleet {loaded.fleet.name!r} from {file}", *result.notes]
    )
    _write(target / "README.agentctl", readme)
    err.print(f"wrote {len(result.units)} units to {escape(str(target))}", soft_wrap=True)
    for line in result.notes:
        err.print(escape(line), soft_wrap=True)
    for line in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(line)}", soft_wrap=True)
    if stale:
        err.print(
            f"[yellow]warning:[/yellow] units of agents the fleet no longer has are still in "
            f"{escape(str(target))}: {', '.join(stale)} (stop them, then delete the files)",
            soft_wrap=True,
        )


def _section(title: str, lines: list[str]) -> list[str]:
    return [f"{title}:", *[f"- {line}" for line in lines]] if lines else []


def _coordinator_problems(ids: list[str] | None) -> list[str]:
    return [
        f"--coordinator-id {value}: not a chat id (16 hex digits)"
        for value in ids or []
        if not re.fullmatch(r"[0-9a-f]{16}", value.removeprefix("@"))
    ]


def _ours(path: Path, fleet: str) -> bool:
    """Whether ``path`` is a unit this command wrote for ``fleet`` (by its header)."""
    try:
        head = path.read_text(errors="replace")[:400]
    except OSError:
        return False
    return "agentctl export quadlet" in head and re.search(rf"fleet {re.escape(fleet)}[ ,]", head)


def _write(path: Path, text: str) -> None:
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise AgentctlError(
            f"cannot write {path}: {exc.strerror or exc}", hint="check the path and permissions"
        ) from exc
