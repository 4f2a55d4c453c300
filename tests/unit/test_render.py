"""Rendering a fleet into container specs: names, labels, hardening, hash stability."""

from __future__ import annotations

from pathlib import Path

from agentctl_swarm.fleet.loader import parse_fleet
from agentctl_swarm.fleet.render import (
    LABEL_AGENT,
    LABEL_FLEET,
    LABEL_ROLE,
    LABEL_SPEC_HASH,
    render_fleet,
)

FLEET = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {name: demo}
defaults:
  image: img:1
  resources: {memory: 512m, cpus: 1, pids: 256}
  env: {A: "1"}
agents:
  - role: builder
    replicas: 3
    command: [sh, -c, "sleep 1"]
    env: {B: "2"}
  - role: reviewer
    command: [sleep, "9"]
    image: img:2
    resources: {memory: 1g}
    volumes:
      - {source: ~/data, target: /data, read_only: true}
    secrets:
      - {name: API_KEY, from_env: MY_KEY}
      - {name: CERT, from_file: /c, as_file: true}
"""


def specs(text: str = FLEET):
    return render_fleet(parse_fleet(text).fleet, home=Path("/home/u"))


def test_replicas_expand_to_numbered_agents_carrying_the_fleet_name() -> None:
    names = [s.name for s in specs()]
    assert names == [
        "demo-swarm-builder-000",
        "demo-swarm-builder-001",
        "demo-swarm-builder-002",
        "demo-swarm-reviewer-000",
    ]


def test_labels_identify_owner_and_carry_the_hash() -> None:
    spec = specs()[1]
    assert spec.labels[LABEL_FLEET] == "demo"
    assert spec.labels[LABEL_AGENT] == "swarm-builder-001"
    assert spec.labels[LABEL_ROLE] == "builder"
    assert spec.labels[LABEL_SPEC_HASH] == spec.spec_hash and len(spec.spec_hash) == 16


def test_defaults_merge_and_agent_overrides() -> None:
    builder, reviewer = specs()[0], specs()[3]
    assert builder.env["A"] == "1" and builder.env["B"] == "2"
    assert builder.env["AGENTCTL_AGENT"] == "swarm-builder-000"
    assert builder.image == "img:1" and reviewer.image == "img:2"
    assert reviewer.memory_bytes == 1024**3 and reviewer.nano_cpus == 1_000_000_000
    assert builder.pids == 256


def test_hardened_defaults_and_own_volumes() -> None:
    spec = specs()[0]
    assert spec.user == "1000:1000"
    assert spec.network == "host"
    targets = {m.target: m.source for m in spec.mounts}
    assert targets["/workspace"] == "demo-swarm-builder-000-workspace"
    assert targets["/state"] == "demo-swarm-builder-000-state"
    assert spec.command[:2] == ["agentctl-agent", "supervise"]
    assert spec.command[spec.command.index("--") + 1 :] == ["sh", "-c", "sleep 1"]
    assert spec.restart == "on-failure" and spec.restart_retries == 3


def test_host_paths_expand_home_and_secrets_stay_references() -> None:
    reviewer = specs()[3]
    data = next(m for m in reviewer.mounts if m.target == "/data")
    assert data.source == "/home/u/data" and data.read_only and data.kind == "bind"
    by_name = {s.name: s for s in reviewer.secrets}
    assert by_name["API_KEY"].env == "API_KEY" and by_name["API_KEY"].podman_name.startswith(
        "agentctl-demo-reviewer-api_key-"
    )
    assert by_name["CERT"].env is None
    assert "MY_KEY" not in str(reviewer.env) and "MY_KEY" not in str(reviewer.labels)


def test_hash_is_stable_and_changes_only_for_the_changed_agent() -> None:
    before = {s.name: s.spec_hash for s in specs()}
    assert before == {s.name: s.spec_hash for s in specs()}
    after = {s.name: s.spec_hash for s in specs(FLEET.replace('[sleep, "9"]', '[sleep, "10"]'))}
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {"demo-swarm-reviewer-000"}
