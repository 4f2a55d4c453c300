"""The fetching behind status and transcript (controller/observe.py): the board read over
real HTTP (a small server on 127.0.0.1 playing the coordinator), and the transcript
lookup through a stand-in for the Podman backend that keeps files per container, so every
way a lookup can fail is provoked: board down, task unknown, task not run, container
gone, file missing."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentctl_swarm.controller.observe import (
    TranscriptNotFound,
    board_snapshot,
    find_transcripts,
)
from agentctl_swarm.controller.status import AmbiguousAgent
from agentctl_swarm.core.errors import UsageError
from agentctl_swarm.podman.backend import PodmanError
from agentctl_swarm.podman.types import ContainerStats, ExecResult, ObservedContainer

STREAM = (Path(__file__).resolve().parents[1] / "fixtures" / "claude_streams"
          / "success_write_edit.jsonl").read_bytes()  # fmt: skip


class Board:
    """A coordinator's HTTP reads, served from ``docs`` (path -> (status, JSON))."""

    def __init__(self) -> None:
        self.docs: dict[str, tuple[int, Any]] = {}
        docs = self.docs

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, doc = docs.get(self.path, (404, {"error": "unknown"}))
                body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"ws://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def task(self, doc: dict[str, Any]) -> None:
        self.docs[f"/api/v1/tasks/{doc['id']}"] = (200, doc)
        tasks = self.docs.setdefault("/api/v1/tasks", (200, {"tasks": []}))[1]["tasks"]
        tasks.append(doc)


@pytest.fixture
def board() -> Iterator[Board]:
    b = Board()
    yield b
    b.server.shutdown()
    b.server.server_close()


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{s.getsockname()[1]}"  # closed when we return


class Podman:
    """The backend calls the lookup makes, over files kept per container."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, bytes]] = {}
        self.running: dict[str, bool] = {}

    def add(self, agent: str, *, running: bool = True, fleet: str = "f", **files: bytes) -> None:
        name = f"{fleet}-{agent}"
        self.files[name] = {f"/state/transcripts/{k}.jsonl": v for k, v in files.items()}
        self.running[name] = running

    def list_owned(self, fleet: str | None = None) -> list[ObservedContainer]:
        out = []
        for name, running in self.running.items():
            f, _, agent = name.partition("-")
            if fleet in (None, f):
                out.append(ObservedContainer(
                    id="x", name=name, fleet=f, agent=agent, role=agent.split("-")[1],
                    spec_hash="h", state="running" if running else "exited", image="i",
                    labels={}, created=None, started_at=None,
                ))  # fmt: skip
        return out

    def inspect(self, name: str) -> dict[str, Any] | None:
        return {"Id": name} if name in self.files else None

    def get_archive(self, container: str, path: str) -> bytes:
        files = self.files.get(container)
        if files is None:
            raise PodmanError(f"no container {container}")
        chosen = {p: d for p, d in files.items() if p == path or p.startswith(path + "/")}
        if not chosen:
            raise PodmanError(f"copying {container}:{path} out failed: no such file")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for i, (p, data) in enumerate(chosen.items()):
                info = tarfile.TarInfo(p.rsplit("/", 1)[1])
                info.size, info.mtime = len(data), 1000 + i
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def exec(self, container: str, argv: list[str], **_kw: Any) -> ExecResult:
        assert argv[:2] == ["ls", "-1t"]
        names = [p.rsplit("/", 1)[1] for p in self.files[container]]
        return ExecResult(0, "\n".join(reversed(names)).encode(), b"")


def _task(tid: str, *attempts: tuple[str, str | None, float], state: str = "done") -> dict:
    return {
        "id": tid, "state": state, "prompt": "please write hello.txt",
        "history": [{"n": i + 1, "agent": agent, "outcome": outcome, "assigned_at": at}
                    for i, (agent, outcome, at) in enumerate(attempts)],
    }  # fmt: skip


# ------------------------------------------------------------------ the board


def test_board_snapshot_reads_tasks_and_agents(board: Board) -> None:
    board.task(_task("t-1", ("swarm-b-000", "done", 1.0)))
    board.docs["/api/v1/agents"] = (200, {"agents": [{"name": "swarm-b-000", "state": "idle"}]})
    snap = board_snapshot(board.url)
    assert snap.reachable and snap.error is None
    assert snap.url == board.url.replace("ws://", "http://")
    assert [t["id"] for t in snap.tasks] == ["t-1"]
    assert snap.agents == [{"name": "swarm-b-000", "state": "idle"}]


def test_board_snapshot_says_why_when_it_cannot(board: Board) -> None:
    down = board_snapshot(_dead_url(), timeout=2)
    assert not down.reachable and "cannot read the task board" in str(down.error)
    board.docs["/api/v1/tasks"] = (404, b"not here")  # a chat server without a coordinator
    assert "serves no task board" in str(board_snapshot(board.url).error)
    assert "is not a WebSocket URL" in str(board_snapshot("http://127.0.0.1:1").error)


# ------------------------------------------------------------------ transcripts of a task


def test_every_attempt_is_read_from_the_container_that_ran_it(board: Board) -> None:
    podman = Podman()
    podman.add("swarm-b-000", **{"t-1-1": b'{"type":"system","subtype":"init"}\n'})
    podman.add("swarm-b-001", **{"t-1-2": STREAM})
    board.task(_task("t-1", ("swarm-b-000", "failed", 1.0), ("swarm-b-001", "done", 2.0)))
    found = find_transcripts("t-1", podman, fleet="f", server_url=board.url)
    assert found.kind == "task" and found.notes == []
    assert [(t.attempt.n, t.attempt.agent, t.container, t.attempt.outcome)
            for t in found.transcripts] == [(1, "swarm-b-000", "f-swarm-b-000", "failed"),
                                            (2, "swarm-b-001", "f-swarm-b-001", "done")]  # fmt: skip
    assert found.transcripts[1].text is not None
    assert found.transcripts[1].attempt.prompt == "please write hello.txt"
    only = find_transcripts("t-1", podman, fleet="f", server_url=board.url, attempt=2)
    assert [t.attempt.n for t in only.transcripts] == [2]
    with pytest.raises(UsageError, match=r"task t-1 has no attempt 3 \(attempts: 1, 2\)"):
        find_transcripts("t-1", podman, fleet="f", server_url=board.url, attempt=3)


def test_an_unknown_or_unrun_task_is_said_plainly(board: Board) -> None:
    podman = Podman()
    board.docs["/api/v1/tasks"] = (200, {"tasks": []})
    with pytest.raises(UsageError, match="unknown task id 't-nope' on the task board"):
        find_transcripts("t-nope", podman, fleet="f", server_url=board.url)
    board.task(_task("t-2", state="queued"))
    with pytest.raises(
        TranscriptNotFound, match="task t-2 has not been run yet \\(it is queued\\)"
    ):
        find_transcripts("t-2", podman, fleet="f", server_url=board.url)


def test_a_missing_file_or_a_deleted_container_is_named(board: Board) -> None:
    podman = Podman()
    podman.add("swarm-b-000")  # ran attempt 1 but never started Claude Code
    board.task(_task("t-3", ("swarm-b-000", "unclaimed", 1.0), ("swarm-b-009", "done", 2.0)))
    with pytest.raises(TranscriptNotFound) as caught:
        find_transcripts("t-3", podman, fleet="f", server_url=board.url)
    assert caught.value.details() == [
        "attempt 1 on swarm-b-000: no /state/transcripts/t-3-1.jsonl in f-swarm-b-000: Claude "
        "Code never started for this attempt (the attempt ended: unclaimed)",
        "attempt 2 on swarm-b-009: the container of swarm-b-009 no longer exists (its state "
        "volume f-swarm-b-009-state still holds it)",
    ]
    podman.add("swarm-b-009", **{"t-3-2": STREAM})  # one readable: the other is a note
    found = find_transcripts("t-3", podman, fleet="f", server_url=board.url)
    assert [bool(t.problem) for t in found.transcripts] == [True, False]


def test_without_the_board_the_containers_are_searched(board: Board) -> None:
    podman = Podman()
    podman.add("swarm-b-000", running=False, **{"t-4-1": STREAM, "t-5-1": STREAM})
    podman.add("swarm-b-001", **{"t-4-3": STREAM})  # attempt 2 never started Claude Code
    found = find_transcripts("t-4", podman, fleet="f", server_url=_dead_url(), timeout=2)
    assert [(t.attempt.n, t.attempt.agent) for t in found.transcripts] == [
        (1, "swarm-b-000"), (3, "swarm-b-001")]  # fmt: skip
    assert "cannot read the task board" in found.notes[0]
    assert found.notes[0].endswith("searched the fleet's containers instead")
    no_board = find_transcripts("t-4", podman, fleet="f", server_url=None)
    assert "no task board to ask" in no_board.notes[0]
    with pytest.raises(TranscriptNotFound, match="no transcript of task 't-6' in the containers"):
        find_transcripts("t-6", podman, fleet="f", server_url=None)


# ------------------------------------------------------------------ transcripts of an agent


def test_an_agent_shows_its_latest_task(board: Board) -> None:
    podman = Podman()
    podman.add("swarm-b-000", **{"t-7-1": STREAM, "t-8-2": STREAM})
    board.task(_task("t-8", ("swarm-b-001", "failed", 5.0), ("swarm-b-000", "done", 9.0)))
    board.task(_task("t-7", ("swarm-b-000", "done", 7.0)))
    found = find_transcripts("swarm-b-000", podman, fleet="f", server_url=board.url)
    (t,) = found.transcripts
    assert (found.kind, t.attempt.task, t.attempt.n) == ("agent", "t-8", 2)
    # by container name too
    found = find_transcripts("f-swarm-b-000", podman, fleet=None, server_url=board.url)
    assert found.transcripts[0].attempt.task == "t-8"
    with pytest.raises(UsageError, match="--attempt goes with a task id"):
        find_transcripts("swarm-b-000", podman, fleet="f", server_url=board.url, attempt=1)


def test_an_agent_without_the_board_uses_its_newest_file() -> None:
    podman = Podman()
    podman.add("swarm-b-000", **{"t-1-1": STREAM, "t-2-1": STREAM})  # running: ls -t
    podman.add("swarm-b-001", running=False, **{"t-3-1": STREAM, "t-4-2": STREAM})  # archive
    running = find_transcripts("swarm-b-000", podman, fleet="f", server_url=_dead_url(), timeout=2)
    assert running.transcripts[0].attempt.task == "t-2"
    assert "took the newest transcript file instead" in running.notes[0]
    stopped = find_transcripts("swarm-b-001", podman, fleet="f", server_url=None)
    assert (stopped.transcripts[0].attempt.task, stopped.transcripts[0].attempt.n) == ("t-4", 2)


def test_agent_lookups_that_fail(board: Board) -> None:
    podman = Podman()
    podman.add("swarm-b-000")
    board.docs["/api/v1/tasks"] = (200, {"tasks": []})
    with pytest.raises(TranscriptNotFound, match="swarm-b-000 has no transcript yet"):
        find_transcripts("swarm-b-000", podman, fleet="f", server_url=board.url)
    with pytest.raises(TranscriptNotFound) as gone:
        find_transcripts("swarm-b-007", podman, fleet="f", server_url=board.url)
    assert "agent swarm-b-007 in fleet 'f' has no container (deleted?)" in gone.value.one_line()
    assert "state volume f-swarm-b-007-state" in gone.value.one_line()
    podman.add("swarm-b-000", fleet="g")
    with pytest.raises(AmbiguousAgent, match="in several fleets"):
        find_transcripts("swarm-b-000", podman, fleet=None, server_url=None)


# ------------------------------------------------------------------ status: gather


class StatusPodman(Podman):
    """Adds what `status` reads: state.json, restart counts, stats samples."""

    def __init__(self) -> None:
        super().__init__()
        self.samples = 0
        self.asked: list[list[str]] = []

    def read_file(self, container: str, path: str, *, limit: int = 1 << 20) -> bytes | None:
        return self.files.get(container, {}).get(path)

    def restart_count(self, name: str) -> int | None:
        return 1 if name in self.files else None

    def stats(self, names: list[str]) -> dict[str, ContainerStats]:
        self.asked.append(list(names))
        self.samples += 1
        return {
            n: ContainerStats(n, 9.0, self.samples * 500_000_000, self.samples * 1_000_000_000,
                              100 << 20, 1 << 30)
            for n in names if self.running.get(n)
        }  # fmt: skip


def test_gather_combines_podman_the_board_and_the_health_record(
    tmp_path: Path, board: Board
) -> None:
    from agentctl_swarm.config import Settings
    from agentctl_swarm.controller.health_store import save_health
    from agentctl_swarm.controller.observe import gather
    from agentctl_swarm.fleet.source import read_fleet

    file = tmp_path / "fleet.yaml"
    file.write_text(
        "apiVersion: agentctl.io/v1\nkind: Fleet\nmetadata: {name: f}\n"
        f"server: {board.url}\n"
        "agents:\n  - role: builder\n    replicas: 3\n    runtime: claude\n"
    )
    podman = StatusPodman()
    podman.add("swarm-builder-000")
    podman.files["f-swarm-builder-000"]["/state/state.json"] = b'{"status": "running"}'
    podman.add("swarm-builder-001", running=False)
    board.task({"id": "t-1", "state": "running", "history": [
        {"n": 1, "agent": "swarm-builder-000", "tokens_in": 700, "tokens_out": 30}]})  # fmt: skip
    board.docs["/api/v1/agents"] = (200, {"agents": [
        {"name": "swarm-builder-000", "state": "active", "task": "t-1", "last_seen": 0,
         "alive": True}]})  # fmt: skip
    settings = Settings(state_dir=tmp_path / "state")
    reason = "degraded: 6 restarts in 30 min; `agentctl restart swarm-builder-001` clears it"
    save_health(settings.state_dir, "f", {"swarm-builder-001": {"restarts": 3, "degraded": True,
                                                                "reason": reason}})  # fmt: skip
    view, sample = gather(read_fleet(file), podman, settings, cpu_window=0.05)  # type: ignore[arg-type]
    rows = {r.agent: r for r in view.rows}
    assert view.board.reachable and view.notes == ()
    active = rows["swarm-builder-000"]
    assert (active.state, active.task, active.tokens) == ("active", "t-1", 730)
    assert active.cpu_percent == 50.0  # between the two samples, not Podman's 9%
    assert active.mem_usage == 100 << 20 and active.restarts == 1
    degraded = rows["swarm-builder-001"]
    assert (degraded.state, degraded.detail, degraded.restarts) == ("degraded", reason, 4)
    assert rows["swarm-builder-002"].state == "missing"
    assert podman.asked == [["f-swarm-builder-000"]] * 2  # one call per sample, running only
    assert set(sample) == {"f-swarm-builder-000"}
    again, _ = gather(read_fleet(file), podman, settings, previous=sample)  # type: ignore[arg-type]
    assert len(podman.asked) == 3  # `top`: the last look is the first sample
    assert again.rows[0].agent == "swarm-builder-000" and again.rows[0].cpu_percent == 50.0


def test_stats_over_several_nodes_ask_each_node_once_for_its_own() -> None:
    from agentctl_swarm.controller.nodes import Node, NodeSet
    from agentctl_swarm.controller.observe import container_stats

    a, b = StatusPodman(), StatusPodman()
    a.add("swarm-x-000")
    b.add("swarm-x-001")
    b.add("swarm-x-002")
    nodes = NodeSet([Node("a", a), Node("b", b)])  # type: ignore[arg-type]
    nodes.list_owned("f")
    got = container_stats(nodes, ["f-swarm-x-000", "f-swarm-x-001", "f-swarm-x-002"])
    assert set(got) == {"f-swarm-x-000", "f-swarm-x-001", "f-swarm-x-002"}
    assert a.asked == [["f-swarm-x-000"]] and b.asked == [["f-swarm-x-001", "f-swarm-x-002"]]


def test_stats_that_fail_leave_memory_and_cpu_unknown() -> None:
    from agentctl_swarm.controller.observe import container_stats

    class Broken:
        def stats(self, names: list[str]) -> dict[str, ContainerStats]:
            raise PodmanError("reading container stats failed: boom")

    assert container_stats(Broken(), ["x"]) == {}  # type: ignore[arg-type]
