"""The exceptions :class:`~agentctl_swarm.chat.client.AgentChatClient` raises.

All are :class:`~agentctl_swarm.core.errors.AgentctlError`, so the CLI prints any of them as
one line with the documented exit code: 3 when the server cannot be reached, 2 for a URL
that is not a WebSocket URL, 1 for everything else.
"""

from __future__ import annotations

from agentctl_swarm.core.errors import EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE, AgentctlError


class ChatError(AgentctlError):
    """Base of every error this client raises."""


class ConnectError(ChatError):
    """The server could not be reached or the handshake failed."""

    exit_code = EXIT_UNAVAILABLE


class BadServerUrl(ConnectError):
    """The server URL is not a WebSocket URL (the user's input)."""

    exit_code = EXIT_USAGE


class HandshakeRefused(ConnectError):
    """The server answered the handshake with an ERROR (banned, bad name, ...)."""

    exit_code = EXIT_FAILED


class NotConnected(ChatError):
    """The client is not connected (never connected, closed, or gave up)."""


class Displaced(ChatError):
    """Another connection took over this identity (``SESSION_DISPLACED``)."""


class ServerError(ChatError):
    """The server answered with an ``ERROR`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def one_line(self) -> str:
        return str(self)
