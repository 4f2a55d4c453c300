"""The fetching behind `agentctl status`, `top`, `events` and `transcript` (thin I/O).

Each function reads one kind of source and hands plain values to the pure modules:
Podman (containers, state.json, stats, files) through the backend, the coordinator's
board over HTTP (``coordinator.board_client``), and the controller's files in the state
directory (the health record, the events log). A source that does not answer becomes a
reason in the result, never a traceback: what can still be shown is shown.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentctl_swarm.config import Settings
from agentctl_swarm.controller.apply import server_url_for
from agentctl_swarm.controller.events import events_path
from agentctl_swarm.controller.fleet_view import BoardSnapshot, FleetView, build_view
from agentctl_swarm.controller.health_store import load_health
from agentctl_swarm.controller.nodes import NodeSet
from agentctl_swarm.controller.status import AmbiguousAgent, fleet_status
from agentctl_swarm.controller.transcript import Clipped, clip
from agentctl_swarm.coordinator.board_client import BoardClient, board_url
from agentctl_swarm.core.errors import AgentctlError, UsageError
from agentctl_swarm.fleet.loader import LoadedFleet
from agentctl_swarm.fleet.render import STATE_DIR, agent_name, role_of, volume_name
from agentctl_swarm.podman.backend import PodmanBackend, PodmanError
from agentctl_swarm.podman.types import ContainerStats, ObservedContainer

Backend = PodmanBackend | NodeSet
TRANSCRIPTS = f"{STATE_DIR}/transcripts"
#: Largest transcript shown whole; above it the middle is left out (`--max-bytes`).
TRANSCRIPT_CAP = 8 * 1024 * 1024


# --------------------------------------------------------------------------- status


def board_snapshot(server_url: str, *, timeout: float = 3.0) -> BoardSnapshot:
    """The board's tasks and agents (two GETs), or why they could not be read."""
    try:
        base = board_url(server_url)
    except UsageError as exc:
        return BoardSnapshot(server_url, error=exc.one_line())
    client = BoardClient(base, timeout=timeout)
    try:
        tasks = client.tasks()
        agents = client.read("agents")
    except AgentctlError as exc:
        return BoardSnapshot(base, error=str(exc))
    listed = agents.get("agents") if isinstance(agents, dict) else None
    return BoardSnapshot(base, tasks_doc=tasks, agents=listed if isinstance(listed, list) else [])


def container_stats(backend: Backend, names: list[str]) -> dict[str, ContainerStats]:
    """One stats sample per running container; {} when Podman cannot give one (memory
    and CPU are then shown as unknown, not as an error)."""
    try:
        return backend.stats(names)
    except AgentctlError:
        return {}


def gather(
    loaded: LoadedFleet,
    backend: Backend,
    settings: Settings,
    *,
    previous: dict[str, ContainerStats] | None = None,
    cpu_window: float = 0.0,
    board_timeout: float = 3.0,
    clock: Callable[[], float] = time.time,
) -> tuple[FleetView, dict[str, ContainerStats]]:
    """Everything `status` shows, and the stats sample (`top` passes it back as
    ``previous`` next time, so CPU is the use between two refreshes).

    Without ``previous``, ``cpu_window`` > 0 takes a first sample, reads the board, and
    takes the second at least that many seconds later: CPU *now*, not Podman's average
    since the container started. Podman unreachable raises (exit 3); the board not
    answering is a note in the view.
    """
    fleet = loaded.fleet
    statuses = fleet_status(backend, fleet.name)  # type: ignore[arg-type]  # a NodeSet too
    running = [s.name for s in statuses if s.state == "running"]
    started = time.monotonic()
    if previous is None and cpu_window > 0 and running:
        previous = container_stats(backend, running)
    board = board_snapshot(server_url_for(loaded, settings), timeout=board_timeout)
    if previous is not None and cpu_window > 0:
        time.sleep(max(0.0, cpu_window - (time.monotonic() - started)))
    stats = container_stats(backend, running)
    desired = [agent_name(a.role, i) for a in fleet.agents for i in a.indexes]
    takers = [agent_name(a.role, i) for a in fleet.agents if a.takes_tasks for i in a.indexes]
    view = build_view(
        fleet.name,
        desired=desired,
        task_takers=takers,
        statuses=statuses,
        stats=stats,
        previous_stats=previous,
        board=board,
        health=load_health(settings.state_dir, fleet.name),
        now=clock(),
    )
    return view, stats


# --------------------------------------------------------------------------- events


def follow_events(
    state_dir: Path,
    fleet: str,
    *,
    keep: Callable[[dict[str, Any]], bool] = lambda _record: True,
    backlog: int | None = None,
    stop: threading.Event | None = None,
    poll: float = 0.5,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The events passing ``keep`` as (line, record): the last ``backlog`` of those
    already written (all when None), then each new one as it is written.

    Like ``tail -F``: waits for the log to appear, and when the controller rotates it
    (``<fleet>.jsonl`` → ``.jsonl.1``) reads the old file to its end before it opens the
    new one, so no line is lost or repeated across a rotation. The backlog is read
    through the same open file the following continues on, so nothing written meanwhile
    falls in between. Ends when ``stop`` is set.
    """
    path = events_path(state_dir, fleet)
    handle = _open(path)
    older = b""
    with contextlib.suppress(OSError):  # the rotated generation, unless it is what we hold
        if handle is None or os.fstat(handle.fileno()).st_ino != os.stat(_rotated(path)).st_ino:
            older = _rotated(path).read_bytes()
    current, pending = b"", b""
    if handle is not None:
        current, _, pending = handle.read().rpartition(b"\n")
    past = [(line, r) for line, r in _lines(older + b"\n" + current) if keep(r)]
    if backlog is not None:
        past = past[-backlog:] if backlog > 0 else []
    yield from past
    while stop is None or not stop.is_set():
        if handle is None:
            handle = _open(path)
            if handle is None:
                _sleep(stop, poll)
                continue
        chunk = handle.read()
        if chunk:
            whole, _, pending = (pending + chunk).rpartition(b"\n")
            yield from ((line, r) for line, r in _lines(whole) if keep(r))
            continue
        try:
            moved = os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            moved = True
        if moved:  # rotated away: what we hold is complete, read to its end above
            held = os.fstat(handle.fileno()).st_ino
            yield from ((line, r) for line, r in _lines(pending + handle.read()) if keep(r))
            pending = b""
            handle.close()
            handle = None
            with contextlib.suppress(OSError):
                if os.stat(_rotated(path)).st_ino != held:  # a whole generation came and
                    data = _rotated(path).read_bytes()  # went while we read the one before
                    yield from ((line, r) for line, r in _lines(data) if keep(r))
            continue
        _sleep(stop, poll)
    if handle is not None:
        handle.close()


def _open(path: Path) -> io.BufferedReader | None:
    try:
        return open(path, "rb")  # kept open while following
    except FileNotFoundError:
        return None


def _rotated(path: Path) -> Path:
    return path.with_suffix(".jsonl.1")


def _lines(data: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    for raw in data.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(raw)
            if isinstance(record, dict):
                yield raw, record


def _sleep(stop: threading.Event | None, seconds: float) -> None:
    if stop is None:
        time.sleep(seconds)
    else:
        stop.wait(seconds)


# --------------------------------------------------------------------------- transcripts


class TranscriptNotFound(AgentctlError):
    """No transcript could be read for what the user named (exit 1); ``problems``: why,
    attempt by attempt, printed before the summary."""

    def __init__(self, message: str, *, hint: str | None = None, problems: list[str] | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems or []

    def details(self) -> list[str]:
        return self.problems


@dataclass(frozen=True)
class Attempt:
    """One run of a task by one agent, as far as it is known."""

    task: str
    n: int
    agent: str
    fleet: str | None = None
    outcome: str | None = None  # from the board: done, failed, lost, ...
    reason: str | None = None
    prompt: str | None = None

    @property
    def path(self) -> str:
        return f"{TRANSCRIPTS}/{self.task}-{self.n}.jsonl"


@dataclass(frozen=True)
class Transcript:
    """An attempt's transcript as read from its container, or why it could not be."""

    attempt: Attempt
    container: str | None
    text: Clipped | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Found:
    """What `agentctl transcript` resolved: the transcripts, and notes for the reader."""

    target: str
    kind: str  # "task" or "agent"
    transcripts: list[Transcript]
    notes: list[str]


def find_transcripts(
    target: str,
    backend: Backend,
    *,
    fleet: str | None,
    server_url: str | None,
    attempt: int | None = None,
    cap: int = TRANSCRIPT_CAP,
    timeout: float = 5.0,
) -> Found:
    """The transcripts of task ``target`` (every attempt, or ``attempt``), or the latest
    of agent ``target``. The board (at ``server_url``) says which agents ran a task;
    without it the fleet's containers are searched. Raises in the user's words when
    nothing can be shown."""
    containers = backend.list_owned(fleet)
    board = BoardClient(board_url(server_url), timeout=timeout) if server_url else None
    matches = [o for o in containers if target in {o.name, o.agent}]
    if len({o.fleet for o in matches}) > 1:
        names = ", ".join(o.name for o in matches)
        raise AmbiguousAgent(f"{target!r} is in several fleets ({names})", hint="pass --fleet NAME")
    if matches or role_of(target) is not None:
        if attempt is not None:
            raise UsageError(
                "--attempt goes with a task id",
                hint=f"`agentctl transcript TASK --attempt {attempt}`",
            )
        return _agent(target, matches[0] if matches else None, backend, board, fleet, cap)
    return _task(target, containers, backend, board, fleet, attempt, cap)


def _task(
    task: str,
    containers: list[ObservedContainer],
    backend: Backend,
    board: BoardClient | None,
    fleet: str | None,
    attempt: int | None,
    cap: int,
) -> Found:
    notes: list[str] = []
    attempts: list[Attempt] | None = None
    if board is None:
        notes.append("no task board to ask (no fleet file and no AGENTCTL_SERVER_URL); "
                     "searched the containers")  # fmt: skip
    else:
        try:
            doc = board.task(task)
        except AgentctlError as exc:
            notes.append(f"{exc}; searched the fleet's containers instead")
        else:
            if doc is None:
                raise UsageError(
                    f"unknown task id {task!r} on the task board at {board.base}",
                    hint="`agentctl task list` shows the ids (or name an agent: swarm-ROLE-NNN)",
                )
            attempts = _attempts_of(doc, fleet)
            if not attempts:
                raise TranscriptNotFound(
                    f"task {task} has not been run yet (it is {doc.get('state', 'queued')})",
                    hint="its transcript appears once an agent has claimed it",
                )
    if attempts is None:  # no board: look for <task>-<n>.jsonl in every container
        found = _search(task, containers, backend, cap)
        if not found:
            where = f"the containers of fleet {fleet!r}" if fleet else "any agent container"
            raise TranscriptNotFound(
                f"no transcript of task {task!r} in {where}",
                hint="check the task id; a deleted container's transcripts stay in its state "
                "volume",
                problems=[f"note: {n}" for n in notes],
            )
        return Found(task, "task", _only(found, attempt, task), notes)
    by_agent = {o.agent: o for o in containers if fleet is None or o.fleet == fleet}
    chosen = _only(attempts, attempt, task)
    out = [_read(a, by_agent.get(a.agent), backend, cap) for a in chosen]
    if all(t.problem for t in out):
        if len(out) == 1:
            raise TranscriptNotFound(f"task {task}, attempt {out[0].attempt.n}: {out[0].problem}")
        raise TranscriptNotFound(
            f"no transcript of task {task} could be read",
            problems=[f"attempt {t.attempt.n} on {t.attempt.agent}: {t.problem}" for t in out],
        )
    return Found(task, "task", out, notes)


def _agent(
    agent: str,
    observed: ObservedContainer | None,
    backend: Backend,
    board: BoardClient | None,
    fleet: str | None,
    cap: int,
) -> Found:
    if observed is None:
        where = f" in fleet {fleet!r}" if fleet else ""
        volume = volume_name(fleet, agent, "state") if fleet else f"<fleet>-{agent}-state"
        raise TranscriptNotFound(
            f"agent {agent}{where} has no container (deleted?)",
            hint=f"its transcripts stay in its state volume {volume} until "
            "`agentctl delete --volumes`; `agentctl get` lists the agents",
        )
    notes: list[str] = []
    latest: Attempt | None = None
    if board is not None:
        try:
            tasks = board.tasks().get("tasks") or []
        except AgentctlError as exc:
            notes.append(f"{exc}; took the newest transcript file instead")
        else:
            ran = [
                (float(h.get("assigned_at") or 0), t, h)
                for t in tasks
                if isinstance(t, dict)
                for h in t.get("history") or []
                if isinstance(h, dict) and h.get("agent") == observed.agent
            ]
            if ran:
                _, t, h = max(ran, key=lambda x: x[0])
                latest = _attempt(t, h, observed.fleet)
    if latest is None:
        latest = _newest_file(backend, observed)
        if latest is None:
            raise TranscriptNotFound(
                f"{observed.agent} has no transcript yet",
                hint="it writes one per task it runs (`agentctl status` shows what it does)",
            )
    found = _read(latest, observed, backend, cap)
    if found.problem:
        raise TranscriptNotFound(f"{observed.agent}, task {latest.task}: {found.problem}")
    return Found(agent, "agent", [found], notes)


def _attempts_of(doc: dict[str, Any], fleet: str | None) -> list[Attempt]:
    return [_attempt(doc, h, fleet) for h in doc.get("history") or [] if isinstance(h, dict)]


def _attempt(task: dict[str, Any], h: dict[str, Any], fleet: str | None) -> Attempt:
    return Attempt(
        task=str(task.get("id")),
        n=int(h.get("n") or 1),
        agent=str(h.get("agent")),
        fleet=fleet,
        outcome=h.get("outcome"),
        reason=h.get("reason") or None,
        prompt=task.get("prompt"),
    )


def _only(items: list[Any], attempt: int | None, task: str) -> list[Any]:
    """All attempts, or the one asked for (a UsageError naming the ones there are)."""
    if attempt is None:
        return items
    numbers = [a.attempt.n if isinstance(a, Transcript) else a.n for a in items]
    if attempt not in numbers:
        have = ", ".join(str(n) for n in numbers) or "none"
        raise UsageError(f"task {task} has no attempt {attempt} (attempts: {have})")
    return [a for a, n in zip(items, numbers, strict=True) if n == attempt]


def _read(
    attempt: Attempt, observed: ObservedContainer | None, backend: Backend, cap: int
) -> Transcript:
    if observed is None:
        volume = volume_name(attempt.fleet, attempt.agent, "state") if attempt.fleet else None
        kept = f" (its state volume {volume} still holds it)" if volume else ""
        return Transcript(
            attempt, None, problem=f"the container of {attempt.agent} no longer exists{kept}"
        )
    data = read_whole(backend, observed.name, attempt.path)
    if data is None:
        if backend.inspect(observed.name) is None:
            return Transcript(attempt, observed.name, problem=f"{observed.name} no longer exists")
        why = f" (the attempt ended: {attempt.outcome})" if attempt.outcome else ""
        return Transcript(
            attempt,
            observed.name,
            problem=f"no {attempt.path} in {observed.name}: Claude Code never started for "
            f"this attempt{why}",
        )
    return Transcript(attempt, observed.name, clip(data, cap))


def read_whole(backend: Backend, container: str, path: str) -> bytes | None:
    """A whole file out of a container, running or stopped (Podman's archive API reads a
    stopped container's filesystem too); None when the file or the container is gone.
    (``backend.read_file`` gives None for a file over its limit too, which would say
    "missing" about a transcript that is only large: this one is clipped afterwards.)"""
    try:
        data = backend.get_archive(container, path)
    except PodmanError:
        return None
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        handle = tar.extractfile(member) if member is not None else None
        return handle.read() if handle is not None else None


def _search(
    task: str, containers: list[ObservedContainer], backend: Backend, cap: int
) -> list[Transcript]:
    """``<task>-<n>.jsonl`` in any container, n = 1, 2, ... until two numbers in a row are
    nowhere (an attempt that never started Claude Code leaves no file)."""
    out: list[Transcript] = []
    misses, n = 0, 1
    while misses < 2 and n <= 100:
        hit = False
        for o in containers:
            attempt = Attempt(task, n, o.agent, o.fleet)
            data = read_whole(backend, o.name, attempt.path)
            if data is not None:
                out.append(Transcript(attempt, o.name, clip(data, cap)))
                hit = True
        misses = 0 if hit else misses + 1
        n += 1
    return out


def _newest_file(backend: Backend, observed: ObservedContainer) -> Attempt | None:
    """The agent's newest transcript by modification time, from its files alone."""
    names: list[str] = []
    if observed.running:
        with contextlib.suppress(AgentctlError):
            res = backend.exec(observed.name, ["ls", "-1t", TRANSCRIPTS], timeout=20)
            names = res.stdout.decode("utf-8", "replace").split()
    else:
        with contextlib.suppress(AgentctlError, tarfile.TarError):
            data = backend.get_archive(observed.name, TRANSCRIPTS)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                files = [m for m in tar.getmembers() if m.isfile()]
                names = [os.path.basename(m.name) for m in sorted(files, key=lambda m: -m.mtime)]
    for name in names:
        stem, dot, ext = name.rpartition(".")
        task, _, n = stem.rpartition("-")
        if dot and ext == "jsonl" and task and n.isdigit():
            return Attempt(task, int(n), observed.agent, observed.fleet)
    return None
