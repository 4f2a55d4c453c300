"""What `agentctl status`, `agentctl top` and `agentctl events` show (pure: no I/O).

Three sources tell different parts of the truth about an agent, and none is enough
alone:

- **Podman** (``controller.status.fleet_status``): whether the container runs, how it
  ended, the supervisor's last word in ``state.json``, restart counts; and a stats
  sample for memory and CPU;
- **the coordinator's board** (``GET /api/v1/tasks`` and ``/agents``): what the runner
  says it does (idle, promoting, active, demoting), its task, its last heartbeat, the
  tokens and cost of every attempt, the fleet's budgets;
- **the controller's health record** (``<state>/health/<fleet>.json``, written by
  `agentctl up`): restarts it made and the *degraded* mark.

:func:`build_view` combines them into one row per agent (the container's state wins when
it says the runner cannot be doing what it last reported) and the fleet's totals. When
the board cannot be read the rows still say what Podman knows, and the view says why the
rest is missing. The I/O that fills the inputs is ``controller.observe``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from agentctl_swarm.fleet.render import role_of
from agentctl_swarm.podman.types import ContainerStats

if TYPE_CHECKING:  # only the shape; importing status.py would load the Podman backend
    from agentctl_swarm.controller.status import AgentStatus

#: Runner states that mean "working on a task" (the board says "assigned" until the
#: runner's first heartbeat about it).
BUSY = frozenset({"assigned", "promoting", "active", "demoting"})
#: Row order in `top`: working agents first, then the ones that need a look, then idle.
_RANK = {
    "active": 0,
    "promoting": 1,
    "assigned": 1,
    "demoting": 2,
    "blocked": 3,
    "silent": 3,
    "restarting": 3,
    "crashed": 3,
    "degraded": 3,
    "idle": 4,
    "starting": 5,
    "running": 5,
    "created": 6,
    "paused": 6,
    "stopping": 6,
    "stopped": 7,
    "missing": 8,
}
_TASK_STATES = ("queued", "running", "done", "failed", "cancelled")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class BoardSnapshot:
    """What the coordinator's board said, or why it could not be read."""

    url: str
    tasks_doc: Mapping[str, Any] | None = None  # GET /api/v1/tasks: status fields + tasks
    agents: Sequence[Mapping[str, Any]] | None = None  # GET /api/v1/agents: "agents"
    error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None and self.tasks_doc is not None

    @property
    def tasks(self) -> list[Mapping[str, Any]]:
        raw = (self.tasks_doc or {}).get("tasks")
        return [t for t in raw if isinstance(t, Mapping)] if isinstance(raw, list) else []


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class AgentRow:
    """One agent as `status` shows it."""

    agent: str
    role: str
    state: str
    detail: str = ""
    container: str | None = None
    node: str = "local"
    container_state: str = "absent"
    runner_state: str | None = None
    task: str | None = None
    restarts: int = 0
    tokens: int | None = None  # None: the board could not be read
    cost_usd: float | None = None
    heartbeat_age: float | None = None  # seconds since the coordinator last heard it
    mem_usage: int | None = None
    mem_limit: int | None = None
    cpu_percent: float | None = None
    uptime_seconds: float | None = None

    @property
    def mem_percent(self) -> float | None:
        if self.mem_usage is None or not self.mem_limit:
            return None
        return 100.0 * self.mem_usage / self.mem_limit

    @property
    def busy(self) -> bool:
        return self.state in BUSY

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["mem_percent"] = _round(self.mem_percent, 1)
        doc["cpu_percent"] = _round(self.cpu_percent, 1)
        doc["heartbeat_age"] = _round(self.heartbeat_age, 1)
        doc["uptime_seconds"] = _round(self.uptime_seconds, 1)
        doc["cost_usd"] = _round(self.cost_usd, 6)
        return doc


@dataclass(frozen=True)
class Totals:
    """The fleet at a glance."""

    agents: int
    states: dict[str, int]
    active: int
    tasks: dict[str, int] | None  # None: the board could not be read
    tokens: int | None
    cost_usd: float | None
    token_budget: int = 0
    cost_budget_usd: float = 0.0
    budget_percent: float | None = None  # the most used of the fleet's budgets
    gate: str | None = None  # why the coordinator assigns nothing now
    quota_paused: bool = False
    max_active: int = 0

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["budget_percent"] = _round(self.budget_percent, 1)
        doc["cost_usd"] = _round(self.cost_usd, 6)
        return doc


@dataclass(frozen=True)
class FleetView:
    fleet: str
    time: float
    board: BoardSnapshot
    rows: tuple[AgentRow, ...]
    totals: Totals
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "fleet": self.fleet,
            "time": _iso(self.time),
            "board": {
                "url": self.board.url,
                "reachable": self.board.reachable,
                "error": self.board.error,
            },
            "agents": [r.as_dict() for r in self.rows],
            "totals": self.totals.as_dict(),
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- combining


def build_view(
    fleet: str,
    *,
    desired: Iterable[str],
    task_takers: Iterable[str],
    statuses: Sequence[AgentStatus],
    stats: Mapping[str, ContainerStats],
    previous_stats: Mapping[str, ContainerStats] | None = None,
    board: BoardSnapshot,
    health: Mapping[str, Any] | None,
    now: float,
) -> FleetView:
    """One row per agent the fleet file declares or Podman has, and the totals.

    ``desired``: the agent names the fleet file declares (an absent one is "missing");
    ``task_takers``: the ones that claim tasks (only they are expected on the board);
    ``stats``/``previous_stats``: two samples give the CPU use between them, one alone
    gives Podman's average since the start; ``health``: the document `agentctl up`
    writes (``{"agents": {name: {...}}}``), or None.
    """
    takers = set(task_takers)
    by_agent = {s.agent: s for s in statuses}
    names = sorted(set(desired) | set(by_agent))
    runners = {str(a.get("name")): a for a in board.agents or [] if isinstance(a, Mapping)}
    records = (health or {}).get("agents") if isinstance(health, Mapping) else None
    records = records if isinstance(records, Mapping) else {}
    usage = agent_usage(board.tasks) if board.reachable else None
    rows = []
    for name in names:
        status = by_agent.get(name)
        runner = runners.get(name) if board.reachable else None
        record = records.get(name) if isinstance(records.get(name), Mapping) else None
        state, detail = classify(
            status, runner, record, takes_tasks=name in takers, board_ok=board.reachable, now=now
        )
        sample = stats.get(status.name) if status else None
        last_seen = _num(runner.get("last_seen")) if runner else None
        tokens, cost = usage.get(name, (0, 0.0)) if usage is not None else (None, None)
        rows.append(
            AgentRow(
                agent=name,
                role=status.role if status else (role_of(name) or "-"),
                state=state,
                detail=detail,
                container=status.name if status else None,
                node=status.node if status else "local",
                container_state=status.state if status else "absent",
                runner_state=str(runner.get("state")) if runner and runner.get("state") else None,
                task=str(runner["task"]) if runner and runner.get("task") else None,
                restarts=(status.restarts if status else 0)
                + int(_num((record or {}).get("restarts")) or 0),
                tokens=tokens,
                cost_usd=cost,
                heartbeat_age=max(0.0, now - last_seen) if last_seen else None,
                mem_usage=sample.mem_usage if sample else None,
                mem_limit=sample.mem_limit if sample else None,
                cpu_percent=cpu_percent((previous_stats or {}).get(sample.name), sample)
                if sample
                else None,
                uptime_seconds=status.uptime_seconds if status else None,
            )
        )
    rows.sort(key=sort_key)
    notes = () if board.reachable else (board_note(board),)
    return FleetView(fleet, now, board, tuple(rows), totals(rows, board), notes)


def classify(
    status: AgentStatus | None,
    runner: Mapping[str, Any] | None,
    health: Mapping[str, Any] | None,
    *,
    takes_tasks: bool,
    board_ok: bool,
    now: float,
) -> tuple[str, str]:
    """(state, detail) of one agent from its container, runner and health record.

    Precedence: no container; the controller's *degraded* mark; a container that is not
    running, or a supervisor (re)starting its agent process (what the runner last
    reported is then stale); the runner's own report; Podman's word alone.
    """
    if status is None:
        return "missing", "no container: `agentctl apply` or `agentctl up` creates it"
    if health and health.get("degraded"):
        return "degraded", str(health.get("reason") or "too many restarts")
    supervisor = status.supervisor
    if status.state != "running":
        return _not_running(status, health, now)
    if supervisor == "backoff":
        return "restarting", "its agent process exited; the supervisor starts it again"
    if supervisor == "starting":
        return "starting", "its supervisor is preparing the workspace"
    if supervisor in {"fatal", "degraded", "crashed"}:
        return ("degraded" if supervisor == "degraded" else "crashed"), f"supervisor: {supervisor}"
    if runner is not None:
        if runner.get("blocked"):
            name = runner.get("name") or status.agent
            return "blocked", (
                f"blocked ({runner['blocked']}): post `RETRY agent={name}` on the work channel "
                "once the credentials are fixed"
            )
        state = str(runner.get("state") or "")
        if state in BUSY:
            return state, ""
        if state == "idle":
            if runner.get("alive") is False:
                return "silent", "idle, but no heartbeat lately (`agentctl up` restarts it)"
            return "idle", ""
    if takes_tasks and board_ok:
        return "starting", "running; the coordinator has not heard from it yet"
    return "running", ""


def _not_running(
    status: AgentStatus, health: Mapping[str, Any] | None, now: float
) -> tuple[str, str]:
    said = status.agent_status
    if status.state in {"created", "configured", "initialized"}:
        return "created", "not started"
    if status.state in {"paused", "stopping"}:
        return status.state, ""
    if status.supervisor == "degraded":
        return "degraded", "its supervisor gave up: the agent process crashed too often"
    if status.supervisor == "stopped" or status.exit_code in (0, 143):
        return "stopped", said
    detail = said
    next_start = _num((health or {}).get("next_start_at"))
    if next_start is not None:
        detail += f"; `agentctl up` starts it again in {human_age(max(0.0, next_start - now))}"
    return "crashed", detail


def agent_usage(tasks: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, float]]:
    """Tokens (in + out) and cost per agent, summed over every attempt it made."""
    out: dict[str, tuple[int, float]] = {}
    for task in tasks:
        for attempt in task.get("history") or []:
            if not isinstance(attempt, Mapping) or not attempt.get("agent"):
                continue
            agent = str(attempt["agent"])
            tokens = int(_num(attempt.get("tokens_in")) or 0) + int(
                _num(attempt.get("tokens_out")) or 0
            )
            cost = float(_num(attempt.get("cost_usd")) or 0.0)
            before = out.get(agent, (0, 0.0))
            out[agent] = (before[0] + tokens, before[1] + cost)
    return out


def totals(rows: Sequence[AgentRow], board: BoardSnapshot) -> Totals:
    """Agents per state, tasks per state, tokens, cost and budget use."""
    states = Counter(r.state for r in rows)
    ordered = dict(sorted(states.items(), key=lambda kv: (_RANK.get(kv[0], 9), kv[0])))
    active = sum(1 for r in rows if r.busy)
    if not board.reachable:
        return Totals(len(rows), ordered, active, None, None, None)
    doc = board.tasks_doc or {}
    counts = dict.fromkeys(_TASK_STATES, 0)
    for task in board.tasks:
        state = str(task.get("state"))
        key = "running" if state in {"assigned", "running"} else state
        counts[key] = counts.get(key, 0) + 1
    tokens = int(_num(doc.get("tokens_used")) or 0)
    cost = float(_num(doc.get("cost_used_usd")) or 0.0)
    token_budget = int(_num(doc.get("token_budget")) or 0)
    cost_budget = float(_num(doc.get("cost_budget_usd")) or 0.0)
    used = [100.0 * tokens / token_budget] if token_budget > 0 else []
    used += [100.0 * cost / cost_budget] if cost_budget > 0 else []
    quota = doc.get("quota")
    return Totals(
        agents=len(rows),
        states=ordered,
        active=active,
        tasks=counts,
        tokens=tokens,
        cost_usd=cost,
        token_budget=token_budget,
        cost_budget_usd=cost_budget,
        budget_percent=max(used) if used else None,
        gate=str(doc["gate"]) if doc.get("gate") else None,
        quota_paused=bool(isinstance(quota, Mapping) and quota.get("paused")),
        max_active=int(_num(doc.get("max_active")) or 0),
    )


def sort_key(row: AgentRow) -> tuple[int, str]:
    """Working agents first, then the ones that need a look, idle, stopped, missing."""
    return _RANK.get(row.state, 9), row.agent


def cpu_percent(previous: ContainerStats | None, current: ContainerStats) -> float:
    """CPU use between two samples (% of one core), as `podman stats` computes it; with
    no usable earlier sample (first look, or the container restarted since), Podman's
    average since the container started."""
    if previous is not None:
        elapsed = current.system_nanos - previous.system_nanos
        used = current.cpu_nanos - previous.cpu_nanos
        if elapsed > 0 and used >= 0:
            return 100.0 * used / elapsed
    return current.cpu_percent


def board_note(board: BoardSnapshot) -> str:
    """The one line that says why tasks, tokens and heartbeats are missing."""
    return f"{board.error or 'the task board did not answer'}; showing what Podman knows"


# --------------------------------------------------------------------------- cells


#: (key, title) of the status table; `top` shows the same.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("agent", "AGENT"),
    ("state", "STATE"),
    ("task", "TASK"),
    ("restarts", "RESTARTS"),
    ("tokens", "TOKENS"),
    ("cost", "COST"),
    ("heartbeat", "HEARTBEAT"),
    ("memory", "MEMORY"),
    ("cpu", "CPU"),
    ("detail", "DETAIL"),
)


#: Which columns stay when the terminal is narrow, most wanted first (DETAIL takes the
#: room that is left, cut with an ellipsis).
PRIORITY = ("agent", "state", "task", "tokens", "memory", "heartbeat", "cpu", "restarts",
            "cost", "node", "detail")  # fmt: skip
_DETAIL_MIN = 12


def choose_columns(
    rows: Sequence[Mapping[str, str]],
    width: int,
    columns: Sequence[tuple[str, str]] = COLUMNS,
) -> list[tuple[str, str]]:
    """The columns that fit ``width`` characters whole (a column cut to "ST…" is worse
    than no column), by :data:`PRIORITY`, in table order; the agent's name always (a row
    without it means nothing). Columns are two spaces apart."""
    need = {key: max([len(title), *(len(r.get(key, "")) for r in rows)]) for key, title in columns}
    keep: set[str] = set()
    used = 0
    for key in (k for k in PRIORITY if k in need):
        wanted = min(need[key], _DETAIL_MIN) if key == "detail" else need[key]
        extra = wanted + (2 if keep else 0)
        if used + extra <= width or key == "agent":
            keep.add(key)
            used += extra
    return [(key, title) for key, title in columns if key in keep]


def cells(row: AgentRow) -> dict[str, str]:
    """The row as table cells ("-" where nothing is known)."""
    memory = "-"
    if row.mem_usage is not None:
        memory = human_bytes(row.mem_usage)
        if row.mem_limit:
            memory += f"/{human_bytes(row.mem_limit)} {row.mem_percent:.0f}%"
    return {
        "agent": row.agent,
        "state": row.state,
        "task": row.task or "-",
        "restarts": str(row.restarts),
        "tokens": "-" if row.tokens is None else human_count(row.tokens),
        "cost": "-" if row.cost_usd is None else money(row.cost_usd),
        "heartbeat": "-" if row.heartbeat_age is None else human_age(row.heartbeat_age) + " ago",
        "memory": memory,
        "cpu": "-" if row.cpu_percent is None else f"{row.cpu_percent:.1f}%",
        "detail": row.detail or "",
        "node": row.node,
    }


def summary_lines(view: FleetView) -> list[str]:
    """The totals under the table."""
    t = view.totals
    states = ", ".join(f"{n} {s}" for s, n in t.states.items()) or "none"
    lines = [f"agents: {t.agents} ({states}); working: {t.active}"]
    if t.tasks is not None:
        tasks = ", ".join(f"{n} {s}" for s, n in t.tasks.items() if n or s != "cancelled")
        lines.append(f"tasks: {tasks}")
        spend = f"tokens: {human_count(t.tokens or 0)}   cost: {money(t.cost_usd or 0.0)}"
        budgets = []
        if t.token_budget:
            budgets.append(f"{human_count(t.token_budget)} tokens")
        if t.cost_budget_usd:
            budgets.append(money(t.cost_budget_usd))
        if budgets:
            spend += f"   budget: {t.budget_percent or 0:.0f}% used of {' / '.join(budgets)}"
        lines.append(spend)
        if t.gate:
            lines.append(f"not assigning: {t.gate}")
    return lines


def human_bytes(n: int) -> str:
    """1536 -> "1.5Ki"; binary units, as memory limits are written."""
    value = float(n)
    for unit in ("B", "Ki", "Mi", "Gi", "Ti"):
        if value < 1024 or unit == "Ti":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.0f}{unit}" if value >= 10 else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_age(seconds: float) -> str:
    """65 -> "1m05s"; a short age for a table."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def human_count(n: int) -> str:
    """41102 -> "41.1k"."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.2f}M"


def money(usd: float) -> str:
    return f"${usd:.4f}" if usd < 1 else f"${usd:.2f}"


# --------------------------------------------------------------------------- events

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Fields every event has; the others are printed as key=value after the reason.
_EVENT_FIELDS = {"time", "fleet", "event", "agent", "reason"}


def parse_since(text: str, now: float) -> float:
    """``--since``: a duration back from now (``90s``, ``10m``, ``1h30m``, ``2d``) or a
    time (``2026-11-28T08:00``, ISO 8601; local time when no zone is given), as epoch
    seconds. ValueError with the accepted forms otherwise."""
    spec = text.strip()
    if spec and _DURATION.sub("", spec).strip() == "":
        return now - sum(float(n) * _UNIT[u.lower()] for n, u in _DURATION.findall(spec))
    try:
        when = datetime.fromisoformat(spec.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30s, 10m, 2h, 1d, 1h30m) nor a time "
            "(2026-11-28T08:00)"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.timestamp()


def event_time(record: Mapping[str, Any]) -> float | None:
    """The event's time as epoch seconds (None when it has none that parses)."""
    raw = record.get("time")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def keep_event(
    record: Mapping[str, Any], *, agent: str | None = None, since: float | None = None
) -> bool:
    """Whether ``record`` passes `events`' filters."""
    if agent is not None and record.get("agent") != agent:
        return False
    if since is not None:
        when = event_time(record)
        if when is None or when < since:
            return False
    return True


def event_line(record: Mapping[str, Any], *, tz: tzinfo | None = None) -> str:
    """One readable line: local time, agent, event, reason, then the other fields."""
    when = event_time(record)
    stamp = (
        datetime.fromtimestamp(when, tz).strftime("%Y-%m-%d %H:%M:%S")  # tz None: local
        if when is not None
        else str(record.get("time", "-"))[:19]
    )
    extra = " ".join(f"{k}={_compact(v)}" for k, v in record.items() if k not in _EVENT_FIELDS)
    reason = str(record.get("reason") or "")
    text = " ".join(p for p in (reason, extra) if p)
    agent, event = str(record.get("agent") or "-"), str(record.get("event", "?"))
    return f"{stamp}  {agent:<18}  {event:<24}  {text}".rstrip()


EVENT_HEADER = f"{'TIME':<19}  {'AGENT':<18}  {'EVENT':<24}  REASON"


# --------------------------------------------------------------------------- helpers


def _compact(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _num(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
