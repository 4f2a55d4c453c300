"""Where things are: settings read from ``AGENTCTL_*`` environment variables.

The fleet file says *what* the fleet is; these settings say *where* the machinery lives
(state directory, Podman socket, default image names). Keeping the two apart lets one
fleet file run unchanged on a laptop, a Lima VM or CI.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    """Machine-level settings; every field can be set as ``AGENTCTL_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="AGENTCTL_", extra="ignore")

    state_dir: Path = Field(default_factory=_default_state_dir)
    podman_url: str = Field(default_factory=_default_podman_url)
    agent_image: str = "localhost/agentctl-agent:latest"
    base_image: str = "localhost/agentctl-base:bookworm"
    server_url: str | None = None
    api_concurrency: int = 8


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings (read once; tests build their own ``Settings``)."""
    return Settings()
