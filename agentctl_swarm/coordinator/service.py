"""The coordinator service: thin asyncio I/O around the pure :class:`~.board.Board`.

It is an ordinary AgentChat client, so it works against this project's server and the
upstream one (same wire protocol):

* joins the work channel (default ``#work``), creating it if missing. Creating a
  channel needs a *verified* agent: on our server the embedded coordinator's id is
  trusted (``ServerConfig.trusted_ids``) and the channel exists from the start
  (``extra_channels``); elsewhere the coordinator verifies itself with the server's
  admin key (``ADMIN_VERIFY``) when one is given;
* feeds every line of every channel MSG (not its own, not ``@server``) to the board,
  replayed history included (after a restart it catches up on what it missed; a
  persisted cursor skips what it already applied);
* ticks the board every second (deaths, timeouts, quota probes, re-announces);
* persists each event's records in one transaction *before* posting the lines the
  event produced (a crash never leaves an ASSIGN on the channel that the store lacks);
  a failed write is kept and retried on the next tick;
* posts lines batched into as few MSGs as possible: the client paces MSGs to the
  server's 1/s limit and whatever accumulates meanwhile goes out as one MSG. With
  ``paced=False`` (our server exempts the trusted id) replies go out at once, which
  keeps the coordinator off the critical path of dispatch;
* answers reads for ``agentctl task list/show`` (:meth:`Coordinator.http_get`), served
  on the chat server's port when embedded, on its own port when standalone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from websockets.asyncio.server import Server
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from agentctl_swarm.chat.client import AgentChatClient, ConnectError, ServerError
from agentctl_swarm.chat.identity import Identity, IdentityError
from agentctl_swarm.coordinator import grammar as g
from agentctl_swarm.coordinator.board import Board, BoardConfig, Decisions, Record
from agentctl_swarm.coordinator.store import DB_NAME, StoreError, TaskStore
from agentctl_swarm.core.backoff import Backoff, BackoffCurve
from agentctl_swarm.core.errors import AgentctlError
from agentctl_swarm.core.logs import log_event

log = logging.getLogger("agentctl.coordinator")

DEFAULT_CHANNEL = "#work"
API_PREFIX = "/api/v1/"
#: Ticks missed in a row (at least a heartbeat interval) that mean the coordinator
#: itself was not running, so the silence it sees is not the agents'.
STALL_TICKS = 5
#: A fresh store (no cursor) applies replayed history only this recent (seconds): old
#: TASK lines in a long-lived channel must not all run again.
FRESH_REPLAY_WINDOW_S = 600.0
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class CoordinatorError(AgentctlError):
    """The coordinator cannot do its job (channel, server); the message says how to fix."""


def _displaced() -> CoordinatorError:
    return CoordinatorError(
        "another process took over the coordinator's identity",
        hint="run one coordinator per identity and channel",
    )


@dataclass(frozen=True)
class CoordinatorOptions:
    """Where the coordinator works and how."""

    server_url: str
    channel: str = DEFAULT_CHANNEL
    board: BoardConfig = field(default_factory=BoardConfig)
    paced: bool = True  # False only where the server exempts this id from the rate limit
    admin_key: str | None = None  # lets it verify itself to create the channel
    tick_interval: float = 1.0
    max_batch_chars: int = 60_000


@dataclass
class Cursor:
    """The last channel message applied: its server ``ts`` and the msg ids at that ts."""

    ts: int = 0
    ids: set[str] = field(default_factory=set)

    def is_new(self, ts: int, msg_id: str | None) -> bool:
        return ts > self.ts or (ts == self.ts and (msg_id or "") not in self.ids)

    def advance(self, ts: int, msg_id: str | None) -> None:
        if ts > self.ts:
            self.ts, self.ids = ts, set()
        if ts == self.ts:
            self.ids.add(msg_id or "")

    def to_json(self) -> dict[str, Any]:
        return {"ts": self.ts, "ids": sorted(self.ids)}

    @classmethod
    def from_json(cls, doc: Any) -> Cursor | None:
        if not isinstance(doc, dict):
            return None
        return cls(int(doc.get("ts") or 0), {str(i) for i in doc.get("ids") or []})


class Coordinator:
    """One coordinator: a board, its store and its chat connection."""

    def __init__(
        self,
        options: CoordinatorOptions,
        identity: Identity,
        store: TaskStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.identity = identity
        self.store = store
        self.clock = clock
        loaded = store.load()
        self.board = Board.restore(options.board, loaded.tasks, loaded.agents, loaded.meta, clock())
        self.cursor = Cursor.from_json(loaded.meta.get("cursor"))
        self.client: AgentChatClient | None = None
        self._unsaved: dict[tuple[str, str], Record] = {}
        self._pending: list[g.Message] = []
        self._have_lines: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._reconnects_seen = 0
        self.started_at = clock()
        restored = sum(1 for t in self.board.tasks.values() if t.state not in ("done",))
        log_event(log, "coordinator.restored", where=store.where, tasks=len(self.board.tasks),
                  open_tasks=restored)  # fmt: skip

    # ------------------------------------------------------------------ lifecycle

    @property
    def agent_id(self) -> str:
        """``@`` + the coordinator's AgentChat id (what runners may pin)."""
        return "@" + self.identity.agent_id

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the coordinator has joined its channel (or raise TimeoutError)."""
        ready = self._events()[2]
        await asyncio.wait_for(ready.wait(), timeout)

    def _events(self) -> tuple[asyncio.Event, asyncio.Event, asyncio.Event]:
        if self._stop is None or self._have_lines is None or self._ready is None:
            self._stop, self._have_lines, self._ready = (
                asyncio.Event(),
                asyncio.Event(),
                asyncio.Event(),
            )
        return self._stop, self._have_lines, self._ready

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe from a signal handler)."""
        self._events()[0].set()

    def _make_client(self) -> AgentChatClient:
        extra: dict[str, Any] = {}
        if not self.options.paced:
            extra = {"msg_interval": 0.001, "frame_limit": 1_000_000}
        return AgentChatClient(self.options.server_url, self.identity, **extra)

    async def run(self) -> None:
        """Connect (retrying with backoff), join the channel, then serve until
        :meth:`stop`. Raises CoordinatorError when it cannot go on."""
        stop, _, ready = self._events()
        client = await self._connect(stop)
        if client is None:
            return
        self.client = client
        workers: list[asyncio.Task[None]] = []
        try:
            await self._ensure_channel()
            ready.set()
            log_event(log, "coordinator.ready", agent_id=self.agent_id,
                      channel=self.options.channel, server=self.options.server_url,
                      paced=self.options.paced)  # fmt: skip
            self._apply(self.board.dispatch(self.clock()))
            workers = [
                asyncio.create_task(self._reader(), name="coordinator-reader"),
                asyncio.create_task(self._ticker(), name="coordinator-ticker"),
                asyncio.create_task(self._sender(), name="coordinator-sender"),
            ]
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*workers, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in workers:
                task.cancel()
            for task in workers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._pending and client.connected:
                with contextlib.suppress(Exception):
                    await self._flush_lines(client, timeout=2.0)
            await client.close()
            self._retry_unsaved()
            log_event(log, "coordinator.stopped")

    async def _connect(self, stop: asyncio.Event) -> AgentChatClient | None:
        backoff = Backoff(BackoffCurve(initial=0.5, cap=30.0, jitter=0.25))
        told = False
        while not stop.is_set():
            client = self._make_client()
            try:
                await client.connect()
                return client
            except ConnectError as exc:
                level = logging.INFO if told else logging.WARNING
                log_event(log, "coordinator.connect_failed", level=level, error=str(exc),
                          hint="is the AgentChat server running? retrying")  # fmt: skip
                told = True
                cause = exc.__cause__
                if isinstance(cause, ServerError) and cause.code in ("BANNED", "NOT_ALLOWED"):
                    raise CoordinatorError(
                        f"{self.options.server_url} refused the coordinator: {cause}",
                        hint="ask the server's admin to allow its identity",
                    ) from exc
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff.next())
        return None

    async def _ensure_channel(self) -> None:
        client = self.client
        assert client is not None
        channel = self.options.channel
        try:
            await client.join(channel)
            return
        except ServerError as exc:
            if exc.code != "CHANNEL_NOT_FOUND":
                raise CoordinatorError(
                    f"cannot join {channel} on {self.options.server_url}: {exc}",
                    hint="pick another --channel",
                ) from exc
        try:
            await client.create_channel(channel)
            log_event(log, "coordinator.channel_created", channel=channel)
            return
        except ServerError as exc:
            if exc.code == "CHANNEL_EXISTS":
                await client.join(channel)
                return
            if exc.code != "AUTH_REQUIRED" or not self.options.admin_key:
                raise CoordinatorError(
                    f"{channel} does not exist on {self.options.server_url} and the "
                    f"coordinator may not create it ({exc.message})",
                    hint="creating a channel needs a verified agent: pass --admin-key "
                    "(the server's AGENTCHAT_ADMIN_KEY) so the coordinator verifies itself, "
                    "or use an existing channel such as --channel '#agents'",
                ) from exc
        # Upstream: only verified agents create channels; verify ourselves with the key.
        await client._request(  # the client has no public admin call yet
            {
                "type": "ADMIN_VERIFY",
                "agent_id": client.agent_id,
                "admin_key": self.options.admin_key,
                "verified": True,
            },
            lambda f: f.get("type") == "ADMIN_RESULT" and f.get("action") == "verify",
        )
        try:
            await client.create_channel(channel)
        except ServerError as exc:
            if exc.code != "CHANNEL_EXISTS":
                raise CoordinatorError(
                    f"cannot create {channel} on {self.options.server_url}: {exc}",
                    hint="check --admin-key against the server's AGENTCHAT_ADMIN_KEY",
                ) from exc
            await client.join(channel)
        log_event(log, "coordinator.channel_created", channel=channel, verified_by="admin key")

    # ------------------------------------------------------------------ workers

    async def _reader(self) -> None:
        client = self.client
        assert client is not None
        async for frame in client:
            if frame.get("type") == "MSG":
                try:
                    self._on_frame(frame)
                except Exception:  # a bug in one line must not stop the coordinator
                    log.exception("coordinator: handling a message failed",
                                  extra={"content": str(frame.get("content"))[:200]})  # fmt: skip
            elif frame.get("type") == "SESSION_DISPLACED":
                raise _displaced()
        if client.displaced:
            raise _displaced()
        raise CoordinatorError(
            f"lost the connection to {self.options.server_url} for good: {client.last_error}"
        )

    def _on_frame(self, frame: dict[str, Any]) -> None:
        client = self.client
        assert client is not None
        if frame.get("to") != self.options.channel:
            return
        sender = frame.get("from")
        if not isinstance(sender, str) or sender in ("@server", client.agent_id):
            return
        ts = frame.get("ts") if isinstance(frame.get("ts"), int) else 0
        msg_id = frame.get("msg_id") if isinstance(frame.get("msg_id"), str) else None
        replay = bool(frame.get("replay"))
        now = self.clock()
        if replay:
            if self.cursor is None:
                if ts < (now - FRESH_REPLAY_WINDOW_S) * 1000:
                    return
            elif not self.cursor.is_new(ts, msg_id):
                return
        msgs = g.parse_message(frame.get("content"))
        if self.cursor is None:
            self.cursor = Cursor()
        self.cursor.advance(ts, msg_id)
        if not msgs:
            return
        name = frame.get("from_name") if isinstance(frame.get("from_name"), str) else ""
        total = Decisions()
        for msg in msgs:
            d = self.board.handle(msg, sender, name, now, replay=replay)
            total.lines += d.lines
            total.records += d.records
            total.logs += d.logs
        total.records.append(Record("meta", "cursor", self.cursor.to_json()))
        self._apply(total)

    async def _ticker(self) -> None:
        client = self.client
        assert client is not None
        last = self.clock()
        while True:
            await asyncio.sleep(self.options.tick_interval)
            now = self.clock()
            gap, last = now - last, now
            if gap > max(STALL_TICKS * self.options.tick_interval,
                         self.board.config.heartbeat_interval):  # fmt: skip
                # We were not watching (this process stalled or was suspended, the
                # machine slept): the agents' silence over the gap is ours, not theirs.
                # Without this, a server that hung for a minute came back and requeued
                # every assigned task at once, finished ones included (chaos suite).
                log_event(log, "coordinator.stalled", level=logging.WARNING,
                          seconds=round(gap, 1))  # fmt: skip
                self._apply(self.board.reconnected(now))
            if client.reconnects != self._reconnects_seen and client.connected:
                self._reconnects_seen = client.reconnects
                log_event(log, "coordinator.reconnected", reconnects=client.reconnects)
                if self.options.channel not in client.channels:
                    await self._ensure_channel()
                self._apply(self.board.reconnected(now))
            self._apply(self.board.tick(now, watch_agents=client.connected))
            if self._unsaved:
                self._retry_unsaved()

    async def _sender(self) -> None:
        client = self.client
        assert client is not None
        have_lines = self._events()[1]
        while True:
            await have_lines.wait()
            await asyncio.sleep(0)  # let frames already read add their lines: one MSG
            have_lines.clear()
            await self._flush_lines(client)

    async def _flush_lines(self, client: AgentChatClient, timeout: float | None = None) -> None:
        while self._pending:
            lines, self._pending = self._pending, []
            for content in self._batches(lines):
                # Returns once written; meanwhile new lines gather into the next batch.
                await client.send(self.options.channel, content, wait=True, timeout=timeout)

    def _batches(self, msgs: list[g.Message]) -> list[str]:
        out: list[str] = []
        cur: list[str] = []
        size = 0
        for msg in g.merge_rejections(msgs):
            line = g.format_line(msg)
            if cur and size + len(line) + 1 > self.options.max_batch_chars:
                out.append("\n".join(cur))
                cur, size = [], 0
            cur.append(line)
            size += len(line) + 1
        if cur:
            out.append("\n".join(cur))
        return out

    # ------------------------------------------------------------------ decisions

    def _apply(self, d: Decisions) -> None:
        """Log, persist (one transaction), then queue the lines for posting."""
        for entry in d.logs:
            log_event(log, entry.event, level=_LEVELS.get(entry.level, logging.INFO),
                      **entry.fields)  # fmt: skip
        if d.records:
            for rec in d.records:
                self._unsaved[(rec.kind, rec.key)] = rec
            self._retry_unsaved()
        if d.lines:
            self._pending.extend(d.lines)
            self._events()[1].set()

    def _retry_unsaved(self) -> None:
        if not self._unsaved:
            return
        batch = list(self._unsaved.values())
        try:
            self.store.apply(batch)
        except StoreError as exc:
            log_event(log, "coordinator.store_failed", level=logging.ERROR, error=str(exc),
                      records=len(batch), hint=exc.hint)  # fmt: skip
            return
        self._unsaved.clear()

    # ------------------------------------------------------------------ reads (HTTP)

    def reconfigure(self, config: BoardConfig) -> None:
        """New limits (a reload of the fleet file): applied at once."""
        self._apply(self.board.configure(config, self.clock()))

    def hold(self, reason: str | None) -> None:
        """Stop assigning new work (``agentctl up`` shutting down); None resumes."""
        self._apply(self.board.hold(reason, self.clock()))

    def status(self) -> dict[str, Any]:
        """Who and where the coordinator is, and what gates assigning."""
        snap = self.board.snapshot(self.clock())
        return {
            "agent_id": self.agent_id,
            "name": self.identity.name,
            "channel": self.options.channel,
            "server": self.options.server_url,
            "connected": self.connected,
            "paced": self.options.paced,
            "store": self.store.where,
            **{k: v for k, v in snap.items() if k not in ("tasks", "agents")},
        }

    def http_get(self, path: str) -> tuple[int, Any] | None:
        """Answer ``GET /api/v1/...``: tasks, one task, agents, status; None if the path
        is not the coordinator's (so the chat server can answer it)."""
        path = path.split("?", 1)[0]
        if not path.startswith(API_PREFIX):
            return None
        rest = path[len(API_PREFIX) :].strip("/")
        now = self.clock()
        if rest == "tasks":
            snap = self.board.snapshot(now)
            return HTTPStatus.OK, {**self.status(), "tasks": snap["tasks"]}
        if rest.startswith("tasks/"):
            tid = unquote(rest[len("tasks/") :])
            t = self.board.tasks.get(tid)
            if t is None:
                return HTTPStatus.NOT_FOUND, {"error": f"unknown task id {tid}"}
            return HTTPStatus.OK, self.board.task_view(t)
        if rest == "agents":
            return HTTPStatus.OK, {"agents": self.board.snapshot(now)["agents"]}
        if rest in ("", "status", "coordinator"):
            return HTTPStatus.OK, self.status()
        return HTTPStatus.NOT_FOUND, {"error": f"no such resource {path}"}


async def serve_http(coordinator: Coordinator, host: str, port: int) -> Server:
    """A small HTTP server (websockets' HTTP side) for a standalone coordinator's reads.

    Returns the websockets ``Server``; its bound port is in ``.sockets``.
    """

    def answer(connection: Any, request: Any) -> Response:
        got = coordinator.http_get(request.path) or (
            HTTPStatus.NOT_FOUND,
            {"error": f"no such resource {request.path}"},
        )
        status = HTTPStatus(got[0])
        body = json.dumps(got[1]).encode()
        headers = Headers([("Content-Type", "application/json"),
                           ("Content-Length", str(len(body)))])  # fmt: skip
        return Response(status.value, status.phrase, headers, body)

    async def refuse(ws: Any) -> None:  # never reached: every request gets a response
        await ws.close()

    return await ws_serve(refuse, host, port, process_request=answer, server_header=None)


# --------------------------------------------------------------------------- entry points


def coordinator_identity(path: Path | None, name: str = "coordinator") -> Identity:
    """The coordinator's identity, kept at ``path`` (made on first start); a fresh one
    in memory without a path."""
    if path is None:
        return Identity.generate(name)
    try:
        if path.exists():
            return Identity.load(path)
        ident = Identity.generate(name)
        ident.save(path)
        return ident
    except IdentityError as exc:
        raise CoordinatorError(str(exc), hint="move the file away to make a new one") from exc
    except OSError as exc:
        raise CoordinatorError(
            f"{path}: cannot write the coordinator's identity ({exc.strerror})",
            hint="pass a writable --data-dir",
        ) from exc


async def _start(coord: Coordinator) -> asyncio.Task[None]:
    """Start ``coord.run()``; return once it joined its channel (or raise what stopped it)."""
    runner = asyncio.create_task(coord.run(), name="coordinator")
    ready = asyncio.create_task(coord.wait_ready())
    await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        runner.result()  # raises what ended it
        raise CoordinatorError("the coordinator stopped before it was ready")
    return runner


def embedded(
    identity: Identity, store: TaskStore, *, channel: str, board: BoardConfig
) -> Callable[[Any], Awaitable[Callable[[], Awaitable[None]]]]:
    """The hook ``agentctl server`` passes to ``run_forever``: start a coordinator on the
    running server (its id must be in ``ServerConfig.trusted_ids``: replies unpaced),
    serve ``/api/v1/...`` on the server's port, and stop it before the server closes."""

    async def attach(handle: Any) -> Callable[[], Awaitable[None]]:
        options = CoordinatorOptions(
            server_url=handle.url, channel=channel, board=board, paced=False
        )
        coord = Coordinator(options, identity, store)
        handle.http_routes.append(coord.http_get)
        try:
            runner = await _start(coord)
        except BaseException:
            store.close()
            raise

        async def detach() -> None:
            coord.stop()
            try:
                await runner
            except Exception:
                log.exception("the embedded coordinator failed")
            finally:
                store.close()

        return detach

    return attach


async def run_standalone(
    url: str,
    data_dir: Path,
    *,
    stop: asyncio.Event,
    channel: str = DEFAULT_CHANNEL,
    board: BoardConfig | None = None,
    http: tuple[str, int] | None = None,
    admin_key: str | None = None,
    paced: bool = True,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """``agentctl coordinator``: run until ``stop`` is set; the store and identity live in
    ``data_dir``; ``http`` serves the task board for ``agentctl task list --api``."""
    identity = coordinator_identity(data_dir / "identity.json")
    store = TaskStore(data_dir / DB_NAME)
    options = CoordinatorOptions(
        server_url=url,
        channel=channel,
        board=board or BoardConfig(),
        paced=paced,
        admin_key=admin_key,
    )
    http_server: Server | None = None
    try:
        coord = Coordinator(options, identity, store)
        where = ""
        if http is not None:
            try:
                http_server = await serve_http(coord, *http)
            except OSError as exc:
                raise CoordinatorError(
                    f"cannot listen on {http[0]}:{http[1]} ({exc.strerror or exc})",
                    hint="pick another --http port or stop what uses it",
                ) from exc
            port = next(iter(http_server.sockets)).getsockname()[1]
            where = f"; task board on http://{http[0]}:{port}{API_PREFIX}tasks"
        runner = asyncio.create_task(coord.run(), name="coordinator")
        stopper = asyncio.create_task(stop.wait())
        ready = asyncio.create_task(coord.wait_ready())
        await asyncio.wait({runner, ready, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and on_ready is not None:
            on_ready(f"coordinator {coord.agent_id} on {url} {channel}{where}")
        ready.cancel()
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        coord.stop()
        await runner
    finally:
        if http_server is not None:
            http_server.close()
        store.close()
