"""What an engine can enforce (podman/engine.py) and apply's preflight on it (pure).

The info documents are trimmed copies of what Podman 4.3 reported on the CI machine: as
a rootless user on cgroup v1 (no controllers: limits are dropped) and as root. A rootless
user on cgroup v2 is the same document with the controllers its manager was delegated.
The real engines are asked in tests/rootless (as a non-root user) and by
tests/integration/test_apply.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agentctl_swarm.controller.preflight import UnenforceableLimits, check_engine
from agentctl_swarm.fleet.loader import FleetError, parse_fleet
from agentctl_swarm.fleet.render import render_fleet
from agentctl_swarm.podman.engine import (
    EngineFacts,
    bridge_reason,
    limits_fix,
    limits_reason,
    unenforced,
)

ROOTLESS_V1 = {
    "host": {
        "cgroupVersion": "v1",
        "cgroupControllers": [],
        "cgroupManager": "cgroupfs",
        "idMappings": {
            "uidmap": [
                {"container_id": 0, "host_id": 1001, "size": 1},
                {"container_id": 1, "host_id": 100000, "size": 65536},
            ]
        },
        "ociRuntime": {"name": "runc"},
        "security": {"rootless": True},
        "slirp4netns": {"executable": "", "package": "", "version": ""},
    },
    "store": {
        "graphDriverName": "vfs",
        "imageStore": {"number": 0},
        "containerStore": {"number": 0},
    },
    "version": {"Version": "4.3.1"},
}
ROOTFUL_V1 = {
    "host": {
        "cgroupVersion": "v1",
        "cgroupControllers": [
            "cpuset",
            "cpu",
            "cpuacct",
            "blkio",
            "memory",
            "devices",
            "freezer",
            "pids",
        ],
        "idMappings": {"uidmap": None},
        "security": {"rootless": False},
        "slirp4netns": {
            "executable": "/usr/bin/slirp4netns",
            "version": "slirp4netns version 1.2.0",
        },
    },
    "store": {"graphDriverName": "overlay", "imageStore": {"number": 37}},
    "version": {"Version": "4.3.1"},
}


def rootless_v2(*controllers: str) -> EngineFacts:
    """A rootless engine on cgroup v2 with these controllers delegated (and slirp4netns)."""
    slirp = {"executable": "/usr/bin/slirp4netns", "version": "slirp4netns version 1.2.0"}
    info = {**ROOTLESS_V1, "host": {**ROOTLESS_V1["host"], "cgroupVersion": "v2",
            "cgroupControllers": list(controllers), "slirp4netns": slirp}}  # fmt: skip
    return EngineFacts.from_info(info)


def test_facts_from_a_rootless_cgroup_v1_engine():
    facts = EngineFacts.from_info(ROOTLESS_V1)
    assert facts.rootless and facts.cgroup_version == "v1"
    assert facts.cgroup_controllers == frozenset()
    assert facts.graph_driver == "vfs" and facts.images == 0 and facts.containers == 0
    assert facts.slirp4netns == "" and facts.subordinate_ids
    assert facts.version == "4.3.1" and facts.runtime == "runc"
    assert unenforced(facts, ["memory", "cpus", "pids"]) == ("memory", "cpus", "pids")
    assert "rootless Podman on cgroup v1" in limits_reason(facts)
    fix = limits_fix(facts)
    assert "cgroup v2" in fix and "Delegate=cpu cpuset io memory pids" in fix
    assert fix.endswith("set AGENTCTL_ALLOW_UNENFORCED_LIMITS=1")
    assert bridge_reason(facts) is not None


def test_facts_from_a_rootful_engine_enforce_everything():
    facts = EngineFacts.from_info(ROOTFUL_V1)
    assert not facts.rootless and facts.subordinate_ids  # rootful: no mapping to need
    assert unenforced(facts, ["memory", "cpus", "pids"]) == ()
    assert facts.slirp4netns == "/usr/bin/slirp4netns" and bridge_reason(facts) is None


def test_a_configured_slirp4netns_that_does_not_run_counts_as_missing():
    # Podman reports the configured path even when the file is missing; no version then.
    info = {**ROOTLESS_V1, "host": {**ROOTLESS_V1["host"],
            "slirp4netns": {"executable": "/nonexistent/slirp4netns", "version": ""}}}  # fmt: skip
    assert EngineFacts.from_info(info).slirp4netns == ""


def test_a_user_without_subordinate_ids_maps_only_itself():
    info = {**ROOTLESS_V1, "host": {**ROOTLESS_V1["host"],
            "idMappings": {"uidmap": [{"container_id": 0, "host_id": 1001, "size": 1}]}}}  # fmt: skip
    assert not EngineFacts.from_info(info).subordinate_ids


def test_cgroup_v2_with_part_of_the_controllers_delegated_names_the_missing_ones():
    facts = rootless_v2("memory", "pids")  # systemd's default delegation
    assert unenforced(facts, ["memory", "cpus", "pids"]) == ("cpus",)
    reason = limits_reason(facts, ["cpus"])
    assert "controllers cpu are not delegated" in reason and "has: memory pids" in reason
    assert "sudo tee /etc/systemd/system/user@.service.d/50-agentctl-delegate.conf" in limits_fix(
        facts
    )
    assert unenforced(rootless_v2("cpu", "io", "memory", "pids"), ["memory", "cpus", "pids"]) == ()


def test_odd_documents_give_empty_facts_not_errors():
    facts = EngineFacts.from_info({"host": None, "store": "x"})
    assert not facts.rootless and facts.cgroup_controllers == frozenset()


# -- apply's preflight ------------------------------------------------------------------

FLEET = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {name: demo}
defaults:
  resources: {memory: 256m}
agents:
  - role: builder
    command: [sleep, infinity]
    resources: {pids: 64}
  - role: reviewer
    command: [sleep, infinity]
    network: bridge
"""


def specs_of(text: str):
    loaded = parse_fleet(text, "fleet.yaml")
    return loaded, render_fleet(loaded.fleet, home=Path("/home/u"), control_root=Path("/c"))


def test_unenforceable_limits_are_refused_at_the_line_each_comes_from():
    loaded, specs = specs_of(FLEET)
    with pytest.raises(UnenforceableLimits) as err:
        check_engine(loaded, specs, rootless_v2("pids"))
    lines = err.value.details()
    # memory from defaults (once, though two roles use it); cpus is the built-in default,
    # located at each agent's role; pids from the builder's own resources is enforced
    assert lines == [
        "fleet.yaml:5:23: defaults.resources.memory: memory 256m would not be enforced: the "
        "cgroup controllers cpu, memory are not delegated to this user (rootless Podman has: "
        "pids), so it cannot apply those limits",
        "fleet.yaml:7:11: agents[0].role: the built-in limits cpus 1 would not be enforced: the "
        "cgroup controllers cpu, memory are not delegated to this user (rootless Podman has: "
        "pids), so it cannot apply those limits",
        "fleet.yaml:10:11: agents[1].role: the built-in limits cpus 1 would not be enforced: the "
        "cgroup controllers cpu, memory are not delegated to this user (rootless Podman has: "
        "pids), so it cannot apply those limits",
    ]
    assert err.value.exit_code == 2
    assert err.value.one_line().startswith("3 problems in fleet.yaml; nothing was changed; ")
    assert "AGENTCTL_ALLOW_UNENFORCED_LIMITS=1" in err.value.one_line()


def test_the_opt_out_warns_once_and_refuses_nothing(caplog):
    loaded, specs = specs_of(FLEET.replace("    network: bridge\n", ""))
    facts = EngineFacts.from_info(ROOTLESS_V1)
    with caplog.at_level(logging.WARNING, logger="agentctl.controller"):
        warnings = check_engine(loaded, specs, facts, allow_unenforced=True)
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "limits not enforced: AGENTCTL_ALLOW_UNENFORCED_LIMITS=1: creating containers WITHOUT their "
        "cpus/memory/pids limits (rootless Podman on cgroup v1"
    )
    assert [r.getMessage() for r in caplog.records] == warnings


def test_bridge_without_slirp4netns_is_refused_even_with_the_opt_out():
    loaded, specs = specs_of(FLEET)
    with pytest.raises(FleetError) as err:
        check_engine(loaded, specs, EngineFacts.from_info(ROOTLESS_V1), allow_unenforced=True)
    assert not isinstance(err.value, UnenforceableLimits)
    assert err.value.details() == [
        "fleet.yaml:12:14: agents[1].network: rootless Podman needs slirp4netns for bridge "
        "networking and has none; install it on the Podman host (sudo apt-get install "
        "slirp4netns), or use `network: host` (the default)"
    ]


def test_an_engine_that_enforces_everything_passes_silently(caplog):
    loaded, specs = specs_of(FLEET)
    with caplog.at_level(logging.WARNING):
        assert check_engine(loaded, specs, EngineFacts.from_info(ROOTFUL_V1)) == []
        assert check_engine(loaded, specs, rootless_v2("cpu", "memory", "pids", "io")) == []
    assert caplog.records == []
