"""The health monitor's rules (pure): what to do about each agent, and why.

Inputs each pass: what Podman says about the agent's container, what the runner last
reported (through the coordinator: state and when it was last heard), whether the
agent's Claude Code session shows signs of life, memory use, and the clock. Outputs:
decisions with reasons, which `agentctl up` carries out and writes to the events log.

Rules (issue 10; the original JS swarm's, fixed — owl/reference/original-system.md D30):
- a container that exited is started again after a backoff: 1 s doubling to 300 s, reset
  after 10 minutes of stable running; more than 5 restarts within 30 minutes marks the
  agent **degraded**: no more restarts until a person runs `agentctl restart AGENT`;
- an idle agent that missed 3 heartbeats is restarted (its runner is stuck or gone);
- an *active* agent that went quiet is never restarted for that alone: it is checked
  (is Claude Code alive and still writing its stream?) and restarted only when it is not;
- memory near the container's limit raises an alert (once per crossing).

The backoff is the project's one restart policy (core/backoff.py), with every restart
counted towards the breaker (``quick_crash=inf``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

from agentctl_swarm.core.backoff import (
    ExitInfo,
    ExitKind,
    RestartAction,
    RestartPolicy,
    RestartState,
)

CONTAINER_POLICY = RestartPolicy(
    initial=1.0,
    multiplier=2.0,
    cap=300.0,
    stable_after=600.0,
    quick_crash=math.inf,  # every restart counts towards "more than 5 in 30 minutes"
    max_quick_crashes=6,
    window=1800.0,
    fatal_exit_codes=frozenset(),
)
MISSED_HEARTBEATS = 3
MEMORY_ALERT = 0.9  # of the limit


class Verdict(StrEnum):
    OK = "ok"
    WAIT = "wait"  # an exited container, waiting for its backoff delay
    START = "start"  # start the exited container now
    RESTART = "restart"  # restart a running container (stuck runner)
    CHECK = "check"  # an active agent went quiet: look at its Claude Code session
    DEGRADED = "degraded"  # too many restarts: leave it alone until a person says
    ALERT = "alert"  # memory near the limit (the agent keeps running)


@dataclass(frozen=True)
class AgentFacts:
    """What the controller observed about one agent in this pass."""

    agent: str
    container_state: str  # running, exited, created, ... ("absent": no container)
    runner_state: str | None = None  # idle, promoting, active, demoting (coordinator's view)
    last_heard: float | None = None  # epoch seconds of the last heartbeat
    session_alive: bool | None = None  # only known after a CHECK
    memory_used: int | None = None
    memory_limit: int | None = None
    exit_code: int | None = None


@dataclass
class AgentHealth:
    """What the monitor remembers about one agent (persisted in health/<fleet>.json)."""

    restart: RestartState = field(default_factory=CONTAINER_POLICY.fresh)
    restarts: int = 0
    degraded: bool = False
    reason: str = ""
    running_since: float | None = None  # when we last saw it start running
    next_start_at: float | None = None  # an exited container waits until then
    memory_alerted: bool = False
    last_restart: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "restarts": self.restarts,
            "degraded": self.degraded,
            "reason": self.reason,
            "backoff": self.restart.backoff,
            "restart_times": list(self.restart.crash_times),
            "next_start_at": self.next_start_at,
            "last_restart": self.last_restart,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, object]) -> AgentHealth:
        times = tuple(float(t) for t in doc.get("restart_times", []) or [])  # type: ignore[union-attr]
        backoff = float(doc.get("backoff") or CONTAINER_POLICY.initial)  # type: ignore[arg-type]
        restart = CONTAINER_POLICY.resume(RestartState(backoff=backoff, crash_times=times))
        return cls(
            restart=restart,
            restarts=int(doc.get("restarts") or 0),  # type: ignore[call-overload]
            degraded=bool(doc.get("degraded")),
            reason=str(doc.get("reason") or ""),
            next_start_at=_float(doc.get("next_start_at")),
            last_restart=_float(doc.get("last_restart")),
        )


@dataclass(frozen=True)
class Decision:
    agent: str
    verdict: Verdict
    reason: str = ""
    delay: float = 0.0


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass
class HealthMonitor:
    """Per-agent health state and the rules; ``heartbeat_interval`` from the fleet."""

    heartbeat_interval: float
    policy: RestartPolicy = CONTAINER_POLICY
    agents: dict[str, AgentHealth] = field(default_factory=dict)

    def health(self, agent: str) -> AgentHealth:
        return self.agents.setdefault(agent, AgentHealth(restart=self.policy.fresh()))

    def clear(self, agent: str) -> None:
        """`agentctl restart AGENT`: a person looked; start over with a fresh curve."""
        self.agents[agent] = AgentHealth(restart=self.policy.fresh())

    def assess(self, facts: AgentFacts, now: float) -> Decision:
        """The decision for one agent now (records what it needs to remember)."""
        h = self.health(facts.agent)
        if h.degraded:
            return Decision(facts.agent, Verdict.DEGRADED, h.reason)
        if facts.container_state == "running":
            return self._running(facts, h, now)
        if facts.container_state in {"exited", "stopped", "dead"}:
            return self._exited(facts, h, now)
        return Decision(facts.agent, Verdict.OK, f"container {facts.container_state}")

    def _running(self, facts: AgentFacts, h: AgentHealth, now: float) -> Decision:
        if h.running_since is None:
            h.running_since = now
        h.next_start_at = None
        h.restart = self.policy.after_uptime(h.restart, now - h.running_since)
        limit, used = facts.memory_limit, facts.memory_used
        if limit and used is not None:
            high = used >= MEMORY_ALERT * limit
            if high and not h.memory_alerted:
                h.memory_alerted = True
                pct = 100 * used / limit
                return Decision(facts.agent, Verdict.ALERT, f"memory at {pct:.0f}% of its limit")
            if not high:
                h.memory_alerted = False
        missed = MISSED_HEARTBEATS * self.heartbeat_interval
        if facts.last_heard is not None and now - facts.last_heard > missed:
            quiet = f"no heartbeat for {now - facts.last_heard:.0f}s"
            if facts.runner_state in {"active", "promoting", "demoting"}:
                if facts.session_alive is None:
                    return Decision(facts.agent, Verdict.CHECK, f"{quiet} while active")
                if facts.session_alive:
                    return Decision(facts.agent, Verdict.OK, f"{quiet}, but its session is working")
                return self._restart(h, now, facts.agent, f"{quiet} and its session is gone")
            return self._restart(h, now, facts.agent, f"{quiet} while idle")
        return Decision(facts.agent, Verdict.OK)

    def _exited(self, facts: AgentFacts, h: AgentHealth, now: float) -> Decision:
        if h.next_start_at is None:
            uptime = now - h.running_since if h.running_since is not None else 0.0
            exit_ = ExitInfo(code=facts.exit_code, signal=None, kind=ExitKind.CRASH)
            d = self.policy.decide(h.restart, exit_, uptime, now)
            h.restart, h.running_since = d.state, None
            if d.action is RestartAction.DEGRADED:
                return self._degrade(h, facts.agent, d.reason)
            h.next_start_at = now + d.delay
        if now < h.next_start_at:
            left = h.next_start_at - now
            return Decision(
                facts.agent, Verdict.WAIT, f"exited; starting again in {left:.0f}s", left
            )
        h.next_start_at = None
        h.restarts += 1
        h.last_restart = now
        code = f" (exit {facts.exit_code})" if facts.exit_code is not None else ""
        return Decision(facts.agent, Verdict.START, f"container exited{code}")

    def _restart(self, h: AgentHealth, now: float, agent: str, reason: str) -> Decision:
        exit_ = ExitInfo(code=None, signal=None, kind=ExitKind.CRASH)
        uptime = now - h.running_since if h.running_since is not None else 0.0
        d = self.policy.decide(h.restart, exit_, uptime, now)
        h.restart = d.state
        if d.action is RestartAction.DEGRADED:
            return self._degrade(h, agent, d.reason)
        h.restarts += 1
        h.last_restart = now
        h.running_since = None
        return Decision(agent, Verdict.RESTART, reason)

    def _degrade(self, h: AgentHealth, agent: str, why: str) -> Decision:
        h.degraded = True
        h.reason = f"degraded: {why}; `agentctl restart {agent}` clears it"
        return Decision(agent, Verdict.DEGRADED, h.reason)

    def next_start(self, now: float) -> float | None:
        """The earliest time after ``now`` at which an exited agent's backoff is over (the
        controller looks again then, not only on its next interval); None if none waits."""
        due = [
            h.next_start_at
            for h in self.agents.values()
            if not h.degraded and h.next_start_at is not None and h.next_start_at > now
        ]
        return min(due, default=None)

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {name: h.to_dict() for name, h in sorted(self.agents.items())}

    @classmethod
    def restore(cls, heartbeat_interval: float, doc: dict[str, object]) -> HealthMonitor:
        agents = doc.get("agents") if isinstance(doc, dict) else None
        monitor = cls(heartbeat_interval)
        for name, entry in (agents or {}).items():  # type: ignore[union-attr]
            if isinstance(entry, dict):
                monitor.agents[str(name)] = AgentHealth.from_dict(entry)
        return monitor

    def with_interval(self, heartbeat_interval: float) -> HealthMonitor:
        """The same state under a new heartbeat interval (a reload)."""
        return replace(self, heartbeat_interval=heartbeat_interval)
