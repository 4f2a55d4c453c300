"""The runner's decisions (pure): claim, promote through the gate, report, demote."""

from __future__ import annotations

from agentctl_swarm.agent.runner_core import End, Phase, RunnerCore, RunResult
from agentctl_swarm.coordinator import grammar as g

COORD = "@c00rd1nat0r00000"


def core(**kw) -> RunnerCore:
    return RunnerCore("swarm-builder-000", "builder", **kw)


def task(tid: str = "t-1", role: str | None = "builder", **kw) -> g.Task:
    return g.Task(id=tid, role=role, text="add a README section", **kw)


def test_idle_claims_a_matching_task_once_and_ignores_other_roles() -> None:
    c = core()
    fx = c.on_message(task())
    assert fx.send == [g.Claim(id="t-1", agent="swarm-builder-000", role="builder")]
    assert c.on_message(task()).send == []  # announced again: no second claim
    assert c.on_message(task("t-2", role="reviewer")).send == []
    assert c.on_message(task("t-3", role=None)).send[0].id == "t-3"  # any role
    assert c.on_message(g.Task(text="no id yet", role="builder")).send == []
    assert c.phase is Phase.IDLE  # claiming starts no process


def test_a_task_for_every_role_is_claimed_as_the_coordinator_announces_it() -> None:
    """`agentctl task add` without --role gives the task role `any`, and the coordinator
    announces it so; a runner that only claimed its own role left it queued forever."""
    for n, role in enumerate(sorted(g.WILDCARD_ROLES)):
        c = core()
        assert c.on_message(task(f"t-{n}", role=role)).send[0].id == f"t-{n}", role
    wild = RunnerCore("swarm-anyone-000", "general")  # an agent of every role
    assert wild.on_message(task("t-9", role="reviewer")).send[0].id == "t-9"


def test_assign_promotes_through_the_gate_then_starts() -> None:
    c = core()
    c.on_message(task(timeout=60, branch="fix/readme"))
    fx = c.on_message(g.Assign(id="t-1", agent="swarm-builder-000", attempt=2), COORD)
    assert fx.gate is not None and fx.start is None and c.phase is Phase.PROMOTING
    fx = c.on_gate(True)
    assert fx.start == fx.start and fx.start.task_id == "t-1" and fx.start.attempt == 2
    assert fx.start.timeout == 60 and fx.start.branch == "fix/readme"
    assert c.phase is Phase.ACTIVE
    hb = c.heartbeat()
    assert (hb.state, hb.id) == ("active", "t-1")


def test_a_refused_gate_unclaims_and_goes_back_to_idle() -> None:
    c = core()
    c.on_message(task())
    c.on_message(g.Assign(id="t-1", agent="swarm-builder-000"), COORD)
    fx = c.on_gate(False, "2 sessions already run on this node")
    assert fx.send == [
        g.Unclaim(id="t-1", agent="swarm-builder-000", reason="2 sessions already run on this node")
    ]
    assert c.phase is Phase.IDLE and c.current is None


def test_only_one_task_at_a_time() -> None:
    c = core()
    c.on_message(task("t-1"))
    c.on_message(task("t-2"))
    c.on_message(g.Assign(id="t-1", agent="swarm-builder-000"))
    c.on_gate(True)
    fx = c.on_message(g.Assign(id="t-2", agent="swarm-builder-000"))
    assert fx.send == [
        g.Unclaim(id="t-2", agent="swarm-builder-000", reason="busy with another task")
    ]
    assert c.on_message(task("t-9")).send == []  # busy agents do not claim


def test_assignments_from_strangers_are_ignored_when_the_coordinator_is_known() -> None:
    c = core(coordinators=frozenset({COORD}))
    c.on_message(task())
    assert (
        c.on_message(g.Assign(id="t-1", agent="swarm-builder-000"), "@mallory0000000000").gate
        is None
    )
    assert c.on_message(g.Assign(id="t-1", agent="swarm-builder-000"), COORD).gate is not None


def test_an_assignment_for_an_unseen_task_is_given_back() -> None:
    fx = core().on_message(g.Assign(id="t-7", agent="swarm-builder-000"))
    assert isinstance(fx.send[0], g.Unclaim) and fx.send[0].id == "t-7"


def _active(c: RunnerCore) -> None:
    c.on_message(task())
    c.on_message(g.Assign(id="t-1", agent="swarm-builder-000"))
    c.on_gate(True)


def test_each_end_is_reported_the_way_the_coordinator_expects() -> None:
    cases = {
        End.SUCCESS: g.Done,
        End.CRASH: g.Fail,
        End.TIMEOUT: g.Fail,
        End.CONTEXT: g.Fail,
        End.KILLED: g.Fail,
        End.QUOTA: g.Quota,
        End.AUTH: g.Blocked,
        End.SHUTDOWN: g.Unclaim,
        End.UNSAVED: g.Unclaim,
    }
    for end, kind in cases.items():
        c = core()
        _active(c)
        fx = c.on_run_end(RunResult(end, detail="d", summary="s", tokens_in=5, tokens_out=7))
        (msg,) = fx.send
        assert isinstance(msg, kind), end
        if kind is g.Done:
            assert (msg.tokens_in, msg.tokens_out, msg.text) == (5, 7, "s")
        if kind is g.Fail:
            assert msg.reason == end.value
        assert c.phase is (Phase.BLOCKED if end is End.AUTH else Phase.IDLE)


def test_blocked_takes_no_work_until_a_person_says_retry() -> None:
    c = core()
    _active(c)
    c.on_run_end(RunResult(End.AUTH))
    assert c.on_message(task("t-2")).send == []
    c.on_message(g.Retry(agent="swarm-builder-000"))
    assert c.phase is Phase.IDLE and c.on_message(task("t-2")).send


def test_cancel_stops_the_current_run_and_a_probe_runs_when_idle() -> None:
    c = core()
    _active(c)
    assert c.on_message(g.Cancel(id="t-1")).stop is End.CANCELLED
    c.on_run_end(RunResult(End.CANCELLED))
    fx = c.on_message(g.Probe(id="p-1", agent="swarm-builder-000"))
    assert fx.start is not None and fx.start.probe
    done = c.on_run_end(RunResult(End.SUCCESS))
    assert isinstance(done.send[0], g.Done) and done.send[0].id == "p-1"


def test_a_configured_coordinator_id_matches_with_or_without_the_at_sign() -> None:
    c = core(coordinators=frozenset({COORD.removeprefix("@")}))
    c.on_message(task())
    assert c.on_message(g.Assign(id="t-1", agent="swarm-builder-000"), COORD).gate is not None


def test_a_success_whose_work_could_not_be_saved_is_given_back_not_done() -> None:
    """Found by the chaos suite: with the workspace's disk full, the commit failed and
    the runner still reported DONE, so the task counted as done and its work was lost."""
    c = core()
    _active(c)
    detail = "fatal: unable to write loose object file: No space left on device"
    (msg,) = c.on_run_end(RunResult(End.UNSAVED, detail=detail, summary="Finished.")).send
    assert isinstance(msg, g.Unclaim)
    assert msg.id == "t-1" and msg.reason == "could not save the work"
    assert "No space left on device" in msg.text
    assert c.phase is Phase.IDLE
