"""Podman Quadlet units for a fleet: systemd runs the agents, no `agentctl up` needed (pure).

Each agent becomes ``<container>.container`` plus a ``.volume`` unit for its workspace
and its state, built from the same rendered :class:`ContainerSpec` `apply` hands to
Podman: the same container and volume names, image, command, environment, labels, limits
and hardening (uid 1000, every capability dropped, no-new-privileges, its own user
namespace on rootful Podman, a private /tmp). When the fleet names no ``server:``, the
AgentChat server with its coordinator gets a unit too, and the agents want it.

Targets Quadlet as shipped with Podman 4.7 or newer (``VolumeName=``, ``PidsLimit=``,
``HostName=``); what has no key there (memory, CPUs, stop timeout) goes through
``PodmanArgs=``. Secrets are referenced by name (``Secret=``), never valued.

Values are written for two readers: Quadlet unquotes each line like systemd does, then
copies the words into the service's ``ExecStart=``, where systemd expands ``$VAR`` and
``%`` specifiers, so a literal ``$`` is written ``$$`` and ``%`` is written ``%%``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agentctl_swarm.export.kube import COORDINATOR_NOTE, RUNNER_MARK, server_args
from agentctl_swarm.fleet.model import Fleet
from agentctl_swarm.fleet.render import (
    DEFAULT_IMAGE,
    DEFAULT_RESTART_RETRIES,
    LABEL_AGENT,
    LABEL_FLEET,
    LABEL_KIND,
    LABEL_SPEC_HASH,
    STATE_DIR,
    ContainerSpec,
    render_fleet,
)

MIN_PODMAN = "4.7"
RESTART_SEC = 10
START_LIMIT_INTERVAL = 300
TMPFS = "/tmp:rw,size=256m,mode=1777"  # what podman/backend.py mounts on /tmp
USERNS = "auto:size=65536"
_RESTART = {"no": "no", "on-failure": "on-failure", "always": "always", "unless-stopped": "always"}

Section = tuple[str, list[tuple[str, str]]]


@dataclass(frozen=True)
class QuadletOptions:
    """How the units will run: system units (rootful Podman) or user units (rootless)."""

    rootless: bool = False
    coordinators: tuple[str, ...] = ()


@dataclass(frozen=True)
class UnitFile:
    """One Quadlet file: its name, a comment header and its sections, in order."""

    name: str
    sections: list[Section]
    header: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"# {line}".rstrip() for entry in self.header for line in entry.splitlines()]
        for title, entries in self.sections:
            if lines:
                lines.append("")
            lines.append(f"[{title}]")
            lines += [f"{key}={value}" for key, value in entries]
        return "\n".join(lines) + "\n"

    def values(self, section: str, key: str) -> list[str]:
        return [
            v
            for title, entries in self.sections
            if title == section
            for k, v in entries
            if k == key
        ]


@dataclass(frozen=True)
class QuadletExport:
    units: list[UnitFile]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def export_quadlet(
    fleet: Fleet, options: QuadletOptions | None = None, *, home: Path
) -> QuadletExport:
    """Render the fleet (``home`` expands ``~`` in host paths) and write its units."""
    options = options or QuadletOptions()
    specs = render_fleet(
        fleet, home=home, server_url=agent_server_url(fleet), coordinators=options.coordinators
    )
    return quadlet_units(fleet, specs, options)


def agent_server_url(fleet: Fleet) -> str | None:
    """The fleet's ``server:``, else the exported server on the host's loopback."""
    if fleet.server:
        return None
    host = fleet.embedded.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"ws://{f'[{host}]' if ':' in host else host}:{fleet.embedded.port}"


def quadlet_units(
    fleet: Fleet, specs: list[ContainerSpec], options: QuadletOptions
) -> QuadletExport:
    """The units for ``specs`` (render_fleet's output), server first."""
    units: list[UnitFile] = []
    notes = [
        f"Quadlet units need Podman {MIN_PODMAN} or newer; copy them to "
        + (
            "~/.config/containers/systemd/ (rootless)"
            if options.rootless
            else "/etc/containers/systemd/ (rootful)"
        )
        + ", run `systemctl"
        + (" --user" if options.rootless else "")
        + " daemon-reload`, then start <name>.service",
        "run a fleet on a host either with these units or with `agentctl apply`/`up`, not "
        "both: they use the same container names (`agentctl get`, `logs` and `sync` work "
        "with either)",
    ]
    warnings: list[str] = []
    server_unit = None
    if fleet.server is None:
        server_unit = f"{fleet.name}-agentchat"
        units += _server_units(fleet, options)
    shared: dict[str, ContainerSpec] = {}
    secrets: dict[str, str] = {}
    for spec in specs:
        units += _agent_units(fleet, spec, options, server_unit)
        for mount in spec.mounts:
            if mount.kind == "volume" and mount.source not in (
                spec.workspace_volume,
                spec.state_volume,
            ):
                shared.setdefault(mount.source, spec)
        for ref in spec.secrets:
            source = f'"${ref.source_env}"' if ref.source_env else f'"$(cat {ref.source_file})"'
            secrets[ref.podman_name] = (
                f"printf %s {source} | podman secret create {ref.podman_name} -"
            )
    for source in sorted(shared):
        labels = {LABEL_FLEET: fleet.name, LABEL_KIND: "volume"}
        units.append(_volume_unit(fleet, source, labels, shared=True))
    if secrets:
        notes.append(
            "create the Podman secrets before starting the agents (values never enter the units):\n"
            + "\n".join(f"  {line}" for _, line in sorted(secrets.items()))
        )
    if not options.coordinators and any(RUNNER_MARK in s.env for s in specs):
        notes.append(COORDINATOR_NOTE)
    if any(s.repo for s in specs):
        warnings.append(
            "repo: is not exported: seeding a workspace is a host-side step of apply; "
            "agents started by these units begin with an empty git repository"
        )
    return QuadletExport(units, notes, warnings)


# -- units --------------------------------------------------------------------------------


def _agent_units(
    fleet: Fleet, spec: ContainerSpec, options: QuadletOptions, server_unit: str | None
) -> list[UnitFile]:
    uid, gid = spec.user.split(":")
    userns = not options.rootless and spec.userns == "auto"
    container: list[tuple[str, str]] = [
        ("ContainerName", spec.name),
        ("Image", _value(spec.image)),
        ("HostName", spec.agent),
        ("Exec", _words(spec.command)),
        *[("Environment", _word(f"{k}={v}")) for k, v in spec.env.items()],
        *[("Label", _word(f"{k}={v}")) for k, v in _labels(spec).items()],
        ("User", uid),
        ("Group", gid),
        ("DropCapability", "ALL"),
        ("NoNewPrivileges", "true"),
        ("Network", spec.network),
    ]
    if userns:
        # As apply: uid 1000 inside is a subordinate id no host user has; volumes follow
        # the mapping (:U); with host networking the kernel refuses a fresh sysfs in a
        # new user namespace, so the host's is bound read-only.
        container.append(("UserNS", USERNS))
    volume_units: list[UnitFile] = []
    for mount in spec.mounts:
        options_ = ["ro"] if mount.read_only else []
        if mount.kind == "volume":
            if userns:
                options_.append("U")
            source = f"{mount.source}.volume"
            if mount.source in (spec.workspace_volume, spec.state_volume):
                labels = {LABEL_FLEET: spec.fleet, LABEL_AGENT: spec.agent, LABEL_KIND: "volume"}
                volume_units.append(_volume_unit(fleet, mount.source, labels, shared=False))
        else:
            source = mount.source
        suffix = f":{','.join(options_)}" if options_ else ""
        container.append(("Volume", _value(f"{source}:{mount.target}{suffix}")))
    if userns and spec.network == "host":
        container.append(("Volume", "/sys:/sys:ro"))
    container.append(("Tmpfs", TMPFS))
    for ref in spec.secrets:
        container.append(
            (
                "Secret",
                _word(
                    f"{ref.podman_name},type=mount,target={ref.name},uid={uid},gid={gid},mode=0400"
                ),
            )
        )
    if spec.pids:
        container.append(("PidsLimit", str(spec.pids)))
    container.append(("PodmanArgs", _words(_limit_args(spec))))
    unit: list[tuple[str, str]] = [
        (
            "Description",
            _value(f"agentctl agent {spec.agent} (fleet {spec.fleet}, role {spec.role})"),
        ),
        *_start_limits(spec.restart_retries),
    ]
    if server_unit:
        unit += [("Wants", f"{server_unit}.service"), ("After", f"{server_unit}.service")]
    header = [
        f"{spec.name}.container: agent {spec.agent} of fleet {spec.fleet}, generated by "
        "`agentctl export quadlet`; re-export instead of editing.",
    ]
    if spec.secrets:
        header.append(
            "Needs the Podman secrets " + ", ".join(s.podman_name for s in spec.secrets) + "."
        )
    agent = UnitFile(
        f"{spec.name}.container",
        [
            ("Unit", unit),
            ("Container", container),
            ("Service", _service(spec.restart, spec.stop_timeout)),
            ("Install", [("WantedBy", "default.target")]),
        ],
        header,
    )
    return [agent, *volume_units]


def _server_units(fleet: Fleet, options: QuadletOptions) -> list[UnitFile]:
    """`agentctl server` with the coordinator, from the agent image, on the host network."""
    name = f"{fleet.name}-agentchat"
    data = f"{name}-data"
    userns = not options.rootless
    host = fleet.embedded.host
    argv = ["agentctl", "server", "--host", host, "--port", str(fleet.embedded.port)]
    argv += server_args(fleet)
    labels = {**fleet.metadata.labels, LABEL_FLEET: fleet.name, LABEL_KIND: "server"}
    container: list[tuple[str, str]] = [
        ("ContainerName", name),
        ("Image", _value(fleet.defaults.image or DEFAULT_IMAGE)),
        ("Exec", _words(argv)),
        *[("Label", _word(f"{k}={v}")) for k, v in labels.items()],
        ("User", "1000"),
        ("Group", "1000"),
        ("DropCapability", "ALL"),
        ("NoNewPrivileges", "true"),
        ("Network", "host"),
    ]
    if userns:
        container += [("UserNS", USERNS), ("Volume", f"{data}.volume:{STATE_DIR}:U")]
        container.append(("Volume", "/sys:/sys:ro"))
    else:
        container.append(("Volume", f"{data}.volume:{STATE_DIR}"))
    container += [
        ("Tmpfs", TMPFS),
        ("PidsLimit", "256"),
        ("PodmanArgs", "--memory=536870912 --stop-timeout=15"),
    ]
    unit = UnitFile(
        f"{name}.container",
        [
            (
                "Unit",
                [
                    (
                        "Description",
                        _value(f"AgentChat server and coordinator of fleet {fleet.name}"),
                    ),
                    *_start_limits(DEFAULT_RESTART_RETRIES),
                ],
            ),
            ("Container", container),
            ("Service", _service("on-failure", 15)),
            ("Install", [("WantedBy", "default.target")]),
        ],
        [
            f"{name}.container: the chat server and task coordinator of fleet {fleet.name} "
            f"on {host}:{fleet.embedded.port}, generated by `agentctl export quadlet`."
        ],
    )
    labels = {LABEL_FLEET: fleet.name, LABEL_KIND: "volume"}
    return [unit, _volume_unit(fleet, data, labels, shared=False)]


def _volume_unit(fleet: Fleet, name: str, labels: dict[str, str], *, shared: bool) -> UnitFile:
    what = "a named volume the fleet's agents share" if shared else "a volume"
    return UnitFile(
        f"{name}.volume",
        [
            ("Unit", [("Description", _value(f"agentctl volume {name} (fleet {fleet.name})"))]),
            (
                "Volume",
                [
                    # The Podman volume keeps apply's name (Quadlet would say systemd-<name>).
                    ("VolumeName", name),
                    *[("Label", _word(f"{k}={v}")) for k, v in labels.items()],
                ],
            ),
        ],
        [f"{name}.volume: {what} of fleet {fleet.name}, generated by `agentctl export quadlet`."],
    )


def _labels(spec: ContainerSpec) -> dict[str, str]:
    """The spec's labels without the spec hash: that is apply's change detector, and a
    unit-managed container is not apply's to recreate."""
    return {k: v for k, v in spec.labels.items() if k != LABEL_SPEC_HASH}


def _limit_args(spec: ContainerSpec) -> list[str]:
    """Limits Quadlet 4.7 has no key for, as `podman run` flags."""
    args = []
    if spec.memory_bytes:
        args.append(f"--memory={spec.memory_bytes}")
    if spec.nano_cpus:
        cpus = spec.nano_cpus / 1e9
        args.append(f"--cpus={int(cpus) if cpus.is_integer() else cpus}")
    args.append(f"--stop-timeout={spec.stop_timeout}")
    return args


def _start_limits(retries: int | None) -> list[tuple[str, str]]:
    """systemd gives up after ``retries`` restarts within five minutes (then: failed)."""
    burst = (DEFAULT_RESTART_RETRIES if retries is None else retries) + 1
    return [
        ("StartLimitIntervalSec", str(START_LIMIT_INTERVAL)),
        ("StartLimitBurst", str(burst)),
    ]


def _service(restart: str, stop_timeout: int) -> list[tuple[str, str]]:
    return [
        ("Restart", _RESTART[restart]),
        ("RestartSec", str(RESTART_SEC)),
        ("TimeoutStartSec", "300"),
        ("TimeoutStopSec", str(stop_timeout + 10)),
    ]


# -- quoting ------------------------------------------------------------------------------


def _value(text: str) -> str:
    """A value Quadlet takes as written (Image=, Volume=, Description=): no quoting, only
    specifiers and variables escaped (Quadlet quotes the words of ExecStart itself)."""
    return text.replace("%", "%%").replace("$", "$$").replace("\n", " ")


def _word(text: str) -> str:
    """One word as systemd and Quadlet unquote it: double-quoted when it has to be."""
    escaped = text.replace("%", "%%").replace("$", "$$")
    if escaped and not any(c.isspace() or c in "\"'\\" or ord(c) < 32 for c in escaped):
        return escaped
    out = ['"']
    for c in escaped:
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 32 or ord(c) == 127:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _words(words: list[str]) -> str:
    return " ".join(_word(w) for w in words)
