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
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

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


class Settings(BaseSettings):
    """Host settings; every field can be set as ``AGENTCTL_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="AGENTCTL_", extra="ignore")

    state_dir: Path = Field(default_factory=_default_state_dir)
    podman_url: str = Field(default_factory=_default_podman_url)
    agent_image: str = "localhost/agentctl-agent:latest"
    base_image: str = "localhost/agentctl-base:bookworm"
    server_url: str | None = None
    api_concurrency: int = Field(default=8, ge=1, le=64)
    log_format: Literal["auto", "json", "text"] = "auto"
    debug: bool = False


class AgentChatSettings(BaseSettings):
    """What upstream's agentchat-mcp reads (``AGENTCHAT_*``), for our MCP server and clients."""

    model_config = SettingsConfigDict(env_prefix="AGENTCHAT_", extra="ignore")

    url: str = DEFAULT_CHAT_URL
    public: bool = False
    idle_timeout_ms: float = Field(default=300_000, ge=0)
    settle_ms: float = Field(default=1_500, ge=0)
    listen_timeout_ms: float = Field(default=3_600_000, ge=0)
    admin_key: SecretStr | None = None


S = TypeVar("S", bound=BaseSettings)


def load_settings(model: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Read ``model`` from ``environ`` (default: the process environment).

    A bad value is a :class:`UsageError` naming the variable and what it should be.
    """
    try:
        if environ is None:
            return model()
        # pydantic-settings' own env source, fed this mapping instead of os.environ, so
        # values decode exactly as they would from the process environment (JSON lists).
        source = EnvSettingsSource(model)
        source.env_vars = {k.lower(): v for k, v in environ.items() if v != ""}
        return model.model_validate(source())
    except ValidationError as exc:
        prefix = str(model.model_config.get("env_prefix", ""))
        problems = []
        for err in exc.errors():
            name = prefix + "_".join(str(p) for p in err.get("loc", ())).upper()
            problems.append(f"{name}={err.get('input')!r}: {_plain(err)}")
        raise UsageError("; ".join(problems), hint="fix or unset the environment variable") from exc


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
