"""The pure planner: (desired specs, observed containers) -> the actions that close the gap.

Level-triggered: it looks only at what should be and what is, never at what happened
before, so running it again after any crash computes the repair. It does no I/O; the
executor carries the plan out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from agentctl_swarm.fleet.render import ContainerSpec
from agentctl_swarm.podman.types import ObservedContainer


class Kind(StrEnum):
    CREATE = "create"
    RECREATE = "recreate"
    START = "start"
    DELETE = "delete"
    KEEP = "keep"
    ORPHAN = "orphan"  # running but no longer desired; removed only with --prune


@dataclass(frozen=True)
class Action:
    kind: Kind
    name: str
    agent: str
    reason: str
    spec: ContainerSpec | None = None
    observed: ObservedContainer | None = None

    @property
    def changes(self) -> bool:
        return self.kind not in {Kind.KEEP, Kind.ORPHAN}

    @property
    def node(self) -> str:
        """The node the action happens on (a move's new node)."""
        if self.spec is not None:
            return self.spec.node
        return self.observed.node if self.observed is not None else "local"


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    #: Nodes that did not answer (node -> why): their agents are not in this plan.
    unreachable: Mapping[str, str] = field(default_factory=dict)

    @property
    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.changes]

    @property
    def has_changes(self) -> bool:
        return any(a.changes for a in self.actions)

    def count(self, kind: Kind) -> int:
        return sum(1 for a in self.actions if a.kind == kind)

    def summary(self) -> str:
        parts = [
            f"{self.count(k)} to {k.value}"
            for k in (Kind.CREATE, Kind.RECREATE, Kind.START, Kind.DELETE)
            if self.count(k)
        ]
        kept = self.count(Kind.KEEP)
        orphans = self.count(Kind.ORPHAN)
        if kept:
            parts.append(f"{kept} unchanged")
        if orphans:
            parts.append(f"{orphans} not in the fleet (use --prune to delete)")
        if self.unreachable:
            parts.append(f"{len(self.unreachable)} node(s) not reachable")
        return ", ".join(parts) or "nothing to do"


def plan(
    desired: Sequence[ContainerSpec], observed: Sequence[ObservedContainer], *, prune: bool = False
) -> Plan:
    """Compare by container name, node and spec hash; ordered creates first, deletes last.

    A container found on another node than its spec is placed on is moved (recreated
    there); a second copy of the same agent on another node is deleted.
    """
    by_name: dict[str, list[ObservedContainer]] = {}
    for o in observed:
        by_name.setdefault(o.name, []).append(o)
    actions: list[Action] = []
    extra: list[Action] = []
    for spec in desired:
        copies = by_name.pop(spec.name, [])
        seen = next((o for o in copies if o.node == spec.node), None)
        if seen is None and copies:
            seen = copies[0]
        for other in copies:
            if other is not seen:
                extra.append(
                    Action(
                        Kind.DELETE, other.name, other.agent,
                        f"a second copy on node {other.node} (it runs on {spec.node})",
                        observed=other,
                    )
                )  # fmt: skip
        if seen is None:
            actions.append(Action(Kind.CREATE, spec.name, spec.agent, "not present", spec=spec))
        elif seen.node != spec.node:
            reason = f"moves from node {seen.node} to {spec.node}"
            actions.append(
                Action(Kind.RECREATE, spec.name, spec.agent, reason, spec=spec, observed=seen)
            )
        elif seen.spec_hash != spec.spec_hash:
            reason = f"spec changed ({seen.spec_hash or 'unlabelled'} -> {spec.spec_hash})"
            actions.append(
                Action(Kind.RECREATE, spec.name, spec.agent, reason, spec=spec, observed=seen)
            )
        elif seen.state in {"running", "restarting", "stopping"}:
            actions.append(
                Action(Kind.KEEP, spec.name, spec.agent, seen.state, spec=spec, observed=seen)
            )
        elif seen.state == "paused":
            actions.append(
                Action(
                    Kind.KEEP, spec.name, spec.agent, "paused by the user", spec=spec, observed=seen
                )
            )
        else:
            actions.append(
                Action(
                    Kind.START,
                    spec.name,
                    spec.agent,
                    f"state is {seen.state}",
                    spec=spec,
                    observed=seen,
                )
            )
    actions += extra
    for seen in sorted((o for copies in by_name.values() for o in copies), key=lambda o: o.name):
        if prune:
            actions.append(
                Action(Kind.DELETE, seen.name, seen.agent, "not in the fleet", observed=seen)
            )
        else:
            actions.append(
                Action(Kind.ORPHAN, seen.name, seen.agent, "not in the fleet", observed=seen)
            )
    return Plan(tuple(actions))


def deletion_plan(observed: Sequence[ObservedContainer]) -> Plan:
    """Everything observed goes (``agentctl delete``)."""
    return Plan(
        tuple(Action(Kind.DELETE, o.name, o.agent, "fleet deleted", observed=o) for o in observed)
    )
