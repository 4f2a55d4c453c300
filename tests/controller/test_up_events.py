"""`agentctl up`'s decisions about exited containers as written to the events log: each
crash's backoff is told (not only the first one per agent), and the loop wakes when a
backoff is over rather than on its next interval (bench/recovery measured both)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agentctl_swarm.config import Settings
from agentctl_swarm.controller.events import read_events
from agentctl_swarm.controller.planner import Action, Kind
from agentctl_swarm.controller.up import FleetUp
from agentctl_swarm.fleet.source import read_fleet
from agentctl_swarm.podman.types import ObservedContainer

FLEET = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {name: ev}
server: ws://127.0.0.1:1
agents:
  - role: crash
    restart: "no"
    command: [sleep, infinity]
"""
AGENT = "swarm-crash-000"


def container(state: str) -> ObservedContainer:
    return ObservedContainer(
        id="x", name=f"ev-{AGENT}", fleet="ev", agent=AGENT, role="crash", spec_hash="h",
        state=state, image="i", labels={}, created=None, started_at=None,
        exit_code=137 if state == "exited" else None,
    )  # fmt: skip


def make_up(tmp_path: Path) -> FleetUp:
    (tmp_path / "fleet.yaml").write_text(FLEET)
    settings = Settings(state_dir=tmp_path / "state")
    return FleetUp(read_fleet(tmp_path / "fleet.yaml"), object(), settings, interval=5.0)  # type: ignore[arg-type]


def decide(up: FleetUp, state: str, now: float) -> list[Action]:
    action = Action(Kind.KEEP, f"ev-{AGENT}", AGENT, state, observed=container(state))
    return asyncio.run(up._decide(action, {}, now))


def test_every_crash_writes_its_backoff_and_the_loop_wakes_when_it_is_over(
    tmp_path: Path,
) -> None:
    up = make_up(tmp_path)
    now = 1_000_000.0
    for delay in (1.0, 2.0, 4.0):
        decide(up, "running", now)
        now += 30
        assert decide(up, "exited", now) == []  # waits its backoff
        assert decide(up, "exited", now + 0.5) == []  # the same wait: not told twice
        started = decide(up, "exited", now + delay)
        assert [a.kind for a in started] == [Kind.START]
        now += delay
    waits = [e for e in read_events(tmp_path / "state", "ev") if e["event"] == "health.backoff"]
    assert [e["delay"] for e in waits] == [1.0, 2.0, 4.0]


def test_the_loop_sleeps_until_a_backoff_is_over_not_a_whole_interval(tmp_path: Path) -> None:
    import time

    up = make_up(tmp_path)
    assert up._until_next_pass() == 5.0  # nothing waits: the interval
    now = time.time()
    decide(up, "running", now - 10)
    decide(up, "exited", now)  # backoff 1 s
    assert 0.0 < up._until_next_pass() <= 1.0


def test_podman_events_wake_the_loop_except_execs() -> None:
    from agentctl_swarm.controller.up import wakes

    for action in ("died", "start", "stop", "remove", "create", "oom", "kill"):
        assert wakes({"Action": action, "Type": "container"})
    for action in ("exec", "exec_died", "exec_start"):
        assert not wakes({"Action": action, "status": action, "Type": "container"})
    assert wakes({"status": "died"})  # older event shapes name it "status"
