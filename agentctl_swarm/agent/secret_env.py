"""Secrets into the agent's environment, read from /run/secrets at process start.

The controller mounts every secret as a file (never as a container env var, which
`podman inspect` would show) and sets AGENTCTL_SECRET_ENV="VAR=file,VAR2=file2". The
supervisor calls :func:`secret_env` when it starts the agent process, so only that
process's environment holds the values: not the container config, labels or argv.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

SECRETS_DIR = Path("/run/secrets")


def secret_env(environ: Mapping[str, str], secrets_dir: Path = SECRETS_DIR) -> dict[str, str]:
    """VAR -> value for each mapping in AGENTCTL_SECRET_ENV whose file is readable."""
    out: dict[str, str] = {}
    for item in environ.get("AGENTCTL_SECRET_ENV", "").split(","):
        var, sep, name = item.strip().partition("=")
        if not sep or not var or not name or "/" in name or name.startswith("."):
            continue
        try:
            out[var] = (secrets_dir / name).read_text(encoding="utf-8").rstrip("\n")
        except OSError:
            continue
    return out
