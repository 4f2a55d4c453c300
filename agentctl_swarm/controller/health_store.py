"""Where the health monitor's memory lives between runs of `agentctl up`, and how a
person's `agentctl restart AGENT` reaches a running `up` (a request file it picks up on
its next pass: no socket needed, and a request made while `up` is down waits for it).

``<state>/health/<fleet>.json``: ``{"agents": {name: {restarts, degraded, reason, ...}}}``
(written atomically; `agentctl status` reads it). ``<state>/health/<fleet>.clear/<agent>``:
one empty file per agent whose degraded mark a person cleared.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from agentctl_swarm.core.files import atomic_write


def health_path(state_dir: Path, fleet: str) -> Path:
    return Path(state_dir) / "health" / f"{fleet}.json"


def load_health(state_dir: Path, fleet: str) -> dict[str, Any]:
    """The saved document, or an empty one (a corrupt file is started over, not fatal)."""
    with contextlib.suppress(OSError, ValueError):
        doc = json.loads(health_path(state_dir, fleet).read_text())
        if isinstance(doc, dict):
            return doc
    return {"agents": {}}


def save_health(state_dir: Path, fleet: str, agents: dict[str, Any]) -> None:
    atomic_write(health_path(state_dir, fleet), json.dumps({"agents": agents}, indent=2) + "\n")


def request_clear(state_dir: Path, fleet: str, agent: str) -> None:
    """Ask `agentctl up` to forget ``agent``'s restarts and degraded mark."""
    folder = health_path(state_dir, fleet).with_suffix(".clear")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / agent).touch()


def take_clear_requests(state_dir: Path, fleet: str) -> list[str]:
    """The agents a person cleared since the last look (the requests are consumed)."""
    folder = health_path(state_dir, fleet).with_suffix(".clear")
    names = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(folder.iterdir()):
            names.append(entry.name)
            entry.unlink(missing_ok=True)
    return names
