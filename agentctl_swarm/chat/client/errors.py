"""The exceptions :class:`~agentctl_swarm.chat.client.AgentChatClient` raises."""

from __future__ import annotations


class ChatError(Exception):
    """Base of every error this client raises."""


class ConnectError(ChatError):
    """The server could not be reached or the handshake failed."""


class NotConnected(ChatError):
    """The client is not connected (never connected, closed, or gave up)."""


class Displaced(ChatError):
    """Another connection took over this identity (``SESSION_DISPLACED``)."""


class ServerError(ChatError):
    """The server answered with an ``ERROR`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
