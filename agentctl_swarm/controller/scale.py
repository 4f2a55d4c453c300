"""Which agents a scale keeps (pure): up takes the next numbers; down removes idle agents
first — the one running longest first — and an active agent only when nothing idle is
left; such an agent is removed by `agentctl up` once it is idle again, never mid-task.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    """One agent of a role as the scale sees it."""

    index: int
    busy: bool  # working on a task (or its state is unknown: treated as busy)
    started: float | None = None  # when its container started (epoch); None: unknown


@dataclass(frozen=True)
class ScaleChoice:
    keep: list[int]
    added: list[int]
    removed: list[int]  # idle ones: go now (after a final sync)
    draining: list[int]  # busy ones: go when idle


def choose(members: list[Member], target: int) -> ScaleChoice:
    """The role's agent numbers after scaling to ``target`` (0 stops the role)."""
    if target < 0:
        raise ValueError("a role cannot have fewer than 0 agents")
    current = sorted(m.index for m in members)
    if target >= len(current):
        added, nxt = [], (max(current) + 1 if current else 0)
        while len(current) + len(added) < target:
            added.append(nxt)
            nxt += 1
        return ScaleChoice(keep=current + added, added=added, removed=[], draining=[])
    surplus = len(current) - target

    def order(m: Member) -> tuple[bool, float, int]:
        # idle before busy; the one running longest first; then the highest number
        return (m.busy, m.started if m.started is not None else float("inf"), -m.index)

    leaving = sorted(members, key=order)[:surplus]
    gone = {m.index for m in leaving}
    return ScaleChoice(
        keep=[i for i in current if i not in gone],
        added=[],
        removed=sorted(m.index for m in leaving if not m.busy),
        draining=sorted(m.index for m in leaving if m.busy),
    )
