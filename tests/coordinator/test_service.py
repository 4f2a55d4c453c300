"""The coordinator against a real AgentChat server, with real clients playing runners
and people. No timed assertions: every wait is for an event, bounded only as a guard."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agentctl_swarm.chat.identity import Identity
from agentctl_swarm.chat.server import ThreadedServer
from agentctl_swarm.coordinator import grammar as g
from agentctl_swarm.coordinator.board import BoardConfig, Record
from agentctl_swarm.coordinator.service import (
    Coordinator,
    CoordinatorError,
    CoordinatorOptions,
)
from agentctl_swarm.coordinator.store import StoreError, TaskStore
from tests.chat.conftest import AGENTCTL

pytestmark = pytest.mark.timeout(120)


async def until(cond: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll ``cond`` until it is truthy (a guard timeout, not a timed assertion)."""
    async with asyncio.timeout(timeout):
        while True:
            got = cond()
            if got:
                return got
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(
    url: str, ident: Identity, store_path: Path | None, **opts: Any
) -> AsyncIterator[Coordinator]:
    board = opts.pop("board", BoardConfig())
    options = CoordinatorOptions(server_url=url, board=board, **opts)
    store = TaskStore(store_path)
    coord = Coordinator(options, ident, store)
    task = asyncio.create_task(coord.run())
    try:
        ready = asyncio.create_task(coord.wait_ready())
        await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            ready.cancel()
            task.result()
        yield coord
    finally:
        coord.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
        store.close()


def trusted_server(make_chat_server: Any, ident: Identity, **extra: Any) -> Any:
    return make_chat_server(
        trusted_ids=frozenset({ident.agent_id}), extra_channels=("#work",), **extra
    )


def is_answer(name: str, tid: str) -> Callable[[g.Message], bool]:
    def pred(m: g.Message) -> bool:
        if isinstance(m, g.Assign):
            return m.id == tid and m.agent == name
        if isinstance(m, g.Rejected):
            return m.id == tid and name in m.agents
        return False

    return pred


# --------------------------------------------------------------------------- claims


async def test_two_runners_claim_one_task_exactly_one_assign(make_chat_server, peers, tmp_path):
    ident = Identity.generate("coordinator")
    srv = trusted_server(make_chat_server, ident)
    async with running(srv.url, ident, tmp_path / "c.db", paced=False) as coord:
        person = await peers(srv.url, "alice")
        r1 = await peers(srv.url, "swarm-builder-000")
        r2 = await peers(srv.url, "swarm-builder-001")
        watch = await peers(srv.url, "watcher")
        await person.say("TASK id=t-race role=builder -- write hello")
        for r in (r1, r2):
            await r.wait_for(lambda m: isinstance(m, g.Task) and m.id == "t-race")
        await asyncio.gather(
            *(r.say(f"CLAIM id=t-race agent={r.name} role=builder") for r in (r1, r2))
        )
        for r in (r1, r2):
            await r.wait_for(is_answer(r.name, "t-race"))
        await watch.wait_for(lambda m: isinstance(m, g.Rejected) and m.id == "t-race")
        assigns = watch.lines(g.Assign, id="t-race")
        assert len(assigns) == 1
        winner = assigns[0].agent  # type: ignore[attr-defined]
        loser = ({r1.name, r2.name} - {winner}).pop()
        rejected = watch.lines(g.Rejected, id="t-race")
        assert [m.agents for m in rejected] == [(loser,)]  # type: ignore[attr-defined]
        assert rejected[0].reason == f"assigned to {winner}"  # type: ignore[attr-defined]
        assert coord.board.tasks["t-race"].assignee == winner
        # the coordinator's lines come from its id, verified on our server (trusted)
        frame = next(f for f, m in watch.seen if isinstance(m, g.Assign))
        assert frame["from"] == coord.agent_id and frame["verified"] is True


async def test_max_active_one_second_task_assigned_only_after_done(
    make_chat_server, peers, tmp_path
):
    ident = Identity.generate("coordinator")
    srv = trusted_server(make_chat_server, ident)
    board = BoardConfig(max_active=1)
    async with running(srv.url, ident, tmp_path / "c.db", paced=False, board=board) as coord:
        person = await peers(srv.url, "alice")
        r1 = await peers(srv.url, "b1")
        r2 = await peers(srv.url, "b2")
        watch = await peers(srv.url, "watcher")
        await person.say("TASK id=t-1 role=builder -- first\nTASK id=t-2 role=builder -- second")
        await r1.say("CLAIM id=t-1 agent=b1 role=builder")
        await r1.wait_for(is_answer("b1", "t-1"))
        await r2.say("CLAIM id=t-2 agent=b2 role=builder")
        await until(lambda: coord.board.waiting.get("t-2") == ["b2"])
        assert watch.lines(g.Assign, id="t-2") == []
        assert coord.board.tasks["t-2"].state == "queued"
        await r1.say("STATUS id=t-1 agent=b1 -- working")
        await r1.say("DONE id=t-1 agent=b1 tokens_in=10 tokens_out=20 cost_usd=0.01 -- done")
        got = await r2.wait_for(is_answer("b2", "t-2"))
        assert isinstance(got, g.Assign)
        await watch.wait_for(lambda m: isinstance(m, g.Assign) and m.id == "t-2")
        order = [(type(m).__name__, getattr(m, "id", None)) for _, m in watch.seen]
        assert order.index(("Done", "t-1")) < order.index(("Assign", "t-2"))
        t1 = coord.board.tasks["t-1"]
        assert (t1.state, t1.tokens_in, t1.tokens_out, t1.cost_usd) == ("done", 10, 20, 0.01)


async def test_paced_coordinator_creates_channel_with_admin_key_like_upstream(
    make_chat_server, peers, tmp_path
):
    """Without trust and without the channel (as on upstream): the coordinator verifies
    itself with the admin key, creates #work, and its paced replies still work."""
    srv = make_chat_server(admin_key="k-admin")
    ident = Identity.generate("coordinator")
    async with running(srv.url, ident, None, paced=True, admin_key="k-admin") as coord:
        assert "#work" in coord.client.channels  # type: ignore[union-attr]
        person = await peers(srv.url, "alice")
        runners = [await peers(srv.url, f"b{i}") for i in range(3)]
        await person.say("TASK role=builder -- no id given")
        announced = await runners[0].wait_for(lambda m: isinstance(m, g.Task) and bool(m.id))
        tid = announced.id  # type: ignore[attr-defined]
        await asyncio.gather(
            *(r.say(f"CLAIM id={tid} agent={r.name} role=builder") for r in runners)
        )
        for r in runners:
            await r.wait_for(is_answer(r.name, tid))
        assert len(runners[0].lines(g.Assign, id=tid)) == 1


async def test_channel_missing_and_no_way_to_create_it_names_the_fix(make_chat_server, tmp_path):
    srv = make_chat_server()
    ident = Identity.generate("coordinator")
    with pytest.raises(CoordinatorError, match="#work does not exist") as err:
        async with running(srv.url, ident, None):
            pass
    assert "--admin-key" in (err.value.hint or "")


# --------------------------------------------------------------------------- restarts


def _start_coordinator_process(url: str, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "AGENTCTL_LOG_FORMAT": "text", "HOME": str(data_dir)}
    proc = subprocess.Popen(
        [AGENTCTL, "coordinator", "--server", url, "--data-dir", str(data_dir), "--http", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "task board on" not in line:
        proc.kill()
        raise AssertionError(f"coordinator did not start: {line!r}")
    api = line.rsplit(" ", 1)[-1].strip()
    return proc, api


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


async def test_kill_9_coordinator_mid_task_then_restart_loses_nothing(
    make_chat_server, peers, tmp_path
):
    srv = make_chat_server(extra_channels=("#work",))
    data = tmp_path / "coord"
    proc, api = await asyncio.to_thread(_start_coordinator_process, srv.url, data)
    try:
        person = await peers(srv.url, "alice")
        r1 = await peers(srv.url, "b1")
        await person.say("TASK id=t-1 role=builder -- long job")
        await r1.wait_for(lambda m: isinstance(m, g.Task) and m.id == "t-1")
        await r1.say("CLAIM id=t-1 agent=b1 role=builder")
        assert isinstance(await r1.wait_for(is_answer("b1", "t-1")), g.Assign)
        await r1.say("STATUS id=t-1 agent=b1 -- editing")
        tasks_url = api.rsplit("/", 1)[0] + "/tasks/t-1"
        await until(lambda: _get(tasks_url)["state"] == "running")
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        # while it is down: the runner keeps working, a person adds a task
        await r1.say("HEARTBEAT agent=b1 role=builder state=active id=t-1")
        await person.say("TASK id=t-2 role=builder -- posted while the coordinator was down")
        proc, api = await asyncio.to_thread(_start_coordinator_process, srv.url, data)
        base = api.rsplit("/", 1)[0]
        t1 = _get(base + "/tasks/t-1")
        assert (t1["state"], t1["assignee"], t1["attempts"]) == ("running", "b1", 1)
        await until(lambda: _get(base + "/tasks").get("tasks") and any(
            t["id"] == "t-2" for t in _get(base + "/tasks")["tasks"]))  # fmt: skip
        assert _get(base + "/tasks/t-2")["state"] == "queued"
        await r1.say("DONE id=t-1 agent=b1 tokens_in=5 tokens_out=6 -- finished")
        await until(lambda: _get(base + "/tasks/t-1")["state"] == "done")
        assert _get(base + "/tasks/t-1")["history"][0]["outcome"] == "done"
    finally:
        proc.kill()
        await asyncio.to_thread(proc.wait)


async def test_chat_server_restart_mid_task_loses_nothing(make_chat_server, peers, tmp_path):
    ident = Identity.generate("coordinator")
    srv = trusted_server(make_chat_server, ident, data_dir=tmp_path / "chat")
    port = srv.port
    async with running(srv.url, ident, tmp_path / "c.db", paced=False) as coord:
        person = await peers(srv.url, "alice")
        r1 = await peers(srv.url, "b1")
        await person.say("TASK id=t-1 role=builder -- one\nTASK id=t-2 role=reviewer -- two")
        await r1.say("CLAIM id=t-1 agent=b1 role=builder")
        await r1.wait_for(is_answer("b1", "t-1"))
        await r1.say("STATUS id=t-1 agent=b1 -- working")
        await until(lambda: coord.board.tasks["t-1"].state == "running")
        await asyncio.to_thread(srv.stop)
        await until(lambda: not coord.connected)
        config = srv.config.with_(port=port)
        srv2 = await asyncio.to_thread(lambda: ThreadedServer(config).start())
        try:
            assert coord.client is not None
            await until(lambda: coord.connected and r1.client.connected, timeout=60)
            await until(lambda: "#work" in coord.client.channels)  # type: ignore[union-attr]
            await r1.say("DONE id=t-1 agent=b1 -- done after the restart")
            await until(lambda: coord.board.tasks["t-1"].state == "done")
            assert coord.board.tasks["t-2"].state == "queued"
            await person.say("TASK id=t-3 -- after the restart")
            await until(lambda: "t-3" in coord.board.tasks)
        finally:
            await asyncio.to_thread(srv2.stop)


# --------------------------------------------------------------------------- store failures


class FlakyStore(TaskStore):
    def __init__(self) -> None:
        super().__init__(None)
        self.fail = 0

    def apply(self, records: Any) -> None:
        if self.fail > 0:
            self.fail -= 1
            raise StoreError("disk full")
        super().apply(records)


async def test_a_failed_write_is_kept_and_retried() -> None:
    store = FlakyStore()
    coord = Coordinator(
        CoordinatorOptions(server_url="ws://127.0.0.1:9"), Identity.generate("c"), store
    )
    msg = g.parse_line("TASK id=t-1 -- one")
    assert msg is not None
    store.fail = 1
    coord._apply(coord.board.handle(msg, "@p", "p", 1.0))
    assert store.load().tasks == []
    assert ("task", "t-1") in coord._unsaved
    coord._retry_unsaved()
    assert [t["id"] for t in store.load().tasks] == ["t-1"]
    assert coord._unsaved == {}
    coord._apply(coord.board.handle(g.Cancel(id="t-1"), "@p", "p", 2.0))
    assert store.load().tasks[0]["state"] == "cancelled"
    coord._apply(type(coord.board.dispatch(3.0))(records=[Record("meta", "x", 1)]))
    store.close()


def test_http_reads() -> None:
    coord = Coordinator(
        CoordinatorOptions(server_url="ws://127.0.0.1:9"), Identity.generate("c"), TaskStore(None)
    )
    coord._apply(coord.board.handle(g.Task(id="t-1", text="x"), "@p", "p", 1.0))
    assert coord.http_get("/health") is None  # not ours: the chat server answers it
    status, doc = coord.http_get("/api/v1/tasks")  # type: ignore[misc]
    assert status == 200 and [t["id"] for t in doc["tasks"]] == ["t-1"]
    assert doc["channel"] == "#work" and doc["connected"] is False
    assert coord.http_get("/api/v1/tasks/t-1")[1]["prompt"] == "x"  # type: ignore[index]
    assert coord.http_get("/api/v1/tasks/nope") == (404, {"error": "unknown task id nope"})
    assert coord.http_get("/api/v1/agents")[0] == 200  # type: ignore[index]
    assert coord.http_get("/api/v1/bogus")[0] == 404  # type: ignore[index]
    json.dumps(coord.http_get("/api/v1/status"))


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("process tests need Linux signals")


async def test_a_coordinator_that_stalled_does_not_take_the_silence_for_dead_agents(
    make_chat_server, peers, tmp_path
):
    """Found by the chaos suite: the server (and its coordinator) hung for a minute, and
    on waking its first tick saw every agent silent for a minute and requeued their
    tasks, which they had meanwhile finished, so each ran twice. The clock here jumps
    the way it does for a process that was suspended."""
    ident = Identity.generate("coordinator")
    srv = trusted_server(make_chat_server, ident)
    skew = [0.0]
    board = BoardConfig(heartbeat_interval=2, heartbeat_misses=3)
    opts = {"paced": False, "board": board, "tick_interval": 0.2}
    async with running(srv.url, ident, tmp_path / "c.db", **opts) as coord:
        coord.clock = lambda: time.time() + skew[0]
        person = await peers(srv.url, "alice")
        runner = await peers(srv.url, "swarm-builder-000")
        await person.say("TASK id=t-1 role=builder -- write hello")
        await runner.wait_for(lambda m: isinstance(m, g.Task) and m.id == "t-1")
        await runner.say("CLAIM id=t-1 agent=swarm-builder-000 role=builder")
        await runner.wait_for(is_answer("swarm-builder-000", "t-1"))
        skew[0] = 60.0  # the coordinator slept a minute; the runner said nothing meanwhile
        await asyncio.sleep(1.0)  # ticks after the jump, before the runner speaks again
        await runner.say("HEARTBEAT agent=swarm-builder-000 role=builder state=promoting id=t-1")
        await until(lambda: coord.board.agents["swarm-builder-000"].last_seen > time.time() + 30)
        t = coord.board.tasks["t-1"]
        assert (t.state, t.assignee, len(t.history)) == ("assigned", "swarm-builder-000", 1)
