"""Secrets into a process's environment, read from /run/secrets when it starts.

The controller mounts every secret as a file (never as a container env var, which
`podman inspect` would show) and sets a mapping ``VAR=file,VAR2=file2``:
``AGENTCTL_SECRET_ENV`` for a ``runtime: command`` agent, exported by the supervisor into
the agent process only; ``AGENTCTL_RUNNER_SECRET_ENV`` for a task-taking runner, which
keeps the values out of its own long-lived environment and gives them to each Claude
Code run alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

SECRETS_DIR = Path("/run/secrets")


def secret_values(mapping: str, secrets_dir: Path = SECRETS_DIR) -> dict[str, str]:
    """VAR -> value for each ``VAR=file`` in ``mapping`` whose file is readable."""
    out: dict[str, str] = {}
    for item in mapping.split(","):
        var, sep, name = item.strip().partition("=")
        if not sep or not var or not name or "/" in name or name.startswith("."):
            continue
        try:
            out[var] = (secrets_dir / name).read_text(encoding="utf-8").rstrip("\n")
        except OSError:
            continue
    return out


def secret_env(environ: Mapping[str, str], secrets_dir: Path = SECRETS_DIR) -> dict[str, str]:
    """The supervisor's export for its child: the mapping in AGENTCTL_SECRET_ENV."""
    return secret_values(environ.get("AGENTCTL_SECRET_ENV", ""), secrets_dir)
