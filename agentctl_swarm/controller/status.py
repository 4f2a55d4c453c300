"""What `agentctl get` shows: Podman's view of each agent plus its supervisor's state.json.

Restarts count both levels: Podman restarting the container and the in-container
supervisor restarting the agent process.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from agentctl_swarm.core.errors import AgentctlError, UsageError
from agentctl_swarm.fleet.render import STATE_DIR
from agentctl_swarm.podman.backend import PodmanBackend
from agentctl_swarm.podman.types import ObservedContainer


@dataclass(frozen=True)
class AgentStatus:
    name: str
    agent: str
    fleet: str
    role: str
    state: str
    agent_status: str
    restarts: int
    container_id: str
    uptime_seconds: float | None
    spec_hash: str
    node: str = "local"
    # For `agentctl status` (controller/fleet_view.py), which classifies the agent from
    # them; not part of `get`'s output.
    exit_code: int | None = None
    supervisor: str | None = None  # the status in state.json (running, backoff, ...)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "agent": self.agent,
            "fleet": self.fleet,
            "role": self.role,
            "state": self.state,
            "agent_status": self.agent_status,
            "restarts": self.restarts,
            "container_id": self.container_id,
            "uptime_seconds": None
            if self.uptime_seconds is None
            else round(self.uptime_seconds, 1),
            "spec_hash": self.spec_hash,
            "node": self.node,
        }


class AgentNotFound(AgentctlError):
    """An agent name that matches no container (exit 1)."""


class AmbiguousAgent(UsageError):
    """An agent name found in several fleets: the user must say which (exit 2)."""


def find_container(backend: PodmanBackend, agent: str, fleet: str | None = None) -> str:
    """Container name for an agent given as container name or ``swarm-<role>-NNN``."""
    matches = [o for o in backend.list_owned(fleet) if agent in {o.name, o.agent}]
    if not matches:
        where = f" in fleet {fleet!r}" if fleet else ""
        raise AgentNotFound(f"no agent {agent!r}{where}", hint="`agentctl get` lists them")
    if len(matches) > 1:
        names = ", ".join(o.name for o in matches)
        raise AmbiguousAgent(
            f"{agent!r} is in several fleets ({names})",
            hint="pass --fleet NAME or the container name",
        )
    return matches[0].name


def fleet_status(
    backend: PodmanBackend, fleet: str | None = None, *, concurrency: int = 8
) -> list[AgentStatus]:
    observed = backend.list_owned(fleet)
    if not observed:
        return []
    with ThreadPoolExecutor(max_workers=min(concurrency, len(observed))) as pool:
        return list(pool.map(lambda o: _status(backend, o), observed))


def _status(backend: PodmanBackend, observed: ObservedContainer) -> AgentStatus:
    container_restarts = backend.restart_count(observed.name) or 0
    state = _supervisor_state(backend, observed.name)
    supervisor_restarts = int(state.get("restarts", 0) or 0) if state else 0
    uptime = None
    if observed.running and observed.started_at is not None:
        uptime = (datetime.now(UTC) - observed.started_at).total_seconds()
    return AgentStatus(
        name=observed.name,
        agent=observed.agent,
        fleet=observed.fleet,
        role=observed.role,
        state=observed.state,
        agent_status=true_status(observed, str(state.get("status")) if state else None),
        restarts=container_restarts + supervisor_restarts,
        container_id=observed.id,
        uptime_seconds=uptime,
        spec_hash=observed.spec_hash,
        node=observed.node,
        exit_code=observed.exit_code,
        supervisor=str(state.get("status")) if state and state.get("status") else None,
    )


# What the supervisor writes when it ends on its own: still true after the container stops.
_FINAL = {"stopped", "fatal", "degraded", "crashed"}


def true_status(observed: ObservedContainer, supervisor: str | None) -> str:
    """The agent's status as it really is now.

    state.json holds the supervisor's last word; when Podman killed the container (or it
    died) the supervisor never got to update it, so "running" there would be a lie: the
    container's own state and exit code say what happened instead.
    """
    if observed.state in {"running", "paused", "stopping"}:
        return supervisor or "-"
    if supervisor in _FINAL:
        return supervisor
    code = observed.exit_code
    if observed.state in {"created", "configured", "initialized"}:
        return "not started"
    if code in (137, -9):
        return "killed (SIGKILL)"
    if code == 143:
        return "stopped (SIGTERM)"
    return f"exited ({code})" if code is not None else observed.state


def _supervisor_state(backend: PodmanBackend, name: str) -> dict[str, object] | None:
    raw = backend.read_file(name, f"{STATE_DIR}/state.json")
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
