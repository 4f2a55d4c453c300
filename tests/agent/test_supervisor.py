"""The supervisor with real processes and signals (no Podman needed).

Delays are asserted on the schedule the supervisor records in state.json and its log,
never on wall-clock measurements.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Sup

NASTY = 'say "hi" & \'bye\'\nline two {"json": true} $HOME `ticks` \\ \u2603'


def delays(state: dict) -> list[float | None]:
    return [e["delay_seconds"] for e in state["recent_exits"]]


def test_kill9_restarts_with_the_expected_delays(sup: Sup) -> None:
    sup.start(sup.child("sleep"), "--initial-backoff", "0.2", "--max-quick-crashes", "100")
    seen: list[int] = []
    for _ in range(3):
        s = sup.wait_status("running")
        s = sup.wait_for(
            "a new child",
            lambda: (x := sup.state()) and x["status"] == "running" and x["pid"] not in seen and x,
        )
        seen.append(s["pid"])
        sup.wait_for("child running", lambda pid=s["pid"]: pid in sup.starts())
        os.kill(s["pid"], signal.SIGKILL)
    s = sup.wait_for(
        "the 4th child",
        lambda: (x := sup.state()) and x["status"] == "running" and x["pid"] not in seen and x,
    )
    assert s["restarts"] == 3
    assert delays(s) == [0.2, 0.4, 0.8]
    assert [(e["signal"], e["signal_name"], e["classification"]) for e in s["recent_exits"]] == [
        (9, "SIGKILL", "signaled")
    ] * 3
    assert s["backoff_seconds"] == 1.6
    out = sup.output()
    for d in ("0.2", "0.4", "0.8"):
        assert f"restarting in {d}s" in out
    assert sup.starts()[:3] == seen  # each killed child had really started
    sup.signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
    assert sup.state()["status"] == "stopped"  # type: ignore[index]


def test_sigterm_reaches_the_grandchild_in_the_group(sup: Sup, tmp_path: Path) -> None:
    sup.start(sup.child("family"))
    sup.wait_for("grandchild", lambda: (tmp_path / "grandchild.ready").exists())
    sup.signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
    assert (tmp_path / "child.term").exists()
    assert (tmp_path / "grandchild.term").exists()
    s = sup.state()
    assert s["status"] == "stopped"
    assert s["pid"] is None
    assert s["last_exit"]["action"] == "stopped"
    assert s["last_exit"]["code"] == 0


def test_sigint_stops_like_sigterm(sup: Sup, tmp_path: Path) -> None:
    sup.start(sup.child("family"))
    sup.wait_for("grandchild", lambda: (tmp_path / "grandchild.ready").exists())
    sup.signal(signal.SIGINT)
    assert sup.wait_exit() == 0
    assert (tmp_path / "grandchild.term").exists()


def test_child_ignoring_sigterm_is_killed_after_grace(sup: Sup, tmp_path: Path) -> None:
    sup.start(sup.child("ignore-term"), "--grace", "0.5")
    sup.wait_for("child ready", lambda: (tmp_path / "ignore-term.ready").exists())
    sup.signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
    s = sup.state()
    assert s["status"] == "stopped"
    assert s["last_exit"]["signal_name"] == "SIGKILL"
    assert "still alive after 0.5s: SIGKILL" in sup.output()


def test_second_stop_signal_escalates_to_sigkill_at_once(sup: Sup, tmp_path: Path) -> None:
    sup.start(sup.child("ignore-term"), "--grace", "3600")
    sup.wait_for("child ready", lambda: (tmp_path / "ignore-term.ready").exists())
    sup.signal(signal.SIGTERM)
    sup.wait_for("SIGTERM forwarded", lambda: "SIGTERM to process group" in sup.output())
    sup.signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
    assert "second stop signal" in sup.output()
    assert sup.state()["last_exit"]["signal"] == 9  # type: ignore[index]


def test_sigterm_during_a_long_backoff_exits_promptly(sup: Sup) -> None:
    sup.start(sup.child("exit", "1"), "--initial-backoff", "3600", "--max-backoff", "3600")
    s = sup.wait_status("backoff")
    assert s["next_start_at"] is not None
    sup.signal(signal.SIGTERM)
    assert sup.wait_exit() == 0  # a 3600 s sleep would blow the harness limit
    s = sup.state()
    assert s["status"] == "stopped"
    assert s["next_start_at"] is None
    assert len(sup.starts()) == 1


def test_stop_file_stops_a_running_child(sup: Sup, tmp_path: Path) -> None:
    sup.start(sup.child("family"))
    sup.wait_for("grandchild", lambda: (tmp_path / "grandchild.ready").exists())
    (sup.state_dir / "stop").touch()
    assert sup.wait_exit() == 0
    assert (tmp_path / "grandchild.term").exists()
    assert not (sup.state_dir / "stop").exists()
    assert "stop file" in sup.output()


def test_stop_file_is_checked_during_backoff(sup: Sup) -> None:
    sup.start(sup.child("exit", "1"), "--initial-backoff", "3600", "--max-backoff", "3600")
    sup.wait_status("backoff")
    (sup.state_dir / "stop").touch()
    assert sup.wait_exit() == 0
    assert sup.state()["status"] == "stopped"  # type: ignore[index]


def test_stale_stop_file_is_removed_at_start(sup: Sup, tmp_path: Path) -> None:
    sup.state_dir.mkdir()
    (sup.state_dir / "stop").touch()
    sup.start(sup.child("sleep"))
    sup.wait_status("running")
    assert "removing stale stop file" in sup.output()
    sup.signal()
    assert sup.wait_exit() == 0


def test_fatal_exit_code_is_not_retried_and_stays_fatal(sup: Sup) -> None:
    assert sup.run(sup.child("exit", "2"), "--initial-backoff", "0.01") == 2
    s = sup.state()
    assert s["status"] == "fatal"
    assert s["restarts"] == 0
    assert "exit code 2 is fatal" in s["last_error"]
    assert s["last_exit"]["classification"] == "fatal"
    assert len(sup.starts()) == 1


def test_custom_fatal_codes(sup: Sup) -> None:
    fatal = ("--fatal-exit-codes", "7,78", "--initial-backoff", "0.01")
    assert sup.run(sup.child("exit", "78"), *fatal) == 78
    assert sup.state()["status"] == "fatal"  # type: ignore[index]
    # with 2 no longer fatal, exit 2 is an ordinary crash and is retried
    code = sup.run(sup.child("exit", "2"), *fatal, "--max-quick-crashes", "2")
    assert code == 3
    assert sup.state()["last_exit"]["classification"] == "crash"  # type: ignore[index]


def test_fatal_codes_from_the_environment(sup: Sup) -> None:
    env = {"AGENTCTL_SUPERVISOR_FATAL_EXIT_CODES": "9"}
    assert sup.run(sup.child("exit", "9"), env=env) == 9


def test_degraded_after_quick_crashes(sup: Sup) -> None:
    code = sup.run(sup.child("exit", "1"), "--initial-backoff", "0.01", "--max-quick-crashes", "3")
    assert code == 3
    s = sup.state()
    assert s["status"] == "degraded"
    assert s["restarts"] == 2
    assert len(s["recent_crash_times"]) == 3
    assert delays(s) == [0.01, 0.02, None]
    assert "3 crashes shorter than 10s" in s["last_error"]
    assert len(sup.starts()) == 3


def test_state_is_resumed_across_a_supervisor_restart(sup: Sup) -> None:
    opts = ("--initial-backoff", "0.05", "--max-quick-crashes")
    assert sup.run(sup.child("exit", "1"), *opts, "3") == 3
    first = sup.state()
    assert first["backoff_seconds"] == 0.2
    # A new supervisor (container restart) continues the curve and the crash history.
    assert sup.run(sup.child("exit", "1"), *opts, "5") == 3
    s = sup.state()
    assert delays(s) == [0.05, 0.1, None, 0.2, None]
    assert s["restarts"] == 3
    assert len(s["recent_crash_times"]) == 5
    assert "resuming state: status degraded, 2 restarts" in sup.output()
    assert len(sup.starts()) == 5


def test_reset_file_gives_a_fresh_start(sup: Sup) -> None:
    opts = ("--initial-backoff", "0.05", "--max-quick-crashes", "2")
    assert sup.run(sup.child("exit", "1"), *opts) == 3
    (sup.state_dir / "reset").touch()
    assert sup.run(sup.child("exit", "1"), *opts) == 3
    s = sup.state()
    assert delays(s) == [0.05, None]
    assert s["restarts"] == 1
    assert not (sup.state_dir / "reset").exists()


def test_pending_backoff_is_resumed_after_the_supervisor_is_killed(sup: Sup) -> None:
    opts = ("--initial-backoff", "3600", "--max-backoff", "3600")
    sup.start(sup.child("exit", "1"), *opts)
    sup.wait_status("backoff")
    sup.signal(signal.SIGKILL)
    sup.wait_exit()
    sup.start(sup.child("exit", "1"), *opts)
    sup.wait_for("resume", lambda: "resuming backoff" in sup.output())
    s = sup.wait_status("backoff", supervisor_pid=sup.proc.pid)  # type: ignore[union-attr]
    assert s["restarts"] == 1
    assert len(sup.starts()) == 1  # the child was not started again
    sup.signal()
    assert sup.wait_exit() == 0


def test_a_run_lost_with_the_supervisor_counts_as_a_crash(sup: Sup) -> None:
    opts = ("--initial-backoff", "3600", "--max-backoff", "3600")
    sup.start(sup.child("sleep"), *opts)
    first = sup.wait_status("running")
    sup.signal(signal.SIGKILL)
    sup.wait_exit()
    os.killpg(first["pid"], signal.SIGKILL)  # in a container the whole tree dies together
    sup.start(sup.child("sleep"), *opts)
    s = sup.wait_status("backoff", supervisor_pid=sup.proc.pid)  # type: ignore[union-attr]
    assert s["last_exit"]["classification"] == "lost"
    assert s["last_exit"]["delay_seconds"] == 3600
    assert s["restarts"] == 1
    assert "previous supervisor ended while its child" in sup.output()
    sup.signal()
    assert sup.wait_exit() == 0


def test_corrupt_state_json_is_set_aside(sup: Sup) -> None:
    sup.state_dir.mkdir()
    (sup.state_dir / "state.json").write_text('{"status": "running", "restarts": ')
    assert sup.run(sup.child("exit", "0"), "--on-clean-exit", "stop") == 0
    s = sup.state()
    assert s["status"] == "stopped"
    assert s["restarts"] == 0
    assert (sup.state_dir / "state.json.corrupt").exists()
    assert "corrupt" in sup.output()


def test_mission_and_command_with_quotes_and_newlines_survive(sup: Sup) -> None:
    cmd = [*sup.child("exit", "0"), NASTY]
    assert sup.run(cmd, "--on-clean-exit", "stop", "--mission", NASTY) == 0
    s = sup.state()
    assert s["mission"] == NASTY
    assert s["command"] == cmd
    # and from the environment
    assert sup.run(cmd, "--on-clean-exit", "stop", env={"MISSION": NASTY + "!"}) == 0
    assert sup.state()["mission"] == NASTY + "!"  # type: ignore[index]


def test_clean_exit_restarts_by_default(sup: Sup) -> None:
    sup.start(sup.child("exit", "0"), "--initial-backoff", "0.01", "--max-quick-crashes", "1")
    sup.wait_for("three starts", lambda: len(sup.starts()) >= 3)
    sup.signal()
    assert sup.wait_exit() == 0
    s = sup.state()
    assert s["status"] == "stopped"
    assert s["recent_crash_times"] == []  # clean exits never trip the breaker


def test_heartbeat_is_touched_periodically(sup: Sup) -> None:
    sup.start(sup.child("sleep"), "--heartbeat-interval", "0.1")
    beat = sup.state_dir / "heartbeat"
    sup.wait_for("heartbeat", beat.exists)
    marks = {beat.stat().st_mtime_ns}
    sup.wait_for("more beats", lambda: marks.add(beat.stat().st_mtime_ns) or len(marks) >= 3)
    assert sup.state()["pid"] is not None  # type: ignore[index]
    assert len(sup.starts()) == 1  # same run, several beats
    sup.signal()
    assert sup.wait_exit() == 0


def test_child_output_goes_to_stdout_as_json_lines_with_timestamps(sup: Sup) -> None:
    """Not on a terminal (podman logs), every line is one JSON record, child lines too."""
    assert sup.run(sup.child("exit", "0"), "--on-clean-exit", "stop") == 0
    records = [json.loads(line) for line in sup.output().splitlines()]
    child = [r for r in records if r.get("source", "").startswith("child[")]
    assert [r["message"] for r in child] == ["hello from exit"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", child[0]["time"])
    assert {r["component"] for r in records} == {"supervisor"}


def test_readable_lines_when_asked(sup: Sup) -> None:
    env = {"AGENTCTL_LOG_FORMAT": "text"}
    assert sup.run(sup.child("exit", "0"), "--on-clean-exit", "stop", env=env) == 0
    line = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z child\[\d+\]: hello from exit$"
    assert re.search(line, sup.output(), re.M)


def test_leftover_group_members_are_stopped_before_a_restart(sup: Sup, tmp_path: Path) -> None:
    sup.start(sup.child("family"), "--initial-backoff", "0.05")
    sup.wait_for("grandchild", lambda: (tmp_path / "grandchild.ready").exists())
    leader = sup.wait_status("running")["pid"]
    os.kill(leader, signal.SIGKILL)
    sup.wait_for("restart", lambda: len(sup.starts()) >= 2)
    assert (tmp_path / "grandchild.term").exists()
    assert "left processes in its group" in sup.output()
    sup.signal()
    assert sup.wait_exit() == 0


def _write_hook(tmp_path: Path, body: str) -> dict[str, str]:
    (tmp_path / "hooks").mkdir(exist_ok=True)
    (tmp_path / "hooks" / "myhook.py").write_text(body)
    return {"PYTHONPATH": f"{tmp_path / 'hooks'}:{os.environ.get('PYTHONPATH', '')}"}


def test_workspace_prepare_failure_is_fatal(sup: Sup, tmp_path: Path) -> None:
    env = _write_hook(tmp_path, "def prepare(ws, sd):\n    raise RuntimeError('no seed bundle')\n")
    assert sup.run(sup.child("sleep"), "--prepare", "myhook:prepare", env=env) == 4
    s = sup.state()
    assert s["status"] == "fatal"
    assert "workspace preparation failed: RuntimeError: no seed bundle" in s["last_error"]
    assert sup.starts() == []


def test_workspace_prepare_runs_once_before_the_first_start(sup: Sup, tmp_path: Path) -> None:
    hook = (
        "import pathlib\n"
        "def prepare(ws, sd):\n"
        "    ws.mkdir(parents=True, exist_ok=True)\n"
        "    with open(sd / 'prepared', 'a') as f:\n"
        "        f.write(f'{ws}|{sd}\\n')\n"
    )
    env = _write_hook(tmp_path, hook)
    code = sup.run(
        sup.child("exit", "1"),
        "--prepare",
        "myhook:prepare",
        "--initial-backoff",
        "0.01",
        "--max-quick-crashes",
        "3",
        env=env,
    )
    assert code == 3
    lines = (sup.state_dir / "prepared").read_text().splitlines()
    assert lines == [f"{tmp_path / 'ws'}|{sup.state_dir}"]


def test_missing_workspace_module_is_skipped(sup: Sup) -> None:
    code = sup.run(
        sup.child("exit", "0"), "--on-clean-exit", "stop", "--prepare", "no_such_mod_xyz:prepare"
    )
    assert code == 0
    assert "workspace preparation skipped" in sup.output()


def test_default_hook_is_the_real_workspace_module(sup: Sup) -> None:
    # Without --prepare the supervisor calls agent/workspace.py's prepare() when that
    # module is installed; whatever it decides, the outcome is recorded, never a traceback.
    sup.start(sup.child("exit", "0"), "--on-clean-exit", "stop")
    argv = sup.proc.args  # type: ignore[union-attr]
    assert "--prepare" in argv  # the harness disabled it; run once more with the default
    sup.wait_exit()
    argv = [a for a in argv if a not in ("--prepare", "none")]
    with open(sup.tmp / "default.log", "wb") as out:
        code = subprocess.run(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "T_DIR": str(sup.tmp)},
            timeout=120,
        ).returncode
    log = (sup.tmp / "default.log").read_text()
    if importlib.util.find_spec("agentctl_swarm.agent.workspace") is None:
        assert "workspace preparation skipped" in log
        assert code == 0
    else:
        assert "preparing workspace" in log
        assert code in (0, 4), log
        assert ("workspace preparation failed" in log) == (code == 4)
    assert "Traceback" not in log


def test_command_not_found_is_fatal(sup: Sup) -> None:
    assert sup.run(["/nonexistent/agent-runner", "--x"]) == 127
    s = sup.state()
    assert s["status"] == "fatal"
    assert "/nonexistent/agent-runner" in s["last_error"]


def test_command_not_executable_is_fatal(sup: Sup, tmp_path: Path) -> None:
    script = tmp_path / "noexec.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    assert sup.run([str(script)]) == 126
    assert sup.state()["status"] == "fatal"  # type: ignore[index]


def test_second_supervisor_on_the_same_state_dir_is_refused(sup: Sup) -> None:
    sup.start(sup.child("sleep"))
    sup.wait_status("running")
    other = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentctl_swarm.agent.cli",
            "supervise",
            "--state-dir",
            str(sup.state_dir),
            "--prepare",
            "none",
            "--",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 5
    assert "another supervisor is running" in other.stdout
    assert sup.state()["status"] == "running"  # type: ignore[index]
    sup.signal()
    assert sup.wait_exit() == 0


def _supervise(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentctl_swarm.agent.cli", "supervise", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_usage_errors_are_clear_and_exit_2(tmp_path: Path) -> None:
    r = _supervise("--state-dir", str(tmp_path), "sleep", "1")
    assert r.returncode == 2
    assert "missing the command to supervise" in r.stderr
    r = _supervise("--state-dir", str(tmp_path), "--")
    assert (r.returncode, "nothing after '--'" in r.stderr) == (2, True)
    r = _supervise("--grace", "-1", "--", "true")
    assert (r.returncode, "--grace='-1': must be >= 0" in r.stderr) == (2, True)
    r = _supervise("--", "true", env={"AGENTCTL_SUPERVISOR_INITIAL_BACKOFF": "soon"})
    assert r.returncode == 2
    assert "AGENTCTL_SUPERVISOR_INITIAL_BACKOFF='soon'" in r.stderr
    r = _supervise("--initial-backoff", "10", "--max-backoff", "5", "--", "true")
    assert (r.returncode, "cap 5 is below the initial backoff 10" in r.stderr) == (2, True)
    r = _supervise("--fatal-exit-codes", "2,300", "--", "true")
    assert (r.returncode, "exit code 300 is not in 1..255" in r.stderr) == (2, True)
    r = _supervise("--bogus", "--", "true")
    assert (r.returncode, "unrecognized arguments: --bogus" in r.stderr) == (2, True)
    assert not list(tmp_path.iterdir())  # nothing was started or written
    r = _supervise("--help")
    assert r.returncode == 0
    assert "AGENTCTL_SUPERVISOR_GRACE" in r.stdout


def test_unwritable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = _supervise("--state-dir", str(blocker / "state"), "--prepare", "none", "--", "true")
    assert r.returncode == 2
    assert "cannot use state dir" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_state_write_failures_do_not_stop_the_agent(sup: Sup) -> None:
    # state.json is a directory: every atomic rename onto it fails, the child still runs.
    (sup.state_dir / "state.json").mkdir(parents=True)
    (sup.state_dir / "heartbeat").mkdir()
    sup.start(sup.child("sleep"), "--heartbeat-interval", "0.1")
    sup.wait_for("child started", lambda: len(sup.starts()) == 1)
    sup.wait_for("state warning", lambda: "cannot write" in sup.output())
    sup.wait_for("heartbeat warning", lambda: "cannot touch" in sup.output())
    sup.signal()
    assert sup.wait_exit() == 0
    warnings = [
        r["message"]
        for r in map(json.loads, sup.output().splitlines())
        if r["level"] == "WARNING" and r["message"].startswith("cannot write")
    ]
    assert len(warnings) == 1  # logged once, not per write


def test_stable_run_resets_the_backoff_while_running(sup: Sup) -> None:
    opts = ("--initial-backoff", "0.05", "--stable-after", "0.5", "--max-quick-crashes", "100")
    sup.start(sup.child("flaky", "2"), *opts)
    sup.wait_for("stable", lambda: "stable for" in sup.output())
    s = sup.wait_status("running")
    assert delays(s) == [0.05, 0.1]
    assert (s["backoff_seconds"], s["recent_crash_times"]) == (0.05, [])
    os.kill(s["pid"], signal.SIGKILL)
    sup.wait_for("restart", lambda: len(sup.starts()) == 4)
    s = sup.wait_status("running")
    assert delays(s) == [0.05, 0.1, 0.05]
    sup.signal()
    assert sup.wait_exit() == 0


def _zombie_children(ppid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] == "Z" and int(fields[1]) == ppid:
                out.append(int(entry.name))
    return out


def test_works_as_pid_1_and_reaps_orphans(sup: Sup, tmp_path: Path) -> None:
    """Without tini: PID 1 of a fresh PID namespace (needs root/unshare)."""
    ns = ("unshare", "--pid", "--fork", "--mount-proc")
    probe = subprocess.run([*ns, "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a PID namespace: {probe.stderr.decode().strip()}")
    sup.start(sup.child("family"), "--initial-backoff", "0.05", prefix=ns)
    sup.wait_for("grandchild", lambda: (tmp_path / "grandchild.ready").exists())
    assert (tmp_path / "family.ready").read_text() == "2"  # the supervisor is PID 1
    [supervisor] = sup.host_pids("supervise")
    [leader] = [p for p in sup.host_pids(str(sup.child_script), "family") if p != supervisor]
    os.kill(leader, signal.SIGKILL)  # the grandchild is orphaned to PID 1 = supervisor
    sup.wait_for("restart", lambda: len(sup.starts()) >= 2)
    assert (tmp_path / "grandchild.term").exists()
    sup.wait_for("no zombies", lambda: not _zombie_children(supervisor))
    os.kill(supervisor, signal.SIGTERM)  # PID 1 only gets signals it handles
    assert sup.wait_exit() == 0
    assert sup.state()["status"] == "stopped"  # type: ignore[index]
