"""agentchat-mcp: the MCP stdio server Claude Code uses to talk on AgentChat.

Run as ``agentctl-agent mcp``. It is a drop-in for upstream's ``@tjamescouch/agentchat-mcp``:
server name ``agentchat``, the agent-facing tools (owl/reference/agentchat-protocol.md,
"The MCP server") with the same names and parameters, the same environment variables
(``AGENTCHAT_URL``, ``AGENTCHAT_PUBLIC``, ``AGENTCHAT_IDLE_TIMEOUT_MS``,
``AGENTCHAT_SETTLE_MS``; read once in :func:`main` as
:class:`~agentctl_swarm.config.AgentChatSettings`), identities at
``~/.agentchat/identities/<name>.json`` and the inbox at
``~/.agentchat/daemons/default/inbox.jsonl``.

Deliberate fix over upstream: ``agentchat_listen`` returns each message's ``msg_id``
(and ``in_reply_to``), so ``agentchat_claim`` can be used on it; ``agentchat_send``
returns the ``msg_id`` of the sent message and ``agentchat_claim`` reports an immediate
YIELD.

Extra environment (ours): ``AGENTCHAT_LISTEN_TIMEOUT_MS`` caps how long ``listen``
blocks (default 1 h, as upstream).

Tool results are JSON text, as upstream's; failures are MCP tool errors whose text
says what went wrong and what to do. stdout is the MCP channel, so logs go to stderr
(JSON lines unless stderr is a terminal; ``AGENTCTL_LOG_FORMAT`` chooses).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import secrets
import sys
import time
import typing
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import BaseModel, Field

from agentctl_swarm.chat.client import AgentChatClient, ChatError, ConnectError, Displaced
from agentctl_swarm.chat.identity import Identity, identity_path, load_or_create, sanitise_name
from agentctl_swarm.chat.inbox import (
    WAKING_EVENTS,
    Cursor,
    Inbox,
    inbox_line,
    output_line,
    relevant,
    select_new,
)
from agentctl_swarm.config import AgentChatSettings, load_settings
from agentctl_swarm.core.errors import AgentctlError
from agentctl_swarm.core.logs import log_event, setup_logging
from agentctl_swarm.core.net import is_loopback

log = logging.getLogger("agentctl.chat.mcp")

#: The channels ``agentchat_connect`` joins when the agent names none (upstream's choice;
#: not the server's built-in channel list, which is longer).
DEFAULT_JOIN_CHANNELS: tuple[str, ...] = ("#general", "#discovery", "#bounties")


class ToolFailure(AgentctlError):
    """A tool failed in a way the agent can act on; the text says how."""


# --------------------------------------------------------------------------- settings


def check_url(settings: AgentChatSettings) -> None:
    """Upstream refuses a non-loopback server unless ``AGENTCHAT_PUBLIC=true``."""
    url = settings.url
    parsed = urlparse(url)
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
        raise ToolFailure(f"AGENTCHAT_URL={url!r} is not a WebSocket URL; use ws://HOST:PORT")
    if not settings.public and not is_loopback(parsed.hostname):
        raise ToolFailure(
            f"AGENTCHAT_URL={url!r} is not on this machine; set AGENTCHAT_PUBLIC=true "
            "to allow a remote AgentChat server"
        )


# --------------------------------------------------------------------------- state


class SkillParam(BaseModel):
    """One skill as ``agentchat_register_skills`` takes it."""

    capability: str = Field(description="What you can do, e.g. 'code_review'")
    description: str | None = Field(default=None, description="Free text")
    rate: float | None = Field(default=None, description="Price per task")
    currency: str | None = Field(default=None, description="Currency of the rate")


class AgentChatMcp:
    """The MCP server's state: one AgentChat connection, the inbox, the listen cursor.

    Methods are the tools (plain async functions returning dicts), so they can be
    exercised without the MCP transport; :func:`build_server` wires them to MCP.
    """

    def __init__(self, settings: AgentChatSettings, home: Path) -> None:
        self.settings = settings
        self.home = home
        self.idle_timeout_s = settings.idle_timeout_ms / 1000
        self.settle_s = settings.settle_ms / 1000
        self.listen_timeout_s = settings.listen_timeout_ms / 1000
        self.client: AgentChatClient | None = None
        self.identity: Identity | None = None
        self.identity_file: Path | None = None
        self.display_name: str | None = None
        self.inbox = Inbox(home / ".agentchat" / "daemons" / "default")
        self.cursor = Cursor()
        self._new_data = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self._last_call = time.monotonic()
        self._listening = 0
        self._idle_dropped = False
        self._saved_channels: list[str] = []
        self._lock = asyncio.Lock()

    # -- connection management ------------------------------------------------

    def _touch(self) -> None:
        self._last_call = time.monotonic()

    async def _client(self) -> AgentChatClient:
        """The live client; reconnects after an idle drop; explains what is wrong."""
        self._touch()
        if self.client is None and self._idle_dropped:
            await self._open(reuse=True)
        c = self.client
        if c is None:
            raise ToolFailure("Not connected. Call agentchat_connect first.")
        if c.displaced:
            raise ToolFailure(
                "This identity was taken over by another connection (SESSION_DISPLACED). "
                "Call agentchat_connect again to take it back."
            )
        if c.finished:
            raise ToolFailure(
                f"The connection to {self.settings.url} ended ({c.last_error}). "
                "Call agentchat_connect to reconnect."
            )
        return c

    async def _open(self, *, reuse: bool, channels: list[str] | None = None) -> AgentChatClient:
        check_url(self.settings)
        name = self.display_name or f"anon_{secrets.token_hex(3)}"
        client = AgentChatClient(self.settings.url, self.identity, name=name)
        rejoin = list(self._saved_channels) if reuse else []
        last: Exception | None = None
        for _ in range(3):  # upstream retries challenge races up to 3 times
            try:
                await client.connect()
                break
            except ConnectError as exc:
                last = exc
                if "VERIFICATION" not in str(exc):
                    break
                client = AgentChatClient(self.settings.url, self.identity, name=name)
        else:
            last = last or ConnectError("handshake failed")
        if not client.welcome:
            raise ToolFailure(f"Error connecting: {last}")
        self.client = client
        self._idle_dropped = False
        for channel in [*(channels or []), *rejoin]:
            try:
                await client.join(channel)
            except ChatError as exc:
                raise ToolFailure(f"Connected, but could not join {channel}: {exc}") from exc
        self._pump = asyncio.create_task(self._pump_frames(client))
        if self._idle_task is None and self.idle_timeout_s > 0:
            self._idle_task = asyncio.create_task(self._idle_watch())
        return client

    async def _pump_frames(self, client: AgentChatClient) -> None:
        """Copy every frame the client receives into the inbox (upstream's inbox writer).

        One frame that cannot be kept is logged and skipped: the pump must outlive it, or
        every later ``listen`` would wait for nothing.
        """
        async for frame in client:
            try:
                line = inbox_line(frame, int(time.time() * 1000))
                if line is None:
                    continue
                self.inbox.append(line)
            except Exception as exc:
                log.error(
                    "inbox.frame_skipped",
                    exc_info=True,
                    extra={"event": "inbox.frame_skipped", "error": exc},
                )
                continue
            if line["type"] == "MSG" or line.get("event") in WAKING_EVENTS:
                self._new_data.set()

    async def _idle_watch(self) -> None:
        """Drop the socket after ``AGENTCHAT_IDLE_TIMEOUT_MS`` without a tool call."""
        while True:
            await asyncio.sleep(max(0.05, self.idle_timeout_s / 4))
            idle = time.monotonic() - self._last_call
            c = self.client
            if c is not None and not self._listening and idle >= self.idle_timeout_s:
                log_event(log, "chat.mcp.idle_drop", idle_s=round(idle, 1))
                self._idle_dropped = True
                await self._drop_client(keep_channels=True)

    async def _drop_client(self, *, keep_channels: bool = False) -> None:
        c, self.client = self.client, None
        pump, self._pump = self._pump, None
        if c is not None:
            if keep_channels:  # re-joined by the reconnect on the next tool call
                self._saved_channels = sorted(c.channels)
            await c.close()
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def shutdown(self) -> None:
        """Close the connection and background tasks (end of the stdio session)."""
        if self._idle_task is not None:
            self._idle_task.cancel()
        await self._drop_client()

    # -- tools ------------------------------------------------------------------

    async def connect(
        self,
        name: str | None = None,
        identity_path_: str | None = None,
        channels: list[str] | None = None,
    ) -> dict[str, Any]:
        """agentchat_connect: load or create the identity, handshake, join channels."""
        self._touch()
        async with self._lock:
            await self._drop_client()
            self._saved_channels = []
            self.identity, self.identity_file = self._resolve_identity(name, identity_path_)
            self.display_name = self.identity.name if self.identity else None
            persisted = self.inbox.load_cursor()
            # A fresh session starts listening "now"; a restarted one resumes.
            self.cursor = persisted or Cursor(ts=int(time.time() * 1000))
            client = await self._open(
                reuse=False, channels=list(channels) if channels else list(DEFAULT_JOIN_CHANNELS)
            )
            return {
                "success": True,
                "agent_id": client.agent_id,
                "name": client.name,
                "server": self.settings.url,
                "persistent": self.identity is not None,
                "identity_path": str(self.identity_file) if self.identity_file else None,
                "channels": sorted(client.channels),
                "marketplace": {
                    "enabled": self.identity is not None,
                    "tools": [
                        "agentchat_register_skills",
                        "agentchat_search_skills",
                        "agentchat_propose",
                        "agentchat_accept",
                        "agentchat_reject",
                        "agentchat_complete",
                        "agentchat_dispute",
                    ],
                },
            }

    def _resolve_identity(
        self, name: str | None, custom_path: str | None
    ) -> tuple[Identity | None, Path | None]:
        root = (self.home / ".agentchat").resolve()
        if custom_path:
            p = Path(custom_path).expanduser()
            if not p.is_absolute():
                p = self.home / p
            resolved = p.resolve()
            if root not in resolved.parents:
                raise ToolFailure(f"identity_path must be within {root}/ (got {custom_path!r})")
            default_name = sanitise_name(name or resolved.stem) or "agent"
            return load_or_create(resolved, default_name)[0], resolved
        if name:
            safe = sanitise_name(name)
            if not safe:
                raise ToolFailure(
                    f"invalid agent name {name!r}: use letters, digits, '-' and '_' only"
                )
            path = identity_path(safe, home=self.home)
            return load_or_create(path, safe[:32])[0], path
        return None, None

    async def send(
        self, target: str, message: str, in_reply_to: str | None = None
    ) -> dict[str, Any]:
        """agentchat_send: join the channel if needed, send, return the msg_id."""
        c = await self._client()
        if target.startswith("#") and target not in c.channels:
            await c.join(target)
        try:
            echo = await c.send(
                target, message, in_reply_to=in_reply_to, echo=True, timeout=10 + c.queued * 1.1
            )
        except TimeoutError:
            return {"success": True, "queued": True, "target": target, "msg_id": None}
        assert echo is not None
        return {
            "success": True,
            "target": target,
            "from": c.agent_id,
            "msg_id": echo.get("msg_id"),
            "ts": echo.get("ts"),
        }

    async def listen(self, channels: list[str], tail: int | None = None) -> dict[str, Any]:
        """agentchat_listen: block until new messages for ``channels``; return them."""
        c = await self._client()
        for channel in channels:
            if channel.startswith("#") and channel not in c.channels:
                await c.join(channel)
        if tail is not None:
            lines = [
                output_line(ln)
                for ln in self.inbox.lines
                if ln.get("type") == "MSG" and ln.get("to") in channels
            ]
            return {"messages": lines[-tail:] if tail > 0 else [], "tail": tail}
        start = time.monotonic()
        self._listening += 1
        with contextlib.suppress(ChatError):
            await c.set_presence("listening")
        try:
            deadline = start + self.listen_timeout_s
            while True:
                # Cleared before the check (no await in between): no wake-up is lost.
                self._new_data.clear()
                if self._pending(channels, c.agent_id):
                    await asyncio.sleep(self.settle_s)  # let a burst arrive
                    batch = select_new(list(self.inbox.lines), self.cursor, channels, c.agent_id)
                    if batch:
                        self.cursor.advance(line for line, _ in batch)
                        self.inbox.save_cursor(self.cursor)
                        return {
                            "messages": [shown for _, shown in batch],
                            "from_inbox": True,
                            "elapsed_ms": int((time.monotonic() - start) * 1000),
                        }
                if c.displaced or c.closed:
                    raise ToolFailure("Connection lost while listening; call agentchat_connect.")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return {
                        "messages": [],
                        "timeout": True,
                        "elapsed_ms": int((time.monotonic() - start) * 1000),
                    }
                self.inbox.touch_heartbeat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new_data.wait(), min(remaining, 30.0))
        finally:
            self._listening -= 1
            self._touch()
            if c.connected:
                with contextlib.suppress(ChatError):
                    await c.set_presence("online")

    def _pending(self, channels: list[str], self_id: str | None) -> bool:
        return any(
            self.cursor.is_new(ln) and relevant(ln, channels, self_id) for ln in self.inbox.lines
        )

    async def channels(self) -> dict[str, Any]:
        """agentchat_channels: LIST_CHANNELS plus the channels joined here."""
        c = await self._client()
        return {"channels": await c.list_channels(), "joined": sorted(c.channels)}

    async def leave(self, channel: str) -> dict[str, Any]:
        """agentchat_leave."""
        c = await self._client()
        await c.leave(channel)
        return {"success": True, "channel": channel}

    async def create_channel(self, channel: str, invite_only: bool = False) -> dict[str, Any]:
        """agentchat_create_channel (the server requires a verified agent)."""
        c = await self._client()
        reply = await c.create_channel(channel, invite_only=invite_only)
        return {"success": True, "channel": channel, "agents": reply.get("agents", [])}

    async def nick(self, nick: str) -> dict[str, Any]:
        """agentchat_nick."""
        c = await self._client()
        reply = await c.set_nick(nick)
        return {"success": True, "nick": (reply or {}).get("new_nick", nick)}

    async def claim(self, msg_id: str, channel: str) -> dict[str, Any]:
        """agentchat_claim: RESPONDING_TO with started_at = now; reports an instant YIELD."""
        c = await self._client()
        started = int(time.time() * 1000)
        yielded = await c.claim(msg_id, channel, started_at=started)
        out: dict[str, Any] = {
            "success": True,
            "msg_id": msg_id,
            "channel": channel,
            "started_at": started,
            "yielded": yielded is not None,
        }
        if yielded is not None:
            out["holder"] = yielded.get("holder")
            out["reason"] = yielded.get("reason")
        return out

    async def set_presence(self, status_text: str) -> dict[str, Any]:
        """agentchat_set_presence: status ``online`` plus a status text (≤ 100 chars)."""
        if len(status_text) > 100:
            raise ToolFailure(f"status_text is {len(status_text)} chars; the server allows 100")
        c = await self._client()
        await c.set_presence("online", status_text)
        return {"success": True, "status": "online", "status_text": status_text}

    async def register_skills(self, skills: list[SkillParam]) -> dict[str, Any]:
        """agentchat_register_skills (signed; needs a persistent identity)."""
        c = await self._need_identity()
        wire = [s.model_dump(exclude_none=True) for s in skills]
        reply = await c.register_skills(wire)
        return {"success": True, **_strip(reply)}

    async def search_skills(
        self,
        capability: str | None = None,
        max_rate: float | None = None,
        currency: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """agentchat_search_skills."""
        c = await self._client()
        query = {
            k: v
            for k, v in {
                "capability": capability,
                "max_rate": max_rate,
                "currency": currency,
                "limit": limit,
            }.items()
            if v is not None
        }
        reply = await c.search_skills(query)
        return {"results": reply.get("results", []), "total": reply.get("total", 0)}

    async def propose(
        self,
        to: str,
        task: str,
        amount: float | None = None,
        currency: str | None = None,
        expires: int | None = None,
        elo_stake: int | None = None,
    ) -> dict[str, Any]:
        """agentchat_propose (signed PROPOSAL to an online agent)."""
        c = await self._need_identity()
        reply = await c.propose(
            to, task, amount=amount, currency=currency, expires=expires, elo_stake=elo_stake
        )
        return {"success": True, "proposal_id": reply.get("id"), "proposal": _strip(reply)}

    async def accept(self, proposal_id: str, elo_stake: int | None = None) -> dict[str, Any]:
        """agentchat_accept."""
        c = await self._need_identity()
        return {"success": True, **_strip(await c.accept(proposal_id, elo_stake=elo_stake))}

    async def reject(self, proposal_id: str, reason: str | None = None) -> dict[str, Any]:
        """agentchat_reject."""
        c = await self._need_identity()
        return {"success": True, **_strip(await c.reject(proposal_id, reason))}

    async def complete(self, proposal_id: str, proof: str | None = None) -> dict[str, Any]:
        """agentchat_complete."""
        c = await self._need_identity()
        return {"success": True, **_strip(await c.complete(proposal_id, proof))}

    async def dispute(self, proposal_id: str, reason: str) -> dict[str, Any]:
        """agentchat_dispute."""
        c = await self._need_identity()
        return {"success": True, **_strip(await c.dispute(proposal_id, reason))}

    async def _need_identity(self) -> AgentChatClient:
        c = await self._client()
        if self.identity is None:
            raise ToolFailure(
                "This needs a persistent identity: call agentchat_connect with a name first."
            )
        return c


def _strip(frame: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in frame.items() if k not in ("type", "sig")}


# --------------------------------------------------------------------------- MCP wiring


def build_server(state: AgentChatMcp) -> Any:
    """An ``MCPServer`` named ``agentchat`` exposing the tools with upstream's names."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer(
        name="agentchat",
        instructions=(
            "Real-time chat with other agents. agentchat_connect first, then "
            "agentchat_listen / agentchat_send. Messages carry msg_id; call "
            "agentchat_claim(msg_id, channel) before answering one."
        ),
        log_level="WARNING",
    )

    def tool(name: str, description: str) -> Any:
        def register(fn: Any) -> Any:
            async def wrapped(*args: Any, **kwargs: Any) -> str:
                try:
                    result = await fn(*args, **kwargs)
                except ChatError as exc:
                    # A call racing SESSION_DISPLACED fails as "connection lost": say why.
                    c = state.client
                    if isinstance(exc, Displaced) or (c is not None and c.displaced):
                        raise ToolError(
                            "This identity was taken over by another connection "
                            "(SESSION_DISPLACED); call agentchat_connect to take it back."
                        ) from exc
                    raise ToolError(str(exc)) from exc
                except AgentctlError as exc:  # ToolFailure, IdentityError, ...
                    raise ToolError(exc.one_line()) from exc
                return json.dumps(result, ensure_ascii=False, allow_nan=False)

            # The SDK builds the input schema from the signature and resolved hints.
            hints = typing.get_type_hints(fn, include_extras=True)
            params = [
                p.replace(annotation=hints[p.name])
                for p in inspect.signature(fn).parameters.values()
            ]
            wrapped.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
            wrapped.__annotations__ = {**hints, "return": str}
            wrapped.__name__ = wrapped.__qualname__ = name
            server.add_tool(wrapped, name=name, description=description, structured_output=False)
            return fn

        return register

    @tool("agentchat_connect", "Connect to the AgentChat server (AGENTCHAT_URL).")
    async def agentchat_connect(
        name: Annotated[
            str | None,
            Field(
                description="Agent name; keeps ~/.agentchat/identities/<name>.json. Omit for "
                "an ephemeral (read-only) identity."
            ),
        ] = None,
        identity_path: Annotated[
            str | None, Field(description="Custom identity file (must be under ~/.agentchat/)")
        ] = None,
        channels: Annotated[
            list[str] | None,
            Field(description="Channels to join (default #general #discovery #bounties)"),
        ] = None,
    ) -> dict[str, Any]:
        return await state.connect(name, identity_path, channels)

    @tool("agentchat_send", "Send a message to a #channel (returns its msg_id).")
    async def agentchat_send(
        target: Annotated[str, Field(description="#channel (or @agent-id if the server allows)")],
        message: Annotated[str, Field(description="Message text")],
        in_reply_to: Annotated[str | None, Field(description="msg_id being answered")] = None,
    ) -> dict[str, Any]:
        return await state.send(target, message, in_reply_to)

    @tool(
        "agentchat_listen",
        "Block until new messages arrive on the channels; returns them with msg_id. "
        "tail=N returns the last N messages at once instead.",
    )
    async def agentchat_listen(
        channels: Annotated[list[str], Field(description='Channels, e.g. ["#general"]')],
        tail: Annotated[
            int | None, Field(description="Return the last N messages without blocking", ge=0)
        ] = None,
    ) -> dict[str, Any]:
        return await state.listen(channels, tail)

    @tool("agentchat_channels", "List the server's channels and the ones joined.")
    async def agentchat_channels() -> dict[str, Any]:
        return await state.channels()

    @tool("agentchat_leave", "Leave a channel.")
    async def agentchat_leave(
        channel: Annotated[str, Field(description="#channel")],
    ) -> dict[str, Any]:
        return await state.leave(channel)

    @tool("agentchat_create_channel", "Create a channel (needs a verified agent).")
    async def agentchat_create_channel(
        channel: Annotated[str, Field(description="#channel")],
        invite_only: Annotated[bool | None, Field(description="Invite-only channel")] = None,
    ) -> dict[str, Any]:
        return await state.create_channel(channel, bool(invite_only))

    @tool("agentchat_nick", "Change your display name.")
    async def agentchat_nick(
        nick: Annotated[str, Field(description="1-24 chars of [A-Za-z0-9_-]")],
    ) -> dict[str, Any]:
        return await state.nick(nick)

    @tool(
        "agentchat_claim",
        "Claim the floor before answering a message (RESPONDING_TO); reports a YIELD.",
    )
    async def agentchat_claim(
        msg_id: Annotated[str, Field(description="msg_id from agentchat_listen")],
        channel: Annotated[str, Field(description="#channel of the message")],
    ) -> dict[str, Any]:
        return await state.claim(msg_id, channel)

    @tool("agentchat_set_presence", "Set your status text (presence online).")
    async def agentchat_set_presence(
        status_text: Annotated[str, Field(description="Status text (at most 100 chars)")],
    ) -> dict[str, Any]:
        return await state.set_presence(status_text)

    @tool("agentchat_register_skills", "Register your skills (signed; persistent identity).")
    async def agentchat_register_skills(
        skills: Annotated[list[SkillParam], Field(description="Skills to advertise")],
    ) -> dict[str, Any]:
        return await state.register_skills(skills)

    @tool("agentchat_search_skills", "Search agents' registered skills.")
    async def agentchat_search_skills(
        capability: Annotated[str | None, Field(description="Substring to match")] = None,
        max_rate: Annotated[float | None, Field(description="Highest rate")] = None,
        currency: Annotated[str | None, Field(description="Currency")] = None,
        limit: Annotated[int | None, Field(description="Max results")] = None,
    ) -> dict[str, Any]:
        return await state.search_skills(capability, max_rate, currency, limit)

    @tool("agentchat_propose", "Propose a task to an online agent (signed).")
    async def agentchat_propose(
        to: Annotated[str, Field(description="@agent-id")],
        task: Annotated[str, Field(description="What to do")],
        amount: Annotated[float | None, Field(description="Payment amount")] = None,
        currency: Annotated[str | None, Field(description="Currency")] = None,
        expires: Annotated[int | None, Field(description="Seconds until it expires")] = None,
        elo_stake: Annotated[int | None, Field(description="ELO to stake", ge=0)] = None,
    ) -> dict[str, Any]:
        return await state.propose(to, task, amount, currency, expires, elo_stake)

    @tool("agentchat_accept", "Accept a proposal made to you (signed).")
    async def agentchat_accept(
        proposal_id: Annotated[str, Field(description="prop_... id")],
        elo_stake: Annotated[int | None, Field(description="ELO to stake", ge=0)] = None,
    ) -> dict[str, Any]:
        return await state.accept(proposal_id, elo_stake)

    @tool("agentchat_reject", "Reject a proposal made to you (signed).")
    async def agentchat_reject(
        proposal_id: Annotated[str, Field(description="prop_... id")],
        reason: Annotated[str | None, Field(description="Why")] = None,
    ) -> dict[str, Any]:
        return await state.reject(proposal_id, reason)

    @tool("agentchat_complete", "Mark an accepted proposal completed (signed).")
    async def agentchat_complete(
        proposal_id: Annotated[str, Field(description="prop_... id")],
        proof: Annotated[str | None, Field(description="Evidence of the work")] = None,
    ) -> dict[str, Any]:
        return await state.complete(proposal_id, proof)

    @tool("agentchat_dispute", "Dispute an accepted proposal (signed).")
    async def agentchat_dispute(
        proposal_id: Annotated[str, Field(description="prop_... id")],
        reason: Annotated[str, Field(description="Why")],
    ) -> dict[str, Any]:
        return await state.dispute(proposal_id, reason)

    return server


# --------------------------------------------------------------------------- entry point

_USAGE = """usage: agentctl-agent mcp

agentchat-mcp: an MCP stdio server (name "agentchat") for AgentChat.
Environment: AGENTCHAT_URL (default ws://localhost:6667), AGENTCHAT_PUBLIC=true to allow
a non-loopback server, AGENTCHAT_IDLE_TIMEOUT_MS (300000), AGENTCHAT_SETTLE_MS (1500),
AGENTCHAT_LISTEN_TIMEOUT_MS (3600000)."""


def main(argv: list[str]) -> int:
    """Serve MCP over stdin/stdout until the client closes the pipe.

    The process's edge: settings are read here, once (a bad value exits 2 naming the
    variable), and logging goes to stderr, because stdout carries the MCP protocol.
    """
    if argv and argv[0] in ("-h", "--help", "help"):
        print(_USAGE)
        return 0
    if argv:
        print(f"agentctl-agent mcp: unexpected arguments {argv!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    _setup_logging()
    try:
        settings = load_settings(AgentChatSettings)
    except AgentctlError as exc:
        print(f"agentctl-agent mcp: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    return asyncio.run(_serve(settings, Path.home()))


def _setup_logging() -> None:
    """Our records and the MCP SDK's, in one format, on stderr only (stdout is MCP's)."""
    ours = setup_logging("agentchat-mcp", level=logging.WARNING, stream=sys.stderr)
    root = logging.getLogger()
    for handler in ours.handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(logging.WARNING)


async def _serve(settings: AgentChatSettings, home: Path) -> int:
    state = AgentChatMcp(settings, home)
    server = build_server(state)
    try:
        await server.run_stdio_async()
    finally:
        await state.shutdown()
    return 0
