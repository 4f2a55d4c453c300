"""Whatever `validate` accepts, apply can carry out; everything else is a located error.

Hostile and careless fleet files (issue 8): non-finite and huge numbers, NUL bytes,
names with a trailing newline, bad image references, reserved environment names, mount
paths that dodge the sensitive-path check, alias bombs, merge keys, FIFOs and devices.
Plus a hypothesis fuzz: any input ends as a fleet or as located problems, never as an
exception, in bounded time.
"""

from __future__ import annotations

import math
import os
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from agentctl_swarm.fleet.loader import FleetError, parse_fleet
from agentctl_swarm.fleet.render import render_fleet
from agentctl_swarm.fleet.source import read_fleet

BASE = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {name: demo}
agents:
  - role: builder
    command: [sh, -c, "sleep infinity"]
"""


def problems(text: str) -> list[str]:
    try:
        parse_fleet(text, "f.yaml")
    except FleetError as exc:
        return [str(p) for p in exc.problems]
    return []


def agent(extra: str) -> str:
    return BASE + textwrap.indent(textwrap.dedent(extra), "    ")


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("cpus-nan", agent("resources: {cpus: .nan}"), "agents[0].resources.cpus"),
        ("cpus-inf", agent("resources: {cpus: .inf}"), "agents[0].resources.cpus"),
        ("cpus-huge", agent("resources: {cpus: 100000}"), "agents[0].resources.cpus"),
        ("grace-inf", agent("grace_seconds: .inf"), "agents[0].grace_seconds"),
        ("grace-nan", agent("grace_seconds: .nan"), "agents[0].grace_seconds"),
        ("memory-int-tiny", agent("resources: {memory: 1}"), "agents[0].resources.memory"),
        ("memory-huge", agent("resources: {memory: 99t}"), "agents[0].resources.memory"),
        ("pids-huge", agent("resources: {pids: 999999999}"), "agents[0].resources.pids"),
        ("retries-huge", agent("restart_retries: 1000000000"), "agents[0].restart_retries"),
        ("nul-command", BASE.replace('"sleep infinity"', '"sleep\\0x"'), "agents[0].command[2]"),
        ("nul-env", agent('env: {A: "x\\0y"}'), "agents[0].env.A"),
        ("role-newline", BASE.replace("role: builder", 'role: "builder\\n"'), "agents[0].role"),
        ("fleet-newline", BASE.replace("{name: demo}", '{name: "demo\\n"}'), "metadata.name"),
        ("image-empty", agent('image: ""'), "agents[0].image"),
        ("image-bad", agent("image: 'Not An/Image'"), "agents[0].image"),
        ("env-home", agent("env: {HOME: /x}"), "agents[0].env"),
        ("env-agentctl", agent("env: {AGENTCTL_AGENT: x}"), "agents[0].env"),
        ("env-agent-name", agent("env: {AGENT_NAME: x}"), "agents[0].env"),
        ("secret-env-reserved", agent("secrets: [{name: S, from_env: S, env: HOME}]"), "env"),
        ("target-root", agent("volumes: [{source: /srv, target: /}]"), "volumes[0].target"),
        ("target-ws", agent("volumes: [{source: /srv, target: /workspace/x}]"), "target"),
        ("target-secrets", agent("volumes: [{source: /srv, target: /run/secrets}]"), "target"),
        ("target-dotdot", agent("volumes: [{source: /srv, target: /data/../state}]"), "target"),
        ("target-colon", agent("volumes: [{source: /srv, target: '/data:ro'}]"), "target"),
        ("source-dotdot", agent("volumes: [{source: /tmp/../etc, target: /d}]"), "source"),
        ("source-slashes", agent("volumes: [{source: //etc, target: /d}]"), "source"),
        ("source-root-ssh", agent("volumes: [{source: ~root/.ssh, target: /d}]"), "source"),
        ("source-other-ssh", agent("volumes: [{source: ~bob/.ssh/id, target: /d}]"), "source"),
        ("source-proc", agent("volumes: [{source: /proc/1/root, target: /d}]"), "source"),
        ("source-dev", agent("volumes: [{source: /dev, target: /d}]"), "source"),
        ("source-state", agent("volumes: [{source: /var/lib/agentctl, target: /d}]"), "source"),
        ("sync-inf", BASE + "sync: {interval: .inf}\n", "sync.interval"),
    ],
)
def test_what_apply_cannot_do_is_a_located_error(name: str, text: str, where: str) -> None:
    found = problems(text)
    assert found, f"{name}: accepted"
    assert any(where in p for p in found), found
    assert all(p.startswith("f.yaml:") for p in found)


def test_a_normal_home_path_and_anchors_in_x_keys_are_fine() -> None:
    text = (
        "x-common: &common {memory: 256m}\n"
        + BASE
        + "    resources: {<<: *common, cpus: 0.5}\n"
        + "    volumes: [{source: ~/datasets, target: /data, read_only: true}]\n"
    )
    loaded = parse_fleet(text, "f.yaml")
    assert loaded.fleet.agents[0].resources.memory == "256m"


def test_merge_key_problems_are_reported_at_their_place() -> None:
    text = BASE.replace("  - role: builder\n", "  - <<: {image: 5, bogus: 1}\n    role: builder\n")
    found = problems(text)
    assert any(p.startswith("f.yaml:5:") and "agents[0].image" in p for p in found), found
    assert any("unknown key 'bogus'" in p for p in found), found


def test_an_alias_bomb_is_refused_quickly() -> None:
    lines = ["x-a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"x-a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "\n".join(lines) + "\n" + BASE.replace("[sh, -c,", "[*a8, sh, -c,")
    started = time.monotonic()
    found = problems(text)
    assert time.monotonic() - started < 10  # a bound, not a benchmark: minutes before
    assert any("expands to more than" in p for p in found), found


def test_a_fifo_and_a_device_are_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fleet.yaml"
    os.mkfifo(fifo)
    done: list[str] = []

    def read() -> None:
        with pytest.raises(FleetError) as info:
            read_fleet(fifo)
        done.append(str(info.value.problems[0]))

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(10)
    assert done and "not a regular file" in done[0]
    with pytest.raises(FleetError) as info:
        read_fleet(Path("/dev/zero"))
    assert "not a regular file" in str(info.value.problems[0])


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(BASE + "#" * (2 * 1024 * 1024) + "\n")
    with pytest.raises(FleetError) as info:
        read_fleet(big)
    assert "limited to 1 MiB" in str(info.value.problems[0])


# -- fuzz -------------------------------------------------------------------------------

KEYS = [
    "apiVersion", "kind", "metadata", "name", "agents", "role", "replicas", "command",
    "image", "resources", "memory", "cpus", "pids", "env", "volumes", "source", "target",
    "secrets", "from_env", "from_file", "labels", "defaults", "repo", "path", "url",
    "sync", "interval", "grace_seconds", "restart", "restart_retries", "network", "<<",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["agentctl.io/v1", "Fleet", "demo", "builder", "512m", "/etc", "~/.ssh"]),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=40,
)


def _dump(doc: object) -> str | None:
    import io

    yaml = YAML(typ="safe", pure=True)
    buf = io.StringIO()
    try:
        yaml.dump(doc, buf)
    except Exception:
        return None
    return buf.getvalue()


def _check(text: str) -> None:
    try:
        loaded = parse_fleet(text, "fuzz.yaml")
    except FleetError as exc:
        assert exc.problems and all(str(p).startswith("fuzz.yaml:") for p in exc.problems)
        return
    # Accepted: it must render into specs apply can send (finite, bounded, no NUL).
    for spec in render_fleet(loaded.fleet, home=Path("/home/u")):
        assert spec.memory_bytes is None or 0 < spec.memory_bytes <= 1024**4
        assert spec.nano_cpus is None or spec.nano_cpus > 0
        assert math.isfinite(spec.grace_seconds)
        assert all("\x00" not in part for part in spec.command)
        assert "\n" not in spec.name


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_fuzz_structured_documents_never_crash(doc: object) -> None:
    text = _dump(doc)
    if text is not None:
        _check(text)


@settings(max_examples=300, deadline=2000)
@given(st.text(max_size=300))
def test_fuzz_raw_text_never_crashes(text: str) -> None:
    _check(text)


@settings(max_examples=150, deadline=2000)
@given(
    st.dictionaries(
        st.sampled_from(["image", "resources", "env", "volumes", "grace_seconds", "replicas"]),
        documents,
        max_size=3,
    )
)
def test_fuzz_agent_fields_of_an_otherwise_valid_fleet(fields: dict[str, object]) -> None:
    doc = {
        "apiVersion": "agentctl.io/v1",
        "kind": "Fleet",
        "metadata": {"name": "demo"},
        "agents": [{"role": "builder", "command": ["sleep", "1"], **fields}],
    }
    text = _dump(doc)
    if text is not None:
        _check(text)
