"""The fleet file schema: what the user declares, and nothing about how it is run.

These pydantic models are the single source of truth for the fleet file: the loader
validates against them (unknown keys are errors), `agentctl schema` prints their JSON
Schema for editors, and the renderer turns them into container specs. Keeping them free
of I/O means every rule here is unit-tested without Podman.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from agentctl_swarm.fleet.paths import (
    RESERVED_TARGETS,
    normalise_host_path,
    sensitive_match,
    shadows_reserved,
)

API_VERSION = "agentctl.io/v1"
RESERVED_LABEL_PREFIX = "io.agentctl."
# \Z, not $: "$" also matches before a trailing newline, which would then end up in
# lock, volume and container names.
NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?\Z")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
VOLUME_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
# [registry[:port]/]path[:tag][@algo:digest], lower-case path components (OCI rules).
IMAGE_RE = re.compile(
    r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Fa-f0-9]{32,})?\Z"
)
_MEMORY_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\Z", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
MIN_MEMORY = 6 * 1024**2  # Podman refuses less
MAX_MEMORY = 1024**4  # 1 TiB: anything above is a typo, not a plan
MAX_CPUS = 1024.0
MAX_PIDS = 4_194_304  # the kernel's pid_max ceiling
MAX_SECONDS = 7 * 24 * 3600.0

# Environment names the supervisor and runner set themselves; a fleet value would be
# overwritten (or would overwrite ours), so it is refused where it is written.
RESERVED_ENV_PREFIXES = ("AGENTCTL_",)
RESERVED_ENV = frozenset({"AGENT_NAME", "AGENTCHAT_URL", "HOME", "CLAUDE_CONFIG_DIR"})


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


def parse_memory(value: str | int) -> int:
    """Turn ``512m`` / ``1g`` / ``1.5G`` / a byte count into bytes (6m .. 1t)."""
    if isinstance(value, bool):
        raise ValueError("memory must be a size like 512m or 2g")
    if isinstance(value, int):
        size = value
    else:
        match = _MEMORY_RE.match(value.strip())
        if not match:
            raise ValueError(f"{value!r} is not a size; write it like 512m or 2g")
        number, unit = float(match.group(1)), match.group(2).lower()
        size = int(number * _MEMORY_UNITS[unit])
    if size < MIN_MEMORY:
        raise ValueError(f"{value!r} is below Podman's minimum of 6m (6291456 bytes)")
    if size > MAX_MEMORY:
        raise ValueError(f"{value!r} is more than 1t; write it like 512m or 2g")
    return size


def _finite(what: str, value: float, *, low: float, high: float, strict: bool) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number")
    if (value <= low) if strict else (value < low):
        raise ValueError(f"{what} must be {'greater than' if strict else 'at least'} {low:g}")
    if value > high:
        raise ValueError(f"{what} must be at most {high:g}")
    return value


class _Strict(BaseModel):
    """Base for every fleet model: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Resources(_Strict):
    """Limits Podman enforces on one agent container."""

    memory: str | int | None = Field(default=None, description="Memory limit, e.g. 512m or 2g.")
    cpus: float | None = Field(default=None, description="CPU limit, e.g. 1 or 0.5.")
    pids: int | None = Field(default=None, description="Maximum number of processes.")

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_memory(value)
        return value

    @field_validator("cpus")
    @classmethod
    def _cpus(cls, value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise ValueError("cpus must be greater than 0, e.g. 1 or 0.5")
        if value is not None and value > MAX_CPUS:
            raise ValueError(f"cpus must be at most {MAX_CPUS:g}")
        return value

    @field_validator("pids")
    @classmethod
    def _pids(cls, value: int | None) -> int | None:
        if value is not None and value < 16:
            raise ValueError("pids must be at least 16 (the agent chain needs a few processes)")
        if value is not None and value > MAX_PIDS:
            raise ValueError(f"pids must be at most {MAX_PIDS}")
        return value

    def merged_over(self, base: Resources | None) -> Resources:
        """These limits, falling back to ``base`` for the ones not set here."""
        if base is None:
            return self
        data = base.model_dump()
        data.update({k: v for k, v in self.model_dump().items() if v is not None})
        return Resources(**data)

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_memory(self.memory)


class VolumeSpec(_Strict):
    """A host path or named volume mounted into every replica of an agent."""

    source: Text = Field(description="Absolute host path, ~/path, or a named volume.")
    target: Text = Field(description="Absolute path inside the container.")
    read_only: bool = False
    allow_sensitive: bool = Field(
        default=False,
        description="Required to mount a credential store or host control path (~/.ssh, ...).",
    )

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"target {value!r} must be an absolute path like /data")
        if ":" in value or ".." in value.split("/"):
            raise ValueError(f"target {value!r} must not contain ':' or '..'")
        clean = normalise_host_path(value)
        if shadows_reserved(clean):
            raise ValueError(
                f"target {value!r} would hide the agent's own "
                f"{', '.join(RESERVED_TARGETS)} mounts; pick another path like /data"
            )
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not value:
            raise ValueError("source must not be empty")
        if not (value.startswith(("/", "~")) or VOLUME_NAME_RE.match(value)):
            raise ValueError(
                f"source {value!r} is neither an absolute path (/x, ~/x) nor a volume name"
            )
        if value.startswith(("/", "~")) and (":" in value or ".." in value.split("/")):
            raise ValueError(f"source {value!r} must not contain ':' or '..'; write the real path")
        return value

    @property
    def is_host_path(self) -> bool:
        return self.source.startswith(("/", "~"))

    def sensitive_match(self) -> str | None:
        """The sensitive path this mount exposes, if any (lexically, before the host is
        consulted; apply checks again after resolving symlinks)."""
        if not self.is_host_path:
            return None
        return sensitive_match(normalise_host_path(self.source))


def _check_env_key(key: str) -> None:
    if not ENV_KEY_RE.match(key):
        raise ValueError(f"{key!r} is not a valid environment variable name")
    if key in RESERVED_ENV or key.startswith(RESERVED_ENV_PREFIXES):
        raise ValueError(
            f"{key} is set by agentctl itself; choose another name "
            "(the fleet's `server:` sets AGENTCHAT_URL)"
        )


def _dns_name(what: str, value: str) -> str:
    """Fleet and role names end up in container, volume and host names: keep them DNS-safe."""
    if not NAME_RE.match(value) or len(value) > 30:
        raise ValueError(
            f"{what} {value!r} must be 1-30 lowercase letters, digits or dashes, "
            "starting and ending with a letter or digit"
        )
    return value


class SecretSpec(_Strict):
    """A secret handed to the agent as a Podman secret; the value never enters the fleet."""

    name: str = Field(description="Secret name; also the env var name unless `env` is given.")
    from_env: Text | None = Field(
        default=None, description="Read the value from this host env var."
    )
    from_file: Text | None = Field(default=None, description="Read the value from this host file.")
    env: str | None = Field(default=None, description="Expose as this env var (default: name).")
    as_file: bool = Field(default=False, description="Mount at /run/secrets/<name> instead.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ENV_KEY_RE.match(value) or len(value) > 128:
            raise ValueError(f"{value!r} is not a valid secret name; use letters, digits and _")
        return value

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None:
            _check_env_key(value)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> SecretSpec:
        if (self.from_env is None) == (self.from_file is None):
            raise ValueError("give exactly one of from_env or from_file")
        return self


class RepoSpec(_Strict):
    """Where an agent's workspace is seeded from."""

    url: Text | None = Field(default=None, description="A git URL, cloned on the host first.")
    path: Text | None = Field(default=None, description="A git repository on the host.")
    branch: Text = Field(default="main", description="The base branch to start from.")
    work_branch: Text = Field(
        default="swarm/{agent}/work", description="The branch the agent works on."
    )
    copy_ignored: list[Text] = Field(
        default_factory=list, description="Ignored files (e.g. .env) to copy in as well."
    )

    @model_validator(mode="after")
    def _one_source(self) -> RepoSpec:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url or path")
        return self


class PushSpec(_Strict):
    """Push synced branches on to a remote of the host repo."""

    remote: Text


class SyncSpec(_Strict):
    """How agents' work comes out of their containers into host git repos."""

    into: Text | None = Field(
        default=None, description="Host repo to land work in (default: the seeding repo)."
    )
    interval: float = Field(default=30.0, description="Seconds between syncs.")
    push: PushSpec | None = None
    max_bundle_mb: int = Field(default=512, gt=0, le=1024 * 1024)
    timeout: float = Field(default=120.0, description="Seconds one agent's sync may take.")

    @field_validator("interval", "timeout")
    @classmethod
    def _seconds(cls, value: float) -> float:
        return _finite("seconds", value, low=0, high=MAX_SECONDS, strict=True)


Network = Literal["host", "none", "bridge"]
RestartPolicy = Literal["no", "on-failure", "always", "unless-stopped"]
Runtime = Literal["command", "claude"]
PROMPT_PLACEHOLDER = "{prompt}"
CHANNEL_RE = re.compile(r"#[A-Za-z0-9_-]{1,31}\Z")
MODEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}\Z")
TOOL_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\*?(\([^()\x00]{0,200}\))?\Z")


class ModelSpec(_Strict):
    """The model Claude Code talks to (a real API, a proxy, or `agentctl model serve`)."""

    name: Text | None = Field(default=None, description="--model, e.g. claude-sonnet-4-5.")
    base_url: Text | None = Field(
        default=None,
        description="ANTHROPIC_BASE_URL: a proxy or the scripted model (http://127.0.0.1:PORT).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not MODEL_RE.match(value):
            raise ValueError(f"{value!r} is not a model name like claude-sonnet-4-5")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^\s/]+(/\S*)?\Z", value):
            raise ValueError(f"{value!r} is not an http(s) URL like http://127.0.0.1:8080")
        return value


class BudgetSpec(_Strict):
    """Spending limits: 80% warns, 100% pauses assigning (0 or absent: no limit)."""

    tokens: int | None = Field(default=None, ge=0, le=10**15)
    cost_usd: float | None = Field(default=None)

    @field_validator("cost_usd")
    @classmethod
    def _cost(cls, value: float | None) -> float | None:
        if value is not None:
            _finite("cost_usd", value, low=0, high=1e9, strict=False)
        return value


class ToolsSpec(_Strict):
    """Claude Code tools this role may (allow) or may not (deny) use; deny wins."""

    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)

    @field_validator("allow", "deny")
    @classmethod
    def _tools(cls, value: list[str]) -> list[str]:
        for tool in value:
            if not TOOL_RE.match(tool):
                raise ValueError(f"{tool!r} is not a tool rule like Bash, Write or Bash(git:*)")
        return value


class WorkSpec(_Strict):
    """How agents get work: the channel, the mission, and the limits the coordinator keeps."""

    channel: str = Field(default="#work", description="The AgentChat channel tasks go through.")
    mission: Text | None = Field(default=None, description="What the whole fleet is for.")
    max_active: int = Field(default=2, ge=1, le=1000, description="Agents working at once.")
    max_active_per_node: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Working at once on one machine (default: max_active).",
    )
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    task_timeout: float = Field(default=1800.0, description="Seconds one task may take.")
    retries: int = Field(default=2, ge=0, le=100, description="Retries of a failed task.")
    heartbeat_interval: float = Field(
        default=30.0, description="Seconds between an agent's heartbeats (3 missed: dead)."
    )
    probe_interval: float = Field(
        default=300.0, description="While the model's quota is exhausted: seconds between probes."
    )
    drain_seconds: float = Field(
        default=60.0,
        description="On `agentctl up` shutdown: how long working agents get to finish before "
        "they are stopped (their tasks then go back to the queue).",
    )

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not CHANNEL_RE.match(value):
            raise ValueError(f"{value!r} is not a channel name; write it like '#work' (quoted)")
        return value

    @field_validator("task_timeout", "heartbeat_interval", "probe_interval", "drain_seconds")
    @classmethod
    def _seconds(cls, value: float) -> float:
        return _finite("seconds", value, low=0, high=MAX_SECONDS, strict=True)


class EmbeddedServer(_Strict):
    """Where `agentctl up` runs its own AgentChat server when the fleet names none."""

    host: str = Field(default="127.0.0.1")
    port: int = Field(default=6667, ge=1, le=65535)


class _AgentFields(_Strict):
    """Fields shared by `defaults` and each entry of `agents`."""

    image: str | None = None
    resources: Resources | None = None
    network: Network | None = None
    env: dict[str, Text] | None = None
    volumes: list[VolumeSpec] | None = None
    secrets: list[SecretSpec] | None = None
    labels: dict[str, Text] | None = None
    restart: RestartPolicy | None = None
    restart_retries: int | None = Field(default=None, ge=0, le=1000)
    grace_seconds: float | None = Field(
        default=None, description="How long the agent gets to stop before SIGKILL."
    )
    repo: RepoSpec | None = None

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 255 or not IMAGE_RE.match(value)):
            raise ValueError(
                f"{value!r} is not an image reference; write it like "
                "localhost/agentctl-agent:latest or docker.io/library/python:3.11"
            )
        return value

    @field_validator("grace_seconds")
    @classmethod
    def _grace(cls, value: float | None) -> float | None:
        if value is not None:
            _finite("grace_seconds", value, low=0, high=3600, strict=True)
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        out: dict[object, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            _check_env_key(key)
            if isinstance(item, bool):
                item = "true" if item else "false"
            elif isinstance(item, int | float):
                item = str(item)
            out[key] = item
        return out

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if not key or "\x00" in key or "=" in key:
                raise ValueError(f"label {key!r} is not a valid label name")
            if key.startswith(RESERVED_LABEL_PREFIX):
                raise ValueError(f"label {key!r} uses the reserved prefix {RESERVED_LABEL_PREFIX}")
        return value


class Defaults(_AgentFields):
    """Values every agent inherits unless it sets its own."""


class AgentSpec(_AgentFields):
    """One role in the fleet; `replicas` containers named swarm-<role>-NNN run it."""

    role: str = Field(description="Role name: lowercase letters, digits and dashes.")
    replicas: int = Field(default=1, ge=0, le=999)
    instances: list[int] | None = Field(
        default=None,
        description="Which swarm-<role>-NNN exist (written by `agentctl scale`, which "
        "removes idle agents first); without it: 0 .. replicas-1.",
    )
    runtime: Runtime = Field(
        default="command",
        description="claude: an idle runner that takes tasks and runs Claude Code; "
        "command: the supervisor runs `command` (with a {prompt} in it, it takes tasks too).",
    )
    command: list[Text] | None = Field(default=None, description="argv of the agent process.")
    personality: Text | None = Field(
        default=None, description="Who this role is, prepended to every task's prompt."
    )
    personality_file: Text | None = Field(
        default=None, description="A file with the personality, read at apply."
    )
    model: Text | None = Field(
        default=None, description="Model for this role (overrides model.name)."
    )
    tools: ToolsSpec | None = None
    budget: BudgetSpec | None = Field(
        default=None, description="This role's own token/cost budget (80% warns, 100% pauses it)."
    )
    node_selector: dict[Text, Text] | None = Field(
        default=None,
        description="Place this role only on nodes whose labels include all of these.",
    )

    @property
    def indexes(self) -> list[int]:
        """The agent numbers of this role (``swarm-<role>-NNN``), in order."""
        return sorted(self.instances) if self.instances is not None else list(range(self.replicas))

    @property
    def takes_tasks(self) -> bool:
        """Whether this role's agents are runners that claim tasks from the work channel."""
        if self.runtime == "claude":
            return True
        return any(PROMPT_PLACEHOLDER in part for part in self.command or [])

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        return _dns_name("role", value)

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("command must not be empty; e.g. [sh, -c, 'sleep infinity']")
        return value

    @model_validator(mode="after")
    def _runtime_needs(self) -> AgentSpec:
        if self.runtime == "command" and not self.command:
            raise ValueError("runtime 'command' needs a `command:` list")
        if self.runtime == "claude" and self.command:
            raise ValueError(
                "runtime 'claude' runs Claude Code itself; drop `command:` "
                "(or use runtime: command with a {prompt} placeholder)"
            )
        if self.instances is not None:
            if len(set(self.instances)) != len(self.instances):
                raise ValueError("instances lists an index twice")
            if any(not 0 <= i <= 999 for i in self.instances):
                raise ValueError("instances are agent numbers from 0 to 999")
            if "replicas" in self.model_fields_set and self.replicas != len(self.instances):
                raise ValueError(
                    f"replicas is {self.replicas} but instances lists {len(self.instances)}; "
                    "make them agree (or drop one)"
                )
            self.replicas = len(self.instances)
        if self.personality is not None and self.personality_file is not None:
            raise ValueError("give at most one of personality or personality_file")
        if self.model is not None and not MODEL_RE.match(self.model):
            raise ValueError(f"model {self.model!r} is not a model name like claude-sonnet-4-5")
        return self


NODE_URL_RE = re.compile(r"(unix://|ssh://|tcp://)\S+\Z")


class NodeSpec(_Strict):
    """A Podman host agents can be placed on (the URIs of `podman system connection`)."""

    name: str = Field(description="Node name: lowercase letters, digits and dashes.")
    url: Text = Field(
        description="Its Podman API: unix:///run/podman/podman.sock, "
        "ssh://user@host/run/podman/podman.sock or tcp://127.0.0.1:8888."
    )
    capacity: int | None = Field(
        default=None, ge=0, le=10000, description="Most agents placed here (default: no limit)."
    )
    labels: dict[str, Text] = Field(
        default_factory=dict, description="Matched by the agents' `node_selector`."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_name("node name", value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not NODE_URL_RE.match(value):
            raise ValueError(
                f"{value!r} is not a Podman connection URL; use unix:///path/podman.sock, "
                "ssh://user@host/run/podman/podman.sock or tcp://HOST:PORT"
            )
        return value

    @property
    def local(self) -> bool:
        """Whether host paths (bind mounts, the local gate's sockets) are this machine's."""
        return self.url.startswith("unix://")


class Metadata(_Strict):
    """Identifies the fleet; its name scopes every container, volume and secret."""

    name: str = Field(description="Fleet name: lowercase letters, digits and dashes.")
    labels: dict[str, Text] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_name("name", value)


class Fleet(_Strict):
    """A whole fleet file."""

    api_version: Literal["agentctl.io/v1"] = Field(alias="apiVersion")
    kind: Literal["Fleet"]
    metadata: Metadata
    defaults: Defaults = Field(default_factory=Defaults)
    agents: Annotated[list[AgentSpec], Field(min_length=1)]
    repo: RepoSpec | None = None
    sync: SyncSpec = Field(default_factory=SyncSpec)
    server: Text | None = Field(
        default=None,
        description="AgentChat server URL; without it `agentctl up` runs an embedded one.",
    )
    embedded: EmbeddedServer = Field(default_factory=EmbeddedServer)
    work: WorkSpec = Field(default_factory=WorkSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    nodes: list[NodeSpec] = Field(
        default_factory=list,
        description="Podman hosts to spread the agents over; without it: this machine's Podman.",
    )

    @field_validator("server")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"wss?://[^\s/]+(/\S*)?\Z", value):
            raise ValueError(f"{value!r} is not a WebSocket URL like ws://127.0.0.1:6667")
        return value

    @property
    def name(self) -> str:
        return self.metadata.name
