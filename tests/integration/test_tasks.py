"""Agents that do the work, end to end on real Podman (issue 9): `agentctl up` with two
builders whose containers run the real Claude Code binary, talking to the scripted model
on 127.0.0.1, an `agentctl server` process with the coordinator inside, real git, real
signals. One fleet serves the whole module (the coordinator's max-active is 1), and each
test drives it with its own prompts.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from agentctl_swarm.model.server import ScriptedModel
from tests.conftest import AGENTCTL, REPO, cleanup_fleet
from tests.integration.helpers import (
    Fleet,
    answers,
    free_port,
    seed_repo,
    start_server,
    task_env,
    wait,
)

pytestmark = pytest.mark.podman

# Prompts are matched on the task itself (the line after "## Your task (...)"), never on
# the notes the previous task left, which the prompt quotes too.
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
      - "Wrote ${file}."
  - name: slow-first-attempt
    match: {prompt: '## Your task \(t-[^,]*, attempt 1\)\nslow job (?P<tag>[a-z0-9]+)'}
    turns:
      - text: "Starting."
        tool_use:
          - Write: {file_path: "/workspace/started-${tag}.txt", content: "begun\n"}
      - {delay: 25, text: "Finished slowly."}
  - name: slow-later-attempts
    match: {prompt: '## Your task [^\n]*\nslow job (?P<tag>[a-z0-9]+)'}
    turns:
      - text: "Again."
        tool_use:
          - Write: {file_path: "/workspace/again-${tag}.txt", content: "done\n"}
      - "Finished."
  - name: unauthorized
    match: {prompt: '## Your task [^\n]*\nthis needs credentials'}
    turns: [{error: authentication}]
  - name: quota
    match: {prompt: '## Your task [^\n]*\nwe are over quota'}
    turns: [{error: rate_limit}]
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, podman_backend, agent_image) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("tasks")
    name = f"k{os.getpid() % 100000}"
    port = free_port()
    url, http = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
    host_repo = seed_repo(tmp / "project")
    env = task_env(tmp / "state")
    server_args = [
        "--port", str(port), "--data-dir", str(tmp / "chat"), "--max-active", "1",
        "--heartbeat-interval", "3", "--probe-interval", "3", "--task-retries", "2",
    ]  # fmt: skip
    server = start_server(server_args, env)
    model = ScriptedModel.from_yaml(SCRIPT)
    up = None
    try:
        with model.serve() as model_url:
            file = tmp / "fleet.yaml"
            file.write_text(
                f"""\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {{name: {name}}}
defaults:
  resources: {{memory: 1g, cpus: 1, pids: 256}}
  grace_seconds: 5
  secrets: [{{name: ANTHROPIC_API_KEY, from_env: ANTHROPIC_API_KEY}}]
repo: {{path: {host_repo}, branch: main}}
sync: {{interval: 2}}
server: {url}
model: {{name: claude-sonnet-4-5, base_url: {model_url}}}
work: {{channel: "#work", heartbeat_interval: 3, task_timeout: 120}}
agents:
  - role: builder
    replicas: 2
    runtime: claude
"""
            )
            wait("the server", lambda: answers(http), timeout=60)
            up = subprocess.Popen(
                [*AGENTCTL, "up", "-f", str(file), "--interval", "2"],
                stdout=subprocess.DEVNULL, stderr=(tmp / "up.log").open("w"), cwd=REPO, env=env,
            )  # fmt: skip
            the_fleet = Fleet(name, file, url, http, model, env, server_args, server, host_repo)

            def idle() -> bool:
                agents = the_fleet.get("agents")["agents"]
                return sum(a["state"] == "idle" and a["alive"] for a in agents) == 2

            wait("two idle builders", idle, timeout=180)
            yield the_fleet
            server = the_fleet.server
    finally:
        if up is not None and up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=90)
            except subprocess.TimeoutExpired:
                up.kill()
        server.terminate()
        server.wait(timeout=30)
        cleanup_fleet(podman_backend, name)


def _done(fleet: Fleet, tid: str, timeout: float = 120) -> dict:
    return wait(  # type: ignore[return-value]
        f"task {tid} done",
        lambda: (t := fleet.task(tid))["state"] == "done" and t,
        timeout=timeout,
    )


def test_one_builder_claims_runs_commits_and_reports_done(fleet: Fleet) -> None:
    before = {a: len(fleet.runs(a)) for a in ("swarm-builder-000", "swarm-builder-001")}
    tid = fleet.add("please write first.txt")
    task = _done(fleet, tid)
    worker = task["assignee"]
    other = ({"swarm-builder-000", "swarm-builder-001"} - {worker}).pop()
    assert task["tokens_in"] > 0 and task["tokens_out"] > 0  # usage is on the task
    assert len(task["history"]) == 1  # exactly one agent ran it
    # the commit is in the workspace, and on the host after a sync
    branch = f"swarm/{worker}/task/{tid}"
    shown = wait("the synced commit", lambda: subprocess.run(
        ["git", "-C", str(fleet.host_repo), "show", f"{branch}:first.txt"],
        capture_output=True, text=True,
    ).stdout)  # fmt: skip
    assert shown == "written by first.txt\n"
    transcript = subprocess.run(
        ["podman", "exec", fleet.container(worker), "cat", f"/state/transcripts/{tid}-1.jsonl"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert '"type":"result"' in transcript.replace(" ", "")
    assert "scripted-model-key" not in transcript
    # the other builder never started an LLM process for it
    assert len(fleet.runs(other)) == before[other]


def test_max_active_one_runs_two_tasks_one_after_the_other(fleet: Fleet) -> None:
    a = fleet.add("please write alpha.txt")
    b = fleet.add("please write beta.txt")
    ta, tb = _done(fleet, a), _done(fleet, b)
    spans = sorted([(ta["started_at"], ta["finished_at"]), (tb["started_at"], tb["finished_at"])])
    assert spans[0][1] <= spans[1][0]  # never both at once


def test_an_auth_failure_ends_as_blocked_quickly(fleet: Fleet) -> None:
    started = time.monotonic()
    tid = fleet.add("this needs credentials")
    blocked = wait("a blocked agent", lambda: [
        a for a in fleet.get("agents")["agents"] if a.get("blocked")
    ], timeout=30, board=fleet.http)  # fmt: skip
    assert time.monotonic() - started < 10  # a bound, not a benchmark: no retry storm
    name = blocked[0]["name"]
    history = fleet.task(tid)["history"]
    assert history and history[0]["outcome"] == "blocked"
    fleet.agentctl("task", "cancel", tid, "--server", fleet.url)
    fleet.agentctl("chat", "send", "--server", fleet.url, "#work", f"RETRY agent={name}")
    wait("unblocked", lambda: not any(a.get("blocked") for a in fleet.get("agents")["agents"]))


def test_a_quota_pauses_the_fleet_and_a_probe_resumes_it(fleet: Fleet) -> None:
    tid = fleet.add("we are over quota")
    wait("paused", lambda: fleet.get("status")["quota"]["paused"], timeout=60)
    wait("a probe resumed assigning", lambda: not fleet.get("status")["quota"]["paused"], 60)
    assert fleet.get("status")["quota"]["probes"] >= 1
    fleet.agentctl("task", "cancel", tid, "--server", fleet.url)


def test_killing_claude_fails_the_attempt_and_the_task_is_done_after_all(fleet: Fleet) -> None:
    tid = fleet.add("slow job claudekill")
    first = wait("assigned", lambda: fleet.task(tid).get("assignee"))
    wait("claude running", lambda: fleet.task(tid)["state"] == "running")
    time.sleep(1)
    fleet.kill_in(str(first), "--output-format")
    task = _done(fleet, tid, timeout=180)
    outcomes = [(h["agent"], h["outcome"], h.get("reason")) for h in task["history"]]
    assert outcomes[0][0] == first and outcomes[0][1] == "failed", outcomes
    assert outcomes[0][2] in {"killed", "crash"}
    assert outcomes[-1][1] == "done"


def test_killing_the_runner_never_runs_the_task_twice_at_once(fleet: Fleet) -> None:
    tid = fleet.add("slow job runnerkill")
    first = str(wait("assigned", lambda: fleet.task(tid).get("assignee")))
    wait("running", lambda: fleet.task(tid)["state"] == "running")
    fleet.kill_in(first, "agentctl-agent run")
    task = _done(fleet, tid, timeout=180)
    spans = [(h["assigned_at"], h.get("ended_at") or time.time()) for h in task["history"]]
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start + 1.0, spans  # attempts never overlap
    # the runner came back (the supervisor restarted it) and is idle again
    wait("the runner back", lambda: any(
        a["name"] == first and a["state"] == "idle" and a["alive"]
        for a in fleet.get("agents")["agents"]
    ))  # fmt: skip


def test_a_server_and_coordinator_restart_mid_task_loses_no_task(fleet: Fleet) -> None:
    tid = fleet.add("slow job restart")
    wait("running", lambda: fleet.task(tid)["state"] == "running")
    fleet.restart_server()  # kill -9 of the server and its coordinator, then start again
    assert fleet.task(tid)["state"] in {"running", "assigned", "queued", "done"}
    _done(fleet, tid, timeout=180)
