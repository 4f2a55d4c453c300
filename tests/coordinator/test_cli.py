"""``agentctl task ...`` and ``agentctl server`` (coordinator embedded) as real
subprocesses, the way a person uses them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from agentctl_swarm.coordinator import grammar as g
from tests.chat.conftest import AGENTCTL

pytestmark = pytest.mark.timeout(180)


def start_server(tmp: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """``agentctl server`` on a free port; stderr (logs) to a file, never a full pipe."""
    log = (tmp / "server.log").open("a")
    proc = subprocess.Popen(
        [AGENTCTL, "server", "--host", "127.0.0.1", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "HOME": str(tmp)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "running on" not in line:
        proc.kill()
        raise AssertionError(f"server did not start: {line!r} {(tmp / 'server.log').read_text()}")
    return proc, line.rsplit(" ", 1)[-1].strip()


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


async def agentctl(tmp: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(tmp), "AGENTCTL_STATE_DIR": str(tmp / "state")}
    env.pop("AGENTCTL_SERVER_URL", None)
    if url is not None:
        env["AGENTCTL_SERVER_URL"] = url
    return await asyncio.to_thread(
        subprocess.run, [AGENTCTL, *args], capture_output=True, text=True, env=env, timeout=60
    )


async def test_task_add_list_show_cancel_retry(tmp_path, peers):
    proc, url = start_server(tmp_path, "--data-dir", str(tmp_path / "data"))
    try:
        added = await agentctl(tmp_path, "task", "add", "write hello\nand bye", "--role",
                               "builder", "--priority", "3", url=url)  # fmt: skip
        assert added.returncode == 0, added.stderr
        tid = added.stdout.strip()
        assert g.is_valid_id(tid) and tid.startswith("t-")

        listed = await agentctl(tmp_path, "task", "list", "-o", "json", url=url)
        assert listed.returncode == 0, listed.stderr
        [doc] = json.loads(listed.stdout)
        assert (doc["id"], doc["state"], doc["role"], doc["priority"]) == (
            tid, "queued", "builder", 3,
        )  # fmt: skip
        assert doc["prompt"] == "write hello\nand bye"
        table = await agentctl(tmp_path, "task", "list", "--server", url)
        assert tid in table.stdout and "queued" in table.stdout

        # a runner claims it through the embedded coordinator
        runner = await peers(url, "swarm-builder-001")
        await runner.say(f"CLAIM id={tid} agent=swarm-builder-001 role=builder")
        assign = await runner.wait_for(lambda m: isinstance(m, g.Assign | g.Rejected))
        assert isinstance(assign, g.Assign) and assign.agent == "swarm-builder-001"

        shown = await agentctl(tmp_path, "task", "show", tid, url=url)
        assert shown.returncode == 0, shown.stderr
        assert "state:     assigned" in shown.stdout and "swarm-builder-001" in shown.stdout
        yaml_out = await agentctl(tmp_path, "task", "show", tid, "-o", "yaml", url=url)
        assert f"id: {tid}" in yaml_out.stdout and "assignee: swarm-builder-001" in yaml_out.stdout

        cancelled = await agentctl(tmp_path, "task", "cancel", tid, url=url)
        assert (cancelled.returncode, cancelled.stdout.strip()) == (0, f"{tid}: cancelled")
        # the person's line, then the coordinator's order to the runner to stop
        stop_line = await runner.wait_for(
            lambda m: isinstance(m, g.Cancel) and m.id == tid and m.agent is not None
        )
        assert stop_line.agent == "swarm-builder-001"  # type: ignore[attr-defined]

        again = await agentctl(tmp_path, "task", "cancel", tid, url=url)
        assert again.returncode == 2
        assert f"task {tid} is cancelled; only queued, assigned, running" in again.stderr

        retried = await agentctl(tmp_path, "task", "retry", tid, url=url)
        assert retried.returncode == 0, retried.stderr
        assert retried.stdout.strip() in (f"{tid}: queued", f"{tid}: assigned")

        unknown = await agentctl(tmp_path, "task", "show", "t-nope", url=url)
        assert unknown.returncode == 2
        assert (
            "unknown task id 't-nope'" in unknown.stderr and "agentctl task list" in unknown.stderr
        )
        assert "Traceback" not in unknown.stderr

        taken = await agentctl(tmp_path, "task", "add", "x", "--id", tid, url=url)
        assert taken.returncode == 2 and "is taken" in taken.stderr
        bad = await agentctl(tmp_path, "task", "add", "x", "--role", "no such role", url=url)
        assert bad.returncode == 2 and "--role" in bad.stderr
    finally:
        assert stop(proc) == 0

    # the server is gone: the CLI says where and what to do
    down = await agentctl(tmp_path, "task", "list", url=url)
    assert down.returncode == 3
    assert "cannot read the task board" in down.stderr and "agentctl server" in down.stderr
    assert "Traceback" not in down.stderr

    # restarted on the same data dir: the task is still there
    proc, url = start_server(tmp_path, "--data-dir", str(tmp_path / "data"))
    try:
        listed = await agentctl(tmp_path, "task", "list", "-o", "json", url=url)
        assert [t["id"] for t in json.loads(listed.stdout)] == [tid]
    finally:
        stop(proc)


async def test_task_commands_against_a_server_without_coordinator(tmp_path):
    proc, url = start_server(tmp_path, "--no-coordinator")
    try:
        listed = await agentctl(tmp_path, "task", "list", url=url)
        assert listed.returncode == 3
        assert "serves no task board" in listed.stderr and "--api" in listed.stderr
        added = await agentctl(tmp_path, "task", "add", "x", "--wait", "0", url=url)
        assert added.returncode == 3
        assert "#work does not exist" in added.stderr
    finally:
        stop(proc)


async def test_standalone_coordinator_with_api_url(tmp_path, peers):
    proc, url = start_server(tmp_path, "--no-coordinator", "--admin-key", "k1")
    env = {**os.environ, "HOME": str(tmp_path), "AGENTCHAT_ADMIN_KEY": "k1"}
    coord = subprocess.Popen(
        [AGENTCTL, "coordinator", "--server", url, "--data-dir", str(tmp_path / "c"),
         "--http", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        assert coord.stdout is not None
        line = await asyncio.to_thread(coord.stdout.readline)
        assert "#work; task board on http://127.0.0.1:" in line, line
        api = line.rsplit(" ", 1)[-1].strip().removesuffix("/api/v1/tasks")
        added = await agentctl(tmp_path, "task", "add", "via standalone", "--api", api, url=url)
        assert added.returncode == 0, added.stderr
        tid = added.stdout.strip()
        shown = await agentctl(tmp_path, "task", "show", tid, "-o", "json", "--api", api)
        assert json.loads(shown.stdout)["state"] == "queued"
        # a second coordinator on the same data dir is refused, naming the holder
        second = await agentctl(tmp_path, "coordinator", "--server", url, "--data-dir",
                                str(tmp_path / "c"))  # fmt: skip
        assert second.returncode == 1 and "locked by another process" in second.stderr
    finally:
        assert stop(coord) == 0
        stop(proc)


async def test_bad_options_are_usage_errors(tmp_path):
    r = await agentctl(tmp_path, "coordinator", "--max-active", "-1", "--channel", "work")
    assert r.returncode == 2 and "--channel 'work': not a channel name" in r.stderr
    r = await agentctl(tmp_path, "coordinator", "--heartbeat-interval", "0")
    assert r.returncode == 2 and "--heartbeat-interval 0.0: must be more than 0" in r.stderr
    r = await agentctl(tmp_path, "server", "--trust", "nothex", "--port", "0")
    assert r.returncode == 2 and "--trust nothex" in r.stderr
