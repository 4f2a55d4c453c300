"""The coordinator's state machine, driven with lines and a fake clock (no I/O)."""

from __future__ import annotations

import itertools
import json
from typing import Any

from agentctl_swarm.coordinator import grammar as g
from agentctl_swarm.coordinator.board import Board, BoardConfig, Decisions


class Harness:
    """A board, a clock, and what it said; agents speak as ``@<name>``."""

    def __init__(self, **config: Any) -> None:
        ids = itertools.count(1)
        self.board = Board(BoardConfig(**config), new_id=lambda: f"t-{next(ids)}")
        self.now = 1000.0
        self.db: dict[tuple[str, str], Any] = {}
        self.logs: list[tuple[str, str, dict[str, Any]]] = []

    def _take(self, d: Decisions) -> list[str]:
        for rec in d.records:
            self.db[(rec.kind, rec.key)] = json.loads(json.dumps(rec.value))
        self.logs += [(e.level, e.event, e.fields) for e in d.logs]
        return [g.format_line(m) for m in d.lines]

    def say(self, line: str, name: str = "alice", sender: str | None = None) -> list[str]:
        out: list[str] = []
        msgs = g.parse_message(line)
        assert msgs, f"not a coordination line: {line!r}"
        for m in msgs:
            out += self._take(self.board.handle(m, sender or f"@{name}", name, self.now))
        return out

    def tick(self, dt: float = 0.0, **kw: Any) -> list[str]:
        self.now += dt
        return self._take(self.board.tick(self.now, **kw))

    def task(self, tid: str) -> Any:
        return self.board.tasks[tid]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [f for _, e, f in self.logs if e == event]

    def restart(self, **config: Any) -> Harness:
        """A new board rebuilt from what this one persisted."""
        h = Harness(**config)
        h.now = self.now
        tasks = [v for (k, _), v in self.db.items() if k == "task"]
        agents = [v for (k, _), v in self.db.items() if k == "agent"]
        meta = {key: v for (k, key), v in self.db.items() if k == "meta"}
        h.board = Board.restore(BoardConfig(**config), tasks, agents, meta, self.now)
        h.db = dict(self.db)
        return h


def claim(h: Harness, tid: str, name: str, role: str = "builder") -> list[str]:
    return h.say(f"CLAIM id={tid} agent={name} role={role}", name)


# --------------------------------------------------------------------------- tasks


def test_task_with_id_is_recorded_without_reannouncing() -> None:
    h = Harness()
    assert h.say("TASK id=t-a role=builder priority=5 -- do it", "person") == []
    t = h.task("t-a")
    assert (t.state, t.role, t.priority, t.prompt, t.posted_by) == (
        "queued", "builder", 5, "do it", "person",
    )  # fmt: skip
    assert (t.timeout, t.retries) == (1800, 2)  # the coordinator's defaults
    assert ("task", "t-a") in h.db


def test_task_without_id_gets_one_and_is_announced_with_defaults() -> None:
    h = Harness(default_retries=1, default_timeout=60)
    out = h.say("TASK role=builder -- fix the bug", "person")
    assert out == ["TASK id=t-1 role=builder priority=0 timeout=60 retries=1 -- fix the bug"]
    assert h.say("TASK -- anyone", "person") == [
        "TASK id=t-2 role=any priority=0 timeout=60 retries=1 -- anyone"
    ]


def test_duplicate_task_id_is_ignored_and_logged() -> None:
    h = Harness()
    h.say("TASK id=t-a role=builder -- one", "person")
    assert h.say("TASK id=t-a role=builder -- other", "mallory") == []
    assert h.task("t-a").prompt == "one"
    assert h.events("coordinator.task_duplicate")[0]["hint"]


# --------------------------------------------------------------------------- claims


def test_racing_claims_first_wins_others_rejected() -> None:
    h = Harness()
    h.say("TASK id=t-a role=builder -- x", "person")
    assert claim(h, "t-a", "b1") == ["ASSIGN id=t-a agent=b1 attempt=1"]
    assert claim(h, "t-a", "b2") == ['REJECTED id=t-a agent=b2 reason="assigned to b1"']
    assert claim(h, "t-a", "b3") == ['REJECTED id=t-a agent=b3 reason="assigned to b1"']
    assert claim(h, "t-a", "b1") == ["ASSIGN id=t-a agent=b1 attempt=1"]  # idempotent
    t = h.task("t-a")
    assert (t.state, t.assignee, t.attempts) == ("assigned", "b1", 1)
    assert h.board.agents["b1"].task == "t-a"


def test_claims_refused_for_unknown_final_and_wrong_role() -> None:
    h = Harness()
    assert claim(h, "t-zz", "b1") == ['REJECTED id=t-zz agent=b1 reason="unknown task"']
    h.say("TASK id=t-r role=reviewer -- review", "person")
    assert claim(h, "t-r", "b1") == ['REJECTED id=t-r agent=b1 reason="needs role reviewer"']
    h.say("TASK id=t-any -- anything", "person")
    assert claim(h, "t-any", "b1") == ["ASSIGN id=t-any agent=b1 attempt=1"]
    h.say("DONE id=t-any agent=b1", "b1")
    assert claim(h, "t-any", "b2") == ['REJECTED id=t-any agent=b2 reason="task is done"']


def test_upstream_colon_claim_matches_by_prompt() -> None:
    h = Harness()
    h.say("TASK id=t-a -- Write the docs", "person")
    assert h.say("CLAIM: write the docs", "carol") == ["ASSIGN id=t-a agent=carol attempt=1"]
    assert h.say("CLAIM: something else", "dave") == []  # chatter-like: no reply


def test_an_agent_never_holds_two_tasks() -> None:
    h = Harness(assign_grace=15)
    h.say("TASK id=t-1 -- one", "p")
    h.say("TASK id=t-2 -- two", "p")
    assert claim(h, "t-1", "b1") == ["ASSIGN id=t-1 agent=b1 attempt=1"]
    assert claim(h, "t-2", "b1") == []  # waits: b1 is busy
    assert h.task("t-2").state == "queued"
    # Much later, an idle runner claiming again means it lost its task.
    h.now += 20
    h.say("HEARTBEAT agent=b1 role=builder state=active id=t-1", "b1")
    out = claim(h, "t-2", "b1")
    assert out == ["ASSIGN id=t-2 agent=b1 attempt=1"]
    assert h.task("t-1").state == "queued"
    assert h.task("t-1").history[-1].outcome == "lost"


# --------------------------------------------------------------------------- limits


def test_max_active_second_task_assigned_only_after_done() -> None:
    h = Harness(max_active=1)
    h.say("TASK id=t-1 -- one", "p")
    h.say("TASK id=t-2 -- two", "p")
    assert claim(h, "t-1", "b1") == ["ASSIGN id=t-1 agent=b1 attempt=1"]
    assert claim(h, "t-2", "b2") == []
    assert h.board.gate() == "max-active 1 reached"
    assert h.tick(5) == []
    out = h.say("DONE id=t-1 agent=b1 tokens_in=10 tokens_out=5 -- ok", "b1")
    assert out == ["ASSIGN id=t-2 agent=b2 attempt=1"]
    assert h.task("t-1").state == "done" and h.task("t-1").summary == "ok"


def test_freed_slot_goes_to_priority_then_age_and_losers_get_one_rejection() -> None:
    h = Harness(max_active=1)
    h.say("TASK id=t-0 -- running", "p")
    claim(h, "t-0", "b0")
    h.say("TASK id=t-low priority=0 -- low", "p")
    h.now += 1
    h.say("TASK id=t-high priority=9 -- high", "p")
    for name in ("b1", "b2", "b3"):
        claim(h, "t-high", name)
    claim(h, "t-low", "b4")
    out = h.say("DONE id=t-0 agent=b0", "b0")
    assert out == [
        "ASSIGN id=t-high agent=b1 attempt=1",
        'REJECTED id=t-high agent=b2,b3 reason="assigned to b1"',
    ]
    assert h.task("t-low").state == "queued"
    assert h.say("DONE id=t-high agent=b1", "b1") == ["ASSIGN id=t-low agent=b4 attempt=1"]


def test_freed_slot_without_claimants_reannounces_next_queued() -> None:
    h = Harness(max_active=1)
    h.say("TASK id=t-0 -- running", "p")
    claim(h, "t-0", "b0")
    h.say("TASK id=t-1 priority=1 -- next", "p")
    out = h.say("DONE id=t-0 agent=b0", "b0")
    assert out == ["TASK id=t-1 role=any priority=1 timeout=1800 retries=2 -- next"]


def test_token_budget_stops_assigning_until_raised() -> None:
    h = Harness(token_budget=100)
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    h.say("STATUS id=t-1 agent=b1 tokens_in=30 -- working", "b1")
    h.say("DONE id=t-1 agent=b1 tokens_in=60 tokens_out=50", "b1")
    assert h.board.tokens_used == 110
    h.say("TASK id=t-2 -- two", "p")
    assert claim(h, "t-2", "b2") == []
    assert h.board.gate() == "token budget of 100 used up"
    assert h.tick(60) == []
    out = h._take(h.board.configure(BoardConfig(token_budget=1000), h.now))
    assert out == ["ASSIGN id=t-2 agent=b2 attempt=1"]


def test_cost_budget() -> None:
    h = Harness(cost_budget_usd=0.5)
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    h.say("FAIL id=t-1 agent=b1 reason=crash cost_usd=0.6 -- boom", "b1")
    assert h.board.gate() == "cost budget of $0.5 used up"
    assert claim(h, "t-1", "b2") == []
    assert h.task("t-1").cost_usd == 0.6


# --------------------------------------------------------------------------- failures


def test_fail_requeues_until_retry_limit_and_keeps_every_reason() -> None:
    h = Harness()
    h.say("TASK id=t-1 retries=1 -- flaky", "p")
    claim(h, "t-1", "b1")
    out = h.say("FAIL id=t-1 agent=b1 reason=crash -- segfault", "b1")
    assert out == ["TASK id=t-1 role=any priority=0 timeout=1800 retries=1 -- flaky"]
    t = h.task("t-1")
    assert (t.state, t.attempts) == ("queued", 1)
    assert claim(h, "t-1", "b2") == ["ASSIGN id=t-1 agent=b2 attempt=2"]
    assert h.say("FAIL id=t-1 agent=b2 reason=context -- too long", "b2") == []
    assert (t.state, t.attempts) == ("failed", 2)
    doc = h.db[("task", "t-1")]
    assert [(f["agent"], f["reason"], f["detail"]) for f in doc["failures"]] == [
        ("b1", "crash", "segfault"),
        ("b2", "context", "too long"),
    ]
    assert claim(h, "t-1", "b3") == ['REJECTED id=t-1 agent=b3 reason="task is failed"']


def test_requeue_when_assignee_stops_heartbeating() -> None:
    h = Harness(heartbeat_interval=30, heartbeat_misses=3)
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    h.say("STATUS id=t-1 agent=b1 -- started", "b1")
    for _ in range(5):  # alive: heartbeats while active
        assert h.tick(30) == []
        h.say("HEARTBEAT agent=b1 role=builder state=active id=t-1", "b1")
    assert h.task("t-1").state == "running"
    # three missed heartbeats do not take a running task away (its session may be fine)
    assert h.tick(91) == []
    assert h.task("t-1").state == "running"
    assert h.tick(508) == []
    out = h.tick(2)  # 600 s of silence: the agent is gone
    assert out == [
        'CANCEL id=t-1 agent=b1 reason="no heartbeat"',
        "TASK id=t-1 role=any priority=0 timeout=1800 retries=2 -- one",
    ]
    t = h.task("t-1")
    assert (t.state, t.attempts, t.history[-1].outcome) == ("queued", 1, "lost")
    assert h.board.agents["b1"].task is None


def test_requeue_when_an_assignee_never_starts_and_goes_silent() -> None:
    h = Harness(heartbeat_interval=30, heartbeat_misses=3)
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    assert h.tick(89) == []
    assert h.tick(2)[0] == 'CANCEL id=t-1 agent=b1 reason="no heartbeat"'
    assert h.task("t-1").state == "queued"


def test_no_deaths_while_the_coordinator_itself_is_cut_off() -> None:
    h = Harness(heartbeat_interval=10, heartbeat_misses=3)
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    assert h.tick(100, watch_agents=False) == []
    h._take(h.board.reconnected(h.now))
    assert h.tick(25) == []
    assert h.task("t-1").state == "assigned"
    assert h.tick(10)  # now it really is silent
    assert h.task("t-1").state == "queued"


def test_requeue_on_timeout_tells_the_assignee_to_stop() -> None:
    h = Harness(heartbeat_interval=1000)
    h.say("TASK id=t-1 timeout=60 -- slow", "p")
    claim(h, "t-1", "b1")
    assert h.tick(60) == []
    out = h.tick(1)
    assert out[0] == "CANCEL id=t-1 agent=b1 reason=timeout"
    assert h.task("t-1").history[-1].outcome == "timeout"
    assert h.task("t-1").state == "queued"


def test_idle_heartbeat_from_assignee_means_the_task_was_lost() -> None:
    h = Harness(assign_grace=15)
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    h.now += 5
    assert h.say("HEARTBEAT agent=b1 role=builder state=idle", "b1") == []  # in flight
    assert h.task("t-1").state == "assigned"
    h.now += 20
    out = h.say("HEARTBEAT agent=b1 role=builder state=idle", "b1")
    assert out[0].startswith("TASK id=t-1 ")
    assert h.task("t-1").history[-1].reason == "the agent reports itself idle"


def test_unclaim_requeues_without_using_an_attempt_and_cools_down() -> None:
    h = Harness(reannounce_interval=30)
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    out = h.say("UNCLAIM id=t-1 agent=b1 reason=no-slot", "b1")
    assert out == ["TASK id=t-1 role=any priority=0 timeout=1800 retries=2 -- one"]
    assert h.task("t-1").attempts == 0
    assert claim(h, "t-1", "b1") == []  # not straight back (no tight loop)
    assert claim(h, "t-1", "b2") == [
        "ASSIGN id=t-1 agent=b2 attempt=2",
        'REJECTED id=t-1 agent=b1 reason="assigned to b2"',
    ]


def test_late_lines_from_a_former_assignee_are_ignored_and_logged() -> None:
    h = Harness(heartbeat_interval=10, heartbeat_misses=2)
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    h.tick(21)  # b1 silent: requeued
    claim(h, "t-1", "b2")
    assert h.say("STATUS id=t-1 agent=b1 -- still here", "b1") == []
    assert h.say("DONE id=t-1 agent=b1 tokens_in=5", "b1") == []
    t = h.task("t-1")
    assert (t.state, t.assignee) == ("assigned", "b2")
    late = h.events("coordinator.late_line")
    assert [e["kind"] for e in late] == ["STATUS", "DONE"]
    # b1 says it works on t-1: told to stop, once per heartbeat interval
    hb = "HEARTBEAT agent=b1 role=builder state=active id=t-1"
    assert h.say(hb, "b1") == ['CANCEL id=t-1 agent=b1 reason="not assigned to you"']
    assert h.say(hb, "b1") == []
    h.now += 10
    assert h.say(hb, "b1") == ['CANCEL id=t-1 agent=b1 reason="not assigned to you"']
    assert h.say("DONE id=t-1 agent=b2 -- done", "b2") == []
    assert t.state == "done" and t.tokens_in == 0


# --------------------------------------------------------------------------- quota


def test_quota_pauses_then_probes_one_idle_agent_until_it_succeeds() -> None:
    h = Harness(probe_interval=300, heartbeat_interval=200)
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    h.say("HEARTBEAT agent=b2 role=builder state=idle", "b2")
    assert h.say("QUOTA id=t-1 agent=b1 retry_after=30", "b1") == []
    t = h.task("t-1")
    assert (t.state, t.attempts, t.history[-1].outcome) == ("queued", 0, "quota")
    assert h.board.quota.paused
    assert claim(h, "t-1", "b2") == []  # assigning paused: the claim waits
    assert h.tick(299) == []
    h.say("HEARTBEAT agent=b2 role=builder state=idle", "b2")
    h.say("HEARTBEAT agent=b1 role=builder state=idle", "b1")
    out = h.tick(1)
    assert len(out) == 1 and out[0].startswith("PROBE id=p-1 agent=")
    prober = out[0].rsplit("=", 1)[1]
    assert h.tick(1) == []  # one probe at a time
    assert h.say(f"QUOTA id=p-1 agent={prober} retry_after=10", prober) == []
    assert h.board.quota.paused
    assert h.tick(299) == []
    for n in ("b1", "b2"):
        h.say(f"HEARTBEAT agent={n} role=builder state=idle", n)
    out = h.tick(1)
    assert out[0].startswith("PROBE id=p-2 agent=")
    prober = out[0].rsplit("=", 1)[1]
    out = h.say(f"DONE id=p-2 agent={prober}", prober)
    assert not h.board.quota.paused
    assert out == ["ASSIGN id=t-1 agent=b2 attempt=2"]  # the waiting claimant


def test_unanswered_probe_times_out_and_another_follows() -> None:
    h = Harness(probe_interval=60, probe_timeout=30, heartbeat_interval=1000)
    h.say("HEARTBEAT agent=b1 role=builder state=idle", "b1")
    h.say("QUOTA agent=b1", "b1")
    assert h.tick(60) == ["PROBE id=p-1 agent=b1"]
    assert h.tick(31) == []
    assert h.events("coordinator.probe_timeout")
    assert h.tick(60) == ["PROBE id=p-2 agent=b1"]
    assert h.say("DONE id=p-1 agent=b1", "b1") == []  # the stale probe answers nothing
    assert h.board.quota.paused


# --------------------------------------------------------------------------- blocked


def test_blocked_agent_is_not_assigned_again_until_retry() -> None:
    h = Harness()
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    out = h.say("BLOCKED id=t-1 agent=b1 reason=auth -- 401 invalid x-api-key", "b1")
    assert out == ["TASK id=t-1 role=any priority=0 timeout=1800 retries=2 -- one"]
    assert h.task("t-1").attempts == 0
    blocked = h.events("coordinator.agent_blocked")[0]
    assert blocked["reason"] == "auth" and "RETRY agent=b1" in blocked["hint"]
    assert claim(h, "t-1", "b1") == ['REJECTED id=t-1 agent=b1 reason="b1 is blocked (auth)"']
    assert claim(h, "t-1", "b2") == ["ASSIGN id=t-1 agent=b2 attempt=2"]
    h.say("DONE id=t-1 agent=b2", "b2")
    h.say("TASK id=t-2 -- two", "p")
    assert claim(h, "t-2", "b1")[0].startswith("REJECTED")
    h.say("RETRY agent=b1", "person")
    assert claim(h, "t-2", "b1") == ["ASSIGN id=t-2 agent=b1 attempt=1"]


def test_fail_with_auth_or_quota_reason_is_read_as_blocked_or_quota() -> None:
    h = Harness()
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    h.say("FAIL id=t-1 agent=b1 reason=auth -- 401", "b1")
    assert h.board.agents["b1"].blocked == "auth"
    claim(h, "t-1", "b2")
    h.say("FAIL id=t-1 agent=b2 reason=quota -- 429", "b2")
    assert h.board.quota.paused and h.task("t-1").attempts == 0


# --------------------------------------------------------------------------- people


def test_cancel_queued_and_running_tasks() -> None:
    h = Harness()
    h.say("TASK id=t-1 -- one", "p")
    assert h.say("CANCEL id=t-1", "alice") == ['CANCEL id=t-1 reason="cancelled by alice"']
    assert h.task("t-1").state == "cancelled"
    h.say("TASK id=t-2 -- two", "p")
    claim(h, "t-2", "b1")
    assert h.say("CANCEL id=t-2 reason=obsolete", "alice") == [
        "CANCEL id=t-2 agent=b1 reason=obsolete"
    ]
    t = h.task("t-2")
    assert (t.state, t.cancel_reason, t.attempts) == ("cancelled", "obsolete", 0)
    assert h.board.agents["b1"].task is None
    assert h.say("DONE id=t-2 agent=b1", "b1") == []  # late
    assert t.state == "cancelled"
    assert h.say("CANCEL id=t-2", "alice") == []
    assert h.say("CANCEL id=t-404", "alice") == []
    assert h.events("coordinator.cancel_unknown")


def test_retry_requeues_failed_or_cancelled_with_fresh_attempts() -> None:
    h = Harness()
    h.say("TASK id=t-1 retries=0 -- one", "p")
    claim(h, "t-1", "b1")
    h.say("FAIL id=t-1 agent=b1 reason=crash", "b1")
    assert h.task("t-1").state == "failed"
    out = h.say("RETRY id=t-1", "alice")
    assert out == ["TASK id=t-1 role=any priority=0 timeout=1800 retries=0 -- one"]
    t = h.task("t-1")
    assert (t.state, t.attempts, len(t.history)) == ("queued", 0, 1)
    assert claim(h, "t-1", "b2") == ["ASSIGN id=t-1 agent=b2 attempt=2"]
    assert h.say("RETRY id=t-1", "alice") == []  # running: nothing to retry
    assert h.events("coordinator.retry_refused")


# --------------------------------------------------------------------------- names


def test_names_are_bound_to_the_first_sender_id() -> None:
    h = Harness(heartbeat_interval=10, heartbeat_misses=3)
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    # mallory claims to be b1 from another id: ignored
    assert h.say("DONE id=t-1 agent=b1", "mallory", sender="@mallory") == []
    assert h.task("t-1").state == "assigned"
    assert h.events("coordinator.name_taken")[0]["sender"] == "@mallory"
    # a person without agent= speaks as their own name
    assert h.say("CLAIM id=t-1", "carol") == ['REJECTED id=t-1 agent=carol reason="assigned to b1"']
    # after b1 has been silent past the death window, a new identity may take the name
    h.tick(31)
    h.say("HEARTBEAT agent=b1 role=builder state=idle", "b1", sender="@b1-new")
    assert h.board.agents["b1"].agent_id == "@b1-new"


def test_lines_only_a_coordinator_sends_are_ignored_from_others() -> None:
    h = Harness()
    h.say("TASK id=t-1 -- one", "p")
    assert h.say("ASSIGN id=t-1 agent=b9", "other-coordinator") == []
    assert h.task("t-1").state == "queued"
    assert h.events("coordinator.foreign_line")


def test_idle_agent_hears_about_queued_work_it_missed() -> None:
    h = Harness()
    h.say("TASK id=t-1 role=builder -- one", "p")
    h.now += 10
    out = h.say("HEARTBEAT agent=b1 role=builder state=idle", "b1")
    assert out == ["TASK id=t-1 role=builder priority=0 timeout=1800 retries=2 -- one"]
    assert h.say("HEARTBEAT agent=b1 role=builder state=idle", "b1") == []  # only on change
    assert h.say("HEARTBEAT agent=r1 role=reviewer state=idle", "r1") == []


def test_a_restarted_idle_agent_hears_about_queued_work_at_once() -> None:
    # The re-announce backoff has grown long; the agent restarts (a new connection under
    # its name, or back after silence) and was idle before: it must not wait minutes.
    h = Harness(reannounce_interval=30, heartbeat_interval=10, heartbeat_misses=3)
    h.say("HEARTBEAT agent=b1 role=builder state=idle", "b1", sender="@b1-a")
    h.say("TASK id=t-1 role=builder -- one", "p")
    for _ in range(4):
        h.tick(600)  # announced each time; backoff now at its cap
    h.now += 10
    assert h.say("HEARTBEAT agent=b1 role=builder state=idle", "b1", sender="@b1-b") == [
        "TASK id=t-1 role=builder priority=0 timeout=1800 retries=2 -- one"
    ]
    h.now += 6
    assert h.say("HEARTBEAT agent=b1 role=builder state=idle", "b1", sender="@b1-b") == []
    h.now += 40  # silent past the death window, then back on the same connection
    assert len(h.say("HEARTBEAT agent=b1 role=builder state=idle", "b1", sender="@b1-b")) == 1


def test_unclaimed_queued_task_is_reannounced_with_backoff() -> None:
    h = Harness(reannounce_interval=30)
    h.say("TASK id=t-1 -- one", "p")
    assert h.tick(29) == []
    assert len(h.tick(1)) == 1
    assert h.tick(59) == []
    assert len(h.tick(1)) == 1
    assert h.tick(119) == []
    assert len(h.tick(1)) == 1


# --------------------------------------------------------------------------- restart


def test_restart_from_persisted_state_keeps_every_task_and_assignment() -> None:
    h = Harness(heartbeat_interval=30)
    h.say("TASK id=t-run -- running", "p")
    h.say("TASK id=t-q priority=3 -- queued", "p")
    h.say("TASK id=t-done -- done", "p")
    claim(h, "t-run", "b1")
    h.say("STATUS id=t-run agent=b1 tokens_in=7 -- going", "b1")
    claim(h, "t-done", "b2")
    h.say("DONE id=t-done agent=b2 tokens_in=3 tokens_out=4", "b2")
    h.say("HEARTBEAT agent=b3 role=builder state=idle", "b3")
    h.say("QUOTA agent=b3", "b3")
    h.now += 500  # the coordinator was down a while
    r = h.restart(heartbeat_interval=30)
    b = r.board
    assert {t.id: t.state for t in b.tasks.values()} == {
        "t-run": "running", "t-q": "queued", "t-done": "done",
    }  # fmt: skip
    assert b.tasks["t-run"].assignee == "b1" and b.agents["b1"].task == "t-run"
    assert b.tasks["t-run"].history[0].tokens_in == 7
    assert b.tokens_used == 14
    assert b.agents["b1"].agent_id == "@b1"
    assert b.quota.paused  # the pause survives the restart
    # agents get a fresh death window, not an instant requeue (the probe was due)
    assert [x.split()[0] for x in r.tick(60)] == ["PROBE"]
    r.say("HEARTBEAT agent=b1 role=builder state=active id=t-run", "b1")
    assert r.say("DONE id=t-run agent=b1 -- finished", "b1") == []
    assert b.tasks["t-run"].state == "done"
    # name bindings survived: an impostor is still refused
    r.say("DONE id=t-q agent=b2", "b2", sender="@impostor")
    assert r.events("coordinator.name_taken")


def test_restart_reannounces_queued_tasks() -> None:
    h = Harness()
    h.say("TASK id=t-1 -- one", "p")
    r = h.restart()
    out = r._take(r.board.dispatch(r.now))
    assert out == ["TASK id=t-1 role=any priority=0 timeout=1800 retries=2 -- one"]


def test_snapshot_is_json() -> None:
    h = Harness()
    h.say("TASK id=t-1 -- one", "p")
    claim(h, "t-1", "b1")
    snap = h.board.snapshot(h.now)
    doc = json.loads(json.dumps(snap))
    assert doc["tasks"][0]["assignee"] == "b1"
    assert doc["agents"][0]["alive"] is True
    assert doc["gate"] is None and doc["active"] == 1


def test_a_hold_stops_assigning_until_released() -> None:
    from agentctl_swarm.coordinator.board import Board

    board = Board()
    board.hold("up is stopping", 100.0)
    assert board.gate() == "assigning held: up is stopping"
    board.hold(None, 101.0)
    assert board.gate() is None


def test_a_role_budget_stops_that_role_only_and_warns_at_80_percent() -> None:
    from agentctl_swarm.coordinator.board import Attempt, Board, BoardConfig, TaskRecord

    board = Board(BoardConfig(role_budgets=(("builder", 1000, 0.0),)))
    assert board.role_gate("builder") is None
    task = TaskRecord(id="t-1", role="builder", prompt="p", created_at=0.0)
    task.history.append(Attempt(n=1, agent="a", assigned_at=0.0, tokens_in=850))
    board.tasks["t-1"] = task  # usage as a finished attempt leaves it
    board._check_budgets()
    assert "role builder tokens" in board._budget_warned
    task.history[0].tokens_in = 1000
    assert board.role_gate("builder") == "role builder's token budget of 1000 used up"
    assert board.role_gate("reviewer") is None
