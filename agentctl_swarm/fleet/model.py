"""The fleet file schema: what the user declares, and nothing about how it is run.

These pydantic models are the single source of truth for the fleet file: the loader
validates against them (unknown keys are errors), `agentctl schema` prints their JSON
Schema for editors, and the renderer turns them into container specs. Keeping them free
of I/O means every rule here is unit-tested without Podman.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

API_VERSION = "agentctl.io/v1"
RESERVED_LABEL_PREFIX = "io.agentctl."
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmg]?)i?b?$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

# Host paths that hold credentials or control the host. Mounting one hands the agent
# the keys to something outside its box, so it needs an explicit `allow_sensitive`.
SENSITIVE_PATHS = (
    "/",
    "~/.ssh",
    "~/.aws",
    "~/.config/gcloud",
    "~/.azure",
    "~/.kube",
    "~/.docker",
    "~/.gnupg",
    "~/.netrc",
    "~/.git-credentials",
    "~/.config/gh",
    "~/.agentchat",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/podman",
    "/var/run/podman",
    "/run/user",
    "/etc",
    "/root",
    "/var/lib/containers",
)


def parse_memory(value: str | int) -> int:
    """Turn ``512m`` / ``1g`` / ``1.5G`` / a byte count into bytes."""
    if isinstance(value, bool):
        raise ValueError("memory must be a size like 512m or 2g")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("memory must be positive")
        return value
    match = _MEMORY_RE.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a size; write it like 512m or 2g")
    number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _MEMORY_UNITS[unit])
    if size < 6 * 1024**2:
        raise ValueError(f"{value!r} is below Podman's minimum of 6m")
    return size


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
        if value is not None and value <= 0:
            raise ValueError("cpus must be greater than 0, e.g. 1 or 0.5")
        return value

    @field_validator("pids")
    @classmethod
    def _pids(cls, value: int | None) -> int | None:
        if value is not None and value < 16:
            raise ValueError("pids must be at least 16 (the agent chain needs a few processes)")
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

    source: str = Field(description="Absolute host path, ~/path, or a named volume.")
    target: str = Field(description="Absolute path inside the container.")
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
        if value in {"/workspace", "/state"}:
            raise ValueError(f"{value} is reserved for the agent's own volume")
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
        return value

    @property
    def is_host_path(self) -> bool:
        return self.source.startswith(("/", "~"))

    def sensitive_match(self) -> str | None:
        """The sensitive path this mount exposes, if any (the source is it, or lies inside it,
        or contains it)."""
        if not self.is_host_path:
            return None
        src = _normalise(self.source)
        for raw in SENSITIVE_PATHS:
            sensitive = _normalise(raw)
            if src == sensitive or (sensitive != "/" and src.startswith(sensitive + "/")):
                return raw
            if src != "/" and sensitive.startswith(src.rstrip("/") + "/"):
                return raw
        if src == "/":
            return "/"
        return None


def _dns_name(what: str, value: str) -> str:
    """Fleet and role names end up in container, volume and host names: keep them DNS-safe."""
    if not NAME_RE.match(value) or len(value) > 30:
        raise ValueError(
            f"{what} {value!r} must be 1-30 lowercase letters, digits or dashes, "
            "starting and ending with a letter or digit"
        )
    return value


def _normalise(path: str) -> str:
    """Compare paths without touching the file system (``~`` kept symbolic)."""
    return str(PurePosixPath(path))


class SecretSpec(_Strict):
    """A secret handed to the agent as a Podman secret; the value never enters the fleet."""

    name: str = Field(description="Secret name; also the env var name unless `env` is given.")
    from_env: str | None = Field(default=None, description="Read the value from this host env var.")
    from_file: str | None = Field(default=None, description="Read the value from this host file.")
    env: str | None = Field(default=None, description="Expose as this env var (default: name).")
    as_file: bool = Field(default=False, description="Mount at /run/secrets/<name> instead.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ENV_KEY_RE.match(value):
            raise ValueError(f"{value!r} is not a valid secret name; use letters, digits and _")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> SecretSpec:
        if (self.from_env is None) == (self.from_file is None):
            raise ValueError("give exactly one of from_env or from_file")
        return self


class RepoSpec(_Strict):
    """Where an agent's workspace is seeded from."""

    url: str | None = Field(default=None, description="A git URL, cloned on the host first.")
    path: str | None = Field(default=None, description="A git repository on the host.")
    branch: str = Field(default="main", description="The base branch to start from.")
    work_branch: str = Field(
        default="swarm/{agent}/work", description="The branch the agent works on."
    )
    copy_ignored: list[str] = Field(
        default_factory=list, description="Ignored files (e.g. .env) to copy in as well."
    )

    @model_validator(mode="after")
    def _one_source(self) -> RepoSpec:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url or path")
        return self


class PushSpec(_Strict):
    """Push synced branches on to a remote of the host repo."""

    remote: str


class SyncSpec(_Strict):
    """How agents' work comes out of their containers into host git repos."""

    into: str | None = Field(
        default=None, description="Host repo to land work in (default: the seeding repo)."
    )
    interval: float = Field(default=30.0, gt=0, description="Seconds between syncs.")
    push: PushSpec | None = None
    max_bundle_mb: int = Field(default=512, gt=0)
    timeout: float = Field(default=120.0, gt=0, description="Seconds one agent's sync may take.")


Network = Literal["host", "none", "bridge"]
RestartPolicy = Literal["no", "on-failure", "always", "unless-stopped"]
Runtime = Literal["command"]


class _AgentFields(_Strict):
    """Fields shared by `defaults` and each entry of `agents`."""

    image: str | None = None
    resources: Resources | None = None
    network: Network | None = None
    env: dict[str, str] | None = None
    volumes: list[VolumeSpec] | None = None
    secrets: list[SecretSpec] | None = None
    labels: dict[str, str] | None = None
    restart: RestartPolicy | None = None
    restart_retries: int | None = Field(default=None, ge=0)
    grace_seconds: float | None = Field(
        default=None, gt=0, description="How long the agent gets to stop before SIGKILL."
    )
    repo: RepoSpec | None = None

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        out: dict[object, object] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not ENV_KEY_RE.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
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
            if key.startswith(RESERVED_LABEL_PREFIX):
                raise ValueError(f"label {key!r} uses the reserved prefix {RESERVED_LABEL_PREFIX}")
        return value


class Defaults(_AgentFields):
    """Values every agent inherits unless it sets its own."""


class AgentSpec(_AgentFields):
    """One role in the fleet; `replicas` containers named swarm-<role>-NNN run it."""

    role: str = Field(description="Role name: lowercase letters, digits and dashes.")
    replicas: int = Field(default=1, ge=0, le=999)
    runtime: Runtime = Field(default="command", description="What the supervisor runs.")
    command: list[str] | None = Field(default=None, description="argv of the agent process.")

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
        return self


class Metadata(_Strict):
    """Identifies the fleet; its name scopes every container, volume and secret."""

    name: str = Field(description="Fleet name: lowercase letters, digits and dashes.")
    labels: dict[str, str] = Field(default_factory=dict)

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
    server: str | None = Field(
        default=None, description="AgentChat server URL (default: the embedded server)."
    )

    @property
    def name(self) -> str:
        return self.metadata.name
