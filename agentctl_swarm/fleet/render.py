"""Render a fleet into one container spec per agent (pure, deterministic).

The spec is everything the controller will ask Podman for. Its hash goes into the
``io.agentctl.spec-hash`` label, so the planner can tell a changed agent from an unchanged
one by comparing labels alone, without inspecting containers one by one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agentctl_swarm.fleet.model import (
    AgentSpec,
    Fleet,
    NodeSpec,
    RepoSpec,
    Resources,
    SecretSpec,
)

LABEL_FLEET = "io.agentctl.fleet"
LABEL_AGENT = "io.agentctl.agent"
LABEL_ROLE = "io.agentctl.role"
LABEL_SPEC_HASH = "io.agentctl.spec-hash"
LABEL_KIND = "io.agentctl.kind"

DEFAULT_IMAGE = "localhost/agentctl-agent:latest"
SECRET_PREFIX = "agentctl-"
DEFAULT_GRACE = 10.0
DEFAULT_RESOURCES = Resources(memory="512m", cpus=1.0, pids=256)
WORKSPACE_DIR = "/workspace"
STATE_DIR = "/state"
AGENT_UID = 1000
# The in-container supervisor already restarts the agent with backoff; Podman restarting
# the container is the second line and should give up rather than loop forever.
DEFAULT_RESTART_RETRIES = 3
#: The node name of this machine's Podman (fleets without a `nodes:` section).
LOCAL_NODE = "local"


@dataclass(frozen=True)
class Mount:
    """A named volume or host path mounted into the container."""

    source: str
    target: str
    read_only: bool = False
    kind: str = "volume"  # "volume" (named) or "bind" (host path)
    create: bool = False  # a bind source agentctl owns: created when missing


@dataclass(frozen=True)
class SecretRef:
    """A Podman secret the container receives; the value lives only in Podman."""

    podman_name: str
    name: str
    env: str | None  # exposed as this env var, or None when mounted as a file
    source_env: str | None
    source_file: str | None


@dataclass(frozen=True)
class ContainerSpec:
    """One agent container, fully resolved."""

    fleet: str
    role: str
    index: int
    agent: str
    name: str
    image: str
    command: list[str]
    env: dict[str, str]
    labels: dict[str, str]
    mounts: list[Mount]
    secrets: list[SecretRef]
    network: str
    memory_bytes: int | None
    nano_cpus: int | None
    pids: int | None
    restart: str
    restart_retries: int | None
    grace_seconds: float
    user: str = f"{AGENT_UID}:{AGENT_UID}"
    userns: str = "auto"  # own user namespace per agent (rootful Podman; see podman/backend)
    repo: RepoSpec | None = None
    node: str = LOCAL_NODE  # the node it is placed on (fleet.placement)
    spec_hash: str = field(default="", compare=False)

    @property
    def workspace_volume(self) -> str:
        return volume_name(self.fleet, self.agent, "workspace")

    @property
    def state_volume(self) -> str:
        return volume_name(self.fleet, self.agent, "state")

    @property
    def stop_timeout(self) -> int:
        """Podman's stop timeout: the supervisor's grace plus time to report."""
        return int(self.grace_seconds) + 5


def agent_name(role: str, index: int) -> str:
    """``swarm-<role>-NNN``: the agent's name on the channel and in labels."""
    return f"swarm-{role}-{index:03d}"


def container_name(fleet: str, agent: str) -> str:
    """Container names carry the fleet so two fleets never collide."""
    return f"{fleet}-{agent}"


def volume_name(fleet: str, agent: str, purpose: str) -> str:
    return f"{fleet}-{agent}-{purpose}"


def secret_name(fleet: str, role: str, name: str, version: str | None = None) -> str:
    """The Podman secret that carries one role's secret ``name``.

    Per role, so two roles' ``TOKEN`` from different sources never share one secret; the
    exact name's digest keeps ``API_KEY`` and ``api_key`` apart (Podman secret names
    are compared without regard to case here); ``version`` (a keyed digest of the value,
    see controller/secrets.py) changes the name when the value is rotated, so the spec
    hash changes and apply recreates the agent with the new value.
    """
    tag = hashlib.sha256(name.encode()).hexdigest()[:6]
    base = f"{SECRET_PREFIX}{fleet}-{role}-{name.lower()}-{tag}"
    return f"{base}-{version}" if version else base


def fleet_secret_prefix(fleet: str) -> str:
    """Every Podman secret of ``fleet`` starts with this (used to list and clean them)."""
    return f"{SECRET_PREFIX}{fleet}-"


def role_of(agent: str) -> str | None:
    """The role in an agent name ``swarm-<role>-NNN`` (None for other names)."""
    head, _, index = agent.rpartition("-")
    if not head.startswith("swarm-") or not index.isdigit():
        return None
    return head.removeprefix("swarm-") or None


def repo_for(fleet: Fleet, agent: str) -> RepoSpec | None:
    """The agent's resolved ``repo:``: its role's, else the defaults', else the fleet's."""
    role = role_of(agent)
    spec = next((a for a in fleet.agents if a.role == role), None)
    return (spec.repo if spec else None) or fleet.defaults.repo or fleet.repo


SecretVersions = Mapping[tuple[str, str], str]
CONTROL_DIR = "/run/agentctl"  # where a runner finds its node's control socket


def render_fleet(
    fleet: Fleet,
    *,
    home: Path,
    server_url: str | None = None,
    secret_versions: SecretVersions | None = None,
    control_root: Path | None = None,
    coordinators: tuple[str, ...] = (),
    placement: Mapping[str, NodeSpec] | None = None,
) -> list[ContainerSpec]:
    """Every agent of the fleet, replicas expanded, in a stable order.

    The caller passes what is only known on the host (pure: no environment): ``home``
    expands ``~`` in host paths; ``server_url`` is the chat server when the fleet names
    none; ``secret_versions`` maps (role, secret name) to a digest of its current value;
    ``control_root`` is the host directory of the runners' control sockets;
    ``coordinators`` are the chat ids runners take assignments from; ``placement`` maps
    agent names to the node each runs on (see fleet.placement; default: this machine).
    """
    specs: list[ContainerSpec] = []
    for agent in fleet.agents:
        for index in agent.indexes:
            specs.append(
                render_agent(
                    fleet,
                    agent,
                    index,
                    home=home,
                    server_url=server_url,
                    secret_versions=secret_versions,
                    control_root=control_root,
                    coordinators=coordinators,
                    node=(placement or {}).get(agent_name(agent.role, index)),
                )
            )
    return specs


def role_secrets(fleet: Fleet, agent: AgentSpec) -> list[SecretSpec]:
    """The secrets one role receives: its own entries over the defaults', by name."""
    return _merge_secrets(fleet.defaults.secrets or [], agent.secrets or [])


def render_agent(
    fleet: Fleet,
    agent: AgentSpec,
    index: int,
    *,
    home: Path,
    server_url: str | None = None,
    secret_versions: SecretVersions | None = None,
    control_root: Path | None = None,
    coordinators: tuple[str, ...] = (),
    node: NodeSpec | None = None,
) -> ContainerSpec:
    """One replica of ``agent``: defaults merged, names derived, hardened, hashed.

    On a remote ``node`` (not ``unix://``) this machine's paths mean nothing, so the
    runner gets no control socket from the local gate (the coordinator's limits apply).
    """
    d = fleet.defaults
    name = agent_name(agent.role, index)
    resources = (
        (agent.resources or Resources()).merged_over(d.resources).merged_over(DEFAULT_RESOURCES)
    )
    grace = agent.grace_seconds or d.grace_seconds or DEFAULT_GRACE

    env: dict[str, str] = {}
    env.update(d.env or {})
    env.update(agent.env or {})
    env.update(
        {
            "AGENTCTL_FLEET": fleet.name,
            "AGENTCTL_ROLE": agent.role,
            "AGENTCTL_AGENT": name,
            "AGENT_NAME": name,
        }
    )
    url = fleet.server or server_url
    if url:
        env["AGENTCHAT_URL"] = url

    labels: dict[str, str] = {}
    labels.update(fleet.metadata.labels)
    labels.update(d.labels or {})
    labels.update(agent.labels or {})
    labels.update(
        {
            LABEL_FLEET: fleet.name,
            LABEL_AGENT: name,
            LABEL_ROLE: agent.role,
            LABEL_KIND: "agent",
        }
    )

    mounts = [
        Mount(volume_name(fleet.name, name, "workspace"), WORKSPACE_DIR),
        Mount(volume_name(fleet.name, name, "state"), STATE_DIR),
    ]
    for volume in [*(d.volumes or []), *(agent.volumes or [])]:
        source = _expand_home(volume.source, home) if volume.is_host_path else volume.source
        mounts.append(
            Mount(
                source, volume.target, volume.read_only, "bind" if volume.is_host_path else "volume"
            )
        )

    secrets = role_secrets(fleet, agent)
    versions = secret_versions or {}
    if agent.takes_tasks:
        env.update(_runner_env(fleet, agent, coordinators))
        if control_root is not None and (node is None or node.local):
            mounts.append(
                Mount(str(control_root / fleet.name / name), CONTROL_DIR, kind="bind", create=True)
            )
    # Secrets always travel as files under /run/secrets: Podman 4.x shows env-type secret
    # values in `podman inspect`. The supervisor exports the env-type ones into the agent's
    # environment from this map (env var name -> file name), so values never appear in
    # the container's config, labels or argv.
    env_secrets = [f"{s.env or s.name}={s.name}" for s in secrets if not s.as_file]
    if env_secrets:
        # A runner keeps them out of its own (long-lived) environment and gives them to
        # each Claude Code run alone; a plain command gets them from the supervisor.
        key = "AGENTCTL_RUNNER_SECRET_ENV" if agent.takes_tasks else "AGENTCTL_SECRET_ENV"
        env[key] = ",".join(env_secrets)
    child = ["agentctl-agent", "run"] if agent.takes_tasks else list(agent.command or [])
    command = [
        "agentctl-agent",
        "supervise",
        "--state-dir",
        STATE_DIR,
        "--workspace",
        WORKSPACE_DIR,
        "--grace",
        _fmt(grace),
        "--",
        *child,
    ]
    spec = ContainerSpec(
        fleet=fleet.name,
        role=agent.role,
        index=index,
        agent=name,
        name=container_name(fleet.name, name),
        image=agent.image or d.image or DEFAULT_IMAGE,
        command=command,
        env=env,
        labels=labels,
        mounts=mounts,
        secrets=[
            SecretRef(
                podman_name=secret_name(
                    fleet.name, agent.role, s.name, versions.get((agent.role, s.name))
                ),
                name=s.name,
                env=None if s.as_file else (s.env or s.name),
                source_env=s.from_env,
                source_file=s.from_file,
            )
            for s in secrets
        ],
        network=agent.network or d.network or "host",
        memory_bytes=resources.memory_bytes,
        nano_cpus=None if resources.cpus is None else int(resources.cpus * 1e9),
        pids=resources.pids,
        restart=agent.restart or d.restart or "on-failure",
        restart_retries=_first(agent.restart_retries, d.restart_retries, DEFAULT_RESTART_RETRIES),
        grace_seconds=grace,
        repo=agent.repo or d.repo or fleet.repo,
        node=node.name if node is not None else LOCAL_NODE,
    )
    digest = spec_hash(spec)
    return _with_hash(spec, digest)


def spec_hash(spec: ContainerSpec) -> str:
    """A stable digest of everything that shapes the container (16 hex chars)."""
    data = asdict(spec)
    data.pop("spec_hash", None)
    data.pop("node", None)  # where it runs is not what it is (and moves are planned apart)
    data["labels"] = {k: v for k, v in spec.labels.items() if k != LABEL_SPEC_HASH}
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _with_hash(spec: ContainerSpec, digest: str) -> ContainerSpec:
    labels = {**spec.labels, LABEL_SPEC_HASH: digest}
    return ContainerSpec(**{**_shallow(spec), "labels": labels, "spec_hash": digest})


def _shallow(spec: ContainerSpec) -> dict[str, object]:
    return {f: getattr(spec, f) for f in spec.__dataclass_fields__}


def _runner_env(fleet: Fleet, agent: AgentSpec, coordinators: tuple[str, ...]) -> dict[str, str]:
    """What a task-taking runner is told (agent/runner.py's RunnerSettings)."""
    work = fleet.work
    env = {
        "AGENTCTL_RUNNER_CHANNEL": work.channel,
        "AGENTCTL_RUNNER_HEARTBEAT_INTERVAL": _fmt(work.heartbeat_interval),
        "AGENTCTL_RUNNER_TASK_TIMEOUT": _fmt(work.task_timeout),
    }
    if work.mission:
        env["AGENTCTL_RUNNER_MISSION"] = work.mission
    if agent.personality:
        env["AGENTCTL_RUNNER_PERSONALITY"] = agent.personality
    model = agent.model or fleet.model.name
    if model:
        env["AGENTCTL_RUNNER_MODEL"] = model
    if fleet.model.base_url:
        env["AGENTCTL_RUNNER_BASE_URL"] = fleet.model.base_url
    if agent.tools is not None:
        env["AGENTCTL_RUNNER_TOOLS_ALLOW"] = json.dumps(agent.tools.allow)
        env["AGENTCTL_RUNNER_TOOLS_DENY"] = json.dumps(
            sorted({*agent.tools.deny, "WebFetch", "WebSearch"})
        )
    if agent.runtime == "command":
        env["AGENTCTL_RUNNER_COMMAND"] = json.dumps(agent.command or [])
    if coordinators:
        env["AGENTCTL_RUNNER_COORDINATORS"] = ",".join(coordinators)
    return env


def _merge_secrets(base: list[SecretSpec], own: list[SecretSpec]) -> list[SecretSpec]:
    merged = {s.name: s for s in base}
    merged.update({s.name: s for s in own})
    return [merged[k] for k in sorted(merged)]


def _expand_home(path: str, home: Path) -> str:
    if path == "~":
        return str(home)
    if path.startswith("~/"):
        return str(home / path[2:])
    return path


def _first(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
