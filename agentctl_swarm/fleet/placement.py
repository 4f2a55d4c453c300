"""Which node each agent runs on (pure): spread by default, node selectors, capacity, stable.

A fleet without a ``nodes:`` section runs everything on this machine's Podman, the
implicit node :data:`LOCAL`. With nodes, :func:`place` keeps every agent where it already
is (``current``: where it was observed, or remembered for a node that cannot be reached
now) as long as that node is still in the fleet, still matches the role's
``node_selector`` and still has room; so re-applying never moves an agent. Agents without
a place go, in name order, to the eligible node with the fewest agents of their role,
then the fewest agents, then the first in the file.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from agentctl_swarm.fleet.model import AgentSpec, Fleet, NodeSpec
from agentctl_swarm.fleet.render import LOCAL_NODE as LOCAL
from agentctl_swarm.fleet.render import agent_name


@dataclass(frozen=True)
class PlacementError(ValueError):
    """No node can take an agent of ``role`` (agents[``index``])."""

    role: str
    index: int
    message: str

    def __str__(self) -> str:
        return self.message


def matches(agent: AgentSpec, node: NodeSpec) -> bool:
    """Whether the node's labels include all of the role's ``node_selector``."""
    return all(node.labels.get(k) == v for k, v in (agent.node_selector or {}).items())


def place(
    fleet: Fleet,
    current: Mapping[str, str] | None = None,
    *,
    avoid: Collection[str] = (),
) -> dict[str, str]:
    """Agent name (``swarm-<role>-NNN``) → node name, for every agent of the fleet.

    ``avoid``: nodes that cannot be reached now; agents placed there stay, new ones go
    elsewhere (and stay there). Raises :class:`PlacementError` when some agent fits on
    no node.
    """
    slots = [(agent_name(a.role, i), a, ix) for ix, a in enumerate(fleet.agents) for i in a.indexes]
    if not fleet.nodes:
        return {name: LOCAL for name, _, _ in slots}
    current = current or {}
    nodes = {n.name: n for n in fleet.nodes}
    order = {n.name: i for i, n in enumerate(fleet.nodes)}
    total = dict.fromkeys(nodes, 0)
    per_role: dict[tuple[str, str], int] = {}
    result: dict[str, str] = {}

    def room(node: NodeSpec) -> bool:
        return node.capacity is None or total[node.name] < node.capacity

    def put(name: str, agent: AgentSpec, node: str) -> None:
        result[name] = node
        total[node] += 1
        per_role[node, agent.role] = per_role.get((node, agent.role), 0) + 1

    for name, agent, _ in slots:  # stay where you are
        node = nodes.get(current.get(name, ""))
        if node is not None and matches(agent, node) and room(node):
            put(name, agent, node.name)
    for name, agent, ix in slots:
        if name in result:
            continue
        eligible = [n for n in fleet.nodes if matches(agent, n) and room(n)]
        if avoid and any(n.name not in avoid for n in eligible):
            eligible = [n for n in eligible if n.name not in avoid]
        if not eligible:
            raise PlacementError(agent.role, ix, _no_room(fleet, agent))
        best = min(
            eligible,
            key=lambda n: (per_role.get((n.name, agent.role), 0), total[n.name], order[n.name]),
        )
        put(name, agent, best.name)
    return result


def _no_room(fleet: Fleet, agent: AgentSpec) -> str:
    fitting = [n for n in fleet.nodes if matches(agent, n)]
    if not fitting:
        wanted = ", ".join(f"{k}={v}" for k, v in (agent.node_selector or {}).items())
        return (
            f"no node matches role {agent.role!r}'s node_selector ({wanted}); "
            "add those labels to a node or change the selector"
        )
    names = ", ".join(n.name for n in fitting)
    return (
        f"the nodes role {agent.role!r} may use ({names}) are full; raise their capacity, "
        "add a node or lower replicas"
    )
