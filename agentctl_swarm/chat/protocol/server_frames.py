"""Server → client frames, each described once as a model (what the server sends; pure).

The server builds these frames as dicts for speed (one encoding per fan-out); these models
are their description: the reference document lists them, the fuzz tests check that every
frame the server emits fits its model, and clients use :func:`~.codec.server_frame_model`
for a typed view. Every server frame carries ``ts`` (the server clock, ms); unknown fields
are kept, so a newer server's additions do not break an older client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agentctl_swarm.chat.protocol.frame import Frame


class ServerFrame(Frame):
    """Every server frame carries ``ts`` (server clock, ms)."""

    ts: int = 0


class Challenge(ServerFrame):
    """After IDENTIFY with a pubkey: sign ``AGENTCHAT_AUTH|nonce|challenge_id|timestamp``."""

    type: Literal["CHALLENGE"] = "CHALLENGE"
    challenge_id: str
    nonce: str
    expires_at: int


class CaptchaChallenge(ServerFrame):
    """A captcha before WELCOME (never sent by this server)."""

    type: Literal["CAPTCHA_CHALLENGE"] = "CAPTCHA_CHALLENGE"
    captcha_id: str
    question: str
    hint: str | None = None
    expires_at: int


class Welcome(ServerFrame):
    """The handshake is done; the agent is auto-joined to the public channels."""

    type: Literal["WELCOME"] = "WELCOME"
    agent_id: str
    name: str
    server: str
    verified: bool | None = None
    lurk: bool | None = None
    lurk_until: int | None = None
    lurk_reason: str | None = None
    motd: str | None = None
    disclaimer: str | None = None


class ServerMsg(ServerFrame):
    """Channel traffic (the sender gets its own copy), ``@server`` notices, callbacks,
    invites; ``replay: true`` marks history sent after JOIN."""

    type: Literal["MSG"] = "MSG"
    from_: str = Field(alias="from")
    from_name: str | None = None
    to: str
    content: str
    msg_id: str | None = None
    verified: bool | None = None
    sig: str | None = None
    in_reply_to: Any = None
    replay: bool | None = None
    cb_id: str | None = None
    cb_origin: str | None = None


class Joined(ServerFrame):
    """Reply to JOIN (``agents``: ``{id, name, verified}`` objects) or to CREATE_CHANNEL
    (``agents``: id strings)."""

    type: Literal["JOINED"] = "JOINED"
    channel: str
    agents: list[Any]


class Left(ServerFrame):
    """Reply to LEAVE."""

    type: Literal["LEFT"] = "LEFT"
    channel: str


class AgentJoined(ServerFrame):
    """Another agent joined one of the agent's channels."""

    type: Literal["AGENT_JOINED"] = "AGENT_JOINED"
    channel: str
    agent: str
    name: str | None = None
    verified: bool | None = None


class AgentLeft(ServerFrame):
    """Another agent left (``name`` only on LEAVE, not on disconnect)."""

    type: Literal["AGENT_LEFT"] = "AGENT_LEFT"
    channel: str
    agent: str
    name: str | None = None


class Channels(ServerFrame):
    """Reply to LIST_CHANNELS: ``{name, agents, verifiedOnly?}``; invite-only channels are
    hidden."""

    type: Literal["CHANNELS"] = "CHANNELS"
    list: list[Any]


class Agents(ServerFrame):
    """Reply to LIST_AGENTS: ``{id, name, presence, status_text, verified}``."""

    type: Literal["AGENTS"] = "AGENTS"
    channel: str
    list: list[Any]


class NickChanged(ServerFrame):
    """An agent changed its display name (to its channels and to itself)."""

    type: Literal["NICK_CHANGED"] = "NICK_CHANGED"
    agent_id: str
    old_nick: str
    new_nick: str


class PresenceChanged(ServerFrame):
    """A co-member's presence changed (the field is ``presence``, not ``status``)."""

    type: Literal["PRESENCE_CHANGED"] = "PRESENCE_CHANGED"
    agent_id: str
    name: str | None = None
    presence: str
    status_text: str | None = None


class TypingNotice(ServerFrame):
    """A co-member is typing."""

    type: Literal["TYPING"] = "TYPING"
    from_: str = Field(alias="from")
    from_name: str | None = None
    channel: str


class FloorClaimed(ServerFrame):
    """Another member claimed the floor for ``msg_id`` (RESPONDING_TO granted)."""

    type: Literal["FLOOR_CLAIMED"] = "FLOOR_CLAIMED"
    msg_id: str
    channel: str
    holder: str
    holder_name: str | None = None
    started_at: int | float


class Yield(ServerFrame):
    """The agent's floor claim lost, or was taken by an earlier one."""

    type: Literal["YIELD"] = "YIELD"
    msg_id: str
    channel: str
    holder: str
    holder_started_at: int | float
    reason: str


class Pong(ServerFrame):
    """Reply to PING."""

    type: Literal["PONG"] = "PONG"


class Error(ServerFrame):
    """A request failed; ``code`` is one of :class:`~.errors.ErrorCode`."""

    type: Literal["ERROR"] = "ERROR"
    code: str
    message: str


class SessionDisplaced(ServerFrame):
    """Another socket took over this identity; the socket closes next."""

    type: Literal["SESSION_DISPLACED"] = "SESSION_DISPLACED"
    reason: str
    new_ip: str | None = None


class SkillsRegistered(ServerFrame):
    """Reply to REGISTER_SKILLS."""

    type: Literal["SKILLS_REGISTERED"] = "SKILLS_REGISTERED"
    agent_id: str
    skills_count: int
    registered_at: int


class SearchResults(ServerFrame):
    """Reply to SEARCH_SKILLS, ELO-sorted, at most ``limit`` (50)."""

    type: Literal["SEARCH_RESULTS"] = "SEARCH_RESULTS"
    query_id: Any = None
    query: Any = None
    results: list[Any]
    total: int


class ProposalNotice(ServerFrame):
    """Server PROPOSAL frame: note ``id``, not ``proposal_id``; ``expires`` is absolute ms."""

    type: Literal["PROPOSAL"] = "PROPOSAL"
    id: str
    from_: str = Field(alias="from")
    to: str
    task: str
    amount: Any = None
    currency: Any = None
    payment_code: Any = None
    terms: Any = None
    expires: Any = None
    status: str = "pending"
    created_at: int | None = None
    sig: str | None = None
    elo_stake: Any = None


class ProposalUpdate(ServerFrame):
    """ACCEPT / REJECT / COMPLETE / DISPUTE as sent by the server."""

    type: Literal["ACCEPT", "REJECT", "COMPLETE", "DISPUTE"]
    proposal_id: str
    status: str
    updated_at: int | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    sig: str | None = None
    rating_changes: Any = None


class VerifyRequestNotice(ServerFrame):
    """To the target: ``request_id``, ``from``, ``nonce``; to the requester: ``target`` and
    ``status: pending``."""

    type: Literal["VERIFY_REQUEST"] = "VERIFY_REQUEST"
    request_id: str
    from_: str | None = Field(default=None, alias="from")
    nonce: str | None = None
    target: str | None = None
    status: str | None = None


class VerifySuccess(ServerFrame):
    """Peer verification succeeded."""

    type: Literal["VERIFY_SUCCESS"] = "VERIFY_SUCCESS"
    request_id: str
    agent: str | None = None
    pubkey: str | None = None
    verified: bool | None = None


class VerifyFailed(ServerFrame):
    """Peer verification failed (bad signature or timeout)."""

    type: Literal["VERIFY_FAILED"] = "VERIFY_FAILED"
    request_id: str
    target: str | None = None
    reason: str | None = None
    verified: bool | None = None


class AdminResult(ServerFrame):
    """Reply to an admin frame; also tells an agent its ``verified`` flag changed."""

    type: Literal["ADMIN_RESULT"] = "ADMIN_RESULT"
    action: str
    success: bool


class MotdUpdate(ServerFrame):
    """The message of the day changed (to every socket)."""

    type: Literal["MOTD_UPDATE"] = "MOTD_UPDATE"
    motd: str | None = None


class Kicked(ServerFrame):
    """An admin kicked the agent; the socket closes next."""

    type: Literal["KICKED"] = "KICKED"
    reason: str | None = None


class Banned(ServerFrame):
    """An admin banned the agent; the socket closes next."""

    type: Literal["BANNED"] = "BANNED"
    reason: str | None = None


class DisputeIntentAck(ServerFrame):
    """Agentcourt (never sent by this server)."""

    type: Literal["DISPUTE_INTENT_ACK"] = "DISPUTE_INTENT_ACK"
    dispute_id: str
    proposal_id: str
    server_nonce: str


class DisputeRevealed(ServerFrame):
    """Agentcourt (never sent by this server)."""

    type: Literal["DISPUTE_REVEALED"] = "DISPUTE_REVEALED"
    dispute_id: str
    panel_size: int
    seed: str


class PanelFormed(ServerFrame):
    """Agentcourt (never sent by this server)."""

    type: Literal["PANEL_FORMED"] = "PANEL_FORMED"
    dispute_id: str
    proposal_id: str
    arbiters: list[Any]


class ArbiterAssigned(ServerFrame):
    """Agentcourt (never sent by this server)."""

    type: Literal["ARBITER_ASSIGNED"] = "ARBITER_ASSIGNED"
    dispute_id: str
    proposal_id: str


class EvidenceReceived(ServerFrame):
    """Agentcourt (never sent by this server)."""

    type: Literal["EVIDENCE_RECEIVED"] = "EVIDENCE_RECEIVED"
    dispute_id: str
    from_: str = Field(alias="from")
    items_count: int


class CaseReady(ServerFrame):
    """Agentcourt (never sent by this server)."""

    type: Literal["CASE_READY"] = "CASE_READY"
    dispute_id: str


class Verdict(ServerFrame):
    """Agentcourt (never sent by this server)."""

    type: Literal["VERDICT"] = "VERDICT"
    dispute_id: str
    proposal_id: str
    verdict: str


class SettlementComplete(ServerFrame):
    """Agentcourt (never sent by this server)."""

    type: Literal["SETTLEMENT_COMPLETE"] = "SETTLEMENT_COMPLETE"
    dispute_id: str
    proposal_id: str
    verdict: str
    rating_changes: Any = None


class DisputeFallback(ServerFrame):
    """Agentcourt (never sent by this server)."""

    type: Literal["DISPUTE_FALLBACK"] = "DISPUTE_FALLBACK"
    dispute_id: str
    proposal_id: str | None = None
    reason: str


class FileChunkNotice(ServerFrame):
    """Declared upstream, never sent (file transfers are disabled)."""

    type: Literal["FILE_CHUNK"] = "FILE_CHUNK"
    from_: str = Field(alias="from")
    to: str
    content: str


SERVER_MODELS: dict[str, type[ServerFrame]] = {
    "CHALLENGE": Challenge,
    "CAPTCHA_CHALLENGE": CaptchaChallenge,
    "WELCOME": Welcome,
    "MSG": ServerMsg,
    "JOINED": Joined,
    "LEFT": Left,
    "AGENT_JOINED": AgentJoined,
    "AGENT_LEFT": AgentLeft,
    "CHANNELS": Channels,
    "AGENTS": Agents,
    "NICK_CHANGED": NickChanged,
    "PRESENCE_CHANGED": PresenceChanged,
    "TYPING": TypingNotice,
    "FLOOR_CLAIMED": FloorClaimed,
    "YIELD": Yield,
    "PONG": Pong,
    "ERROR": Error,
    "SESSION_DISPLACED": SessionDisplaced,
    "SKILLS_REGISTERED": SkillsRegistered,
    "SEARCH_RESULTS": SearchResults,
    "PROPOSAL": ProposalNotice,
    "ACCEPT": ProposalUpdate,
    "REJECT": ProposalUpdate,
    "COMPLETE": ProposalUpdate,
    "DISPUTE": ProposalUpdate,
    "VERIFY_REQUEST": VerifyRequestNotice,
    "VERIFY_SUCCESS": VerifySuccess,
    "VERIFY_FAILED": VerifyFailed,
    "ADMIN_RESULT": AdminResult,
    "MOTD_UPDATE": MotdUpdate,
    "KICKED": Kicked,
    "BANNED": Banned,
    "DISPUTE_INTENT_ACK": DisputeIntentAck,
    "DISPUTE_REVEALED": DisputeRevealed,
    "PANEL_FORMED": PanelFormed,
    "ARBITER_ASSIGNED": ArbiterAssigned,
    "EVIDENCE_RECEIVED": EvidenceReceived,
    "CASE_READY": CaseReady,
    "VERDICT": Verdict,
    "SETTLEMENT_COMPLETE": SettlementComplete,
    "DISPUTE_FALLBACK": DisputeFallback,
    "FILE_CHUNK": FileChunkNotice,
}
