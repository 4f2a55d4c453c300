"""Seeing a fleet at work, end to end on real Podman (issue 10, item 7): `agentctl up` with
its embedded server and coordinator, one builder running the real Claude Code against
the scripted model on 127.0.0.1, one task; then `status`, `events`, `transcript` and
`top` (in a real terminal, through tmux) as a person would use them, and the same
commands once the server is gone, the container stopped, and then deleted.

The tests run in order on one fleet (module scope); the last one takes the fleet down.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentctl_swarm.model.server import ScriptedModel
from tests.conftest import AGENTCTL, REPO, cleanup_fleet
from tests.integration.helpers import free_port, wait

pytestmark = pytest.mark.podman

SCRIPT = r"""
conversations:
  - name: probe
    match: {prompt: "Reply with the single word OK"}
    turns: ["OK"]
  - name: writer
    match: {prompt: '## Your task [^\n]*\nplease write (?P<file>[a-z0-9_]+\.txt)'}
    turns:
      - text: "Writing ${file}."
        tool_use:
          - Write: {file_path: "/workspace/${file}", content: "written by ${file}\n"}
      - {delay: 4, text: "Wrote ${file}."}
"""

AGENT = "swarm-builder-000"
BUSY = {"assigned", "promoting", "active", "demoting"}


@dataclass
class Live:
    name: str
    file: Path
    env: dict[str, str]
    url: str
    up: subprocess.Popen[bytes]
    task: str = ""
    seen: dict[str, Any] = field(default_factory=dict)

    @property
    def container(self) -> str:
        return f"{self.name}-{AGENT}"

    def agentctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*AGENTCTL, *args], capture_output=True, text=True, cwd=REPO, env=self.env, timeout=60
        )
        if check:
            assert proc.returncode == 0, f"agentctl {' '.join(args)}\n{proc.stdout}{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def status(self) -> dict[str, Any]:
        return json.loads(self.agentctl("status", "-f", str(self.file), "-o", "json").stdout)

    def row(self) -> dict[str, Any]:
        (row,) = [a for a in self.status()["agents"] if a["agent"] == AGENT]
        return row


@pytest.fixture(scope="module")
def live(tmp_path_factory, podman_backend, agent_image) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("seeing")
    name = f"s{os.getpid() % 100000}"
    port = free_port()
    env = {
        **os.environ,
        "AGENTCTL_STATE_DIR": str(tmp / "state"),
        "ANTHROPIC_API_KEY": "scripted-model-key",
        "AGENTCTL_LOG_FORMAT": "json",
    }
    env.pop("AGENTCTL_SERVER_URL", None)  # the fleet's embedded server, not another
    up = None
    try:
        with ScriptedModel.from_yaml(SCRIPT).serve() as model_url:
            file = tmp / "fleet.yaml"
            file.write_text(
                f"""\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {{name: {name}}}
embedded: {{host: 127.0.0.1, port: {port}}}
defaults:
  resources: {{memory: 1g, cpus: 1, pids: 256}}
  grace_seconds: 3
  secrets: [{{name: ANTHROPIC_API_KEY, from_env: ANTHROPIC_API_KEY}}]
model: {{name: claude-sonnet-4-5, base_url: {model_url}}}
work: {{channel: "#work", heartbeat_interval: 2, drain_seconds: 2}}
agents:
  - role: builder
    replicas: 1
    runtime: claude
"""
            )
            up = subprocess.Popen(
                [*AGENTCTL, "up", "-f", str(file), "--interval", "1"],
                stdout=subprocess.DEVNULL, stderr=(tmp / "up.log").open("w"), cwd=REPO, env=env,
            )  # fmt: skip
            fleet = Live(name, file, env, f"ws://127.0.0.1:{port}", up)
            wait("an idle builder", lambda: _quiet(fleet.row)["state"] == "idle", timeout=120)
            yield fleet
    finally:
        if up is not None and up.poll() is None:
            up.kill()  # the graceful stop is `agentctl up`'s own tests' subject
            up.wait(30)
        cleanup_fleet(podman_backend, name)


def _quiet(read: Any) -> dict[str, Any]:
    try:
        return read()
    except (AssertionError, ValueError):
        return {}


def test_status_follows_an_agent_through_a_task(live: Live) -> None:
    before = live.status()
    assert before["board"]["reachable"] is True
    row = next(a for a in before["agents"] if a["agent"] == AGENT)
    assert row["tokens"] == 0 and row["container"] == live.container
    assert row["mem_usage"] > 0 and row["mem_limit"] == 1 << 30  # the fleet's 1g
    assert row["heartbeat_age"] is not None and row["heartbeat_age"] < 10
    added = live.agentctl("task", "add", "please write seen.txt", "--role", "builder",
                          "--server", live.url)  # fmt: skip
    live.task = added.stdout.strip().splitlines()[-1]
    busy = wait("the builder at work", lambda: (r := live.row())["state"] in BUSY and r, 60)
    assert busy["task"] == live.task  # type: ignore[index]
    done = wait("the builder idle again", lambda: (
        (r := live.row())["state"] == "idle" and r["tokens"] > 0 and r), 90)  # fmt: skip
    assert done["task"] is None and done["cost_usd"] > 0  # type: ignore[index]
    totals = live.status()["totals"]
    assert totals["tasks"]["done"] == 1 and totals["tokens"] >= done["tokens"]  # type: ignore[index]
    table = live.agentctl("status", "-f", str(live.file)).stdout
    assert table.splitlines()[0].split()[:3] == ["AGENT", "STATE", "TASK"]
    assert f"{AGENT}  idle" in table
    assert "tasks: 0 queued, 0 running, 1 done, 0 failed" in table


def test_events_shows_what_up_did(live: Live) -> None:
    lines = live.agentctl("events", "-f", str(live.file)).stdout.splitlines()
    assert lines[0].split() == ["TIME", "AGENT", "EVENT", "REASON"]
    assert any("up.start" in line and f"agents talk to {live.url}" in line for line in lines)
    raw = live.agentctl("events", "--fleet", live.name, "-o", "json", "--since", "10m").stdout
    assert "up.start" in [json.loads(line)["event"] for line in raw.splitlines()]
    follow = subprocess.Popen(
        [*AGENTCTL, "events", "-f", str(live.file), "-F", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=live.env,
    )  # fmt: skip
    try:
        assert follow.stdout is not None
        assert json.loads(follow.stdout.readline())["event"] == "up.start"
    finally:
        follow.terminate()
        follow.wait(10)


def test_transcript_of_the_task_and_of_the_agent(live: Live) -> None:
    text = live.agentctl("transcript", live.task, "-f", str(live.file)).stdout
    assert f"── task {live.task} · attempt 1 · {AGENT} · {live.container} · done ──" in text
    assert "prompt:\n  please write seen.txt" in text
    assert '→ Write(file_path="/workspace/seen.txt", content="written by seen.txt\\n")' in text
    assert "← Write\n      File created successfully at: /workspace/seen.txt" in text
    assert "assistant: Wrote seen.txt." in text
    assert "result: success · 2 turn(s) ·" in text
    assert "scripted-model-key" not in text
    doc = json.loads(live.agentctl("transcript", AGENT, "-f", str(live.file), "-o", "json").stdout)
    (t,) = doc["transcripts"]
    assert (doc["kind"], t["task"], t["attempt"], t["outcome"]) == ("agent", live.task, 1, "done")
    assert t["summary"]["outcome"] == "success" and t["summary"]["tool_calls"] == 1
    unknown = live.agentctl("transcript", "t-00000000", "-f", str(live.file), check=False)
    assert unknown.returncode == 2
    assert "unknown task id 't-00000000' on the task board" in unknown.stderr


def test_top_runs_in_a_terminal_and_quits_on_q_or_ctrl_c(live: Live) -> None:
    if shutil.which("tmux") is None:
        if os.environ.get("AGENTCTL_REQUIRE_PODMAN") == "1":
            pytest.fail("tmux is required here (scripts/setup.sh installs it)")
        pytest.skip("tmux is not installed")
    command = " ".join(
        [
            "env",
            "-u",
            "COLUMNS",
            "-u",
            "LINES",  # the terminal's own size, as for a person
            *(shlex.quote(f"{k}={live.env[k]}") for k in ("AGENTCTL_STATE_DIR", "PATH")),
            *(shlex.quote(a) for a in [*AGENTCTL, "top", "-f", str(live.file)]),
        ]
    )
    for key in ("q", "C-c"):
        session = f"agentctl-top-{live.name}"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "30", "-c", str(REPO),
             f"{command}; echo EXITED $?; sleep 60"], check=True,
        )  # fmt: skip
        try:
            screen = _until(session, lambda s: AGENT in s, "top's table")
            assert f"agentctl top · fleet {live.name}" in screen
            assert "q quits" in str(screen)
            assert "AGENT" in screen and "STATE" in screen and "MEMORY" in screen
            assert f"{AGENT}  idle" in screen
            assert "tasks: 0 queued, 0 running, 1 done, 0 failed" in screen
            subprocess.run(["tmux", "send-keys", "-t", session, key], check=True)
            _until(session, lambda s: "EXITED 0" in s, f"top to quit on {key}", 15)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def _until(session: str, ok: Any, what: str, timeout: float = 30) -> str:
    """The terminal's screen once ``ok(screen)``; on timeout, fail showing the screen."""
    deadline = time.monotonic() + timeout
    while True:
        screen = _screen(session)
        if ok(screen):
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")
        time.sleep(0.3)


def _screen(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-t", session, "-p"], capture_output=True, text=True, check=True
    ).stdout


def test_stats_come_from_podman_in_one_call(live: Live, podman_backend: Any) -> None:
    before = podman_backend.calls.by_path.get("containers/stats", 0)
    stats = podman_backend.stats([live.container])
    assert podman_backend.calls.by_path["containers/stats"] == before + 1
    sample = stats[live.container]
    assert sample.mem_limit == 1 << 30 and 0 < sample.mem_usage < sample.mem_limit
    assert sample.cpu_nanos > 0 and sample.system_nanos > 0 and sample.pids > 0
    # a name that vanished does not hide the others
    assert set(podman_backend.stats([live.container, f"{live.name}-gone"])) == {live.container}


def test_without_the_server_status_and_transcript_say_what_podman_knows(
    live: Live, podman_backend: Any
) -> None:
    live.up.send_signal(signal.SIGKILL)  # `up`, its server and coordinator, gone at once
    live.up.wait(30)
    proc = live.agentctl("status", "-f", str(live.file), "-o", "json")
    doc = json.loads(proc.stdout)
    assert doc["board"]["reachable"] is False
    assert proc.stderr.count("\n") == 1 and "showing what Podman knows" in proc.stderr
    row = doc["agents"][0]
    assert (row["state"], row["tokens"], row["task"]) == ("running", None, None)
    assert row["mem_usage"] > 0
    text = live.agentctl("transcript", live.task, "-f", str(live.file))
    assert "searched the fleet's containers instead" in text.stderr
    assert "→ Write(" in text.stdout and "result: success" in text.stdout

    podman_backend.stop(live.container)  # a stopped container's files are still readable
    stopped = live.row()
    assert stopped["state"] == "stopped" and stopped["mem_usage"] is None
    by_agent = live.agentctl("transcript", AGENT, "-f", str(live.file))
    assert f"── task {live.task} · attempt 1 · {AGENT}" in by_agent.stdout
    assert "took the newest transcript file instead" in by_agent.stderr

    podman_backend.remove(live.container)
    assert live.row()["state"] == "missing"
    gone = live.agentctl("transcript", AGENT, "-f", str(live.file), check=False)
    assert gone.returncode == 1
    assert f"agent {AGENT} in fleet '{live.name}' has no container (deleted?)" in gone.stderr
    assert f"{live.name}-{AGENT}-state" in gone.stderr
    lost = live.agentctl("transcript", live.task, "-f", str(live.file), check=False)
    assert lost.returncode == 1
    assert f"no transcript of task '{live.task}' in the containers of fleet" in lost.stderr
