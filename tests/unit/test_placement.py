"""Placing agents on nodes (pure): spread, selectors, capacity, stability, and what a
fleet file that cannot be placed says; the planner's moves and second copies."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from agentctl_swarm.controller.planner import Kind, plan
from agentctl_swarm.fleet.loader import FleetError, parse_fleet
from agentctl_swarm.fleet.placement import place
from agentctl_swarm.fleet.render import render_fleet
from tests.unit.test_planner import seen

HEAD = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {name: n}
"""


def fleet(*parts: str):
    return parse_fleet(HEAD + "".join(textwrap.dedent(p) for p in parts), "fleet.yaml").fleet


NODES = """\
nodes:
  - {name: a, url: "unix:///run/a.sock", labels: {zone: east}}
  - {name: b, url: "ssh://core@b.example/run/podman/podman.sock", labels: {zone: west}}
  - {name: c, url: "tcp://127.0.0.1:8888", capacity: 1, labels: {zone: west, gpu: "yes"}}
"""


def test_without_nodes_everything_is_local() -> None:
    f = fleet("agents: [{role: w, replicas: 2, command: [sleep, '1']}]")
    assert place(f) == {"swarm-w-000": "local", "swarm-w-001": "local"}


def test_spread_by_role_then_by_load_then_file_order() -> None:
    f = fleet(NODES, """\
        agents:
          - {role: w, replicas: 4, command: [sleep, '1']}
          - {role: r, replicas: 2, command: [sleep, '1']}
        """)  # fmt: skip
    got = place(f)
    assert [got[f"swarm-w-00{i}"] for i in range(4)] == ["a", "b", "c", "a"]
    # c is full (capacity 1); r spreads over a and b, fewest agents first: b then a
    assert [got["swarm-r-000"], got["swarm-r-001"]] == ["b", "a"]


def test_node_selector_and_capacity() -> None:
    f = fleet(NODES, """\
        agents:
          - {role: g, replicas: 1, command: [sleep, '1'], node_selector: {gpu: "yes"}}
          - {role: w, replicas: 3, command: [sleep, '1'], node_selector: {zone: west}}
        """)  # fmt: skip
    got = place(f)
    assert got["swarm-g-000"] == "c"
    assert {got[f"swarm-w-00{i}"] for i in range(3)} == {"b"}


def test_placement_is_stable_across_reapply_and_scale() -> None:
    f = fleet(NODES, "agents: [{role: w, replicas: 3, command: [sleep, '1']}]\n")
    first = place(f)
    # where they run now is kept, even when the spread would choose otherwise
    moved = {**first, "swarm-w-000": "b", "swarm-w-001": "b"}
    again = place(f, moved)
    assert {k: again[k] for k in moved} == moved
    # scaling up adds agents without moving the others
    bigger = fleet(NODES, "agents: [{role: w, replicas: 5, command: [sleep, '1']}]\n")
    grown = place(bigger, first)
    assert {k: grown[k] for k in first} == first


def test_new_agents_avoid_a_node_that_is_down_and_old_ones_stay_on_it() -> None:
    f = fleet(NODES, "agents: [{role: w, replicas: 3, command: [sleep, '1']}]\n")
    before = place(f)
    assert before["swarm-w-001"] == "b"
    bigger = fleet(NODES, "agents: [{role: w, replicas: 5, command: [sleep, '1']}]\n")
    after = place(bigger, before, avoid={"b"})
    assert after["swarm-w-001"] == "b"  # not moved while b is away
    assert {after["swarm-w-003"], after["swarm-w-004"]} <= {"a", "c"} and after["swarm-w-004"]


def test_an_agent_on_a_removed_or_mismatching_node_is_placed_again() -> None:
    f = fleet(NODES, """\
        agents: [{role: w, replicas: 1, command: [sleep, '1'], node_selector: {zone: west}}]
        """)  # fmt: skip
    assert place(f, {"swarm-w-000": "a"})["swarm-w-000"] in {"b", "c"}
    assert place(f, {"swarm-w-000": "gone"})["swarm-w-000"] in {"b", "c"}


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        (
            "agents: [{role: w, command: [sleep, '1'], node_selector: {zone: mars}}]\n",
            "fleet.yaml:8:",
            "no node matches role 'w''s node_selector (zone=mars)",
        ),
        (
            "agents: [{role: w, replicas: 2, command: [sleep, '1'], "
            "node_selector: {gpu: 'yes'}}]\n",
            "fleet.yaml:8:",
            "are full; raise their capacity",
        ),
    ],
)
def test_a_fleet_that_cannot_be_placed_is_refused_at_the_line(body, where, words) -> None:
    with pytest.raises(FleetError) as err:
        fleet(NODES, body)
    text = "\n".join(err.value.details())
    assert where in text and words in text, text


def test_node_mistakes_are_named() -> None:
    with pytest.raises(FleetError) as err:
        fleet("""\
            nodes:
              - {name: a, url: "http://example.com"}
              - {name: a, url: "unix:///x.sock"}
            agents: [{role: w, command: [sleep, '1']}]
            """)  # fmt: skip
    text = "\n".join(err.value.details())
    assert "is not a Podman connection URL" in text
    with pytest.raises(FleetError) as err:
        fleet("agents: [{role: w, command: [sleep, '1'], node_selector: {a: b}}]\n")
    assert "node_selector needs a `nodes:` section" in "\n".join(err.value.details())


def test_remote_nodes_get_no_local_control_socket() -> None:
    f = fleet(NODES, "agents: [{role: w, replicas: 3, runtime: claude}]\n")
    nodes = {n.name: n for n in f.nodes}
    specs = render_fleet(
        f, home=Path("/h"), control_root=Path("/ctl"),
        placement={a: nodes[n] for a, n in place(f).items()},
    )  # fmt: skip
    by_node = {s.node: s for s in specs}
    assert any(m.target == "/run/agentctl" for m in by_node["a"].mounts)  # unix://: local
    assert not any(m.target == "/run/agentctl" for m in by_node["b"].mounts)  # ssh://
    # where an agent runs is not part of what it is: no recreate when nodes are added
    plain = {s.agent: s for s in render_fleet(f, home=Path("/h"), control_root=Path("/ctl"))}
    assert plain[by_node["a"].agent].spec_hash == by_node["a"].spec_hash


def test_planner_moves_an_agent_and_deletes_a_second_copy() -> None:
    f = fleet(NODES, "agents: [{role: w, replicas: 2, command: [sleep, '1']}]\n")
    specs = render_fleet(f, home=Path("/h"), placement={
        "swarm-w-000": f.nodes[0], "swarm-w-001": f.nodes[1]})  # fmt: skip
    w0, w1 = specs
    observed = [
        replace(seen(w0), node="b"),  # w0 runs on b but belongs on a: moved
        replace(seen(w1), node="b"),  # w1 is where it belongs...
        replace(seen(w1), node="c"),  # ...and a stale copy on c goes
    ]
    p = plan(specs, observed)
    got = [(a.kind, a.name.rsplit("-", 1)[1], a.node, a.reason) for a in p.actions]
    assert (Kind.RECREATE, "000", "a", "moves from node b to a") in got
    assert (Kind.KEEP, "001", "b", "running") in got
    assert any(k is Kind.DELETE and n == "001" and node == "c" for k, n, node, _ in got)
