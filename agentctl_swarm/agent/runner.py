"""``agentctl-agent run``: the supervised child of a task-taking agent (``runtime: claude``).

It sits idle on the work channel (presence and heartbeats, no LLM process), claims tasks
for its role, and when the coordinator assigns one and the node's local gate allows it,
promotes itself: writes context.md, prepares the task branch, runs Claude Code (or a
promotable command) in the workspace, streams STATUS lines, keeps a redacted transcript,
classifies the end from the stream's structured fields, commits leftover work so the
sync brings it out, reports DONE / FAIL / BLOCKED / QUOTA with the tokens spent, writes
context.md for the next task and demotes back to idle.

The decisions are in ``runner_core.py`` (pure); this module is the asyncio shell around
them: the chat client, the child process, files and signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from agentctl_swarm.agent import claude_cli, prompt
from agentctl_swarm.agent.claude_stream import Outcome, StreamState, redactor
from agentctl_swarm.agent.runner_core import End, RunnerCore, RunResult, Work
from agentctl_swarm.agent.secret_env import secret_values
from agentctl_swarm.chat.client import AgentChatClient
from agentctl_swarm.chat.client.errors import ChatError, NotConnected, ServerError
from agentctl_swarm.chat.identity import load_or_create
from agentctl_swarm.config import AgentChatSettings, EnvSettings, load_settings
from agentctl_swarm.coordinator import grammar as g
from agentctl_swarm.core import proc
from agentctl_swarm.core.backoff import BackoffCurve
from agentctl_swarm.core.errors import AgentctlError, UsageError
from agentctl_swarm.core.files import atomic_write
from agentctl_swarm.core.logs import log_event, setup_logging
from agentctl_swarm.core.retry import retrying_async

log = logging.getLogger("agentctl.runner")

STREAM_LINE_LIMIT = 64 * 1024 * 1024
#: A report (DONE, FAIL, ...) is sent until the server echoes it: this long for each
#: echo, this many sends at most (about 10 minutes), this pause after a RATE_LIMITED.
REPORT_ECHO_TIMEOUT = 15.0
REPORT_TRIES = 40
REPORT_PAUSE = 1.1


class RunnerSettings(EnvSettings):
    """The runner's knobs, rendered by the controller into ``AGENTCTL_RUNNER_*``."""

    env_prefix: ClassVar[str] = "AGENTCTL_RUNNER_"

    agent: str
    role: str
    fleet: str = "fleet"
    channel: str = "#work"
    mission: str | None = None
    personality: str | None = None
    model: str | None = None
    base_url: str | None = None
    heartbeat_interval: float = Field(default=10.0, gt=0)
    status_interval: float = Field(default=5.0, gt=0)
    task_timeout: float = Field(default=1800.0, gt=0)
    grace: float = Field(default=5.0, ge=0)
    max_retries: int | None = Field(default=2, ge=0)
    command: list[str] | None = None  # a promotable command with {prompt}; None: claude
    claude: list[str] = Field(default_factory=lambda: ["claude"])
    coordinators: str = ""  # comma-separated chat ids allowed to assign; empty: any
    tools_allow: list[str] = Field(default_factory=list)
    tools_deny: list[str] = Field(default_factory=lambda: list(claude_cli.DEFAULT_DENY))
    secret_env: str = ""  # VAR=file,... read from secrets_dir for the Claude process only
    state_dir: Path = Path("/state")
    workspace: Path = Path("/workspace")
    secrets_dir: Path = Path("/run/secrets")
    control_socket: Path = Path("/run/agentctl/control.sock")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class _Active:
    work: Work
    task: asyncio.Task[RunResult]
    stop: End | None = None


class Runner:
    """The I/O shell: one per container."""

    def __init__(self, cfg: RunnerSettings, chat: AgentChatSettings) -> None:
        self.cfg = cfg
        self.chat_cfg = chat
        coordinators = frozenset(c for c in cfg.coordinators.split(",") if c)
        self.core = RunnerCore(cfg.agent, cfg.role, coordinators=coordinators)
        self.client: AgentChatClient | None = None
        self.active: _Active | None = None
        self.stopping = asyncio.Event()
        self.run_dir = cfg.state_dir / "run"
        self.record = cfg.state_dir / "runner.json"
        self._last_status = 0.0
        self._reporting: str | None = None  # a task whose report awaits the server's echo

    # ------------------------------------------------------------------ lifecycle

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        state = self.cfg.state_dir
        for d in (self.run_dir, state / "transcripts", state / claude_cli.HOME_SUBDIR):
            d.mkdir(parents=True, exist_ok=True)
        interrupted = self._recover()
        self.client = await self._connect()
        await self._join()
        if interrupted is not None:
            await self._report(interrupted)
        log_event(log, "runner.idle", agent=self.cfg.agent, role=self.cfg.role)
        beats = asyncio.create_task(self._heartbeats(), name="heartbeats")
        reader = asyncio.create_task(self._read(), name="reader")
        stop = asyncio.create_task(self.stopping.wait(), name="stop")
        done, _ = await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
        await self._shutdown()
        for t in (beats, reader, stop):
            t.cancel()
        if reader in done and not self.stopping.is_set():
            exc = reader.exception()
            log.error("lost the chat connection for good: %s", exc or "closed")
            return 1
        return 0

    def _on_signal(self, sig: int) -> None:
        log.info("%s: stopping", signal.Signals(sig).name)
        self.stopping.set()
        if self.active is not None:
            self.active.stop = self.active.stop or End.SHUTDOWN

    async def _connect(self) -> AgentChatClient:
        ident_path = self.cfg.state_dir / "identity" / f"{self.cfg.agent}.json"
        identity, created = load_or_create(ident_path, self.cfg.agent)
        if created:
            log_event(log, "runner.identity_created", path=str(ident_path))
        curve = BackoffCurve(initial=0.5, cap=10.0, jitter=0.25)
        async for attempt in retrying_async(
            curve=curve,
            retry_on=lambda exc: isinstance(exc, AgentctlError | OSError),
            stop=lambda _s: self.stopping.is_set(),
            on_retry=lambda exc, wait: log.warning(
                "cannot reach %s (%s); retrying in %.1fs", self.chat_cfg.url, exc, wait
            ),
        ):
            with attempt:
                client = AgentChatClient(self.chat_cfg.url, identity)
                await client.connect()
                return client
        raise AgentctlError(f"stopped before reaching {self.chat_cfg.url}")

    async def _join(self) -> None:
        assert self.client is not None
        curve = BackoffCurve(initial=0.5, cap=10.0, jitter=0.25)
        async for attempt in retrying_async(
            curve=curve,
            retry_on=lambda exc: isinstance(exc, AgentctlError),
            stop=lambda _s: self.stopping.is_set(),
            on_retry=lambda exc, wait: log.warning(
                "cannot join %s yet (%s); retrying in %.1fs", self.cfg.channel, exc, wait
            ),
        ):
            with attempt:
                await self.client.join(self.cfg.channel)
        with contextlib.suppress(AgentctlError):
            await self.client.set_presence("online", f"{self.cfg.role}: idle")

    async def _shutdown(self) -> None:
        active = self.active
        if active is not None:
            active.stop = active.stop or End.SHUTDOWN
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(active.task), self.cfg.grace + 30)
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.flush(timeout=5)
            with contextlib.suppress(Exception):
                await self.client.close()

    # ------------------------------------------------------------------ chat

    async def _post(self, *msgs: g.Message) -> None:
        if not msgs or self.client is None:
            return
        with contextlib.suppress(AgentctlError):
            await self.client.send(self.cfg.channel, g.format_lines(msgs))

    async def _report(self, *msgs: g.Message) -> None:
        """Post how a task ended (DONE, FAIL, ...) until the server echoes it. A message
        the client wrote to a socket that then died (a server stalled or cut off for a
        while) is gone, and a lost DONE has the coordinator give a finished task to
        someone else. Meanwhile the heartbeats say "demoting" with the task's id, so the
        coordinator does not take the idle runner for one that lost its task. A second
        copy that arrives after all is ignored by the coordinator (not the assignee's
        task any more)."""
        client = self.client
        if not msgs or client is None:
            return
        text = g.format_lines(msgs)
        self._reporting = next((m.id for m in msgs if getattr(m, "id", None)), None)

        async def once() -> None:
            if client.closed or client.displaced:  # for good: no reconnect will come
                raise ChatError("the chat client is closed")
            await client.send(self.cfg.channel, text, echo=True, timeout=REPORT_ECHO_TIMEOUT)

        try:
            if not await send_confirmed(once):
                log.warning("the server never took the report %r", text[:200])
        except AgentctlError as exc:  # the client is closed: nothing more to do
            log.warning("could not post the report %r: %s", text[:200], exc)
        finally:
            self._reporting = None

    def _beat(self) -> g.Message:
        beat = self.core.heartbeat()
        if self._reporting is not None and beat.id is None:
            return g.Heartbeat(agent=beat.agent, role=beat.role, state="demoting",
                               id=self._reporting)  # fmt: skip
        return beat

    async def _heartbeats(self) -> None:
        while True:
            await self._post(self._beat())
            await asyncio.sleep(self.cfg.heartbeat_interval)

    async def _read(self) -> None:
        assert self.client is not None
        me = None
        async for frame in self.client:
            me = me or self.client.agent_id
            if frame.get("type") != "MSG" or frame.get("to") != self.cfg.channel:
                continue
            if frame.get("replay") or frame.get("from") in (me, "@server"):
                continue
            for msg in g.parse_message(frame.get("content")):
                await self._apply(self.core.on_message(msg, frame.get("from")))

    async def _apply(self, fx: Any) -> None:
        await self._post(*fx.send)
        if fx.gate is not None:
            allowed, reason = await self._ask_gate(fx.gate)
            await self._apply(self.core.on_gate(allowed, reason))
        if fx.start is not None:
            self._start(fx.start)
        if fx.stop is not None and self.active is not None:
            self.active.stop = fx.stop

    # ------------------------------------------------------------------ the local gate

    async def _ask_gate(self, work: Work) -> tuple[bool, str]:
        """Ask the node's controller (``agentctl up``) for a slot; no controller: yes."""
        path = self.cfg.control_socket
        if not path.exists():
            return True, ""
        request = {"op": "slot", "agent": self.cfg.agent, "task": work.task_id}
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 3)
        except (OSError, TimeoutError):
            return True, ""  # the controller is not running: nothing to ask
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            raw = await asyncio.wait_for(reader.readline(), 5)
            answer = json.loads(raw or b"{}")
        except (OSError, TimeoutError, ValueError):
            return False, "the node's controller did not answer"
        finally:
            writer.close()
        return bool(answer.get("ok")), str(answer.get("reason") or "")

    async def _release_gate(self, work: Work) -> None:
        path = self.cfg.control_socket
        if not path.exists():
            return
        with contextlib.suppress(OSError, TimeoutError):
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 3)
            request = {"op": "release", "agent": self.cfg.agent, "task": work.task_id}
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            writer.close()

    # ------------------------------------------------------------------ runs

    def _start(self, work: Work) -> None:
        task = asyncio.create_task(self._run_and_report(work), name=f"run-{work.task_id}")
        self.active = _Active(work, task)

    async def _run_and_report(self, work: Work) -> RunResult:
        """The run, then its report (DONE/FAIL/UNCLAIM) posted, in one task: a shutdown
        that waits for the task knows the coordinator has heard before it disconnects."""
        try:
            result = await self._run(work)
        except Exception as exc:  # a bug in the shell must still report the task
            log.exception("run of %s failed inside the runner", work.task_id)
            result = RunResult(End.CRASH, detail=f"runner error: {exc}")
        await self._finished(work, result)
        return result

    async def _finished(self, work: Work, result: RunResult) -> None:
        if not work.probe:
            await self._release_gate(work)
        self.active = None
        fx = self.core.on_run_end(result)  # only lines to post: the report
        await self._report(*fx.send)
        log_event(
            log,
            "runner.demoted",
            task=work.task_id,
            end=result.end.value,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
        )

    async def _run(self, work: Work) -> RunResult:
        """One run: prepare, start the child, watch its stream, stop it when told, save."""
        branch = work.branch or f"task/{work.task_id}"
        previous = self._read_notes()
        session, resumed = self._session_for(work)
        ctx = prompt.TaskContext(
            agent=self.cfg.agent,
            role=self.cfg.role,
            fleet=self.cfg.fleet,
            channel=self.cfg.channel,
            task_id=work.task_id,
            prompt=work.prompt,
            branch=branch,
            attempt=work.attempt,
            mission=self.cfg.mission,
            personality=None,  # appended to the system prompt instead (claude_cli)
            resumed=resumed,
            previous_notes=previous,
        )
        if not work.probe:
            self._save_record(work, session, branch)
            atomic_write(self.cfg.state_dir / "context.md", prompt.active_context(ctx, _now()))
            await asyncio.to_thread(self._checkout, branch)
            log_event(log, "runner.promoted", task=work.task_id, attempt=work.attempt)
        text = work.prompt if work.probe else prompt.build_prompt(ctx)
        result = await self._spawn(work, text, session, resumed)
        if not work.probe:
            committed, unsaved = await asyncio.to_thread(self._commit_leftovers, work)
            if committed:
                log_event(log, "runner.committed", task=work.task_id, commit=committed)
            if unsaved and result.end is End.SUCCESS:
                # DONE without the commit would lose the work for good (the sync only
                # brings out commits and what is on disk): give the task back instead.
                result = replace(result, end=End.UNSAVED, detail=unsaved)
            notes = prompt.finished_context(
                ctx,
                outcome=result.end.value,
                summary=result.summary or result.detail,
                tokens_in=result.tokens_in,
                tokens_out=result.tokens_out,
                cost_usd=result.cost_usd,
                ended_at=_now(),
            )
            atomic_write(self.cfg.state_dir / "context.md", notes)
            self._clear_record(keep_session=result.end is End.SHUTDOWN)
        return result

    async def _spawn(self, work: Work, text: str, session: str, resumed: bool) -> RunResult:
        secrets = secret_values(self.cfg.secret_env, self.cfg.secrets_dir)
        redact = redactor(secrets.values())
        run = claude_cli.ClaudeRun(
            session_id=session,
            resume=resumed,
            model=self.cfg.model,
            personality=self.cfg.personality,
            allow=self.cfg.tools_allow,
            deny=self.cfg.tools_deny,
            max_turns=1 if work.probe else None,
            mcp_config_path=str(self.run_dir / "mcp.json"),
            settings_path=str(self.run_dir / "settings.json"),
            binary=self.cfg.claude,
        )
        atomic_write(run.settings_path, claude_cli.settings_json(run))
        atomic_write(
            run.mcp_config_path,
            claude_cli.mcp_config_json(
                url=self.chat_cfg.url,
                public=self.chat_cfg.public,
                home=str(self.cfg.state_dir / claude_cli.HOME_SUBDIR),
            ),
        )
        streaming = self.cfg.command is None
        argv = (
            claude_cli.argv(run)
            if streaming
            else claude_cli.command_argv(self.cfg.command or [], text)
        )
        env = claude_cli.environment(
            os.environ,
            secrets,
            state_dir=str(self.cfg.state_dir),
            base_url=self.cfg.base_url,
            max_retries=self.cfg.max_retries,
        )
        timeout = work.timeout or self.cfg.task_timeout
        transcript = self.cfg.state_dir / "transcripts" / f"{work.task_id}-{work.attempt}.jsonl"
        started = time.monotonic()
        try:
            child = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(self.cfg.workspace) if self.cfg.workspace.is_dir() else None,
                env=env,
                limit=STREAM_LINE_LIMIT,
            )
        except OSError as exc:
            return RunResult(End.CRASH, detail=f"cannot start {argv[0]}: {exc.strerror or exc}")
        log_event(log, "runner.started", task=work.task_id, pid=child.pid, program=argv[0])
        assert child.stdin and child.stdout and child.stderr
        if streaming:
            child.stdin.write(text.encode())
        with contextlib.suppress(OSError):
            await child.stdin.drain()
        child.stdin.close()
        state = StreamState()
        errors = asyncio.create_task(_tail(child.stderr))
        stop_reason = await self._watch(child, work, state, redact, transcript, timeout, streaming)
        code = await child.wait()
        stderr = redact(await errors)
        log_event(
            log,
            "runner.exited",
            task=work.task_id,
            code=code,
            seconds=round(time.monotonic() - started, 3),
            stopped=stop_reason.value if stop_reason else None,
        )
        return _result(state, code, stop_reason, stderr, streaming)

    async def _watch(
        self,
        child: asyncio.subprocess.Process,
        work: Work,
        state: StreamState,
        redact: Any,
        transcript: Path,
        timeout: float,
        streaming: bool,
    ) -> End | None:
        """Read the child's stream until it ends; stop it when told, on timeout, or as
        soon as the stream shows an auth failure (no retry storm). Returns why we
        stopped it, or None when it ended by itself."""
        assert child.stdout is not None
        deadline = time.monotonic() + timeout
        reason: End | None = None
        with transcript.open("a", encoding="utf-8") as out:
            while True:
                if reason is None and self.active is not None and self.active.stop is not None:
                    reason = self.active.stop
                    await _terminate(child, self.cfg.grace)
                left = deadline - time.monotonic()
                if left <= 0 and reason is None:
                    reason = End.TIMEOUT
                    await _terminate(child, self.cfg.grace)
                    left = self.cfg.grace + 5
                try:
                    raw = await asyncio.wait_for(child.stdout.readline(), min(max(left, 0.1), 0.5))
                except TimeoutError:
                    continue
                except ValueError:  # a line over the limit: skip it, keep reading
                    continue
                if not raw:
                    if reason is None and self.active is not None:
                        # A stop that arrived as the child ended (the supervisor signals
                        # the whole process group): it still explains the end.
                        reason = self.active.stop
                    return reason
                line = raw.decode("utf-8", "replace").rstrip("\n")
                out.write(redact(line) + "\n")
                out.flush()
                if not streaming:
                    state.activity = line[-200:] or state.activity
                    continue
                state.feed(line)
                early = state.early_outcome(stop_on_quota=True)
                if reason is None and early is not None:
                    # No retry storm: credentials will not fix themselves, and the
                    # coordinator pauses the fleet on a quota anyway.
                    reason = End.AUTH if early is Outcome.AUTH else End.QUOTA
                    await _terminate(child, self.cfg.grace)
                if not work.probe:
                    await self._status(work, state)

    async def _status(self, work: Work, state: StreamState) -> None:
        now = time.monotonic()
        if now - self._last_status < self.cfg.status_interval or not state.activity:
            return
        self._last_status = now
        usage = state.usage
        await self._post(
            g.Status(
                id=work.task_id,
                agent=self.cfg.agent,
                tokens_in=usage.input_tokens + usage.cache_read_input_tokens,
                tokens_out=usage.output_tokens,
                text=state.activity[:300],
            )
        )

    # ------------------------------------------------------------------ workspace

    def _git(self, *args: str) -> str:
        res = proc.run(
            ["git", "-c", "core.hooksPath=/dev/null", "-C", str(self.cfg.workspace), *args],
            timeout=60,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
        return str(res.stdout).strip()

    def _checkout(self, branch: str) -> None:
        """Start the task's branch from the current one (or switch to it if it exists)."""
        if not (self.cfg.workspace / ".git").exists():
            return
        try:
            exists = proc.run(
                [
                    "git",
                    "-C",
                    str(self.cfg.workspace),
                    "rev-parse",
                    "--verify",
                    "-q",
                    f"refs/heads/{branch}",
                ],
                timeout=30,
                check=False,
            )
            self._git("checkout", "-q", branch) if exists.returncode == 0 else self._git(
                "checkout", "-q", "-b", branch
            )
        except proc.CommandFailed as exc:
            log.warning("could not switch to %s: %s", branch, exc)

    def _commit_leftovers(self, work: Work) -> tuple[str | None, str | None]:
        """Commit what the run left uncommitted, so the sync brings it out. Returns
        (the new commit or None, why it could not be saved or None)."""
        if not (self.cfg.workspace / ".git").exists():
            return None, None
        try:
            self._git("add", "-A")
            if (
                proc.run(
                    ["git", "-C", str(self.cfg.workspace), "diff", "--cached", "--quiet"],
                    timeout=60,
                    check=False,
                ).returncode
                == 0
            ):
                return None, None
            who = [
                "-c",
                f"user.name={self.cfg.agent}",
                "-c",
                f"user.email={self.cfg.agent}@agentctl.local",
            ]
            message = f"{self.cfg.agent}: work left uncommitted by task {work.task_id}"
            proc.run(
                ["git", "-c", "core.hooksPath=/dev/null", *who, "-C", str(self.cfg.workspace),
                 "commit", "-q", "--no-verify", "-m", message],
                timeout=60,
            )  # fmt: skip
            return self._git("rev-parse", "--short", "HEAD"), None
        except proc.CommandFailed as exc:
            log.warning("could not commit leftover work of %s: %s", work.task_id, exc)
            return None, str(exc)[-300:]

    # ------------------------------------------------------------------ runner.json

    def _read_notes(self) -> str | None:
        with contextlib.suppress(OSError):
            return (self.cfg.state_dir / "context.md").read_text(encoding="utf-8")
        return None

    def _load_record(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.record.read_text())
            if isinstance(data, dict):
                return data
        return {}

    def _save_record(self, work: Work, session: str, branch: str) -> None:
        record = {
            "task": work.task_id,
            "attempt": work.attempt,
            "session": session,
            "branch": branch,
            "started_at": _now(),
            "active": True,
        }
        atomic_write(self.record, json.dumps(record, indent=2) + "\n")

    def _clear_record(self, *, keep_session: bool) -> None:
        record = self._load_record()
        record["active"] = False
        if not keep_session:
            record.pop("session", None)
        atomic_write(self.record, json.dumps(record, indent=2) + "\n")

    def _session_for(self, work: Work) -> tuple[str, bool]:
        """A task interrupted here (runner killed, agent stopped) resumes its session,
        when Claude Code saved it: killed early, it may not have written the session's
        transcript yet, and `--resume` of an unknown session fails the attempt at once
        (a retry spent on nothing). Then the task starts afresh."""
        record = self._load_record()
        session = record.get("session")
        same = record.get("task") == work.task_id and isinstance(session, str)
        sessions = self.cfg.state_dir / claude_cli.CONFIG_SUBDIR / "projects"
        if same and not work.probe and any(sessions.glob(f"*/{session}.jsonl")):
            return str(session), True
        return str(uuid.uuid4()), False

    def _recover(self) -> g.Message | None:
        """A task that was active when the runner died: save its work, report it."""
        record = self._load_record()
        if not record.get("active") or not isinstance(record.get("task"), str):
            return None
        task = str(record["task"])
        work = Work(task_id=task, prompt="", attempt=int(record.get("attempt") or 1))
        committed, unsaved = self._commit_leftovers(work)
        log_event(log, "runner.recovered", task=task, commit=committed, unsaved=unsaved)
        record["active"] = False
        atomic_write(self.record, json.dumps(record, indent=2) + "\n")
        return g.Fail(
            id=task,
            agent=self.cfg.agent,
            reason="crash",
            text="the runner restarted while the task ran; its work was committed",
        )


async def send_confirmed(
    send: Callable[[], Awaitable[object]], *, tries: int = REPORT_TRIES, pause: float = REPORT_PAUSE
) -> bool:
    """Call ``send`` (a send that waits for the server's echo) until the server takes
    the message; False when it gave up.

    No echo in time (TimeoutError) or the connection lost while waiting for it
    (NotConnected): send again (after ``pause``), the copy may have gone out on a socket
    that died before the server read it; the chaos suite saw DONEs lost so when the
    server stalled for a minute, and the coordinator ran both finished tasks again.
    RATE_LIMITED: send again after ``pause``. Any other refusal is final."""
    for attempt in range(tries):
        last = attempt == tries - 1
        try:
            await send()
            return True
        except TimeoutError:
            if last:
                return False
        except NotConnected:
            if last:
                return False
            await asyncio.sleep(pause)
        except ServerError as exc:
            if exc.code != "RATE_LIMITED" or last:
                log.warning("report refused by the server: %s", exc)
                return False
            await asyncio.sleep(pause)
    return False


_ENDS = {
    Outcome.SUCCESS: End.SUCCESS,
    Outcome.AUTH: End.AUTH,
    Outcome.QUOTA: End.QUOTA,
    Outcome.OVERLOADED: End.OVERLOADED,
    Outcome.CONTEXT_OVERFLOW: End.CONTEXT,
    Outcome.API_ERROR: End.API_ERROR,
    Outcome.PERMISSION_DENIED: End.PERMISSION,
    Outcome.ERROR: End.CRASH,
    Outcome.TIMEOUT: End.TIMEOUT,
    Outcome.KILLED: End.KILLED,
    Outcome.CRASH: End.CRASH,
}


def _result(
    state: StreamState, code: int, stopped: End | None, stderr: str, streaming: bool
) -> RunResult:
    """The run's end, from the stream's structured fields (never by grepping text)."""
    if not streaming:  # a promotable command: its exit status is all there is
        end = End.SUCCESS if code == 0 else (End.KILLED if code < 0 else End.CRASH)
        if stopped is not None:
            end = stopped
        tail = stderr.strip().splitlines()[-3:]
        return RunResult(end, detail=" | ".join(tail), summary=state.activity)
    early = {End.AUTH: Outcome.AUTH, End.QUOTA: Outcome.QUOTA}.get(stopped or End.CRASH)
    ended = state.classify(code, timed_out=stopped is End.TIMEOUT, stopped_early=early)
    end = stopped if stopped in (End.CANCELLED, End.SHUTDOWN) else _ENDS[ended.outcome]
    detail = ended.reason
    if end in (End.CRASH, End.KILLED) and stderr.strip():
        detail += ": " + " | ".join(stderr.strip().splitlines()[-3:])
    usage = ended.usage
    retry_after = None
    if end is End.QUOTA:
        delays = [r.retry_delay_ms for r in state.retries if r.retry_delay_ms]
        retry_after = max(delays) / 1000 if delays else None
    return RunResult(
        end,
        detail=detail,
        summary=(state.result.result if state.result else "") or state.activity,
        tokens_in=usage.input_tokens
        + usage.cache_read_input_tokens
        + usage.cache_creation_input_tokens,
        tokens_out=usage.output_tokens,
        cost_usd=ended.total_cost_usd,
        retry_after=retry_after,
    )


async def _tail(stream: asyncio.StreamReader, keep: int = 16 * 1024) -> str:
    data = b""
    while chunk := await stream.read(65536):
        data = (data + chunk)[-keep:]
    return data.decode("utf-8", "replace")


async def _terminate(child: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM, ``grace`` seconds, then SIGKILL (the child shares our process group, so
    the supervisor's stop reaches it too; this is for stops of our own)."""
    if child.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(child.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            child.kill()


def main(argv: list[str]) -> int:
    """``agentctl-agent run``: settings from the environment (rendered by the controller)."""
    setup_logging("runner", stream=sys.stderr)
    if argv and argv[0] in {"-h", "--help"}:
        print(
            "usage: agentctl-agent run\n\nThe task-taking agent (runtime: claude). Configured "
            "by AGENTCTL_RUNNER_* and AGENTCHAT_URL, which the controller sets; see the README."
        )
        return 0
    try:
        cfg = load_settings(RunnerSettings, _runner_env(os.environ))
        chat = load_settings(AgentChatSettings)
    except UsageError as exc:
        log.error("%s", exc.one_line())
        return 2
    return asyncio.run(Runner(cfg, chat).main())


def _runner_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The runner's variables; agent and role default to the container's own names."""
    env = {k: v for k, v in environ.items() if k.startswith("AGENTCTL_RUNNER_")}
    env.setdefault("AGENTCTL_RUNNER_AGENT", environ.get("AGENTCTL_AGENT", ""))
    env.setdefault("AGENTCTL_RUNNER_ROLE", environ.get("AGENTCTL_ROLE", ""))
    env.setdefault("AGENTCTL_RUNNER_FLEET", environ.get("AGENTCTL_FLEET", "fleet"))
    return {k: v for k, v in env.items() if v != ""}
