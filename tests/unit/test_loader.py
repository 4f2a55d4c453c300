"""The fleet loader: each kind of mistake is reported at its exact line:column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agentctl_swarm.fleet.loader import FleetError, parse_fleet
from agentctl_swarm.fleet.source import read_fleet

GOOD = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata:
  name: demo
defaults:
  image: localhost/agentctl-agent:latest
  resources: {memory: 512m, cpus: 1, pids: 256}
  network: host
agents:
  - role: builder
    replicas: 2
    runtime: command
    command: ["sh", "-c", "sleep infinity"]
    env: {KEY: value}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(FleetError) as info:
        parse_fleet(textwrap.dedent(text), "f.yaml")
    return [str(p) for p in info.value.problems]


def with_agent(extra: str) -> str:
    """GOOD with extra lines appended to the first agent (indented 4)."""
    return GOOD + textwrap.indent(textwrap.dedent(extra), "    ")


def test_good_file_loads() -> None:
    loaded = parse_fleet(GOOD, "f.yaml")
    assert loaded.fleet.name == "demo"
    assert loaded.fleet.agents[0].replicas == 2
    assert loaded.fleet.agents[0].env == {"KEY": "value"}


CASES: list[tuple[str, str, str]] = [
    # (id, fleet text, expected problem line)
    ("yaml-syntax", GOOD.replace("kind: Fleet", "kind: [Fleet"), "f.yaml:3:9: YAML syntax error"),
    (
        "duplicate-key",
        GOOD.replace("kind: Fleet", "kind: Fleet\nkind: Fleet"),
        "f.yaml:3:1: kind: duplicate key",
    ),
    (
        "unknown-top-key",
        GOOD.replace("defaults:", "defualts:"),
        "f.yaml:5:1: defualts: unknown key 'defualts'; did you mean 'defaults'?",
    ),
    (
        "unknown-agent-key",
        with_agent("comand: [sh]\n"),
        "f.yaml:15:5: agents[0].comand: unknown key 'comand'; did you mean 'command'?",
    ),
    (
        "unknown-resource-key",
        GOOD.replace("pids: 256", "pid: 256"),
        "f.yaml:7:38: defaults.resources.pid: unknown key 'pid'; did you mean 'pids'?",
    ),
    (
        "missing-role",
        GOOD.replace("  - role: builder\n    replicas: 2", "  - replicas: 2"),
        "f.yaml:10:5: agents[0].role: required field is missing",
    ),
    (
        "api-version",
        GOOD.replace("agentctl.io/v1", "agentctl.io/v2"),
        "f.yaml:1:13: apiVersion: got 'agentctl.io/v2'; expected 'agentctl.io/v1'",
    ),
    (
        "kind",
        GOOD.replace("kind: Fleet", "kind: Pod"),
        "f.yaml:2:7: kind: got 'Pod'; expected 'Fleet'",
    ),
    (
        "fleet-name",
        GOOD.replace("name: demo", "name: Demo_1"),
        "f.yaml:4:9: metadata.name: name 'Demo_1' must be 1-30 lowercase",
    ),
    (
        "replicas-negative",
        GOOD.replace("replicas: 2", "replicas: -1"),
        "f.yaml:11:15: agents[0].replicas: must be at least 0 (got -1)",
    ),
    (
        "replicas-not-int",
        GOOD.replace("replicas: 2", "replicas: two"),
        "f.yaml:11:15: agents[0].replicas: must be a whole number (got 'two')",
    ),
    (
        "memory-unit",
        GOOD.replace("memory: 512m", "memory: 512x"),
        "f.yaml:7:23: defaults.resources.memory: '512x' is not a size; write it like 512m or 2g",
    ),
    (
        "cpus-zero",
        GOOD.replace("cpus: 1", "cpus: 0"),
        "f.yaml:7:35: defaults.resources.cpus: cpus must be greater than 0",
    ),
    (
        "network",
        GOOD.replace("network: host", "network: bridged"),
        "f.yaml:8:12: defaults.network: got 'bridged'; expected 'host', 'none' or 'bridge'",
    ),
    (
        "no-command",
        GOOD.replace('    command: ["sh", "-c", "sleep infinity"]\n', ""),
        "f.yaml:10:5: agents[0]: runtime 'command' needs a `command:` list",
    ),
    (
        "empty-command",
        GOOD.replace('["sh", "-c", "sleep infinity"]', "[]"),
        "f.yaml:13:14: agents[0].command: command must not be empty",
    ),
    (
        "runtime",
        GOOD.replace("runtime: command", "runtime: gpt"),
        "f.yaml:12:14: agents[0].runtime: got 'gpt'; expected 'command'",
    ),
    (
        "bad-role",
        GOOD.replace("role: builder", "role: Builder!"),
        "f.yaml:10:11: agents[0].role: role 'Builder!' must be",
    ),
    (
        "env-key",
        GOOD.replace("env: {KEY: value}", "env: {1BAD: value}"),
        "f.yaml:14:10: agents[0].env: '1BAD' is not a valid environment variable name",
    ),
    (
        "reserved-label",
        with_agent("labels: {io.agentctl.fleet: x}\n"),
        "f.yaml:15:13: agents[0].labels: label 'io.agentctl.fleet' uses the reserved prefix",
    ),
    (
        "volume-target",
        with_agent("volumes:\n  - {source: /data, target: data}\n"),
        "f.yaml:16:33: agents[0].volumes[0].target: target 'data' must be an absolute path",
    ),
    (
        "secret-no-source",
        with_agent("secrets:\n  - {name: API_KEY}\n"),
        "f.yaml:16:9: agents[0].secrets[0]: give exactly one of from_env or from_file",
    ),
    (
        "secret-two-sources",
        with_agent("secrets:\n  - {name: K, from_env: A, from_file: /b}\n"),
        "f.yaml:16:9: agents[0].secrets[0]: give exactly one of from_env or from_file",
    ),
    (
        "duplicate-role",
        GOOD + "  - role: builder\n    command: [sh]\n",
        "f.yaml:15:11: agents[1].role: role 'builder' is already used by agents[0]",
    ),
    (
        "sensitive-mount",
        with_agent("volumes:\n  - {source: ~/.ssh, target: /home/agent/.ssh}\n"),
        "f.yaml:16:18: agents[0].volumes[0].source: mounting '~/.ssh' exposes ~/.ssh",
    ),
    (
        "engine-socket",
        with_agent("volumes:\n  - {source: /run/podman/podman.sock, target: /sock}\n"),
        "f.yaml:16:18: agents[0].volumes[0].source: mounting '/run/podman/podman.sock' exposes /run/podman",
    ),
    (
        "host-root",
        with_agent("volumes:\n  - {source: /, target: /host}\n"),
        "f.yaml:16:18: agents[0].volumes[0].source: mounting '/' exposes /",
    ),
    (
        "no-agents",
        GOOD.split("agents:")[0] + "agents: []\n",
        "f.yaml:9:9: agents: must have at least 1 item",
    ),
    ("top-not-mapping", "- a\n- b\n", "f.yaml:1:1: the top level must be a mapping"),
    ("empty-file", "", "f.yaml:1:1: the file is empty"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES]
)
def test_each_mistake_is_located(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) for p in found), f"expected {expected!r} in {found}"


def test_all_problems_reported_at_once() -> None:
    text = (
        GOOD.replace("defaults:", "defualts:")
        .replace("replicas: 2", "replicas: -1")
        .replace("kind: Fleet", "kind: Pod")
    )
    found = problems(text)
    assert [p.split(":")[1] for p in found] == ["2", "5", "11"]


def test_sensitive_mount_allowed_when_explicit() -> None:
    text = with_agent(
        "volumes:\n  - {source: ~/.ssh, target: /home/agent/.ssh, read_only: true, allow_sensitive: true}\n"
    )
    loaded = parse_fleet(text, "f.yaml")
    assert loaded.fleet.agents[0].volumes[0].allow_sensitive


def test_missing_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(FleetError) as info:
        read_fleet(tmp_path / "nope.yaml")
    assert str(info.value.problems[0]).endswith("file not found")


def test_scalars_in_env_become_strings() -> None:
    loaded = parse_fleet(GOOD.replace("env: {KEY: value}", "env: {N: 3, B: true}"), "f.yaml")
    assert loaded.fleet.agents[0].env == {"N": "3", "B": "true"}


def test_relative_repo_and_sync_paths_resolve_next_to_the_fleet_file(tmp_path: Path) -> None:
    fleet = tmp_path / "sub" / "fleet.yaml"
    fleet.parent.mkdir()
    fleet.write_text(GOOD + "repo: {path: ../project}\nsync: {into: out.git}\n")
    loaded = read_fleet(fleet)
    assert loaded.fleet.repo.path == str(tmp_path / "sub" / ".." / "project")
    assert loaded.fleet.sync.into == str(tmp_path / "sub" / "out.git")


@pytest.mark.parametrize(
    ("old", "bad", "expected"),
    [
        (
            "memory: 512m",
            "memory: [1]",
            "f.yaml:7:23: defaults.resources.memory: must be text",
        ),
        (
            "cpus: 1",
            "cpus: [1]",
            "f.yaml:7:35: defaults.resources.cpus: must be a number",
        ),
        (
            "replicas: 2",
            "replicas: 2.5",
            "f.yaml:11:15: agents[0].replicas: must be a whole number (got 2.5)",
        ),
    ],
)
def test_wrong_types_name_the_field_without_pydantic_union_tags(
    old: str, bad: str, expected: str
) -> None:
    found = problems(GOOD.replace(old, bad))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_a_wrong_shape_is_described_in_the_users_words() -> None:
    found = problems(GOOD + "repo: ~/src/project\n")
    assert len(found) == 1, found
    assert "repo: must be a mapping (key: value) with keys such as url, path" in found[0]
    assert "RepoSpec" not in found[0] and "Input should" not in found[0]
