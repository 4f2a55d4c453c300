"""`agentctl up` never interrupts work on a guess: when the coordinator's board does not
answer, an agent it cannot ask about counts as busy (a pending recreate or scale-down
waits), exactly as `apply` decides (controller/apply.busy_agents)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agentctl_swarm.config import Settings
from agentctl_swarm.controller.up import FleetUp
from agentctl_swarm.fleet.source import read_fleet
from agentctl_swarm.podman.types import ObservedContainer
from tests.integration.helpers import free_port

FLEET = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {{name: bz}}
server: ws://127.0.0.1:{port}
work: {{heartbeat_interval: 2}}
agents:
  - role: builder
    runtime: claude
"""
AGENT = "swarm-builder-000"


def running() -> ObservedContainer:
    return ObservedContainer(
        id="x", name=f"bz-{AGENT}", fleet="bz", agent=AGENT, role="builder", spec_hash="h",
        state="running", image="i", labels={}, created=None, started_at=None, exit_code=None,
    )  # fmt: skip


def test_an_unanswering_board_makes_running_task_takers_busy(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(FLEET.format(port=free_port()))  # nobody listens
    settings = Settings(state_dir=tmp_path / "state")
    up = FleetUp(read_fleet(tmp_path / "fleet.yaml"), object(), settings)  # type: ignore[arg-type]
    up._started = time.time() - 3600  # long past the first heartbeat intervals
    views = asyncio.run(up._runner_views())
    assert views == {}
    assert up._busy(AGENT, views, running())  # unknown: never interrupt it
    up._board_answered = True  # the board answers and does not know the agent: not working
    assert not up._busy(AGENT, {}, running())
