"""The runner's decisions, without I/O: idle → claim → promote → active → demote → idle.

Events come in (a coordination message from the work channel and who sent it, the local
gate's answer, the end of a Claude run, a shutdown), and :class:`Effects` go out (lines to
post, work to start, a run to stop). The asyncio shell in ``agent/runner.py`` carries
them out. Kept pure so every rule is unit-tested without a chat server or a process —
the same split as the websockets library's protocol core and its I/O shells.

Rules:
- idle = presence and heartbeats only: no LLM process runs;
- a TASK whose role matches (or names no role) is claimed once, while idle;
- an ASSIGN to this agent promotes it, after the node's local gate says yes; only one
  task at a time: an ASSIGN while busy is answered with UNCLAIM;
- ASSIGN, PROBE and CANCEL are obeyed only from the coordinator when its chat id is known
  (anyone can post on a channel);
- the end of a run becomes DONE, FAIL (with the reason), BLOCKED (auth: this agent stops
  taking work until a person sends RETRY agent=...), or QUOTA; a shutdown mid-task
  becomes UNCLAIM so the coordinator requeues it without counting an attempt.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum

from agentctl_swarm.coordinator import grammar as g

MAX_KNOWN_TASKS = 500


class Phase(StrEnum):
    IDLE = "idle"
    PROMOTING = "promoting"  # assigned; waiting for the local gate
    ACTIVE = "active"  # Claude Code runs
    DEMOTING = "demoting"  # the run ended; saving work and reporting
    BLOCKED = "blocked"  # auth failure: no more work until a person says RETRY


class End(StrEnum):
    """How a run ended, as the runner reports it (from the stream's structured fields)."""

    SUCCESS = "success"
    AUTH = "auth"
    QUOTA = "quota"
    OVERLOADED = "overloaded"
    CONTEXT = "context"
    TIMEOUT = "timeout"
    KILLED = "killed"
    CRASH = "crash"
    PERMISSION = "permission"
    API_ERROR = "api_error"
    CANCELLED = "cancelled"
    SHUTDOWN = "shutdown"
    #: The run succeeded but its work could not be committed (a full disk, a broken
    #: workspace): not done, and not this task's fault, so it is given back.
    UNSAVED = "unsaved"


@dataclass(frozen=True)
class Work:
    """One run to start: a task, or a probe of the model's quota."""

    task_id: str
    prompt: str
    attempt: int = 1
    branch: str | None = None
    timeout: float | None = None
    probe: bool = False


@dataclass(frozen=True)
class RunResult:
    """What the shell learned from one run."""

    end: End
    detail: str = ""
    summary: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    retry_after: float | None = None


@dataclass
class Effects:
    """What to do after an event; empty by default."""

    send: list[g.Message] = field(default_factory=list)
    gate: Work | None = None  # ask the node's local gate for a slot for this work
    start: Work | None = None  # start this run now
    stop: End | None = None  # stop the current run, reporting this end


class RunnerCore:
    """One agent's decisions. ``coordinators``: chat ids allowed to assign (empty: any)."""

    def __init__(self, agent: str, role: str, *, coordinators: frozenset[str] = frozenset()):
        self.agent = agent
        self.role = role
        # chat ids as the wire writes them ("@" + 16 hex); configuration may omit the "@"
        self.coordinators = frozenset(c if c.startswith("@") else f"@{c}" for c in coordinators)
        self.phase = Phase.IDLE
        self.current: Work | None = None
        self.claimed: set[str] = set()
        self.known: OrderedDict[str, g.Task] = OrderedDict()

    # -- helpers

    def _trusted(self, sender: str | None) -> bool:
        return not self.coordinators or (sender is not None and sender in self.coordinators)

    def _remember(self, task: g.Task) -> None:
        assert task.id is not None
        self.known[task.id] = task
        self.known.move_to_end(task.id)
        while len(self.known) > MAX_KNOWN_TASKS:
            old, _ = self.known.popitem(last=False)
            self.claimed.discard(old)

    def heartbeat(self) -> g.Heartbeat:
        """The line posted every heartbeat interval."""
        task = self.current.task_id if self.current and not self.current.probe else None
        return g.Heartbeat(agent=self.agent, role=self.role, state=self.phase.value, id=task)

    # -- events

    def on_message(self, msg: g.Message, sender: str | None = None) -> Effects:
        """A coordination line from the work channel (``sender``: the poster's chat id)."""
        fx = Effects()
        if isinstance(msg, g.Task):
            if msg.id is None:
                return fx  # the coordinator gives it an id and announces it again
            self._remember(msg)
            mine = g.role_matches(msg.role, self.role)
            if mine and self.phase is Phase.IDLE and msg.id not in self.claimed:
                self.claimed.add(msg.id)
                fx.send.append(g.Claim(id=msg.id, agent=self.agent, role=self.role))
        elif isinstance(msg, g.Assign) and msg.agent == self.agent and self._trusted(sender):
            fx = self._assigned(msg)
        elif isinstance(msg, g.Rejected) and self.agent in msg.agents and msg.id:
            self.claimed.discard(msg.id)
        elif isinstance(msg, g.Probe) and msg.agent == self.agent and self._trusted(sender):
            if self.phase is Phase.IDLE and msg.id:
                work = Work(task_id=msg.id, prompt="Reply with the single word OK.", probe=True)
                self.phase, self.current = Phase.ACTIVE, work
                fx.start = work
        elif isinstance(msg, g.Cancel) and self._trusted(sender):
            current = self.current
            ours = msg.agent in (None, self.agent)
            if ours and current and not current.probe and current.task_id == msg.id:
                if self.phase is Phase.ACTIVE:
                    fx.stop = End.CANCELLED
                elif self.phase is Phase.PROMOTING:
                    self.phase, self.current = Phase.IDLE, None
        elif isinstance(msg, g.Retry) and msg.agent == self.agent and self.phase is Phase.BLOCKED:
            self.phase = Phase.IDLE
        return fx

    def _assigned(self, msg: g.Assign) -> Effects:
        fx = Effects()
        assert msg.id is not None
        if self.current is not None and self.current.task_id == msg.id:
            return fx  # a repeated ASSIGN of what we already work on
        if self.phase is not Phase.IDLE:
            reason = "blocked (auth)" if self.phase is Phase.BLOCKED else "busy with another task"
            fx.send.append(g.Unclaim(id=msg.id, agent=self.agent, reason=reason))
            return fx
        task = self.known.get(msg.id)
        if task is None:
            fx.send.append(
                g.Unclaim(id=msg.id, agent=self.agent, reason="task text not seen (restarted?)")
            )
            return fx
        work = Work(
            task_id=msg.id,
            prompt=task.text,
            attempt=msg.attempt or 1,
            branch=task.branch,
            timeout=float(task.timeout) if task.timeout else None,
        )
        self.phase, self.current = Phase.PROMOTING, work
        fx.gate = work
        return fx

    def on_gate(self, allowed: bool, reason: str = "") -> Effects:
        """The node's local gate answered for the work we are promoting."""
        fx = Effects()
        if self.phase is not Phase.PROMOTING or self.current is None:
            return fx
        if allowed:
            self.phase = Phase.ACTIVE
            fx.start = self.current
        else:
            fx.send.append(
                g.Unclaim(
                    id=self.current.task_id, agent=self.agent, reason=reason or "no local slot"
                )
            )
            self.phase, self.current = Phase.IDLE, None
        return fx

    def on_run_end(self, result: RunResult) -> Effects:
        """The run ended (after the shell saved the work): report it and go back to idle."""
        fx = Effects()
        work = self.current
        if work is None:
            return fx
        self.phase = Phase.DEMOTING
        fx.send.append(self._report(work, result))
        self.claimed.discard(work.task_id)
        self.current = None
        self.phase = Phase.BLOCKED if result.end is End.AUTH else Phase.IDLE
        return fx

    def _report(self, work: Work, r: RunResult) -> g.Message:
        usage = {"tokens_in": r.tokens_in, "tokens_out": r.tokens_out, "cost_usd": r.cost_usd}
        tid, me = work.task_id, self.agent
        if r.end is End.SUCCESS:
            return g.Done(id=tid, agent=me, text=r.summary[:2000], **usage)
        if r.end is End.AUTH:
            return g.Blocked(id=tid, agent=me, reason="auth", text=r.detail[:500])
        if r.end is End.QUOTA:
            return g.Quota(id=tid, agent=me, retry_after=r.retry_after, text=r.detail[:500])
        if r.end is End.SHUTDOWN:
            return g.Unclaim(id=tid, agent=me, reason="agent shutting down")
        if r.end is End.UNSAVED:
            # Given back without spending an attempt; the coordinator's cool-down sends
            # it to another agent first, whose workspace may be fine.
            return g.Unclaim(id=tid, agent=me, reason="could not save the work",
                             text=r.detail[:500])  # fmt: skip
        return g.Fail(id=tid, agent=me, reason=r.end.value, text=r.detail[:500], **usage)
