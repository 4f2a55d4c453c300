"""The server's value types: the actions it emits and the agent/connection/channel
records it keeps. Plain dataclasses, shared by :mod:`.core` and its handler mixins."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Send:
    """Send ``text`` to each connection in ``conns`` (one encoding for a whole fan-out)."""

    conns: list[int]
    text: str


@dataclass(slots=True)
class Close:
    """Close a connection with a WebSocket close code and reason."""

    conn: int
    code: int
    reason: str


#: What the core asks its transport to do.
ServerAction = Send | Close


@dataclass(slots=True, eq=False)
class Agent:
    """An identified connection."""

    id: str
    name: str
    pubkey: str | None
    conn: int
    verified: bool = False
    lurk: bool = False
    lurk_until: int = 0
    presence: str = "online"
    status_text: str | None = None
    channels: dict[str, None] = field(default_factory=dict)  # ordered set

    @property
    def at(self) -> str:
        return f"@{self.id}"


@dataclass(slots=True, eq=False)
class Conn:
    """One WebSocket, identified or not."""

    id: int
    ip: str
    agent: Agent | None = None
    frames: deque[int] = field(default_factory=deque)
    last_msg: int | None = None
    last_nick: int | None = None
    challenge: str | None = None
    open: bool = True
    connected_at: int = 0
    user_agent: str = "unknown"


@dataclass(slots=True, eq=False)
class Channel:
    """A channel: members in join order and a ring buffer of encoded frames."""

    name: str
    invite_only: bool = False
    verified_only: bool = False
    invited: set[str] = field(default_factory=set)
    members: dict[int, None] = field(default_factory=dict)
    buffer: deque[str] = field(default_factory=deque)

    def record(self) -> dict[str, Any]:
        return {
            "invite_only": self.invite_only,
            "verified_only": self.verified_only,
            "invited": sorted(self.invited),
        }
