"""Pure rules for where an agent's work lands on the host and how host refs may move.

Nothing here touches git: the landing code asks ``plan_updates`` what to do, given the
container's (untrusted) branch list and the host refs as they are, and an ancestry
oracle. Keeping the rules pure lets every edge (rewrites, name clashes, hostile names)
be unit-tested without repositories.

Layout on the host (``<a>`` is the agent name)::

    refs/heads/swarm/<a>/<branch>     each container branch (a leading ``swarm/<a>/`` is
                                      dropped, so the work branch lands as swarm/<a>/work)
    refs/heads/swarm/<a>/wip          snapshot of uncommitted + untracked work
    refs/heads/swarm/<a>/_/<branch>   a container branch whose name would clash with wip
    refs/heads/swarm-rewritten/<a>/<name>/<UTC stamp>
                                      the old host tip of a branch the agent rewrote

Branch refs only ever fast-forward; a rewrite moves the branch but keeps the old tip
under the dated name. ``wip`` is a snapshot, not history: it is replaced each sync (the
host repo keeps a reflog of it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
AGENT_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,80}[a-z0-9])?$")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
MAX_REF_LEN = 200
WIP = "wip"
REWRITTEN_ROOT = "refs/heads/swarm-rewritten"


@dataclass(frozen=True)
class RefUpdate:
    """One ref change for the host transaction; ``old`` None means "must not exist"."""

    ref: str
    new: str
    old: str | None
    reason: str  # create | fast-forward | rewritten | backup | snapshot


@dataclass(frozen=True)
class Plan:
    """What one sync does to the host refs, and what it refused."""

    updates: list[RefUpdate]
    rejected: dict[str, str]  # container branch -> why it was not landed

    @property
    def changed(self) -> bool:
        return bool(self.updates)


def valid_branch_name(name: str) -> bool:
    """``git check-ref-format`` rules for a branch (conservative, no git needed)."""
    if not name or len(name) > MAX_REF_LEN or _BAD_CHARS.search(name):
        return False
    if name.startswith("/") or name.endswith(("/", ".", ".lock")) or name == "@":
        return False
    if ".." in name or "//" in name or "@{" in name:
        return False
    return all(
        part and not part.startswith(".") and not part.endswith(".lock") for part in name.split("/")
    )


def check_agent(agent: str) -> str:
    """The agent name, or ValueError: it becomes part of ref names and file names."""
    if not AGENT_RE.match(agent):
        raise ValueError(f"agent name {agent!r} is not usable in ref names")
    return agent


def agent_prefix(agent: str) -> str:
    return f"refs/heads/swarm/{check_agent(agent)}/"


def wip_ref(agent: str) -> str:
    return agent_prefix(agent) + WIP


def host_branch_refs(agent: str, branches: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Map container branches to host refs: ``({branch: host_ref}, {branch: why_rejected})``."""
    own = f"swarm/{agent}/"
    mapped: dict[str, str] = {}
    rejected: dict[str, str] = {}
    taken: set[str] = set()
    # Prefixed names first, so `swarm/<a>/work` wins `work` over a bare `work` branch.
    for branch in sorted(branches, key=lambda b: (not b.startswith(own), b)):
        if not valid_branch_name(branch):
            rejected[branch] = "not a valid branch name"
            continue
        if not SHA_RE.match(branches[branch]):
            rejected[branch] = "tip is not a commit id"
            continue
        short = branch.removeprefix(own) if branch.startswith(own) else branch
        if short == WIP or short.startswith((WIP + "/", "_/")) or short in taken:
            short = "_/" + branch
        if short in taken:
            rejected[branch] = "name clashes with another branch"
            continue
        taken.add(short)
        mapped[branch] = agent_prefix(agent) + short
    return mapped, rejected


def backup_ref(agent: str, host_ref: str, when: datetime, existing: set[str]) -> str:
    """A dated, unused ref name for the old tip of a rewritten branch."""
    short = host_ref.removeprefix(agent_prefix(agent))
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    base = f"{REWRITTEN_ROOT}/{agent}/{short}/{stamp}"
    ref, n = base, 1
    while ref in existing:
        n += 1
        ref = f"{base}-{n}"
    return ref


def plan_updates(
    agent: str,
    branches: dict[str, str],
    wip: str | None,
    host: dict[str, str],
    is_ancestor: Callable[[str, str], bool],
    now: datetime,
) -> Plan:
    """The ref transaction for one sync.

    ``host`` holds the current host refs (at least the agent's and its backups);
    ``is_ancestor(old, new)`` answers whether moving old -> new is a fast-forward.
    """
    mapped, rejected = host_branch_refs(agent, branches)
    updates: list[RefUpdate] = []
    existing = set(host)
    for branch, ref in sorted(mapped.items(), key=lambda kv: kv[1]):
        new, old = branches[branch], host.get(ref)
        if old == new:
            continue
        if old is None:
            updates.append(RefUpdate(ref, new, None, "create"))
        elif is_ancestor(old, new):
            updates.append(RefUpdate(ref, new, old, "fast-forward"))
        else:
            backup = backup_ref(agent, ref, now, existing)
            existing.add(backup)
            updates.append(RefUpdate(backup, old, None, "backup"))
            updates.append(RefUpdate(ref, new, old, "rewritten"))
    if wip is not None:
        if not SHA_RE.match(wip):
            rejected["<wip>"] = "snapshot is not a commit id"
        elif host.get(wip_ref(agent)) != wip:
            updates.append(RefUpdate(wip_ref(agent), wip, host.get(wip_ref(agent)), "snapshot"))
    return Plan(updates, rejected)
