"""The chaos scenarios against one real fleet, shared by `bench/chaos/run.py` (the full
set, a table) and `tests/chaos` (a reduced set in CI, asserted).

One fleet serves every scenario: an `agentctl server` process with the coordinator
inside, the scripted model on 127.0.0.1, two builders (`runtime: claude`, the real
Claude Code binary) under `agentctl up`, and a host repo the sync-daemon writes to.
Each scenario posts tasks whose first attempt writes a file, waits a few seconds and
writes a second one (the runner commits both on the task's branch), injects its fault
while a task runs, then waits until the fleet has converged again: every builder idle
and alive on the board, every task done, and its commit on the host. What it measures
is what an operator would check afterwards:

- tasks lost: not done, or done without its commit on the host;
- commits lost: a commit in an agent's workspace that never reached the host repo;
- duplicate runs: two Claude Code sessions (seen by the model, so even an orphan the
  board forgot counts) or two board attempts of one task overlapping in time.

Faults are real: SIGKILL from the host to a pid found through /proc, `podman kill`,
`podman rm -f`, SIGKILL/SIGSTOP of our own child processes, a tmpfs workspace filled
to the last byte. No pytest here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: the repo's packages by absolute name
    sys.path.insert(0, str(REPO))

from agentctl_swarm.controller.events import read_events  # noqa: E402
from agentctl_swarm.fleet.render import LABEL_AGENT, LABEL_FLEET, LABEL_KIND  # noqa: E402
from agentctl_swarm.model.server import ScriptedModel  # noqa: E402
from tests.integration.helpers import (  # noqa: E402
    AGENTCTL,
    Fleet,
    answers,
    free_port,
    host_pid,
    is_claude,
    is_runner,
    is_supervisor,
    seed_repo,
    start_server,
    task_env,
    wait,
)

BUILDERS = 2
#: The agent image (`agentctl build` makes it; AGENTCTL_AGENT_IMAGE picks another tag).
IMAGE = os.environ.get("AGENTCTL_AGENT_IMAGE") or "localhost/agentctl-agent:latest"
#: The builder whose workspace is a small tmpfs volume (the full-disk scenario fills it).
SMALL_DISK_AGENT = "swarm-builder-001"
#: 64 MiB in 4 KiB pages (Podman 4 refuses tmpfs `size=`, taking it for a quota).
SMALL_DISK_PAGES = 16384

# The first attempt is slow (a fault lands while it runs); a retry is quick, so the
# time to recover measures the fleet, not the script.
SCRIPT = r"""
conversations:
  - name: probe
    match: {prompt: "Reply with the single word OK"}
    turns: ["OK"]
  - name: first-attempt
    match: {prompt: '## Your task \(t-[^,]*, attempt 1\)\nchaos job (?P<tag>[a-z0-9]+)'}
    turns:
      - text: "Starting ${tag}."
        tool_use:
          - Write: {file_path: "/workspace/started-${tag}.txt", content: "begun ${tag}\n"}
      - delay: 12
        text: "Still at it."
        tool_use:
          - Write: {file_path: "/workspace/done-${tag}.txt", content: "done ${tag}\n"}
      # Resumed after a kill, Claude Code adds a stand-in for the interrupted turn, so
      # the retry lands here: it must still do the work.
      - &again
        text: "Again ${tag}."
        tool_use:
          - Write: {file_path: "/workspace/done-${tag}.txt", content: "done ${tag}\n"}
      - "Finished ${tag}."
  - name: later-attempts
    match: {prompt: '## Your task [^\n]*\nchaos job (?P<tag>[a-z0-9]+)'}
    turns:
      # A retry on the same agent resumes the killed session, which already holds
      # some turns: the model's turn index starts later, so every turn but the last
      # does the work (writing the file again changes nothing).
      - *again
      - *again
      - *again
      - "Finished ${tag}."
  - turns: ["Done."]
"""

FLEET = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {{name: {name}}}
defaults:
  image: {image}
  resources: {{memory: 1g, cpus: 1, pids: 256}}
  grace_seconds: 5
  secrets: [{{name: ANTHROPIC_API_KEY, from_env: ANTHROPIC_API_KEY}}]
repo: {{path: {repo}, branch: main}}
sync: {{interval: 2}}
server: {url}
model: {{name: claude-sonnet-4-5, base_url: {model_url}}}
work: {{channel: "#work", heartbeat_interval: 2, task_timeout: 300, max_active: {builders}}}
agents:
  - role: builder
    replicas: {builders}
    runtime: claude
"""

TAG_RE = re.compile(r"## Your task \((t-[^,]*), attempt (\d+)\)\nchaos job ([a-z0-9]+)")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def until(pred: Callable[[], object], timeout: float, step: float = 0.5) -> bool:
    """Poll ``pred`` (exceptions count as "not yet") until truthy or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if pred():
                return True
        time.sleep(step)
    return False


def sh(*argv: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


class ChaosFleet(Fleet):
    """The fleet plus what chaos needs: the `up` process, its state dir, the model URL."""

    up: subprocess.Popen[bytes] | None
    state: Path
    tmp: Path
    model_url: str
    up_starts: int = 0

    # ---- processes

    def start_up(self) -> None:
        self.up_starts += 1
        errors = (self.tmp / f"up-{self.up_starts}.log").open("w")
        self.up = subprocess.Popen(
            [*AGENTCTL, "up", "-f", str(self.file), "--interval", "1"],
            stdout=subprocess.DEVNULL, stderr=errors, cwd=REPO, env=self.env,
        )  # fmt: skip

    def stop_up(self, timeout: float = 90) -> None:
        up, self.up = self.up, None
        if up is None or up.poll() is not None:
            return
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait(timeout=30)

    def start_server_again(self) -> None:
        log_file = (self.tmp / "server.log").open("a")
        self.server = start_server(self.server_args, self.env, stderr=log_file)
        wait("the server again", lambda: answers(self.http), timeout=60)

    # ---- what the board says

    def builders(self) -> list[dict]:
        return [a for a in self.get("agents")["agents"] if a["name"].startswith("swarm-builder")]

    def agent_names(self) -> list[str]:
        return [f"swarm-builder-{i:03d}" for i in range(BUILDERS)]

    def all_idle(self) -> bool:
        agents = {a["name"]: a for a in self.builders()}
        return all(
            n in agents and agents[n]["state"] == "idle" and agents[n]["alive"]
            for n in self.agent_names()
        )

    def events(self, event: str) -> list[dict]:
        return [e for e in read_events(self.state, self.name) if e["event"] == event]

    # ---- the host repo

    def host_files(self) -> set[str]:
        """Every file name any commit under the host's refs touched."""
        out = sh("git", "-C", str(self.host_repo), "log", "--all", "--name-only", "--format=")
        return {line.strip() for line in out.stdout.splitlines() if line.strip()}

    def host_commits(self) -> set[str]:
        out = sh("git", "-C", str(self.host_repo), "log", "--all", "--format=%H")
        return set(out.stdout.split())

    def workspace_commits(self, agent: str) -> set[str] | None:
        """Every commit on a branch of the agent's workspace (None: cannot look). Not
        the sync's own snapshot of uncommitted work (refs/agentctl/wip): each pass makes
        a new one, and the host keeps the latest as swarm/<agent>/wip."""
        out = sh("podman", "exec", self.container(agent), "git", "-C", "/workspace", "log",
                 "--branches", "--format=%H")  # fmt: skip
        return set(out.stdout.split()) if out.returncode == 0 else None


@contextlib.contextmanager
def chaos_fleet(tmp: Path, name: str | None = None) -> Iterator[ChaosFleet]:
    """Start the whole fleet (server, model, `up`) and tear all of it down afterwards,
    also on an exception or Ctrl-C: `up` stopped first (or it would recreate what we
    delete), then `agentctl delete --volumes --force`, then anything left by label."""
    name = name or f"c{os.getpid() % 100000}"
    port = free_port()
    url, http = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
    host_repo = seed_repo(tmp / "project")
    env = task_env(tmp / "state")
    server_args = [
        "--port", str(port), "--data-dir", str(tmp / "chat"), "--max-active", str(BUILDERS),
        "--heartbeat-interval", "2", "--probe-interval", "3", "--task-retries", "3",
    ]  # fmt: skip
    server = start_server(server_args, env, stderr=(tmp / "server.log").open("a"))
    model = ScriptedModel.from_yaml(SCRIPT)
    fleet: ChaosFleet | None = None
    try:
        _small_workspace(name, SMALL_DISK_AGENT)
        with model.serve() as model_url:
            fleet = ChaosFleet(name, tmp / "fleet.yaml", url, http, model, env, server_args,
                               server, host_repo)  # fmt: skip
            fleet.up, fleet.state, fleet.tmp, fleet.model_url = None, tmp / "state", tmp, model_url
            fleet.file.write_text(
                FLEET.format(
                    name=name,
                    repo=host_repo,
                    url=url,
                    model_url=model_url,
                    builders=BUILDERS,
                    image=IMAGE,
                )
            )
            wait("the server", lambda: answers(http), timeout=60)
            fleet.start_up()
            wait("idle builders", fleet.all_idle, timeout=240, board=http)
            yield fleet
    finally:
        log("tearing down")
        if fleet is not None:
            with contextlib.suppress(Exception):
                fleet.stop_up()
            with contextlib.suppress(Exception):
                fleet.agentctl("delete", "-f", str(fleet.file), "--volumes", "--force", check=False)
            server = fleet.server
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=30)
        if server.poll() is None:
            server.kill()
        remove_by_label(name)


def _small_workspace(fleet: str, agent: str) -> None:
    """Create ``agent``'s workspace volume before `up` does, as a small tmpfs: `up`
    takes an existing volume as it is, so that agent's disk can be filled for real
    without touching the host's."""
    sh("podman", "volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
       "--opt", f"o=nr_blocks={SMALL_DISK_PAGES}", "--label", f"{LABEL_FLEET}={fleet}",
       "--label", f"{LABEL_AGENT}={agent}", "--label", f"{LABEL_KIND}=volume",
       f"{fleet}-{agent}-workspace", check=True)  # fmt: skip


def remove_by_label(fleet: str) -> None:
    """Whatever of ``fleet`` is still there (only objects carrying its label)."""
    label = f"label={LABEL_FLEET}={fleet}"
    ids = sh("podman", "ps", "-aq", "--filter", label).stdout.split()
    if ids:
        sh("podman", "rm", "-f", "-t", "0", *ids)
    vols = sh("podman", "volume", "ls", "-q", "--filter", label).stdout.split()
    if vols:
        sh("podman", "volume", "rm", "-f", *vols)
    for secret in sh("podman", "secret", "ls", "--format", "{{.Name}}").stdout.split():
        if secret.startswith(f"agentctl-{fleet}-"):
            sh("podman", "secret", "rm", secret)


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    scenario: str
    converged: bool
    recover_s: float | None
    tasks_lost: int
    commits_lost: int
    duplicates: int
    notes: list[str] = field(default_factory=list)
    #: Why the fault could not be injected (then the scenario proves nothing: failed).
    error: str | None = None

    @property
    def ok(self) -> bool:
        lost = self.tasks_lost or self.commits_lost or self.duplicates
        return self.converged and not lost and self.error is None

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def sessions(model: ScriptedModel, since: float) -> list[tuple[str, str, float, float]]:
    """The Claude Code sessions that worked on chaos tasks since ``since``, from the
    model's side: (tag, session id, first request, last request)."""
    spans: dict[tuple[str, str], list[float]] = {}
    for req in model.requests:
        if req.at < since or not req.messages:
            continue
        first = req.messages[0].get("content")
        text = first if isinstance(first, str) else json.dumps(first)
        match = TAG_RE.search(text.replace("\\n", "\n"))
        if not match:
            continue
        sid = req.headers.get("x-claude-code-session-id", f"attempt-{match.group(2)}")
        spans.setdefault((match.group(3), sid), []).append(req.at)
    return [(tag, sid, min(ts), max(ts)) for (tag, sid), ts in spans.items()]


def duplicate_runs(fleet: ChaosFleet, tids: dict[str, str], since: float) -> tuple[int, list[str]]:
    """Pairs of runs of one task overlapping in time: Claude Code sessions the model
    served, and the board's attempts (assigned..ended) by different agents."""
    found: list[str] = []
    by_tag: dict[str, list[tuple[str, float, float]]] = {}
    for tag, sid, start, end in sessions(fleet.model, since):
        by_tag.setdefault(tag, []).append((sid, start, end))
    for tag, spans in by_tag.items():
        for (s1, _a1, b1), (s2, a2, _b2) in combinations(sorted(spans, key=lambda s: s[1]), 2):
            if a2 < b1 - 0.5:  # the later session began before the earlier one's last call
                found.append(f"{tag}: sessions {s1[:8]} and {s2[:8]} overlap")
    for tag, tid in tids.items():
        with contextlib.suppress(Exception):
            hist = fleet.task(tid).get("history") or []
            now = time.time()
            spans2 = sorted((h["assigned_at"], h.get("ended_at") or now, h["agent"]) for h in hist)
            for (_a1, b1, g1), (a2, _b2, g2) in combinations(spans2, 2):
                if g1 != g2 and a2 < b1 - 1.0:
                    found.append(f"{tag}: board attempts of {g1} and {g2} overlap")
    return len(found), found


def lost_tasks(fleet: ChaosFleet, tids: dict[str, str]) -> tuple[int, list[str]]:
    files = fleet.host_files()
    lost = []
    for tag, tid in tids.items():
        try:
            state = fleet.task(tid)["state"]
        except Exception as exc:
            lost.append(f"{tag} ({tid}): board unreadable: {exc}")
            continue
        if state != "done":
            lost.append(f"{tag} ({tid}): {state}")
        elif f"done-{tag}.txt" not in files:
            lost.append(f"{tag} ({tid}): done but its commit is not on the host")
    return len(lost), lost


def lost_commits(fleet: ChaosFleet) -> tuple[int, list[str]]:
    """Commits in a workspace that the host never got (a sync pass or two to catch up)."""
    missing: list[str] = []

    def check() -> bool:
        missing.clear()
        host = fleet.host_commits()
        for agent in fleet.agent_names():
            inside = fleet.workspace_commits(agent)
            if inside is None:
                missing.append(f"{agent}: workspace unreadable")
                continue
            missing.extend(f"{agent}: {c[:10]}" for c in sorted(inside - host))
        return not missing

    until(check, timeout=20, step=2)
    return len(missing), list(missing)


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    name: str
    what: str
    inject: Callable[[ChaosFleet, str], str | None]
    #: Post the tasks, then inject at once (before any is assigned) instead of mid-run.
    early: bool = False
    #: Run before the tasks are posted (and undone after the scenario).
    prepare: Callable[[ChaosFleet], None] | None = None
    undo: Callable[[ChaosFleet], None] | None = None


def _kill_in(match: Callable[[list[bytes]], bool]) -> Callable[[ChaosFleet, str], str]:
    def inject(fleet: ChaosFleet, agent: str) -> str:
        pid = host_pid(fleet.container(agent), match)
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL host pid {pid} in {agent}"

    return inject


def _podman(*verb: str) -> Callable[[ChaosFleet, str], str]:
    def inject(fleet: ChaosFleet, agent: str) -> str:
        sh("podman", *verb, fleet.container(agent), check=True)
        return f"podman {' '.join(verb)} {fleet.container(agent)}"

    return inject


def _kill_up(fleet: ChaosFleet, _agent: str) -> str:
    assert fleet.up is not None
    fleet.up.kill()
    fleet.up.wait(timeout=30)
    time.sleep(3)  # the supervisor of `up` (systemd, a person) starts it again
    fleet.start_up()
    return "SIGKILL `agentctl up`, started again after 3 s"


def _kill_server(fleet: ChaosFleet, _agent: str) -> str:
    fleet.server.kill()
    fleet.server.wait(timeout=30)
    fleet.start_server_again()
    return "SIGKILL `agentctl server` (chat server + coordinator), started again"


OUTAGE_S = float(os.environ.get("CHAOS_OUTAGE_SECONDS", "60"))


def _server_unreachable(fleet: ChaosFleet, _agent: str) -> str:
    """SIGSTOP: every connection stays open and nothing answers (a partition, not a
    refusal), for a minute; then SIGCONT."""
    os.kill(fleet.server.pid, signal.SIGSTOP)
    try:
        time.sleep(OUTAGE_S)
    finally:
        os.kill(fleet.server.pid, signal.SIGCONT)
    return f"SIGSTOP the server for {OUTAGE_S:.0f} s"


def _kill_sync(fleet: ChaosFleet, _agent: str) -> str:
    """A standalone `agentctl sync --once` killed mid-pass, twice at different points,
    then a clean pass that must succeed; the host repo must stay consistent."""
    notes = []
    for delay in (0.9, 1.1, 1.3, 1.5):  # the CLI takes ~1 s to start; a pass, under 1 s
        proc = subprocess.Popen(
            [*AGENTCTL, "sync", "-f", str(fleet.file), "--once"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=fleet.env,
        )  # fmt: skip
        time.sleep(delay)
        ended = proc.poll()
        proc.kill()
        proc.wait(timeout=30)
        notes.append(f"killed at {delay}s" if ended is None else f"ended before {delay}s")
    # `up`'s own sync may hold an agent's lock at that instant ("another sync is
    # running" is an honest answer); a rerun soon after must pass.
    for _ in range(5):
        again = fleet.agentctl("sync", "-f", str(fleet.file), "--once", check=False)
        if again.returncode == 0:
            break
        time.sleep(1)
    fsck = sh("git", "-C", str(fleet.host_repo), "fsck", "--strict", "--no-progress")
    if again.returncode != 0:
        raise AssertionError(f"sync after the kill failed: {again.stdout}{again.stderr}")
    if fsck.returncode != 0:
        raise AssertionError(f"host repo inconsistent: {fsck.stdout}{fsck.stderr}")
    return "sync --once " + ", ".join(notes) + "; a rerun passed and git fsck is clean"


def _fill_disk(fleet: ChaosFleet) -> None:
    sh("podman", "exec", fleet.container(SMALL_DISK_AGENT), "sh", "-c",
       "cat /dev/zero > /workspace/.chaos-fill 2>/dev/null; df -h /workspace")  # fmt: skip


def _free_disk(fleet: ChaosFleet) -> None:
    sh("podman", "exec", fleet.container(SMALL_DISK_AGENT), "rm", "-f", "/workspace/.chaos-fill")


SCENARIOS: list[Scenario] = [
    Scenario("kill-claude", "kill -9 of Claude Code mid-task", _kill_in(is_claude)),
    Scenario("kill-runner", "kill -9 of the runner mid-task", _kill_in(is_runner)),
    Scenario("kill-supervisor", "kill -9 of the supervisor mid-task", _kill_in(is_supervisor)),
    Scenario("podman-kill", "`podman kill` of the container mid-task", _podman("kill")),
    Scenario("podman-rm", "`podman rm -f` behind the controller's back", _podman("rm", "-f")),
    Scenario("kill-up", "kill -9 of `agentctl up` mid-task", _kill_up),
    Scenario("kill-server", "kill -9 of the chat server mid-task", _kill_server),
    Scenario(
        "kill-coordinator",
        "kill -9 of the coordinator as tasks arrive (embedded in the server)",
        _kill_server,
        early=True,
    ),
    Scenario("kill-sync", "kill -9 of the sync-daemon mid-pass", _kill_sync),
    Scenario("server-unreachable", "the server unreachable for a minute", _server_unreachable),
    Scenario(
        "disk-full",
        "a full disk in one agent's workspace",
        lambda _f, _a: "workspace filled before the tasks",
        early=True,
        prepare=_fill_disk,
        undo=_free_disk,
    ),
]

BY_NAME = {s.name: s for s in SCENARIOS}


def run_scenario(fleet: ChaosFleet, scenario: Scenario, timeout: float = 300) -> Result:
    """Post one task per builder, inject the fault while the first runs (or at once for
    the early ones), and measure how the fleet comes back."""
    log(f"--- {scenario.name}: {scenario.what}")
    notes: list[str] = []
    if not until(fleet.all_idle, timeout=180):
        notes.append("the fleet was not idle before the scenario")
    since = time.time()
    if scenario.prepare is not None:
        scenario.prepare(fleet)
    stamp = f"{int(since) % 100000}"
    tags = [f"{re.sub('[^a-z0-9]', '', scenario.name)}{stamp}n{i}" for i in range(BUILDERS)]
    tids = {tag: fleet.add(f"chaos job {tag}") for tag in tags}
    target = ""
    if not scenario.early:
        # The fault lands on the builder with a disk of its own (a tmpfs workspace would
        # not outlive its container, which is that scenario's business only).
        wanted = next(n for n in fleet.agent_names() if n != SMALL_DISK_AGENT)

        def running() -> str | None:
            for tid in tids.values():
                task = fleet.task(tid)
                if task["state"] == "running" and task.get("assignee") == wanted:
                    host_pid(fleet.container(wanted), is_claude)  # LookupError: not yet
                    return wanted
            return None

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not target:
            with contextlib.suppress(Exception):
                target = running() or ""
            time.sleep(0.3)
        if not target:
            notes.append(f"no task ever ran on {wanted}")
        time.sleep(2)  # the first turn has committed nothing yet; the slow turn runs
    fault_at = time.monotonic()
    error = None
    try:
        notes.append(scenario.inject(fleet, target or fleet.agent_names()[0]) or "")
    except Exception as exc:
        error = f"injecting the fault failed: {exc}"[:2000]
    files_for = {f"done-{t}.txt" for t in tags}

    def converged() -> bool:
        return (
            all(fleet.task(t)["state"] == "done" for t in tids.values())
            and fleet.all_idle()
            and files_for <= fleet.host_files()
        )

    ok = until(converged, timeout=timeout, step=0.5)
    recover = round(time.monotonic() - fault_at, 1) if ok else None
    if scenario.undo is not None:
        scenario.undo(fleet)
    n_tasks, why_tasks = lost_tasks(fleet, tids)
    n_commits, why_commits = lost_commits(fleet)
    n_dup, why_dup = duplicate_runs(fleet, tids, since)
    notes.append(f"Claude Code sessions the model served: {len(sessions(fleet.model, since))}")
    for tag, tid in tids.items():
        with contextlib.suppress(Exception):
            hist = fleet.task(tid)["history"]
            notes.append(f"{tag}: " + ", ".join(
                f"{h['agent'][-3:]}:{h['outcome']}"
                + (f"({h.get('reason')}: {(h.get('detail') or '')[:120]})" if h.get("reason")
                   else "") for h in hist))  # fmt: skip
    result = Result(scenario.name, ok, recover, n_tasks, n_commits, n_dup,
                    [n for n in notes + why_tasks + why_commits + why_dup if n], error)  # fmt: skip
    log(f"    {'OK' if result.ok else 'FAILED'} {result.to_dict()}")
    if not result.ok:
        dump_debug(fleet, scenario.name, since)
    return result


def dump_debug(fleet: ChaosFleet, name: str, since: float) -> None:
    """What the model served and what the board holds, next to the results, to see why."""
    out = REPO / "bench" / "results" / "chaos-debug" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    reqs = [
        {"at": r.at, "session": r.headers.get("x-claude-code-session-id"), "reply": r.reply,
         "conversation": r.conversation, "turn": r.turn,
         "roles": [m.get("role") for m in r.messages],
         "first": json.dumps(r.messages[0].get("content"))[:300] if r.messages else None}
        for r in fleet.model.requests if r.at >= since and r.path.startswith("/v1/messages")
    ]  # fmt: skip
    board: object = None
    with contextlib.suppress(Exception):
        board = fleet.get("tasks")
    out.write_text(json.dumps({"requests": reqs, "board": board}, indent=1, default=str))
    log(f"    details in {out}")
