"""The coordinator's task board: a pure state machine (no I/O, no clock reads).

Events go in (a message parsed from the work channel with its sender, ``tick(now)``,
a config change); decisions come out (:class:`Decisions`: lines to post, records to
persist, log entries). Time is always passed in, so every rule is unit-tested without
sockets or sleeps, and the service around it (:mod:`.service`) stays a thin shell.

The rules (declared in :class:`BoardConfig`, observed from the channel, done through
the returned lines):

* **Tasks** go queued → assigned → running → done | failed | cancelled. A TASK without
  an id gets one and is re-announced.
* **Claims:** the first eligible claimant of a queued task gets ASSIGN; later claimants
  get REJECTED naming the winner. While assigning is gated (fleet max-active, token or
  cost budget, quota pause) claimants wait; when a slot frees, the next queued task
  (priority, then age) goes to its first eligible waiting claimant (the others get one
  REJECTED line) or is re-announced.
* **One task per agent, one agent per task:** an agent with a task is never assigned
  another; DONE/FAIL/STATUS from anyone but the current assignee are ignored and logged,
  and an agent that heartbeats a task it no longer holds is told to CANCEL it.
* **Requeue** on FAIL (until ``retries`` extra attempts are used up), when the assignee
  misses ``heartbeat_misses`` heartbeat intervals, on the task's timeout (the assignee
  is told to CANCEL), and when the assignee reports itself idle. UNCLAIM, QUOTA and
  BLOCKED requeue without using up an attempt (not the task's fault).
* **Quota:** QUOTA pauses all assigning; every ``probe_interval`` one idle agent gets a
  PROBE; its DONE resumes assigning, its QUOTA keeps the pause.
* **Blocked** (auth): the agent is never assigned again until a person posts
  ``RETRY agent=<name>``; the task goes to someone else, so a bad key never becomes a
  retry storm.
* **Names:** an agent is known by the name in its lines; the name is bound to the
  sender's AgentChat id on first sight and lines from another id using that name are
  ignored (unless the bound agent has been silent past the death window: a re-created
  identity may take its name back).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from agentctl_swarm.coordinator import grammar as g
from agentctl_swarm.core.backoff import BackoffCurve

QUEUED = "queued"
ASSIGNED = "assigned"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
ACTIVE_STATES = frozenset({ASSIGNED, RUNNING})
FINAL_STATES = frozenset({DONE, FAILED, CANCELLED})


def new_task_id() -> str:
    """A fresh task id, ``t-`` and 8 hex digits (what ``agentctl task add`` uses too)."""
    return "t-" + secrets.token_hex(4)


#: The longest wait between re-announcements of a task nobody claims.
REANNOUNCE_CAP = 600.0


@dataclass(frozen=True)
class BoardConfig:
    """What the fleet declares about dispatch. Times in seconds; 0 means no limit."""

    max_active: int = 0
    token_budget: int = 0
    cost_budget_usd: float = 0.0
    #: Per-role budgets: (role, tokens, cost in USD); 0 means no limit for that part.
    role_budgets: tuple[tuple[str, int, float], ...] = ()
    heartbeat_interval: float = 30.0
    heartbeat_misses: int = 3
    default_timeout: int = 1800
    default_retries: int = 2
    default_priority: int = 0
    probe_interval: float = 300.0
    probe_timeout: float = 120.0
    #: An assignee that says it is idle (or claims again) this long after ASSIGN lost it.
    assign_grace: float = 15.0
    #: First re-announce delay of a queued task nobody claimed; doubles up to 10 min.
    reannounce_interval: float = 30.0
    #: Most TASK lines one pass re-announces (keeps a batch readable).
    max_announce: int = 10
    #: Silence allowed to an agent whose task is running (its Claude Code session has
    #: started) before the task is requeued. A late heartbeat alone must not take live
    #: work away (a second agent would redo it); `agentctl up` checks the session itself
    #: meanwhile, and a crashed runner reports its task as failed when it comes back.
    running_silence: float = 600.0

    @property
    def dead_after(self) -> float:
        """Silence after which an agent counts as dead."""
        return self.heartbeat_interval * self.heartbeat_misses

    def silence_limit(self, running: bool) -> float:
        """How long an agent may be silent: longer while its task runs."""
        return max(self.dead_after, self.running_silence) if running else self.dead_after

    def with_(self, **changes: Any) -> BoardConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)


# --------------------------------------------------------------------------- records


@dataclass
class Attempt:
    """One assignment of a task to an agent and how it ended."""

    n: int
    agent: str
    assigned_at: float
    started_at: float | None = None
    ended_at: float | None = None
    outcome: str | None = None  # done, failed, lost, timeout, unclaimed, quota, blocked, ...
    reason: str | None = None
    detail: str = ""
    counted: bool = True  # False: did not use up one of the task's attempts
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


@dataclass
class TaskRecord:
    """A task on the board (persisted as a dict)."""

    id: str
    role: str
    prompt: str
    created_at: float
    priority: int = 0
    timeout: int = 0
    retries: int = 0
    repo: str | None = None
    branch: str | None = None
    state: str = QUEUED
    assignee: str | None = None
    attempts: int = 0  # counted attempts so far
    updated_at: float = 0.0
    assigned_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    posted_by: str | None = None
    summary: str = ""
    last_status: str = ""
    cancel_reason: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    history: list[Attempt] = field(default_factory=list)
    announced_at: float | None = None
    announces: int = 0

    @property
    def tokens_in(self) -> int:
        return sum(a.tokens_in for a in self.history)

    @property
    def tokens_out(self) -> int:
        return sum(a.tokens_out for a in self.history)

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.history)

    @property
    def current(self) -> Attempt | None:
        """The open attempt of an assigned or running task."""
        if self.state in ACTIVE_STATES and self.history:
            return self.history[-1]
        return None

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["tokens_in"] = self.tokens_in
        doc["tokens_out"] = self.tokens_out
        doc["cost_usd"] = self.cost_usd
        doc["failures"] = [
            {"attempt": a.n, "agent": a.agent, "outcome": a.outcome, "reason": a.reason,
             "detail": a.detail, "at": a.ended_at}
            for a in self.history
            if a.outcome not in (None, DONE)
        ]  # fmt: skip
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> TaskRecord:
        names = {f.name for f in fields(cls)}
        data = {k: v for k, v in doc.items() if k in names}
        attempt_names = {f.name for f in fields(Attempt)}
        data["history"] = [
            Attempt(**{k: v for k, v in a.items() if k in attempt_names})
            for a in doc.get("history") or []
        ]
        return cls(**data)


@dataclass
class AgentRecord:
    """An agent the board has heard of, by name."""

    name: str
    agent_id: str | None = None  # the AgentChat id the name is bound to ("@...")
    role: str | None = None
    state: str = "unknown"  # from HEARTBEAT: idle, promoting, active, demoting
    task: str | None = None
    last_seen: float = 0.0
    blocked: str | None = None
    blocked_at: float | None = None
    tasks_done: int = 0
    tasks_failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AgentRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


@dataclass
class QuotaState:
    """The fleet-wide quota pause and its probe."""

    paused: bool = False
    since: float | None = None
    reason: str = ""
    next_probe_at: float | None = None
    probe_id: str | None = None
    probe_agent: str | None = None
    probe_sent_at: float | None = None
    probes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> QuotaState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (doc or {}).items() if k in names})


@dataclass(frozen=True)
class Record:
    """One thing to persist: ``kind`` task, agent or meta; ``value`` a JSON-able dict."""

    kind: str
    key: str
    value: Any


@dataclass(frozen=True)
class LogEntry:
    """A log line the service writes: ``level`` debug/info/warning, ``event`` a name."""

    level: str
    event: str
    fields: dict[str, Any]


@dataclass
class Decisions:
    """What one event made the board decide."""

    lines: list[g.Message] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    logs: list[LogEntry] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.lines or self.records or self.logs)


# --------------------------------------------------------------------------- the board


class Board:
    """All coordinator state and rules; see the module docstring."""

    def __init__(
        self,
        config: BoardConfig | None = None,
        *,
        new_id: Callable[[], str] = new_task_id,
    ) -> None:
        self.config = config or BoardConfig()
        self.tasks: dict[str, TaskRecord] = {}
        self.agents: dict[str, AgentRecord] = {}
        self.quota = QuotaState()
        self.waiting: dict[str, list[str]] = {}  # task id -> agents whose claim waits
        self._new_id = new_id
        self._probe_seq = 0
        self._cancel_sent: dict[tuple[str, str], float] = {}
        #: (agent, task) -> until when the agent may not get the task (it UNCLAIMed it).
        self._cooldown: dict[tuple[str, str], float] = {}
        self._out = Decisions()
        self._dirty_tasks: set[str] = set()
        self._dirty_agents: set[str] = set()
        self._dirty_quota = False
        #: Why assigning is held (`agentctl up` is shutting down), or None.
        self.held: str | None = None
        self._budget_warned: set[str] = set()
        #: The line being handled comes from an agent that was away (see _bind).
        self._returning = False

    # ------------------------------------------------------------------ restore

    @classmethod
    def restore(
        cls,
        config: BoardConfig,
        tasks: Iterable[dict[str, Any]],
        agents: Iterable[dict[str, Any]],
        meta: dict[str, Any],
        now: float,
        *,
        new_id: Callable[[], str] = new_task_id,
    ) -> Board:
        """Rebuild the board from persisted records (a coordinator restart).

        Every agent gets a fresh death window from ``now`` (it could not be heard
        while the coordinator was down), and queued tasks are re-announced by the
        first :meth:`dispatch` so idle agents claim them again.
        """
        board = cls(config, new_id=new_id)
        for doc in tasks:
            t = TaskRecord.from_dict(doc)
            t.announced_at, t.announces = None, 0
            board.tasks[t.id] = t
        for doc in agents:
            a = AgentRecord.from_dict(doc)
            a.last_seen = max(a.last_seen, now)
            board.agents[a.name] = a
        board.quota = QuotaState.from_dict(meta.get("quota"))
        board._probe_seq = int(meta.get("probe_seq") or 0)
        # Agents hold exactly the tasks the tasks say they hold.
        for a in board.agents.values():
            a.task = None
        for t in board.tasks.values():
            if t.state in ACTIVE_STATES and t.assignee:
                board._agent(t.assignee).task = t.id
        return board

    # ------------------------------------------------------------------ views

    @property
    def active_count(self) -> int:
        return sum(1 for t in self.tasks.values() if t.state in ACTIVE_STATES)

    @property
    def tokens_used(self) -> int:
        return sum(t.tokens_in + t.tokens_out for t in self.tasks.values())

    @property
    def cost_used(self) -> float:
        return sum(t.cost_usd for t in self.tasks.values())

    def role_usage(self, role: str) -> tuple[int, float]:
        """Tokens and cost spent on ``role``'s tasks so far."""
        tasks = [t for t in self.tasks.values() if t.role == role]
        return sum(t.tokens_in + t.tokens_out for t in tasks), sum(t.cost_usd for t in tasks)

    def role_gate(self, role: str) -> str | None:
        """Why tasks of ``role`` may not be assigned now (its budget is used up), or None."""
        for name, tokens, cost in self.config.role_budgets:
            if name != role:
                continue
            used_tokens, used_cost = self.role_usage(role)
            if tokens > 0 and used_tokens >= tokens:
                return f"role {role}'s token budget of {tokens} used up"
            if cost > 0 and used_cost >= cost:
                return f"role {role}'s cost budget of ${cost:g} used up"
        return None

    def _check_budgets(self) -> None:
        """Warn once at 80% of each budget (fleet and roles); 100% is the gate's job."""
        cfg = self.config
        checks = [("fleet tokens", self.tokens_used, cfg.token_budget),
                  ("fleet cost", self.cost_used, cfg.cost_budget_usd)]  # fmt: skip
        for role, tokens, cost in cfg.role_budgets:
            used_tokens, used_cost = self.role_usage(role)
            checks += [(f"role {role} tokens", used_tokens, tokens),
                       (f"role {role} cost", used_cost, cost)]  # fmt: skip
        for what, used, limit in checks:
            if limit and used >= 0.8 * limit and what not in self._budget_warned:
                self._budget_warned.add(what)
                self._log("warning", "coordinator.budget_warning", budget=what, used=used,
                          limit=limit, percent=round(100 * used / limit))  # fmt: skip

    def gate(self) -> str | None:
        """Why nothing may be assigned now, or None."""
        cfg = self.config
        if self.held is not None:
            return f"assigning held: {self.held}"
        if self.quota.paused:
            return "quota exhausted (paused until a probe succeeds)"
        if cfg.token_budget > 0 and self.tokens_used >= cfg.token_budget:
            return f"token budget of {cfg.token_budget} used up"
        if cfg.cost_budget_usd > 0 and self.cost_used >= cfg.cost_budget_usd:
            return f"cost budget of ${cfg.cost_budget_usd:g} used up"
        if cfg.max_active > 0 and self.active_count >= cfg.max_active:
            return f"max-active {cfg.max_active} reached"
        return None

    def queued(self) -> list[TaskRecord]:
        """Queued tasks in dispatch order: priority (high first), then age."""
        q = [t for t in self.tasks.values() if t.state == QUEUED]
        q.sort(key=lambda t: (-t.priority, t.created_at, t.id))
        return q

    def alive(self, agent: AgentRecord, now: float) -> bool:
        return now - agent.last_seen <= self.config.dead_after

    def task_view(self, task: TaskRecord) -> dict[str, Any]:
        doc = task.to_dict()
        doc.pop("announced_at", None)
        doc.pop("announces", None)
        doc["waiting"] = list(self.waiting.get(task.id, []))
        return doc

    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything a reader (``agentctl task list``, /api/v1/...) shows."""
        cfg = self.config
        tasks = sorted(self.tasks.values(), key=lambda t: (t.created_at, t.id))
        return {
            "tasks": [self.task_view(t) for t in tasks],
            "agents": [
                {**a.to_dict(), "alive": self.alive(a, now)}
                for a in sorted(self.agents.values(), key=lambda a: a.name)
            ],
            "quota": self.quota.to_dict(),
            "gate": self.gate(),
            "active": self.active_count,
            "max_active": cfg.max_active,
            "tokens_used": self.tokens_used,
            "token_budget": cfg.token_budget,
            "cost_used_usd": self.cost_used,
            "cost_budget_usd": cfg.cost_budget_usd,
        }

    # ------------------------------------------------------------------ plumbing

    def _take(self) -> Decisions:
        out = self._out
        for tid in sorted(self._dirty_tasks):
            t = self.tasks.get(tid)
            if t is not None:
                out.records.append(Record("task", tid, t.to_dict()))
        for name in sorted(self._dirty_agents):
            a = self.agents.get(name)
            if a is not None:
                out.records.append(Record("agent", name, a.to_dict()))
        if self._dirty_quota:
            out.records.append(Record("meta", "quota", self.quota.to_dict()))
            out.records.append(Record("meta", "probe_seq", self._probe_seq))
        self._out = Decisions()
        self._dirty_tasks.clear()
        self._dirty_agents.clear()
        self._dirty_quota = False
        return out

    def _log(self, level: str, event: str, **fields_: Any) -> None:
        self._out.logs.append(LogEntry(level, event, fields_))

    def _send(self, msg: g.Message) -> None:
        self._out.lines.append(msg)

    def _touch_task(self, t: TaskRecord, now: float) -> None:
        t.updated_at = now
        self._dirty_tasks.add(t.id)

    def _agent(self, name: str) -> AgentRecord:
        a = self.agents.get(name)
        if a is None:
            a = self.agents[name] = AgentRecord(name)
            self._dirty_agents.add(name)
        return a

    def _unwait(self, name: str) -> None:
        for lst in self.waiting.values():
            if name in lst:
                lst.remove(name)

    # ------------------------------------------------------------------ events

    def handle(
        self,
        msg: g.Message,
        sender_id: str,
        sender_name: str,
        now: float,
        *,
        replay: bool = False,
    ) -> Decisions:
        """One message from the channel, sent by AgentChat id ``sender_id``."""
        if isinstance(msg, g.Assign | g.Rejected | g.Probe):
            self._log(
                "warning",
                "coordinator.foreign_line",
                kind=msg.KIND,
                sender=sender_id,
                hint="another coordinator on this channel? only one may run",
            )
            return self._take()
        if isinstance(msg, g.Task):
            self._on_task(msg, sender_name, now)
        elif isinstance(msg, g.Cancel):
            self._on_cancel(msg, sender_name, now)
        elif isinstance(msg, g.Retry):
            self._on_retry(msg, sender_name, now)
        else:
            name = getattr(msg, "agent", None) or sender_name
            agent = self._bind(name, sender_id, msg, now)
            if agent is not None:
                self._on_agent_line(msg, agent, now, replay=replay)
        return self._take()

    def tick(self, now: float, *, watch_agents: bool = True) -> Decisions:
        """Time passed: deaths, timeouts, probes, re-announces.

        ``watch_agents=False`` while the coordinator itself is cut off from the server:
        silence then says nothing about the agents.
        """
        if watch_agents:
            self._check_deaths(now)
        self._forget_old(now)
        self._check_timeouts(now)
        self._check_quota(now)
        self._dispatch(now, freed=False)
        return self._take()

    def reconnected(self, now: float) -> Decisions:
        """The coordinator's connection came back: every agent gets a fresh window."""
        for a in self.agents.values():
            a.last_seen = max(a.last_seen, now)
        self._dispatch(now)
        return self._take()

    def configure(self, config: BoardConfig, now: float) -> Decisions:
        """New limits (e.g. a bigger budget or max-active): applied at once."""
        old, self.config = self.config, config
        self._log("info", "coordinator.config", old=asdict(old), new=asdict(config))
        self._dispatch(now)
        return self._take()

    def hold(self, reason: str | None, now: float) -> Decisions:
        """Stop assigning new work (``reason``), or resume with None. Running tasks go on."""
        self.held = reason
        self._log("info", "coordinator.held" if reason else "coordinator.released", reason=reason)
        if reason is None:
            self._dispatch(now)
        return self._take()

    def dispatch(self, now: float) -> Decisions:
        """Assign or re-announce what can be (also the first thing after a restart)."""
        self._dispatch(now)
        return self._take()

    # ------------------------------------------------------------------ binding

    def _bind(self, name: str, sender_id: str, msg: g.Message, now: float) -> AgentRecord | None:
        if not g.is_valid_name(name):
            self._log("debug", "coordinator.bad_name", name=name, sender=sender_id)
            return None
        a = self._agent(name)
        # Back after silence, or a new connection under the name (the runner restarted):
        # whatever it heard before is lost, so an idle heartbeat counts as news.
        self._returning = a.agent_id != sender_id or not self.alive(a, now)
        if a.agent_id is None:
            a.agent_id = sender_id
            self._dirty_agents.add(name)
            self._log("info", "coordinator.agent_bound", agent=name, agent_id=sender_id)
        elif a.agent_id != sender_id:
            if a.last_seen and self.alive(a, now):
                self._log(
                    "warning",
                    "coordinator.name_taken",
                    agent=name,
                    bound_to=a.agent_id,
                    sender=sender_id,
                    kind=msg.KIND,
                )
                return None
            self._log("info", "coordinator.agent_rebound", agent=name, old=a.agent_id,
                      new=sender_id)  # fmt: skip
            a.agent_id = sender_id
            self._dirty_agents.add(name)
        a.last_seen = max(a.last_seen, now)
        role = getattr(msg, "role", None)
        if role and isinstance(msg, g.Claim | g.Heartbeat) and a.role != role:
            a.role = role
            self._dirty_agents.add(name)
        return a

    def _on_agent_line(
        self, msg: g.Message, agent: AgentRecord, now: float, *, replay: bool
    ) -> None:
        if isinstance(msg, g.Claim):
            if replay:
                return  # stale: queued tasks are re-announced after a restart instead
            self._on_claim(msg, agent, now)
        elif isinstance(msg, g.Heartbeat):
            self._on_heartbeat(msg, agent, now)
        elif isinstance(msg, g.Status):
            self._on_status(msg, agent, now)
        elif isinstance(msg, g.Done):
            self._on_done(msg, agent, now)
        elif isinstance(msg, g.Fail):
            self._on_fail(msg, agent, now)
        elif isinstance(msg, g.Unclaim):
            self._on_unclaim(msg, agent, now)
        elif isinstance(msg, g.Quota):
            self._on_quota(msg, agent, now)
        elif isinstance(msg, g.Blocked):
            self._on_blocked(msg, agent, now)

    # ------------------------------------------------------------------ tasks

    def _on_task(self, msg: g.Task, sender_name: str, now: float) -> None:
        cfg = self.config
        tid = msg.id or self._new_id()
        old = self.tasks.get(tid)
        if old is not None:
            same = old.prompt == msg.text and old.role == (msg.role or g.ANY_ROLE)
            self._log(
                "debug" if same else "warning",
                "coordinator.task_duplicate",
                task=tid,
                hint=None if same else "a task with this id exists; post it with a new id",
            )
            return
        t = TaskRecord(
            id=tid,
            role=msg.role or g.ANY_ROLE,
            prompt=msg.text,
            created_at=now,
            priority=msg.priority if msg.priority is not None else cfg.default_priority,
            timeout=msg.timeout if msg.timeout is not None else cfg.default_timeout,
            retries=msg.retries if msg.retries is not None else cfg.default_retries,
            repo=msg.repo,
            branch=msg.branch,
            posted_by=sender_name,
            extra=dict(msg.extra),
            announced_at=now,
            announces=0,
        )
        self.tasks[tid] = t
        self._touch_task(t, now)
        self._log("info", "coordinator.task_added", task=tid, role=t.role, by=sender_name)
        if msg.id is None:
            self._send(self._announce_line(t))

    def _announce_line(self, t: TaskRecord) -> g.Task:
        return g.Task(
            id=t.id,
            role=t.role,
            priority=t.priority,
            timeout=t.timeout,
            retries=t.retries,
            repo=t.repo,
            branch=t.branch,
            text=t.prompt,
            extra=tuple((k, v) for k, v in t.extra.items() if g.is_valid_name(k)),
        )

    def _find_task_for_claim(self, msg: g.Claim) -> TaskRecord | None:
        if msg.id:
            return self.tasks.get(msg.id)
        text = msg.text.strip().lower()
        for t in self.queued():  # upstream "CLAIM: <summary>" / JS {"component": ...}
            if text and text in (t.prompt.strip().lower(), t.extra.get("component", "").lower()):
                return t
        return None

    def _on_claim(self, msg: g.Claim, agent: AgentRecord, now: float) -> None:
        t = self._find_task_for_claim(msg)
        name = agent.name
        if t is None:
            if msg.id:
                self._send(g.Rejected(id=msg.id, agent=name, reason="unknown task"))
            return
        if t.state in FINAL_STATES:
            self._send(g.Rejected(id=t.id, agent=name, reason=f"task is {t.state}"))
            return
        if t.state in ACTIVE_STATES:
            if t.assignee == name:
                self._send(g.Assign(id=t.id, agent=name, attempt=len(t.history)))
            else:
                self._send(g.Rejected(id=t.id, agent=name, reason=f"assigned to {t.assignee}"))
            return
        if not self._role_ok(agent, t):
            self._send(g.Rejected(id=t.id, agent=name, reason=f"needs role {t.role}"))
            return
        if agent.blocked:
            self._send(
                g.Rejected(id=t.id, agent=name, reason=f"{name} is blocked ({agent.blocked})")
            )
            return
        if agent.task is not None:
            held = self.tasks.get(agent.task)
            if (
                held is not None
                and held.assigned_at is not None
                and (now - held.assigned_at > self.config.assign_grace)
            ):
                # Only an idle runner claims: the task it held is gone.
                self._requeue(held, now, "lost", "the agent claimed another task", counted=True)
        lst = self.waiting.setdefault(t.id, [])
        if name not in lst:
            lst.append(name)
        if self.gate() is None and self._eligible(agent, t, now):
            self._assign(t, agent, now)
        else:
            self._log("debug", "coordinator.claim_waits", task=t.id, agent=name,
                      why=self.gate() or "agent busy")  # fmt: skip

    def _role_ok(self, agent: AgentRecord, t: TaskRecord) -> bool:
        return g.role_matches(t.role, agent.role)

    def _eligible(self, agent: AgentRecord, t: TaskRecord, now: float) -> bool:
        return (
            agent.task is None
            and agent.blocked is None
            and self.quota.probe_agent != agent.name
            and self.alive(agent, now)
            and self._role_ok(agent, t)
            and self._cooldown.get((agent.name, t.id), 0.0) <= now
            and self.role_gate(t.role) is None
        )

    def _assign(self, t: TaskRecord, agent: AgentRecord, now: float) -> None:
        n = len(t.history) + 1
        t.history.append(Attempt(n=n, agent=agent.name, assigned_at=now))
        t.state, t.assignee, t.assigned_at, t.started_at = ASSIGNED, agent.name, now, None
        t.attempts += 1
        agent.task, agent.state = t.id, "assigned"
        self._touch_task(t, now)
        self._dirty_agents.add(agent.name)
        others = [a for a in self.waiting.pop(t.id, []) if a != agent.name]
        self._unwait(agent.name)
        self._send(g.Assign(id=t.id, agent=agent.name, attempt=n))
        if others:
            self._send(
                g.Rejected(id=t.id, agent=",".join(others), reason=f"assigned to {agent.name}")
            )
        self._log("info", "coordinator.assigned", task=t.id, agent=agent.name, attempt=n)

    def _requeue(
        self,
        t: TaskRecord,
        now: float,
        outcome: str,
        reason: str,
        *,
        counted: bool,
        detail: str = "",
    ) -> None:
        """End the open attempt; queue the task again, or fail it past its retries."""
        att = t.current
        if att is not None:
            att.ended_at, att.outcome, att.reason, att.detail = now, outcome, reason, detail
            att.counted = counted
            if not counted:
                t.attempts = max(0, t.attempts - 1)
            holder = self.agents.get(att.agent)
            if holder is not None and holder.task == t.id:
                holder.task = None
                self._dirty_agents.add(holder.name)
        t.assignee, t.assigned_at, t.started_at = None, None, None
        if counted and t.attempts > t.retries:
            t.state, t.finished_at = FAILED, now
            self._log("warning", "coordinator.task_failed", task=t.id, outcome=outcome,
                      reason=reason, attempts=t.attempts)  # fmt: skip
            if att is not None:
                self._agent(att.agent).tasks_failed += 1
                self._dirty_agents.add(att.agent)
        else:
            t.state, t.announced_at, t.announces = QUEUED, None, 0
            self._log("info", "coordinator.requeued", task=t.id, outcome=outcome, reason=reason,
                      attempts=t.attempts, counted=counted)  # fmt: skip
        self._touch_task(t, now)

    def _own_task(self, tid: str | None, agent: AgentRecord, kind: str) -> TaskRecord | None:
        """The task ``tid`` if ``agent`` currently holds it; otherwise log why not."""
        t = self.tasks.get(tid or "")
        if t is None:
            self._log("debug", "coordinator.unknown_task", task=tid, agent=agent.name, kind=kind)
            return None
        if t.state not in ACTIVE_STATES or t.assignee != agent.name:
            former = any(a.agent == agent.name for a in t.history)
            self._log(
                "info" if former else "debug",
                "coordinator.late_line" if former else "coordinator.not_assignee",
                task=t.id,
                agent=agent.name,
                kind=kind,
                state=t.state,
                assignee=t.assignee,
            )
            return None
        return t

    @staticmethod
    def _usage(att: Attempt, msg: g.Status | g.Done | g.Fail) -> None:
        if msg.tokens_in is not None:
            att.tokens_in = msg.tokens_in
        if msg.tokens_out is not None:
            att.tokens_out = msg.tokens_out
        if msg.cost_usd is not None:
            att.cost_usd = msg.cost_usd

    def _start(self, t: TaskRecord, agent: AgentRecord, now: float) -> None:
        if t.state == ASSIGNED:
            t.state, t.started_at = RUNNING, now
            att = t.current
            if att is not None:
                att.started_at = now
            agent.state = "active"
            self._touch_task(t, now)
            self._log("info", "coordinator.running", task=t.id, agent=agent.name)

    def _on_status(self, msg: g.Status, agent: AgentRecord, now: float) -> None:
        t = self._own_task(msg.id, agent, msg.KIND)
        if t is None:
            return
        self._start(t, agent, now)
        att = t.current
        assert att is not None
        self._usage(att, msg)
        if msg.text:
            t.last_status = msg.text[:500]
        self._touch_task(t, now)

    def _on_done(self, msg: g.Done, agent: AgentRecord, now: float) -> None:
        if msg.id and msg.id == self.quota.probe_id:
            self._probe_answer(agent, now, ok=True)
            return
        t = self._own_task(msg.id, agent, msg.KIND)
        if t is None:
            return
        att = t.current
        assert att is not None
        self._usage(att, msg)
        att.ended_at, att.outcome = now, DONE
        if att.started_at is None:
            att.started_at = t.started_at or now
        t.state, t.finished_at, t.summary = DONE, now, msg.text[:4000]
        t.assignee = agent.name
        agent.task, agent.state = None, "idle"
        agent.tasks_done += 1
        self._dirty_agents.add(agent.name)
        self._touch_task(t, now)
        self._log("info", "coordinator.done", task=t.id, agent=agent.name,
                  tokens_in=att.tokens_in, tokens_out=att.tokens_out)  # fmt: skip
        self._dispatch(now)

    def _on_fail(self, msg: g.Fail, agent: AgentRecord, now: float) -> None:
        reason = msg.reason or "error"
        if msg.id and msg.id == self.quota.probe_id:
            if reason == "quota":
                self._probe_answer(agent, now, ok=False)
            elif reason == "auth":
                self._block(agent, "auth", msg.text, now)
            else:
                self._probe_answer(agent, now, ok=False, failed=reason)
            return
        if reason == "quota":
            self._on_quota(g.Quota(id=msg.id, agent=agent.name, text=msg.text), agent, now)
            return
        if reason == "auth":
            self._on_blocked(
                g.Blocked(id=msg.id, agent=agent.name, reason="auth", text=msg.text), agent, now
            )
            return
        t = self._own_task(msg.id, agent, msg.KIND)
        if t is None:
            return
        att = t.current
        assert att is not None
        self._usage(att, msg)
        agent.state = "idle"
        self._requeue(t, now, FAILED, reason, counted=True, detail=msg.text[:2000])
        self._dispatch(now)

    def _on_unclaim(self, msg: g.Unclaim, agent: AgentRecord, now: float) -> None:
        lst = self.waiting.get(msg.id or "")
        if lst and agent.name in lst:
            lst.remove(agent.name)
        t = self._own_task(msg.id, agent, msg.KIND)
        if t is None:
            return
        agent.state = "idle"
        # Not straight back to the same agent (it would UNCLAIM again in a tight loop).
        self._cooldown[(agent.name, t.id)] = now + self.config.reannounce_interval
        self._requeue(t, now, "unclaimed", msg.reason or "unclaimed", counted=False,
                      detail=msg.text[:2000])  # fmt: skip
        self._dispatch(now)

    def _on_heartbeat(self, msg: g.Heartbeat, agent: AgentRecord, now: float) -> None:
        state = msg.state or agent.state
        became_idle = state == "idle" and (agent.state != "idle" or self._returning)
        if state != agent.state:
            agent.state = state
            self._dirty_agents.add(agent.name)
        if msg.id:
            t = self.tasks.get(msg.id)
            if t is not None and t.state in ACTIVE_STATES and t.assignee == agent.name:
                if state == "active":
                    self._start(t, agent, now)
                return
            if state in ("active", "promoting", "assigned"):
                # It works on a task it does not hold (requeued, cancelled, given away).
                key = (agent.name, msg.id)
                last = self._cancel_sent.get(key)
                if last is None or now - last >= self.config.heartbeat_interval:
                    self._cancel_sent[key] = now
                    why = "not assigned to you" if t is None or t.assignee else f"task {t.state}"
                    if t is not None and t.state == QUEUED:
                        why = "task was requeued"
                    self._send(g.Cancel(id=msg.id, agent=agent.name, reason=why))
                    self._log("warning", "coordinator.stray_work", task=msg.id,
                              agent=agent.name, why=why)  # fmt: skip
            return
        if state == "idle" and agent.task is not None:
            t = self.tasks.get(agent.task)
            if (
                t is not None
                and t.assigned_at is not None
                and (now - t.assigned_at > self.config.assign_grace)
            ):
                self._requeue(t, now, "lost", "the agent reports itself idle", counted=True)
                self._dispatch(now)
        if became_idle and agent.task is None and agent.blocked is None:
            self._announce_for(agent, now)

    def _on_quota(self, msg: g.Quota, agent: AgentRecord, now: float) -> None:
        if msg.id and msg.id == self.quota.probe_id:
            self._probe_answer(agent, now, ok=False, retry_after=msg.retry_after)
            return
        if agent.task is not None:
            t = self.tasks.get(agent.task)
            if t is not None:
                self._requeue(t, now, "quota", "model quota exhausted", counted=False,
                              detail=msg.text[:2000])  # fmt: skip
        agent.state = "idle"
        q = self.quota
        wait = max(self.config.probe_interval, msg.retry_after or 0.0)
        if not q.paused:
            q.paused, q.since, q.reason = True, now, f"QUOTA from {agent.name}"
            q.next_probe_at = now + wait
            self._log("warning", "coordinator.quota_paused", agent=agent.name,
                      next_probe_in=wait)  # fmt: skip
        self._dirty_quota = True

    def _on_blocked(self, msg: g.Blocked, agent: AgentRecord, now: float) -> None:
        self._block(agent, msg.reason or "blocked", msg.text, now)

    def _block(self, agent: AgentRecord, reason: str, detail: str, now: float) -> None:
        agent.blocked, agent.blocked_at = reason, now
        self._dirty_agents.add(agent.name)
        self._unwait(agent.name)
        if agent.task is not None:
            t = self.tasks.get(agent.task)
            if t is not None:
                self._requeue(t, now, "blocked", reason, counted=False, detail=detail[:2000])
        if self.quota.probe_agent == agent.name:
            self._clear_probe()
        self._log(
            "warning",
            "coordinator.agent_blocked",
            agent=agent.name,
            reason=reason,
            detail=detail[:500],
            hint=f"fix the agent, then post: RETRY agent={agent.name}",
        )
        self._dispatch(now)

    def _on_cancel(self, msg: g.Cancel, sender_name: str, now: float) -> None:
        t = self.tasks.get(msg.id or "")
        if t is None:
            self._log("info", "coordinator.cancel_unknown", task=msg.id, by=sender_name)
            return
        if t.state in FINAL_STATES:
            self._log("info", "coordinator.cancel_final", task=t.id, state=t.state)
            return
        reason = msg.reason or f"cancelled by {sender_name}"
        holder = t.assignee
        att = t.current
        if att is not None:
            att.ended_at, att.outcome, att.reason, att.counted = now, CANCELLED, reason, False
            t.attempts = max(0, t.attempts - 1)
            a = self.agents.get(att.agent)
            if a is not None and a.task == t.id:
                a.task = None
                self._dirty_agents.add(a.name)
        t.state, t.finished_at, t.cancel_reason, t.assignee = CANCELLED, now, reason, holder
        self.waiting.pop(t.id, None)
        self._touch_task(t, now)
        self._send(g.Cancel(id=t.id, agent=holder, reason=reason))
        self._log("info", "coordinator.cancelled", task=t.id, by=sender_name, agent=holder)
        self._dispatch(now)

    def _on_retry(self, msg: g.Retry, sender_name: str, now: float) -> None:
        if msg.id:
            t = self.tasks.get(msg.id)
            if t is None:
                self._log("info", "coordinator.retry_unknown", task=msg.id, by=sender_name)
                return
            if t.state not in (FAILED, CANCELLED):
                self._log("info", "coordinator.retry_refused", task=t.id, state=t.state)
                return
            t.state, t.attempts, t.assignee = QUEUED, 0, None
            t.finished_at = t.assigned_at = t.started_at = None
            t.cancel_reason, t.announced_at, t.announces = None, None, 0
            self._touch_task(t, now)
            self._log("info", "coordinator.retried", task=t.id, by=sender_name)
        if msg.agent:
            a = self.agents.get(msg.agent)
            if a is not None and a.blocked:
                a.blocked, a.blocked_at = None, None
                self._dirty_agents.add(a.name)
                self._log("info", "coordinator.unblocked", agent=a.name, by=sender_name)
        self._dispatch(now)

    # ------------------------------------------------------------------ time

    def _check_deaths(self, now: float) -> None:
        for a in list(self.agents.values()):
            if a.task is None or self.alive(a, now):
                continue
            t = self.tasks.get(a.task)
            if t is None:
                a.task = None
                continue
            silent = now - a.last_seen
            if silent < self.config.silence_limit(t.state == RUNNING):
                continue
            self._send(g.Cancel(id=t.id, agent=a.name, reason="no heartbeat"))
            self._requeue(t, now, "lost", f"no heartbeat for {silent:.0f} s", counted=True)
        for lst in self.waiting.values():
            lst[:] = [n for n in lst if n in self.agents and self.alive(self.agents[n], now)]

    def _forget_old(self, now: float) -> None:
        """Drop expired rate-limit and cool-down entries (they would only grow)."""
        keep = self.config.heartbeat_interval
        self._cancel_sent = {k: v for k, v in self._cancel_sent.items() if now - v < keep}
        self._cooldown = {k: v for k, v in self._cooldown.items() if v > now}

    def _check_timeouts(self, now: float) -> None:
        for t in list(self.tasks.values()):
            if t.state not in ACTIVE_STATES or not t.timeout or t.assigned_at is None:
                continue
            if now - t.assigned_at <= t.timeout:
                continue
            self._send(g.Cancel(id=t.id, agent=t.assignee, reason="timeout"))
            self._requeue(t, now, "timeout", f"ran longer than {t.timeout} s", counted=True)

    def _check_quota(self, now: float) -> None:
        q = self.quota
        if not q.paused:
            return
        if q.probe_id is not None:
            if q.probe_sent_at is not None and now - q.probe_sent_at > self.config.probe_timeout:
                self._log("warning", "coordinator.probe_timeout", probe=q.probe_id,
                          agent=q.probe_agent)  # fmt: skip
                self._clear_probe()
                q.next_probe_at = now + self.config.probe_interval
            return
        if q.next_probe_at is not None and now < q.next_probe_at:
            return
        idle = [
            a
            for a in self.agents.values()
            if a.task is None and a.blocked is None and self.alive(a, now)
            and a.state in ("idle", "unknown")
        ]  # fmt: skip
        if not idle:
            return  # try again next tick
        idle.sort(key=lambda a: (a.state != "idle", -a.last_seen, a.name))
        agent = idle[0]
        self._probe_seq += 1
        q.probe_id, q.probe_agent, q.probe_sent_at = f"p-{self._probe_seq}", agent.name, now
        q.probes += 1
        self._dirty_quota = True
        self._send(g.Probe(id=q.probe_id, agent=agent.name))
        self._log("info", "coordinator.probe", probe=q.probe_id, agent=agent.name)

    def _clear_probe(self) -> None:
        q = self.quota
        q.probe_id = q.probe_agent = None
        q.probe_sent_at = None
        self._dirty_quota = True

    def _probe_answer(
        self,
        agent: AgentRecord,
        now: float,
        *,
        ok: bool,
        retry_after: float | None = None,
        failed: str | None = None,
    ) -> None:
        q = self.quota
        if q.probe_agent != agent.name:
            self._log("info", "coordinator.late_line", task=q.probe_id, agent=agent.name,
                      kind="probe answer")  # fmt: skip
            return
        self._clear_probe()
        if ok:
            q.paused, q.since, q.reason, q.next_probe_at = False, None, "", None
            self._log("info", "coordinator.quota_resumed", agent=agent.name)
            self._dispatch(now)
            return
        q.next_probe_at = now + max(self.config.probe_interval, retry_after or 0.0)
        self._log("info", "coordinator.probe_still_exhausted", agent=agent.name,
                  failed=failed, next_probe_at=q.next_probe_at)  # fmt: skip

    # ------------------------------------------------------------------ dispatch

    def _announce_due(self, t: TaskRecord, now: float, *, freed: bool) -> bool:
        if t.announced_at is None:
            return True
        if freed:  # capacity just appeared: whoever became idle should hear of it
            return True
        interval = self.config.reannounce_interval
        curve = BackoffCurve(initial=interval, cap=max(interval, REANNOUNCE_CAP))
        return now - t.announced_at >= curve.delay(t.announces)

    def _announce(self, t: TaskRecord, now: float) -> None:
        t.announced_at = now
        t.announces += 1
        self._send(self._announce_line(t))

    def _announce_for(self, agent: AgentRecord, now: float) -> None:
        """An agent became idle: tell it about queued tasks it may have missed."""
        if self.gate() is not None:
            return
        budget = self.config.max_announce
        for t in self.queued():
            if budget <= 0:
                break
            if not self._role_ok(agent, t):
                continue
            if t.announced_at is not None and now - t.announced_at < 5.0:
                continue
            self._announce(t, now)
            budget -= 1

    def _dispatch(self, now: float, *, freed: bool = True) -> None:
        """Fill free slots: queued tasks in order go to their first eligible waiting
        claimant, or are re-announced (at most one per free slot, and ``max_announce``).

        ``freed``: something just changed (a slot freed, the pause ended): announce at
        once; otherwise (a tick) unclaimed tasks are re-announced with backoff."""
        self._check_budgets()
        if self.gate() is not None:
            return
        cfg = self.config
        budget = cfg.max_announce
        if cfg.max_active > 0:
            budget = min(budget, cfg.max_active - self.active_count)
        for t in self.queued():
            if self.gate() is not None:
                break
            waiting = self.waiting.get(t.id, [])
            chosen = next(
                (self.agents[n] for n in waiting
                 if n in self.agents and self._eligible(self.agents[n], t, now)),
                None,
            )  # fmt: skip
            if chosen is not None:
                self._assign(t, chosen, now)
            elif budget > 0 and self._announce_due(t, now, freed=freed):
                self._announce(t, now)
                budget -= 1
