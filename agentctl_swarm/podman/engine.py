"""What a Podman engine can actually do, read from its `info`, and what that means for fleets.

Why this exists: rootless Podman accepts memory/CPU/pids limits it cannot apply and drops
them without a word over the API (cgroup v1, or cgroup v2 without the controllers
delegated to the user: `podman inspect` then shows 0). An agent that was promised a
512 MB cage would run unbounded on a shared host. The same `info` also tells whether
bridge networking can work rootless (slirp4netns) and which storage driver is in use.

The facts come from the engine itself (`GET /info` through the backend, or `podman info
--format json` in the doctor), not from this machine's files, so they are right for a
remote engine (``ssh://`` connections) too. Everything here is pure: `apply`'s preflight
and `agentctl doctor` make their decisions from :class:`EngineFacts` and share the words
and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# fleet `resources` field -> the cgroup controller that enforces it
LIMIT_CONTROLLERS: Mapping[str, str] = {"memory": "memory", "cpus": "cpu", "pids": "pids"}

# The opt-out, as users type it (Settings.allow_unenforced_limits).
OPT_OUT_ENV = "AGENTCTL_ALLOW_UNENFORCED_LIMITS"

DELEGATE_DROPIN = "/etc/systemd/system/user@.service.d/50-agentctl-delegate.conf"


@dataclass(frozen=True)
class EngineFacts:
    """The parts of `podman info` that decide what a fleet gets.

    ``cgroup_controllers`` are the controllers the engine can use for its containers: for
    rootless Podman the ones delegated to the user (empty on cgroup v1).
    ``slirp4netns`` is the helper's path when Podman found a working one (it reports a
    version), else "".
    """

    rootless: bool
    cgroup_version: str = ""
    cgroup_controllers: frozenset[str] = frozenset()
    cgroup_manager: str = ""
    graph_driver: str = ""
    slirp4netns: str = ""
    subordinate_ids: bool = True  # rootless: more than the user's own id is mapped
    images: int = 0
    containers: int = 0
    version: str = ""
    runtime: str = ""

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> EngineFacts:
        """Read the facts from libpod's info document (API and CLI give the same shape)."""
        host = _map(info.get("host"))
        store = _map(info.get("store"))
        slirp = _map(host.get("slirp4netns"))
        uidmap = _map(host.get("idMappings")).get("uidmap") or []
        rootless = bool(_map(host.get("security")).get("rootless"))
        return cls(
            rootless=rootless,
            cgroup_version=str(host.get("cgroupVersion") or ""),
            cgroup_controllers=frozenset(str(c) for c in host.get("cgroupControllers") or ()),
            cgroup_manager=str(host.get("cgroupManager") or ""),
            graph_driver=str(store.get("graphDriverName") or ""),
            # Podman reports a configured path even when the file is missing; only a
            # version proves it ran.
            slirp4netns=str(slirp.get("executable") or "") if slirp.get("version") else "",
            subordinate_ids=not rootless or len(uidmap) > 1,
            images=int(_map(store.get("imageStore")).get("number") or 0),
            containers=int(_map(store.get("containerStore")).get("number") or 0),
            version=str(_map(info.get("version")).get("Version") or ""),
            runtime=str(_map(host.get("ociRuntime")).get("name") or ""),
        )


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def unenforced(facts: EngineFacts, limits: Iterable[str]) -> tuple[str, ...]:
    """Which of these limits (``memory``, ``cpus``, ``pids``) the engine would not apply."""
    return tuple(name for name in limits if LIMIT_CONTROLLERS[name] not in facts.cgroup_controllers)


def limits_reason(facts: EngineFacts, missing: Iterable[str] = tuple(LIMIT_CONTROLLERS)) -> str:
    """Why the engine cannot apply these limits, in the user's words."""
    controllers = ", ".join(sorted({LIMIT_CONTROLLERS[n] for n in missing}))
    if facts.rootless and facts.cgroup_version == "v1":
        return "rootless Podman on cgroup v1 cannot apply memory/CPU/pids limits and drops them"
    if facts.rootless:
        have = " ".join(sorted(facts.cgroup_controllers)) or "none"
        return (
            f"the cgroup controllers {controllers} are not delegated to this user "
            f"(rootless Podman has: {have}), so it cannot apply those limits"
        )
    return f"this Podman has no {controllers} cgroup controller, so it cannot apply those limits"


def limits_fix(facts: EngineFacts) -> str:
    """The fix for :func:`limits_reason`, ending with the explicit opt-out."""
    if facts.rootless and facts.cgroup_version == "v1":
        how = (
            "boot with cgroup v2 (kernel argument systemd.unified_cgroup_hierarchy=1) and "
            "delegate the controllers to users (Delegate=cpu cpuset io memory pids in "
            f"{DELEGATE_DROPIN}; lima/provision/node.sh sets up both), or use rootful Podman"
        )
    elif facts.rootless:
        how = (
            "delegate the controllers: printf '[Service]\\nDelegate=cpu cpuset io memory "
            f"pids\\n' | sudo tee {DELEGATE_DROPIN}; sudo systemctl daemon-reload; then log "
            "in again (or sudo systemctl restart user@$(id -u).service)"
        )
    else:
        how = "enable those cgroup controllers for the engine"
    return f"{how}; to run without these limits anyway, set {OPT_OUT_ENV}=1"


def bridge_reason(facts: EngineFacts) -> str | None:
    """Why `network: bridge` cannot work on this engine, or None when it can (as far as
    `info` shows: rootless bridge networking needs slirp4netns)."""
    if facts.rootless and not facts.slirp4netns:
        return "rootless Podman needs slirp4netns for bridge networking and has none"
    return None


BRIDGE_FIX = (
    "install it on the Podman host (sudo apt-get install slirp4netns), "
    "or use `network: host` (the default)"
)
