"""The pure landing rules: names, fast-forward only, rewrites kept under dated names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentctl_swarm.sync.refs import (
    check_agent,
    host_branch_refs,
    plan_updates,
    valid_branch_name,
)

A, B, C = "a" * 40, "b" * 40, "c" * 40
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
AG = "swarm-builder-000"
PRE = f"refs/heads/swarm/{AG}/"


@pytest.mark.parametrize("name", ["main", "feature/x", "swarm/a/work", "v1.2", "a-b_c"])
def test_valid_branch_names(name: str) -> None:
    assert valid_branch_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "/x", "x/", "a..b", "a//b", ".hidden", "x/.y", "x.lock", "a b", "a~1", "a^", "a:b",
     "a?", "a*", "a[", "a\\b", "a@{1}", "@", "x.", "\x00", "a" * 300],
)  # fmt: skip
def test_invalid_branch_names(name: str) -> None:
    assert not valid_branch_name(name)


def test_agent_names_are_checked() -> None:
    assert check_agent(AG) == AG
    for bad in ["../x", "A", "a/b", ""]:
        with pytest.raises(ValueError):
            check_agent(bad)


def test_mapping_strips_own_prefix_and_avoids_wip_clashes() -> None:
    mapped, rejected = host_branch_refs(
        AG,
        {f"swarm/{AG}/work": A, "work": B, "wip": C, "wip/x": C, "feature/y": A, "bad..": A,
         "nosha": "zz"},
    )  # fmt: skip
    assert mapped[f"swarm/{AG}/work"] == PRE + "work"
    assert mapped["work"] == PRE + "_/work"  # the prefixed branch wins the short name
    assert mapped["wip"] == PRE + "_/wip"
    assert mapped["wip/x"] == PRE + "_/wip/x"
    assert mapped["feature/y"] == PRE + "feature/y"
    assert set(rejected) == {"bad..", "nosha"}


def test_plan_creates_fast_forwards_and_skips_unchanged() -> None:
    host = {PRE + "work": A, PRE + "other": B}
    plan = plan_updates(
        AG, {"work": B, "other": B, "new": C}, None, host, lambda old, new: True, NOW
    )
    by_ref = {u.ref: u for u in plan.updates}
    assert by_ref[PRE + "work"].reason == "fast-forward" and by_ref[PRE + "work"].old == A
    assert by_ref[PRE + "new"].reason == "create" and by_ref[PRE + "new"].old is None
    assert PRE + "other" not in by_ref


def test_rewrite_keeps_old_tip_under_dated_name() -> None:
    backup = f"refs/heads/swarm-rewritten/{AG}/work/20260102T030405Z"
    host = {PRE + "work": A, backup: C}  # an earlier rewrite in the same second
    plan = plan_updates(AG, {"work": B}, None, host, lambda old, new: False, NOW)
    assert [(u.ref, u.new, u.old, u.reason) for u in plan.updates] == [
        (backup + "-2", A, None, "backup"),
        (PRE + "work", B, A, "rewritten"),
    ]


def test_container_deleting_a_branch_never_deletes_the_host_ref() -> None:
    plan = plan_updates(AG, {}, None, {PRE + "gone": A}, lambda o, n: True, NOW)
    assert plan.updates == []


def test_wip_is_replaced_as_a_snapshot() -> None:
    plan = plan_updates(AG, {}, B, {PRE + "wip": A}, lambda o, n: False, NOW)
    assert [(u.ref, u.new, u.old, u.reason) for u in plan.updates] == [
        (PRE + "wip", B, A, "snapshot")
    ]
    assert plan_updates(AG, {}, "nope", {}, lambda o, n: True, NOW).rejected == {
        "<wip>": "snapshot is not a commit id"
    }
