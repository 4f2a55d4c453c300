"""Fleet operations on real Podman (issue 10): `agentctl up` as the controller you leave
running — its health rules, scale, reload and graceful shutdown — with the real Claude
Code in the agents and the scripted model. One fleet serves the module: two builders
(`runtime: claude`), a `crasher` whose agent exits at once (fatal), so the crash loop
runs in the background from the start, and a `hog` that holds most of its memory limit. The last test stops `up`.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentctl_swarm.controller.events import read_events
from agentctl_swarm.model.server import ScriptedModel
from tests.conftest import AGENTCTL, REPO, cleanup_fleet
from tests.integration.helpers import (
    Fleet,
    answers,
    free_port,
    host_pid,
    is_runner,
    start_server,
    wait,
)

pytestmark = pytest.mark.podman

SCRIPT = r"""
conversations:
  - name: probe
    match: {prompt: "Reply with the single word OK"}
    turns: ["OK"]
  - name: slow
    match: {prompt: '## Your task [^\n]*\nslow job (?P<tag>[a-z0-9]+)'}
    turns:
      - text: "Starting."
        tool_use:
          - Write: {file_path: "/workspace/started-${tag}.txt", content: "begun\n"}
      - {delay: 20, text: "Finished slowly."}
  - turns: ["Done."]
"""

FLEET = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {{name: {name}}}
defaults:
  resources: {{memory: 1g, cpus: 1, pids: 256}}
  grace_seconds: 5
  secrets: [{{name: ANTHROPIC_API_KEY, from_env: ANTHROPIC_API_KEY}}]
server: {url}
model: {{base_url: {model_url}}}
work: {{heartbeat_interval: 2, drain_seconds: 3, max_active: 2}}
agents:
  - role: builder
    replicas: 2
    runtime: claude
    env: {{MARK: "{mark}"}}
  - role: crasher
    command: [sh, -c, "exit 2"]
    restart: "no"
  - role: hog
    resources: {{memory: 128m}}
    command: [python3, -c, "import time; x = b'x' * (108 << 20); time.sleep(1e9)"]
"""


class Ops(Fleet):
    up: subprocess.Popen[bytes]
    state: Path
    model_url: str

    def events(self, event: str | None = None, agent: str | None = None) -> list[dict]:
        found = read_events(self.state, self.name)
        return [
            e
            for e in found
            if (event is None or e["event"] == event) and (agent is None or e.get("agent") == agent)
        ]

    def write(self, mark: str = "one") -> None:
        self.file.write_text(
            FLEET.format(name=self.name, url=self.url, model_url=self.model_url, mark=mark)
        )

    def builders(self) -> list[dict]:
        return [a for a in self.get("agents")["agents"] if a["name"].startswith("swarm-builder")]


@pytest.fixture(scope="module")
def ops(tmp_path_factory, podman_backend, agent_image) -> Iterator[Ops]:
    tmp = tmp_path_factory.mktemp("ops")
    name = f"o{os.getpid() % 100000}"
    port = free_port()
    url, http = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AGENTCTL_STATE_DIR": str(tmp / "state"),
        "ANTHROPIC_API_KEY": "scripted-model-key",
        "AGENTCTL_LOG_FORMAT": "json",
    }
    server_args = ["--port", str(port), "--data-dir", str(tmp / "chat"), "--max-active", "2",
                   "--heartbeat-interval", "2"]  # fmt: skip
    server = start_server(server_args, env)
    model = ScriptedModel.from_yaml(SCRIPT)
    try:
        with model.serve() as model_url:
            ops = Ops(name, tmp / "fleet.yaml", url, http, model, env, server_args, server, tmp)
            ops.state, ops.model_url = tmp / "state", model_url
            ops.write()
            wait("the server", lambda: answers(http), timeout=60)
            ops.up = subprocess.Popen(
                [*AGENTCTL, "up", "-f", str(ops.file), "--interval", "1"],
                stdout=subprocess.DEVNULL, stderr=(tmp / "up.log").open("w"), cwd=REPO, env=env,
            )  # fmt: skip
            wait("two idle builders", lambda: sum(
                a["state"] == "idle" and a["alive"] for a in ops.builders()) == 2, 180)  # fmt: skip
            yield ops
    finally:
        up = getattr(ops, "up", None) if "ops" in locals() else None
        if up is not None and up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=90)
            except subprocess.TimeoutExpired:
                up.kill()
        server.terminate()
        server.wait(timeout=30)
        cleanup_fleet(podman_backend, name)


def test_a_crash_loop_ends_degraded_with_restarts_bounded_by_the_curve(ops: Ops) -> None:
    agent = "swarm-crasher-000"
    degraded = wait("degraded", lambda: ops.events("health.degraded", agent), timeout=120)
    starts = ops.events("health.start", agent)
    assert len(starts) == 5, starts  # more than 5 restarts in 30 minutes: degraded
    gaps = [_seconds(b["time"]) - _seconds(a["time"]) for a, b in itertools.pairwise(starts)]
    # the waits grow 1, 2, 4, 8, 16 s (plus the time to start and crash)
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert "agentctl restart" in degraded[0]["reason"]
    time.sleep(5)  # no more restarts while degraded
    assert len(ops.events("health.start", agent)) == 5
    # a person restarts it: the mark is cleared and it gets a fresh curve
    ops.agentctl("restart", agent, "--fleet", ops.name)
    wait("cleared", lambda: ops.events("health.cleared", agent), timeout=30)


def test_memory_near_the_limit_raises_an_alert_and_the_agent_keeps_running(ops: Ops) -> None:
    alert = wait("the alert", lambda: ops.events("health.alert", "swarm-hog-000"), timeout=60)
    assert "memory" in alert[0]["reason"]
    assert not ops.events("health.restart", "swarm-hog-000")


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_late_heartbeat_of_an_active_agent_does_not_kill_it(ops: Ops) -> None:
    tid = ops.add("slow job quiet")
    worker = str(wait("assigned", lambda: ops.task(tid).get("assignee")))
    wait("running", lambda: ops.task(tid)["state"] == "running")
    runner = host_pid(ops.container(worker), is_runner)
    os.kill(runner, signal.SIGSTOP)  # the runner stops heartbeating; Claude Code goes on
    try:
        wait("the check", lambda: ops.events("health.check", worker), timeout=60)
        assert not ops.events("health.restart", worker)
    finally:
        os.kill(runner, signal.SIGCONT)
    task = wait("done", lambda: (t := ops.task(tid))["state"] == "done" and t, timeout=120)
    assert len(task["history"]) == 1  # never restarted, never handed to someone else
    assert not ops.events("health.restart", worker)


def test_reload_rolls_a_change_to_the_idle_agent_and_the_busy_one_after_its_task(ops: Ops) -> None:
    tid = ops.add("slow job reload")
    busy = str(wait("assigned", lambda: ops.task(tid).get("assignee")))
    idle = ({"swarm-builder-000", "swarm-builder-001"} - {busy}).pop()
    wait("running", lambda: ops.task(tid)["state"] == "running")
    ops.write(mark="two")  # a template change: every builder's spec changes
    ops.agentctl("reload", "-f", str(ops.file))
    wait("the idle one recreated", lambda: ops.events("reconcile.recreate", idle), timeout=60)
    assert ops.task(tid)["state"] == "running"  # the busy one was not interrupted
    assert not ops.events("reconcile.recreate", busy)
    assert ops.events("reconcile.roll_deferred", busy)
    wait("done", lambda: ops.task(tid)["state"] == "done", timeout=120)
    wait("the busy one recreated after", lambda: ops.events("reconcile.recreate", busy), 90)

    def mark() -> str:  # the event comes first; the final sync and the create follow
        return subprocess.run(
            ["podman", "exec", ops.container(busy), "sh", "-c", "echo $MARK"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip

    wait("the new template in the busy one", lambda: mark() == "two", 60)
    assert len(ops.task(tid)["history"]) == 1


def test_scale_down_keeps_the_active_agent_and_writes_the_desired_state(ops: Ops) -> None:
    wait("two idle builders", lambda: sum(
        a["state"] == "idle" and a["alive"] for a in ops.builders()) == 2, 120)  # fmt: skip
    tid = ops.add("slow job scale")
    busy = str(wait("assigned", lambda: ops.task(tid).get("assignee")))
    wait("running", lambda: ops.task(tid)["state"] == "running")
    out = ops.agentctl("scale", "-f", str(ops.file), "builder", "1").stdout
    assert "removed (idle)" in out or "told to reload" in out
    written = ops.file.read_text()
    index = int(busy.rsplit("-", 1)[1])
    assert "replicas: 1" in written and (index == 0 or f"instances: [{index}]" in written)
    idle = ({"swarm-builder-000", "swarm-builder-001"} - {busy}).pop()
    wait("the idle one removed", lambda: ops.events("reconcile.delete", idle), timeout=60)
    assert ops.task(tid)["state"] == "running"  # the active one works on
    wait("done", lambda: ops.task(tid)["state"] == "done", timeout=120)
    # and scaling up takes the next numbers
    ops.agentctl("scale", "-f", str(ops.file), "builder", "2")
    wait("a new builder", lambda: len(
        [o for o in json.loads(ops.agentctl("get", "--fleet", ops.name, "-o", "json").stdout)
         if o["role"] == "builder" and o["state"] == "running"]) == 2, 90)  # fmt: skip


def test_sigterm_drains_then_stops_and_releases_the_lock(ops: Ops) -> None:
    tid = ops.add("slow job shutdown")
    wait("running", lambda: ops.task(tid)["state"] == "running", timeout=60)
    ops.up.send_signal(signal.SIGTERM)
    assert ops.up.wait(timeout=120) == 0
    assert ops.events("up.stop")
    assert ops.events("up.drain_timeout")  # drain_seconds=3 < the task's 20 s
    task = wait("given back", lambda: (t := ops.task(tid))["state"] == "queued" and t, 60)
    assert task["history"][-1]["outcome"] == "unclaimed"
    states = {o["agent"]: o["state"] for o in json.loads(
        ops.agentctl("get", "--fleet", ops.name, "-o", "json").stdout)}  # fmt: skip
    assert all(s != "running" for s in states.values()), states
    # the lock is free: a second `up` can start (and is stopped again at once)
    again = subprocess.Popen(
        [*AGENTCTL, "up", "-f", str(ops.file)], cwd=REPO, env=ops.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(3)
    assert again.poll() is None, again.stderr.read() if again.stderr else ""
    ops.up = again
