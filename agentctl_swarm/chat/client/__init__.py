"""Asyncio AgentChat client: handshake, channels, messages, marketplace, reconnect.

Why it is built this way:

* One supervisor task owns the socket. When the connection drops it reconnects with
  jittered exponential backoff (1 s doubling to 30 s, the project's one
  :class:`~agentctl_swarm.core.backoff.BackoffCurve`), re-joins the channels the caller
  joined, and only then lets queued messages flow again, so nothing sent while cut off
  is lost or sent to a channel the new socket has not joined yet.
* Outgoing MSGs pass a token bucket matching the server's limit (1 per second, no
  burst) and every frame passes a sliding window below the server's flood limit (60
  frames / 10 s, which *closes* the socket). Callers never see ``RATE_LIMITED``.
* The protocol has no request ids, so request/response calls are serialised and,
  where the server may stay silent (LEAVE, presence, claim), followed by an app-level
  PING: frames on one socket are answered in order, so once PONG is back any ERROR
  for the request has arrived too.
* WebSocket pings from the server are answered by ``websockets`` itself; our own pings
  (every 20 s) detect a dead peer and trigger the reconnect.
* ``SESSION_DISPLACED`` (another socket took over this identity) ends the client: it
  does not fight the new session by reconnecting.

Layout: :mod:`.errors` (exceptions), :mod:`.base` (state and finishing),
:mod:`.outgoing` (writes, requests, the MSG send loop), :mod:`.connection`
(handshake, supervisor/reconnect, read loop), :mod:`.chat_calls` and
:mod:`.market_calls` (the public calls), combined in :mod:`.agent_client`.
"""

from __future__ import annotations

from agentctl_swarm.chat.client.agent_client import AgentChatClient
from agentctl_swarm.chat.client.base import HANDSHAKE_TIMEOUT_S as HANDSHAKE_TIMEOUT_S
from agentctl_swarm.chat.client.base import RECONNECT_CURVE as RECONNECT_CURVE
from agentctl_swarm.chat.client.connection import MAX_FRAME as MAX_FRAME
from agentctl_swarm.chat.client.errors import (
    BadServerUrl,
    ChatError,
    ConnectError,
    Displaced,
    HandshakeRefused,
    NotConnected,
    ServerError,
)

__all__ = [
    "AgentChatClient",
    "BadServerUrl",
    "ChatError",
    "ConnectError",
    "Displaced",
    "HandshakeRefused",
    "NotConnected",
    "ServerError",
]
