"""The pure planner: desired vs observed -> create / recreate / start / delete / keep."""

from __future__ import annotations

from pathlib import Path

from agentctl_swarm.controller.planner import Kind, deletion_plan, plan
from agentctl_swarm.fleet.loader import parse_fleet
from agentctl_swarm.fleet.render import ContainerSpec, render_fleet
from agentctl_swarm.podman.types import ObservedContainer

FLEET = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {name: p}
agents:
  - {role: a, replicas: 2, command: [sleep, "1"]}
  - {role: b, command: [sleep, "2"]}
"""


def desired() -> list[ContainerSpec]:
    return render_fleet(parse_fleet(FLEET).fleet, home=Path("/h"))


def seen(
    spec: ContainerSpec, *, state: str = "running", spec_hash: str | None = None
) -> ObservedContainer:
    return ObservedContainer(
        id="abc",
        name=spec.name,
        fleet=spec.fleet,
        agent=spec.agent,
        role=spec.role,
        spec_hash=spec.spec_hash if spec_hash is None else spec_hash,
        state=state,
        image=spec.image,
        labels=spec.labels,
        created=None,
        started_at=None,
    )


def kinds(p) -> dict[str, Kind]:
    return {a.name: a.kind for a in p.actions}


def test_empty_world_creates_everything() -> None:
    p = plan(desired(), [])
    assert set(kinds(p).values()) == {Kind.CREATE} and len(p.changes) == 3


def test_matching_world_is_a_no_op() -> None:
    d = desired()
    p = plan(d, [seen(s) for s in d])
    assert not p.has_changes and p.summary() == "3 unchanged"


def test_changed_hash_recreates_only_that_agent() -> None:
    d = desired()
    obs = [seen(d[0], spec_hash="old"), seen(d[1]), seen(d[2])]
    assert kinds(plan(d, obs)) == {
        d[0].name: Kind.RECREATE,
        d[1].name: Kind.KEEP,
        d[2].name: Kind.KEEP,
    }


def test_stopped_or_half_created_containers_are_started() -> None:
    d = desired()
    obs = [seen(d[0], state="created"), seen(d[1], state="exited"), seen(d[2])]
    k = kinds(plan(d, obs))
    assert k[d[0].name] == Kind.START and k[d[1].name] == Kind.START and k[d[2].name] == Kind.KEEP


def test_extra_containers_deleted_only_with_prune() -> None:
    d = desired()
    extra = seen(d[0])
    extra = ObservedContainer(**{**extra.__dict__, "name": "p-swarm-a-009", "agent": "swarm-a-009"})
    obs = [*[seen(s) for s in d], extra]
    assert kinds(plan(d, obs))["p-swarm-a-009"] == Kind.ORPHAN
    assert not plan(d, obs).has_changes
    assert kinds(plan(d, obs, prune=True))["p-swarm-a-009"] == Kind.DELETE


def test_deletion_plan_removes_all_observed() -> None:
    d = desired()
    p = deletion_plan([seen(s) for s in d])
    assert [a.kind for a in p.actions] == [Kind.DELETE] * 3
