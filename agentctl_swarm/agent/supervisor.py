"""``agentctl-agent supervise [options] -- CMD...``: keep the agent process alive.

Runs as tini's child (the image's entrypoint) or as PID 1 itself. It starts CMD in its
own process group, streams its output to stdout with timestamps (``podman logs``),
restarts it per the restart policy (core/backoff.py), and keeps ``<state-dir>/state.json``
so a container restart resumes the backoff. Fixes the original supervisor's defects
(owl/reference/original-system.md):

D1. no shell pipeline: the child's real wait status is classified;
D2. stop signals go to the child's whole process group, then SIGKILL after ``--grace``;
D3. fatal/degraded are final: they are never overwritten by "stopped", and the exit
    code says what happened (see EXIT_* below);
D4. waits (backoff, grace, child) are signal-aware: a SIGTERM during a 300 s backoff
    ends the supervisor at once;
D8. state.json is written by a JSON serializer, atomically (agent/state.py);
D14. the heartbeat file is touched periodically while the child runs;
D22. ``<state-dir>/stop`` is checked during every wait, not only between sessions.

Exit codes: 0 stopped on request (or clean exit with ``--on-clean-exit stop``); the
child's own code when it is fatal (default 2); 3 degraded; 4 workspace preparation
failed; 5 another supervisor owns the state dir; 126/127 CMD not executable / not
found; 2 usage errors; 1 internal error.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import logging
import os
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from agentctl_swarm.agent.secret_env import secret_env
from agentctl_swarm.agent.state import (
    ExitRecord,
    Status,
    SupervisorState,
    SupervisorStateStore,
    utcnow,
)
from agentctl_swarm.agent.supervisor_config import (  # noqa: F401  (re-exported)
    DEFAULT_PREPARE,
    ENV_PREFIX,
    SupervisorConfig,
    UsageError,
    parse_args,
)
from agentctl_swarm.core.backoff import (
    ExitInfo,
    ExitKind,
    RestartAction,
    RestartState,
    classify_exit,
    describe_exit,
)
from agentctl_swarm.core.files import LockBusy, file_lock
from agentctl_swarm.core.logs import setup_logging

log = logging.getLogger("agentctl.supervisor")
child_log = logging.getLogger("agentctl.child")

EXIT_STOPPED = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_DEGRADED = 3
EXIT_PREPARE_FAILED = 4
EXIT_LOCKED = 5
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

_PR_SET_CHILD_SUBREAPER = 36


class _StopRequested(BaseException):
    """Raised from the signal handler only while workspace preparation runs."""


# --------------------------------------------------------------------------- logging


def _setup_logging(stream: IO[str]) -> None:
    """The project's one logging setup, to stdout (what `podman logs` shows)."""
    setup_logging("supervisor", stream=stream)


def _pump_output(pipe: IO[bytes], pid: int) -> None:
    """Copy the child's output to our stdout, line by line, with a timestamp."""
    src = {"src": f"child[{pid}]"}
    with pipe:
        for raw in iter(lambda: pipe.readline(65536), b""):
            child_log.info("%s", raw.rstrip(b"\r\n").decode("utf-8", "replace"), extra=src)


# --------------------------------------------------------------------------- signals


class _Signals:
    """Stop signals become a flag plus a byte on a wakeup pipe that waits select on.

    The handler only assigns attributes (safe at any bytecode boundary); the C-level
    wakeup write means a signal arriving just before ``select`` still wakes it.
    """

    def __init__(self) -> None:
        self.stop_signal: int | None = None
        self.count = 0
        self.raise_in_handler = False
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)

    def install(self) -> None:
        signal.set_wakeup_fd(self.wfd, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)

    def watch_children(self) -> None:
        """SIGCHLD wakes the waits (a handler is needed for the wakeup byte)."""
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)

    def _on_stop(self, signum: int, _frame: object) -> None:
        self.count += 1
        if self.stop_signal is None:
            self.stop_signal = signum
        if self.raise_in_handler:
            raise _StopRequested(signum)

    def sleep(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, returning early on any handled signal."""
        with contextlib.suppress(InterruptedError):
            select.select([self.rfd], [], [], max(0.0, timeout))
        with contextlib.suppress(BlockingIOError):
            while os.read(self.rfd, 4096):
                pass


# --------------------------------------------------------------------------- child


@dataclass
class _Child:
    proc: subprocess.Popen[bytes]
    started: float  # monotonic
    returncode: int | None = None
    ended: float | None = None
    pump: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _become_subreaper() -> None:
    """Orphans of the child's group are re-parented to us, so we can reap them and
    know when the group is really gone (also when we are PID 1 without tini)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


# --------------------------------------------------------------------------- supervisor


class Supervisor:
    """One supervision session; :meth:`run` returns the process exit code."""

    def __init__(self, cfg: SupervisorConfig) -> None:
        self.cfg = cfg
        self.policy = cfg.policy
        self.store = SupervisorStateStore(cfg.state_dir)
        self.stop_file = cfg.state_dir / "stop"
        self.reset_file = cfg.state_dir / "reset"
        self.heartbeat_file = cfg.state_dir / "heartbeat"
        self.signals = _Signals()
        self.child: _Child | None = None
        self.stop_reason: str | None = None
        self.state = SupervisorState()
        self.bstate: RestartState = self.policy.fresh()
        self._held = contextlib.ExitStack()
        self._heartbeat_warned = False
        self._save_warned = False

    # ---- state helpers

    def _save(self, **update: Any) -> None:
        """Persist the current state; a failed write (disk full) is logged, not fatal:
        the agent keeps running and the next write tries again."""
        state = replace(self.state.with_backoff(self.bstate), **update)
        try:
            self.state = self.store.save(state)
        except OSError as exc:
            self.state = state
            if not self._save_warned:
                log.warning("cannot write %s: %s", self.store.path, exc)
                self._save_warned = True
        else:
            self._save_warned = False

    def _final(self, status: Status, code: int, error: str | None = None) -> int:
        self._save(status=status, pid=None, next_start_at=None, last_error=error)
        return code

    # ---- lifecycle

    def run(self) -> int:
        """Supervise until stopped, fatal or degraded."""
        cfg = self.cfg
        try:
            cfg.state_dir.mkdir(parents=True, exist_ok=True)
            # One supervisor per state dir; the kernel drops the lock when we die.
            self._held.enter_context(
                file_lock(cfg.state_dir / "supervisor.lock", timeout=0, what=str(cfg.state_dir))
            )
        except LockBusy as exc:
            log.error(
                "another supervisor is running on %s (pid %s; stop it first, "
                "or use a different --state-dir)",
                cfg.state_dir,
                exc.holder,
            )
            return EXIT_LOCKED
        except OSError as exc:
            log.error(
                "cannot use state dir %s: %s (mount a writable volume there or pass --state-dir)",
                cfg.state_dir,
                exc.strerror or exc,
            )
            return EXIT_USAGE
        self.signals.install()
        try:
            return self._run()
        finally:
            if self.child is not None and self.child.returncode is None:
                self._end_group(self.child, "supervisor exiting")

    def _run(self) -> int:
        cfg = self.cfg
        log.info(
            "supervising %s (state %s, grace %gs, backoff %gs..%gs)",
            shlex.join(cfg.command),
            cfg.state_dir,
            cfg.grace,
            self.policy.initial,
            self.policy.cap,
        )
        prev = self._load_previous()
        self.bstate = self.policy.fresh()
        if prev is not None:
            self.bstate = self.policy.resume(prev.backoff_state(self.policy.initial))
        self.state = SupervisorState(
            agent_name=cfg.name,
            mission=cfg.mission,
            command=cfg.command,
            status=Status.STARTING,
            restarts=prev.restarts if prev else 0,
            last_exit=prev.last_exit if prev else None,
            recent_exits=prev.recent_exits if prev else [],
            supervisor_started_at=utcnow(),
            supervisor_pid=os.getpid(),
        )
        if self.stop_file.exists():
            log.info("removing stale stop file %s", self.stop_file)
            self.stop_file.unlink(missing_ok=True)
        delay = self._resume_delay(prev)
        if delay is None:  # the lost run tripped the breaker; nothing to prepare for
            return self._final(Status.DEGRADED, EXIT_DEGRADED, self.state.last_error)
        self._save()

        outcome = self._prepare_workspace()
        if outcome is not None:
            return outcome
        _become_subreaper()
        self.signals.watch_children()

        while True:
            if delay > 0:
                start_at = utcnow() + timedelta(seconds=delay)
                self._save(status=Status.BACKOFF, pid=None, next_start_at=start_at)
                log.info("restarting in %gs (restart #%d)", delay, self.state.restarts)
                if self._wait(time.monotonic() + delay, None) == "stop":
                    log.info("stop requested (%s) during backoff", self.stop_reason)
                    return self._final(Status.STOPPED, EXIT_STOPPED)
            outcome = self._start_child()
            if outcome is not None:
                return outcome
            child = self.child
            assert child is not None
            if self._wait(None, child) == "stop":
                log.info("stop requested (%s); stopping the child", self.stop_reason)
                self._end_group(child, "stop requested")
                self._record(child, action="stopped", delay=None)
                return self._final(Status.STOPPED, EXIT_STOPPED)
            uptime = (child.ended or time.monotonic()) - child.started
            if _group_alive(child.pid):
                self._end_group(child, "child exited but left processes in its group")
            exit_ = classify_exit(child.returncode or 0, self.policy.fatal_exit_codes)
            decision = self.policy.decide(self.bstate, exit_, uptime, time.time())
            self.bstate = decision.state
            delay_rec = decision.delay if decision.action is RestartAction.RESTART else None
            self._record(child, action=decision.action.value, delay=delay_rec, exit_=exit_)
            log.info(
                "child %d ended after %.3fs: %s → %s (%s)",
                child.pid,
                uptime,
                describe_exit(exit_),
                decision.action.value,
                decision.reason,
            )
            if decision.action is RestartAction.RESTART:
                self.state = replace(self.state, restarts=self.state.restarts + 1)
                delay = decision.delay
                continue
            if decision.action is RestartAction.STOP:
                return self._final(Status.STOPPED, EXIT_STOPPED)
            if decision.action is RestartAction.FATAL:
                msg = f"{decision.reason}; not restarting"
                log.error("%s", msg)
                return self._final(Status.FATAL, exit_.code or EXIT_INTERNAL, msg)
            msg = (
                f"degraded: {decision.reason}; not restarting. Fix the cause, then "
                f"create {self.reset_file} (fresh backoff) and restart the container"
            )
            log.error("%s", msg)
            return self._final(Status.DEGRADED, EXIT_DEGRADED, msg)

    def _load_previous(self) -> SupervisorState | None:
        prev = self.store.load()
        if self.reset_file.exists():
            log.info("reset requested (%s): starting with fresh backoff", self.reset_file)
            self.reset_file.unlink(missing_ok=True)
            return None
        if prev is not None:
            log.info(
                "resuming state: status %s, %d restarts, backoff %gs, %d recent quick crashes",
                prev.status.value,
                prev.restarts,
                prev.backoff_seconds or self.policy.initial,
                len(prev.recent_crash_times),
            )
        return prev

    def _resume_delay(self, prev: SupervisorState | None) -> float | None:
        """Delay before the first start; None means the breaker tripped already."""
        if prev is None:
            return 0.0
        if prev.status is Status.BACKOFF and prev.next_start_at is not None:
            left = (prev.next_start_at - utcnow()).total_seconds()
            left = min(max(left, 0.0), self.policy.cap)
            if left > 0:
                log.info("resuming backoff: %.1fs left", left)
            return left
        if prev.status is Status.RUNNING and prev.started_at is not None:
            # The previous supervisor died with its child running (container killed,
            # OOM): count it like a crash so container-level crash loops back off too.
            uptime = self._lost_uptime(prev)
            exit_ = ExitInfo(code=None, signal=None, kind=ExitKind.LOST)
            decision = self.policy.decide(self.bstate, exit_, uptime, time.time())
            self.bstate = decision.state
            record = ExitRecord.from_exit(exit_, uptime)
            record.action = decision.action.value
            record.delay_seconds = (
                decision.delay if decision.action is RestartAction.RESTART else None
            )
            self.state = self.state.add_exit(record)
            log.warning(
                "previous supervisor ended while its child (pid %s) ran, after about %.1fs",
                prev.pid,
                uptime,
            )
            if decision.action is RestartAction.DEGRADED:
                msg = f"degraded: {decision.reason}; not restarting"
                log.error("%s", msg)
                self.state = replace(self.state, last_error=msg)
                return None
            self.state = replace(self.state, restarts=self.state.restarts + 1)
            return decision.delay
        return 0.0

    def _lost_uptime(self, prev: SupervisorState) -> float:
        assert prev.started_at is not None
        last_seen = prev.updated_at
        with contextlib.suppress(OSError):
            beat = datetime.fromtimestamp(self.heartbeat_file.stat().st_mtime, UTC)
            last_seen = max(last_seen, beat)
        return max(0.0, (last_seen - prev.started_at).total_seconds())

    def _prepare_workspace(self) -> int | None:
        """Run the workspace hook once, before the first child start."""
        spec = self.cfg.prepare
        if spec.lower() == "none":
            return None
        module_name, _, func_name = spec.partition(":")
        func_name = func_name or "prepare"
        try:
            found = importlib.util.find_spec(module_name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            log.info("workspace preparation skipped: module %s is not installed", module_name)
            return None
        try:
            self.signals.raise_in_handler = True
            try:
                func = getattr(importlib.import_module(module_name), func_name, None)
                if func is None:
                    log.info(
                        "workspace preparation skipped: %s has no %s()", module_name, func_name
                    )
                    return None
                log.info("preparing workspace %s", self.cfg.workspace)
                func(self.cfg.workspace, self.cfg.state_dir)
            finally:
                self.signals.raise_in_handler = False
        except _StopRequested:
            self.signals.raise_in_handler = False
            log.info("stop requested during workspace preparation")
            return self._final(Status.STOPPED, EXIT_STOPPED)
        except Exception as exc:
            msg = f"workspace preparation failed: {type(exc).__name__}: {exc}"
            log.error("%s", msg)
            return self._final(Status.FATAL, EXIT_PREPARE_FAILED, msg)
        if self.signals.stop_signal is not None:
            return self._final(Status.STOPPED, EXIT_STOPPED)
        return None

    def _start_child(self) -> int | None:
        cfg = self.cfg
        env = dict(os.environ)
        env.update(secret_env(env))  # secrets reach only the agent process's environment
        env.update(
            AGENTCTL_STATE_DIR=str(cfg.state_dir),
            AGENTCTL_WORKSPACE=str(cfg.workspace),
            AGENTCTL_AGENT_RESTARTS=str(self.state.restarts),
        )
        cwd = cfg.workspace if cfg.workspace.is_dir() else None
        try:
            proc = subprocess.Popen(
                cfg.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
                cwd=cwd,
            )
        except OSError as exc:
            code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_NOT_EXECUTABLE
            msg = f"cannot run {cfg.command[0]!r}: {exc.strerror or exc}"
            log.error("%s (fix the command in the fleet file)", msg)
            return self._final(Status.FATAL, code, msg)
        child = _Child(proc=proc, started=time.monotonic())
        log.info("started child %d: %s", proc.pid, shlex.join(cfg.command))
        assert proc.stdout is not None
        child.pump = threading.Thread(
            target=_pump_output, args=(proc.stdout, proc.pid), daemon=True, name="child-output"
        )
        child.pump.start()
        self.child = child
        self._save(status=Status.RUNNING, pid=proc.pid, started_at=utcnow(), next_start_at=None)
        self._touch_heartbeat()
        return None

    def _record(
        self, child: _Child, action: str, delay: float | None, exit_: ExitInfo | None = None
    ) -> None:
        if child.pump is not None:
            child.pump.join(timeout=1.0)  # let the last output lines out first
        if exit_ is None:
            exit_ = classify_exit(child.returncode or 0, self.policy.fatal_exit_codes)
        uptime = (child.ended or time.monotonic()) - child.started
        record = ExitRecord.from_exit(exit_, uptime)
        record.action = action
        record.delay_seconds = delay
        self.state = self.state.add_exit(record)
        self.child = None

    # ---- waiting

    def _reap(self) -> None:
        """Collect exited children: ours, and orphans re-parented to us."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.child
            if child is not None and pid == child.pid and child.returncode is None:
                child.returncode = os.waitstatus_to_exitcode(status)
                child.ended = time.monotonic()
                child.proc.returncode = child.returncode  # Popen must not wait again

    def _stop_requested(self) -> bool:
        if self.signals.stop_signal is not None:
            if self.stop_reason is None:
                self.stop_reason = signal.Signals(self.signals.stop_signal).name
            return True
        if self.stop_reason is None and self.stop_file.exists():
            self.stop_file.unlink(missing_ok=True)
            self.stop_reason = f"stop file {self.stop_file}"
        return self.stop_reason is not None

    def _wait(self, deadline: float | None, child: _Child | None) -> str:
        """Block until the child ends ('child'), a stop ('stop') or the deadline."""
        next_beat = time.monotonic() + self.cfg.heartbeat_interval
        while True:
            self._reap()
            # The child's own exit first: a fatal exit racing a stop stays fatal.
            if child is not None and child.returncode is not None:
                return "child"
            if self._stop_requested():
                return "stop"
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return "timeout"
            timeout = self.cfg.poll_interval
            if deadline is not None:
                timeout = min(timeout, deadline - now)
            if child is not None:
                if now >= next_beat:
                    self._touch_heartbeat()
                    next_beat = now + self.cfg.heartbeat_interval
                self._check_stable(now - child.started)
                timeout = min(timeout, max(0.0, next_beat - now))
            self.signals.sleep(timeout)

    def _check_stable(self, uptime: float) -> None:
        reset = self.policy.after_uptime(self.bstate, uptime)
        if reset != self.bstate:
            self.bstate = reset
            self._save()
            log.info("child stable for %.0fs: backoff reset to %gs", uptime, reset.backoff)

    def _touch_heartbeat(self) -> None:
        try:
            with open(self.heartbeat_file, "a"):
                pass
            os.utime(self.heartbeat_file)
        except OSError as exc:
            if not self._heartbeat_warned:
                log.warning("cannot touch %s: %s", self.heartbeat_file, exc)
                self._heartbeat_warned = True

    def _end_group(self, child: _Child, why: str) -> None:
        """SIGTERM the child's whole process group, wait ``grace``, then SIGKILL it.

        A second stop signal during the grace period escalates at once.
        """
        pgid = child.pid
        log.info("%s: SIGTERM to process group %d (grace %gs)", why, pgid, self.cfg.grace)
        _killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.grace
        stopping, signals_seen = self._stop_requested(), self.signals.count
        step = min(self.cfg.poll_interval, 0.05)
        while True:
            self._reap()
            if child.returncode is not None and not _group_alive(pgid):
                return
            if time.monotonic() >= deadline:
                log.warning("process group %d still alive after %gs: SIGKILL", pgid, self.cfg.grace)
                break
            if stopping and self.signals.count > signals_seen:
                log.warning("second stop signal: SIGKILL to process group %d now", pgid)
                break
            self.signals.sleep(step)
        _killpg(pgid, signal.SIGKILL)
        hard_deadline = time.monotonic() + 10.0
        while time.monotonic() < hard_deadline:
            self._reap()
            if child.returncode is not None and not _group_alive(pgid):
                return
            self.signals.sleep(step)
        log.warning("process group %d did not disappear after SIGKILL", pgid)


# --------------------------------------------------------------------------- entry


def main(argv: list[str]) -> int:
    """``agentctl-agent supervise [options] -- CMD...``; returns the exit code."""
    _setup_logging(sys.stdout)
    try:
        cfg = parse_args(argv)
    except UsageError as exc:
        print(f"agentctl-agent supervise: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # argparse already printed usage and the problem
        return int(exc.code or 0)
    sup = Supervisor(cfg)
    try:
        return sup.run()
    except Exception as exc:
        log.exception("internal error: %s", exc)
        with contextlib.suppress(Exception):
            sup._save(status=Status.CRASHED, pid=None, last_error=f"internal error: {exc}")
        return EXIT_INTERNAL
