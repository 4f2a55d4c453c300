"""bench/recovery: how fast a fleet heals, beyond the waits its restart policies choose.

In one run, on this machine, on a real fleet of `runtime: command` agents (`sleep
infinity` under the in-container supervisor) with `agentctl up --interval 1` and an
`agentctl server` process on 127.0.0.1:
  1. container crash → running again: SIGKILL to the container's init from the host (the
     agents have `restart: "no"`, so Podman leaves it to `up`); from Podman's record of
     the exit (State.FinishedAt) to the container running again (State.StartedAt), minus
     the backoff delay `up` chose (its events log: health.backoff), is the controller's
     overhead. Rounds go round-robin over the crash agents, so each one's curve (1 s
     doubling, every restart counted towards "degraded") stays short; the delay that
     applied is subtracted each time. Also the agent's process: the new supervisor counts
     the lost run as a crash and waits its own backoff (state.json) before it starts the
     child; end-to-end overhead = child started − exit − both delays;
  2. supervisor restart inside the container: SIGKILL to the agent's process (not the
     supervisor) from the host; until the supervisor's new child runs (state.json
     started_at), minus the supervisor's delay (recorded with the exit);
  3. kill -9 of `up` → converged after restart: while `up` is dead one agent's container
     is removed (podman rm -f) and another's stopped; `up` is started again; until every
     agent runs again (podman) and `agentctl diff -f FILE` exits 0.
Targets: overheads (1, 2) ≤ 1 s at p50 and max; (3) reported.
Prints a table and writes bench/results/recovery.json.

Usage: .venv/bin/python bench/recovery/run.py [--rounds 10] [--kills 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agentctl_swarm.controller.events import read_events  # noqa: E402
from agentctl_swarm.controller.health import CONTAINER_POLICY  # noqa: E402
from tests.integration.helpers import (  # noqa: E402
    AGENTCTL,
    answers,
    free_port,
    host_pid,
    start_server,
    wait,
)

TARGET_OVERHEAD = 1.0  # seconds beyond the backoff delay
STEADY = 3  # agents for the supervisor rounds and the kill -9 of up

FLEET = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {{name: {name}}}
defaults:
  resources: {{memory: 128m, cpus: 0.25, pids: 64}}
  grace_seconds: 3
server: {url}
agents:
  - role: crash
    replicas: {crash}
    restart: "no"
    command: [sleep, infinity]
  - role: steady
    replicas: {steady}
    command: [sleep, infinity]
"""


# ---------------------------------------------------------------- Podman and records


def podman(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


def inspect(container: str) -> dict[str, Any]:
    """Status, init pid, last start and last exit (epoch seconds) of ``container``."""
    fmt = (
        "{{.State.Status}} {{.State.Pid}} {{.State.StartedAt.UnixNano}} "
        "{{.State.FinishedAt.UnixNano}}"
    )
    out = podman("inspect", "--format", fmt, container).stdout.split()
    if len(out) != 4:
        return {"status": "absent", "pid": 0, "started": 0.0, "finished": 0.0}
    status, pid, started, finished = out
    return {
        "status": status,
        "pid": int(pid),
        "started": int(started) / 1e9,
        "finished": int(finished) / 1e9,
    }


def states(fleet: str) -> dict[str, str]:
    """Container name → state (running, exited, ...), for the fleet's containers."""
    out = podman("ps", "-a", "--filter", f"name=^{fleet}-swarm-", "--format", "json").stdout
    with contextlib.suppress(ValueError):
        return {c["Names"][0]: c["State"] for c in json.loads(out or "[]")}
    return {}


def supervisor_state(container: str) -> dict[str, Any]:
    """The in-container supervisor's state.json ({} while it cannot be read)."""
    out = podman("exec", container, "cat", "/state/state.json")
    if out.returncode != 0:
        return {}
    with contextlib.suppress(ValueError):
        return json.loads(out.stdout)
    return {}


def epoch(iso: str | float | None) -> float:
    if iso is None:
        return 0.0
    if isinstance(iso, int | float):
        return float(iso)
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def child_running(container: str, after: float) -> dict[str, Any] | None:
    """state.json once the supervisor runs a child started after ``after``."""
    doc = supervisor_state(container)
    if doc.get("status") == "running" and epoch(doc.get("started_at")) > after:
        return doc
    return None


def poll(what: str, pred: Any, timeout: float = 120, step: float = 0.05) -> Any:
    """Like helpers.wait, with a finer step (for the timings measured by polling)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------- the bench


class Bench:
    def __init__(self, work: Path, rounds: int, interval: float) -> None:
        self.work = work
        self.fleet = f"r{os.getpid() % 100000}"
        self.port = free_port()
        self.url, self.http = f"ws://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.port}"
        self.state = work / "state"
        self.env = {
            **os.environ,
            "AGENTCTL_STATE_DIR": str(self.state),
            "AGENTCTL_LOG_FORMAT": "json",
        }
        self.interval = interval
        # each crash agent restarts at most 3 times (after 1, 2, 4 s): far from degraded
        # (a 6th restart within 30 minutes), and the rounds stay short
        self.crash = [f"swarm-crash-{i:03d}" for i in range(max(2, math.ceil(rounds / 3)))]
        self.steady = [f"swarm-steady-{i:03d}" for i in range(STEADY)]
        self.file = work / "fleet.yaml"
        self.file.write_text(
            FLEET.format(name=self.fleet, url=self.url, crash=len(self.crash), steady=STEADY)
        )
        self.server: subprocess.Popen[bytes] | None = None
        self.up: subprocess.Popen[bytes] | None = None
        self.up_starts = 0
        self.restarts: dict[str, int] = {}  # crash agent → controller restarts so far

    def container(self, agent: str) -> str:
        return f"{self.fleet}-{agent}"

    def agentctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*AGENTCTL, *args], capture_output=True, text=True, cwd=REPO, env=self.env, timeout=120
        )

    def events(self, event: str, agent: str | None = None, after: float = 0.0) -> list[dict]:
        return [
            e
            for e in read_events(self.state, self.fleet)
            if e.get("event") == event
            and (agent is None or e.get("agent") == agent)
            and epoch(e.get("time")) >= after
        ]

    # -------------------------------------------------------- processes

    def start(self) -> None:
        self.server = start_server(
            ["--port", str(self.port), "--data-dir", str(self.work / "chat")], self.env
        )
        wait("the server", lambda: answers(self.http), timeout=60)
        self.start_up()
        wait("every agent running", self.all_running, timeout=300)

    def start_up(self) -> float:
        self.up_starts += 1
        log = (self.work / f"up-{self.up_starts}.log").open("w")
        began = time.time()
        self.up = subprocess.Popen(
            [*AGENTCTL, "up", "-f", str(self.file), "--interval", str(self.interval)],
            stdout=subprocess.DEVNULL, stderr=log, cwd=REPO, env=self.env,
            start_new_session=True,  # Ctrl-C reaches the bench; it stops `up` itself
        )  # fmt: skip
        return began

    def all_running(self) -> bool:
        seen = states(self.fleet)
        want = [self.container(a) for a in self.crash + self.steady]
        return all(seen.get(c) == "running" for c in want)

    def stop(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut this
            signal.signal(signum, signal.SIG_IGN)
        if self.up is not None and self.up.poll() is None:
            self.up.send_signal(signal.SIGTERM)
            try:
                self.up.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.up.kill()
                self.up.wait(timeout=30)
        if self.file.exists():
            out = self.agentctl("delete", "-f", str(self.file), "--volumes", "--force")
            if out.returncode != 0:
                print(f"delete: {out.stdout}{out.stderr}", file=sys.stderr)
        # whatever delete left (it only removes what carries the fleet's labels)
        left = podman("ps", "-aq", "--filter", f"name=^{self.fleet}-swarm-").stdout.split()
        if left:
            podman("rm", "-f", "-t", "0", *left)
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()

    # -------------------------------------------------------- 1. container crash

    def crash_round(self, agent: str) -> dict[str, Any]:
        name = self.container(agent)
        before = poll(f"{agent} running", lambda: child_running(name, 0) and inspect(name))
        killed = time.time()
        os.kill(before["pid"], signal.SIGKILL)  # the container's init: the container exits
        after = poll(
            f"{agent} running again",
            lambda: (s := inspect(name))["status"] == "running" and s["started"] > killed and s,
            timeout=120,
            step=0.02,
        )
        doc = poll(f"{agent}'s child again", lambda: child_running(name, after["started"]))
        exited = after["finished"]
        # the delay up chose: its health.backoff event, else the curve at this restart
        backoffs = self.events("health.backoff", agent, after=killed)
        starts = self.events("health.start", agent, after=killed)
        count = self.restarts.get(agent, 0)
        self.restarts[agent] = count + 1
        pol = CONTAINER_POLICY
        curve = min(pol.cap, pol.initial * pol.multiplier**count)
        delay = float(backoffs[0]["delay"]) if backoffs else curve
        lost = doc.get("last_exit") or {}
        sup_delay = float(lost.get("delay_seconds") or 0.0)
        child_at = epoch(doc.get("started_at"))
        row: dict[str, Any] = {
            "agent": agent,
            "restart": count + 1,
            "killed": killed,
            "exited": exited,
            "running": after["started"],
            "delay_s": delay,
            "delay_from": "event" if backoffs else "curve",
            "overhead_s": after["started"] - exited - delay,
            "child_started": child_at,
            "supervisor_delay_s": sup_delay,
            "end_to_end_s": child_at - exited,
            "end_to_end_overhead_s": child_at - exited - delay - sup_delay,
        }
        if backoffs:
            row["noticed_s"] = epoch(backoffs[0]["time"]) - exited
        if starts:
            row["start_event_s"] = epoch(starts[0]["time"]) - exited
            row["podman_start_s"] = after["started"] - epoch(starts[0]["time"])
            if backoffs:  # how late the start came after the delay was over
                row["start_late_s"] = epoch(starts[0]["time"]) - epoch(backoffs[0]["time"]) - delay
        return row

    # -------------------------------------------------------- 2. supervisor restart

    def supervisor_round(self, agent: str) -> dict[str, Any]:
        name = self.container(agent)
        doc = poll(f"{agent}'s child", lambda: child_running(name, 0))
        # a run shorter than the supervisor's quick_crash (10 s) counts towards its breaker
        time.sleep(max(0.0, 10.5 - (time.time() - epoch(doc.get("started_at")))))
        pid = host_pid(name, lambda argv: argv[0] == b"sleep")
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        doc = poll(f"{agent}'s new child", lambda: child_running(name, killed), step=0.1)
        last = doc.get("last_exit") or {}
        delay = float(last.get("delay_seconds") or 0.0)
        started = epoch(doc.get("started_at"))
        return {
            "agent": agent,
            "killed": killed,
            "child_started": started,
            "delay_s": delay,
            "exit_recorded_s": epoch(last.get("at")) - killed if last.get("at") else None,
            "overhead_s": started - killed - delay,
        }

    # -------------------------------------------------------- 3. kill -9 of up

    def kill_up_round(self, i: int) -> dict[str, Any]:
        wait("every agent running", self.all_running, timeout=120)
        assert self.up is not None
        removed = self.steady[(i + 1) % STEADY]
        stopped = self.steady[i % STEADY]
        self.up.kill()  # kill -9: no drain, no final sync, the lock dies with it
        self.up.wait(timeout=30)
        podman("rm", "-f", "-t", "0", self.container(removed), check=True)
        podman("stop", "-t", "5", self.container(stopped), check=True)
        began = self.start_up()
        running = poll("every agent running again", self.all_running, timeout=180, step=0.05)
        at_running = time.time()
        diffs = 0
        while True:  # and `agentctl diff` agrees: nothing left to do
            diffs += 1
            asked = time.time()
            diff = self.agentctl("diff", "-f", str(self.file))
            if diff.returncode == 0:
                break
            if diff.returncode > 1:
                raise AssertionError(f"agentctl diff: {diff.stdout}{diff.stderr}")
            time.sleep(0.1)
        answered = time.time()
        assert running
        up_start = self.events("up.start", after=began)
        return {
            "removed": removed,
            "stopped": stopped,
            "up_start_event_s": epoch(up_start[0]["time"]) - began if up_start else None,
            "all_running_s": at_running - began,
            # the clean diff was asked for here (it looks at Podman while it runs) ...
            "diff_clean_asked_s": asked - began,
            # ... and answered here; diffs: how many it took (1: clean at the first ask)
            "diff_clean_s": answered - began,
            "diffs": diffs,
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10, help="crashes (and supervisor kills)")
    parser.add_argument("--kills", type=int, default=3, help="kill -9 of up, restarted")
    parser.add_argument("--interval", type=float, default=1.0, help="up --interval")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "recovery.json")
    args = parser.parse_args()

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too when started in background
        signal.signal(signum, interrupted)
    work = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    bench = Bench(work, args.rounds, args.interval)
    t0 = time.monotonic()
    crashes: list[dict[str, Any]] = []
    sups: list[dict[str, Any]] = []
    kills: list[dict[str, Any]] = []
    try:
        bench.start()
        print(f"fleet {bench.fleet} running ({time.monotonic() - t0:.0f}s); {work}", flush=True)
        for i in range(args.rounds):
            row = bench.crash_round(bench.crash[i % len(bench.crash)])
            crashes.append(row)
            print(
                f"  crash {i + 1}/{args.rounds} {row['agent']}: delay {row['delay_s']:g}s, "
                f"overhead {row['overhead_s']:.3f}s, child after {row['end_to_end_s']:.2f}s",
                flush=True,
            )
        for i in range(args.rounds):
            row = bench.supervisor_round(bench.steady[i % STEADY])
            sups.append(row)
            print(
                f"  child kill {i + 1}/{args.rounds} {row['agent']}: delay {row['delay_s']:g}s, "
                f"overhead {row['overhead_s']:.3f}s",
                flush=True,
            )
        for i in range(args.kills):
            row = bench.kill_up_round(i)
            kills.append(row)
            print(
                f"  kill -9 up {i + 1}/{args.kills}: up.start {row['up_start_event_s']:.2f}s, "
                f"all running {row['all_running_s']:.2f}s, diff clean {row['diff_clean_s']:.2f}s",
                flush=True,
            )
    finally:
        bench.stop()
    took = time.monotonic() - t0
    results = summary(args, bench, crashes, sups, kills, took)
    print_table(args, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def summary(
    args: argparse.Namespace,
    bench: Bench,
    crashes: list[dict[str, Any]],
    sups: list[dict[str, Any]],
    kills: list[dict[str, Any]],
    took: float,
) -> dict[str, Any]:
    def stat(rows: list[dict[str, Any]], key: str, how: Any, digits: int = 3) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return round(how(vals), digits) if vals else None

    p50, mean = statistics.median, statistics.mean
    return {
        "rounds": args.rounds,
        "kills": args.kills,
        "interval_s": args.interval,
        "crash_agents": len(bench.crash),
        "crash_overhead_p50_s": stat(crashes, "overhead_s", p50),
        "crash_overhead_max_s": stat(crashes, "overhead_s", max),
        "crash_noticed_mean_s": stat(crashes, "noticed_s", mean),
        "crash_start_late_mean_s": stat(crashes, "start_late_s", mean),
        "crash_podman_start_mean_s": stat(crashes, "podman_start_s", mean),
        "crash_child_after_p50_s": stat(crashes, "end_to_end_s", p50),
        "crash_end_to_end_overhead_p50_s": stat(crashes, "end_to_end_overhead_s", p50),
        "crash_end_to_end_overhead_max_s": stat(crashes, "end_to_end_overhead_s", max),
        "supervisor_overhead_p50_s": stat(sups, "overhead_s", p50),
        "supervisor_overhead_max_s": stat(sups, "overhead_s", max),
        "up_kill_up_start_event_p50_s": stat(kills, "up_start_event_s", p50, 2),
        "up_kill_all_running_p50_s": stat(kills, "all_running_s", p50, 2),
        "up_kill_all_running_max_s": stat(kills, "all_running_s", max, 2),
        "up_kill_diff_clean_asked_max_s": stat(kills, "diff_clean_asked_s", max, 2),
        "up_kill_converged_p50_s": stat(kills, "diff_clean_s", p50, 2),
        "up_kill_converged_max_s": stat(kills, "diff_clean_s", max, 2),
        "took_s": round(took, 1),
        "crash_rounds": crashes,
        "supervisor_rounds": sups,
        "up_kill_rounds": kills,
    }


def print_table(args: argparse.Namespace, r: dict[str, Any]) -> None:
    def s(*keys: str) -> str:
        vals = [r[k] for k in keys]
        return " / ".join("—" if v is None else f"{v:.3g}" for v in vals) + " s"

    def ok(key: str) -> str:
        v = r[key]
        if v is None:
            return ""
        return "[green]pass[/]" if v <= TARGET_OVERHEAD else "[red]FAIL[/]"

    table = Table(title=f"bench/recovery: {args.rounds} rounds, up --interval {args.interval:g}")
    for col in ("measure", "value", "target", ""):
        table.add_column(col)
    rows = [
        ("crash → container running, beyond up's backoff delay, p50",
         s("crash_overhead_p50_s"), "≤ 1 s", ok("crash_overhead_p50_s")),
        ("  … max", s("crash_overhead_max_s"), "≤ 1 s", ok("crash_overhead_max_s")),
        ("  exit → noticed / start after the delay was over / podman start (means)",
         s("crash_noticed_mean_s", "crash_start_late_mean_s", "crash_podman_start_mean_s"),
         "", ""),
        ("crash → agent process running again (p50, both delays included)",
         s("crash_child_after_p50_s"), "report", ""),
        ("  … beyond up's and the supervisor's delays, p50 / max",
         s("crash_end_to_end_overhead_p50_s", "crash_end_to_end_overhead_max_s"), "report", ""),
        ("child kill -9 → supervisor's new child, beyond its delay, p50",
         s("supervisor_overhead_p50_s"), "≤ 1 s", ok("supervisor_overhead_p50_s")),
        ("  … max", s("supervisor_overhead_max_s"), "≤ 1 s", ok("supervisor_overhead_max_s")),
        ("kill -9 up, rm -f one agent, stop one, start up: up.start event, p50",
         s("up_kill_up_start_event_p50_s"), "report", ""),
        ("  … every agent running, p50 / max",
         s("up_kill_all_running_p50_s", "up_kill_all_running_max_s"), "report", ""),
        ("  … converged: `agentctl diff` exits 0 (asked at, max / answered, p50 / max)",
         s("up_kill_diff_clean_asked_max_s", "up_kill_converged_p50_s", "up_kill_converged_max_s"),
         "report", ""),
        ("run took", f"{r['took_s']:.0f} s", "", ""),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    Console(width=140).print(table)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("bench/recovery: interrupted (the fleet was removed)", file=sys.stderr)
        raise SystemExit(130) from None
