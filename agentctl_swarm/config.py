"""Where things are: the settings every part reads from its environment, as models.

The fleet file says *what* the fleet is; these settings say *where* the machinery lives
(state directory, Podman socket, server URL) and how a process behaves (log format).
Each process reads its settings once, at its edge (the CLI callback, the MCP server's
``main``, the runner's ``main``), and passes them down: library code never reads the
environment itself, so tests build the objects they need without touching ``os.environ``.

- :class:`Settings`: ``AGENTCTL_*`` for the host tools (``agentctl``).
- :class:`AgentChatSettings`: ``AGENTCHAT_*``, the variables upstream's agentchat-mcp
  reads, for the in-container MCP server and chat clients.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from agentctl_swarm.core.env import ENV_HINT, env_values, env_var, holds_collection
from agentctl_swarm.core.errors import UsageError

DEFAULT_CHAT_URL = "ws://localhost:6667"


def _default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/agentctl")
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "agentctl"


def _default_podman_url() -> str:
    if os.geteuid() == 0:
        return "unix:///run/podman/podman.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return f"unix://{runtime}/podman/podman.sock"


class EnvSettings(BaseModel):
    """A settings model read from ``<env_prefix><FIELD>`` variables by :func:`load_settings`.

    Why not pydantic-settings: its import alone (asyncio, argparse, importlib.metadata,
    cloud secret providers) costs ~17 MiB of memory in every process that loads it, and
    the supervisor and runner stay resident in every agent container (bench/dispatch's
    idle target is 40 MiB per agent). Reading the environment is the small part; the
    validation that matters stays pydantic's.
    """

    model_config = ConfigDict(extra="ignore")
    env_prefix: ClassVar[str] = ""


class Settings(EnvSettings):
    """Host settings; every field can be set as ``AGENTCTL_<FIELD>``."""

    env_prefix: ClassVar[str] = "AGENTCTL_"

    state_dir: Path = Field(default_factory=_default_state_dir)
    podman_url: str = Field(default_factory=_default_podman_url)
    agent_image: str = "localhost/agentctl-agent:latest"
    base_image: str = "localhost/agentctl-base:bookworm"
    server_url: str | None = None
    api_concurrency: int = Field(default=8, ge=1, le=64)
    # Rootless Podman without delegated cgroup controllers drops memory/CPU/pids limits
    # silently; apply refuses such fleets unless this says to run them unlimited.
    allow_unenforced_limits: bool = False
    log_format: Literal["auto", "json", "text"] = "auto"
    debug: bool = False


class AgentChatSettings(EnvSettings):
    """What upstream's agentchat-mcp reads (``AGENTCHAT_*``), for our MCP server and clients."""

    env_prefix: ClassVar[str] = "AGENTCHAT_"

    url: str = DEFAULT_CHAT_URL
    public: bool = False
    idle_timeout_ms: float = Field(default=300_000, ge=0)
    settle_ms: float = Field(default=1_500, ge=0)
    listen_timeout_ms: float = Field(default=3_600_000, ge=0)
    admin_key: SecretStr | None = None


S = TypeVar("S", bound=EnvSettings)


def load_settings(model: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Read ``model`` from ``environ`` (default: the process environment).

    Finding the variables is :func:`agentctl_swarm.core.env.env_values` (names match
    case-insensitively, empty values count as unset, a list/set/dict field's value that
    starts with ``[`` or ``{`` is decoded as JSON; other text goes to the field's own
    validator, e.g. ``2,78``); validating them is the model's. A bad value is a
    :class:`UsageError` naming the variable and what it should be.
    """
    env = os.environ if environ is None else environ
    prefix = model.env_prefix
    fields = {name: holds_collection(info.annotation) for name, info in model.model_fields.items()}
    values = env_values(fields, prefix, env)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = env_var(prefix, "_".join(str(p) for p in err.get("loc", ())))
            problems.append(f"{name}={err.get('input')!r}: {_plain(err)}")
        raise UsageError("; ".join(problems), hint=ENV_HINT) from exc


def _plain(err: Mapping[str, object]) -> str:
    """pydantic's message in the user's words (no class names)."""
    kind = str(err.get("type", ""))
    ctx: dict[str, object] = dict(err.get("ctx") or {})  # type: ignore[call-overload]
    if kind.startswith("greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return f"must be {'at least' if kind.endswith('equal') else 'more than'} {bound:g}"  # type: ignore[str-format]
    if kind.startswith("less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}"
    if kind in {"float_parsing", "int_parsing", "float_type", "int_type"}:
        return "must be a number"
    if kind in {"bool_parsing", "bool_type"}:
        return "must be true or false"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    return str(err.get("msg", "invalid value"))
