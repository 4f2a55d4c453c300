"""Client → server frames, each described once: a model whose fields carry upstream's checks.

Each class is the whole description of one frame type: its docstring says what the frame
does, its fields say what it carries, and the :class:`~.rules.Rule` objects on a field say
what upstream's validator demands of it and the exact ``INVALID_MSG`` text it answers, in
the order upstream checks them (fields are checked top to bottom). From these classes:

- :data:`CLIENT_CHECKS` is compiled once at import, and the decoder runs it on every frame
  (:func:`~.codec.validate_client_dict`), so the server enforces exactly these rules;
- :mod:`.reference` renders them as the "Client frames" section of
  owl/reference/agentchat-protocol.md (a test keeps the two equal);
- :func:`~.codec.decode_client_frame` returns the typed model (no coercion: upstream
  forwards values as sent). Unknown fields are kept (``extra="allow"``): upstream ignores
  them and the server never forwards them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from agentctl_swarm.chat.protocol.frame import Frame
from agentctl_swarm.chat.protocol.json_rules import js_is_number
from agentctl_swarm.chat.protocol.rules import (
    ADMIN_KEY,
    CHANNEL,
    DISPUTE_ID,
    MAX_CONTENT_CHARS,
    MAX_STATUS_TEXT,
    PRESENCE_STATUSES,
    PROPOSAL_ID,
    PUBKEY,
    STAKE,
    VERDICTS,
    Rule,
    either_field,
    if_present,
    if_truthy,
    is_agent,
    is_bool,
    is_list,
    is_query,
    is_relative_expiry,
    is_str,
    is_target,
    is_valid_channel,
    is_valid_name,
    is_valid_nick_chars,
    length_between,
    one_of,
    required_str,
    signed,
    skills_have_capability,
    truthy,
    unless_null,
)


class ClientFrame(Frame):
    """A frame a client sends. ``frame_rules`` check the frame as a whole, first."""

    frame_rules: ClassVar[tuple[Rule, ...]] = ()


def _rule(test: Callable[[Any], bool], error: str, needs: str) -> Rule:
    return Rule(test, error, needs)


# ---- handshake


class Identify(ClientFrame):
    """Say who you are. With ``pubkey`` a CHALLENGE follows; without one the agent is
    ephemeral (a random id, read-only) and WELCOME comes at once."""

    type: Literal["IDENTIFY"] = "IDENTIFY"
    name: Annotated[str, _rule(is_valid_name, "Invalid agent name", "1-32 of `[A-Za-z0-9_-]`")]
    pubkey: Annotated[str | None, PUBKEY] = None


class VerifyIdentity(ClientFrame):
    """Answer a CHALLENGE: ``signature`` over ``AGENTCHAT_AUTH|nonce|challenge_id|timestamp``."""

    type: Literal["VERIFY_IDENTITY"] = "VERIFY_IDENTITY"
    challenge_id: Annotated[
        str, _rule(required_str, "Missing or invalid challenge_id", "a non-empty string")
    ]
    signature: Annotated[
        str, _rule(required_str, "Missing or invalid signature", "a non-empty string")
    ]
    timestamp: Annotated[
        int | float,
        _rule(
            lambda v: truthy(v) and js_is_number(v),
            "Missing or invalid timestamp",
            "a non-zero number",
        ),
    ]


class CaptchaResponse(ClientFrame):
    """Answer a CAPTCHA_CHALLENGE (this server never sends one)."""

    type: Literal["CAPTCHA_RESPONSE"] = "CAPTCHA_RESPONSE"
    captcha_id: Annotated[
        str, _rule(required_str, "Missing or invalid captcha_id", "a non-empty string")
    ]
    answer: Annotated[str, _rule(required_str, "Missing or invalid answer", "a non-empty string")]


# ---- channels


class Join(ClientFrame):
    """Join a channel; JOINED and the channel's replay buffer follow."""

    type: Literal["JOIN"] = "JOIN"
    channel: Annotated[str, CHANNEL]


class Leave(ClientFrame):
    """Leave a channel; LEFT follows (nothing if the channel does not exist)."""

    type: Literal["LEAVE"] = "LEAVE"
    channel: Annotated[str, CHANNEL]


class ListChannels(ClientFrame):
    """Ask for the public channels (works before IDENTIFY too)."""

    type: Literal["LIST_CHANNELS"] = "LIST_CHANNELS"


class ListAgents(ClientFrame):
    """Ask who is in a channel."""

    type: Literal["LIST_AGENTS"] = "LIST_AGENTS"
    channel: Annotated[str, CHANNEL]


class CreateChannel(ClientFrame):
    """Create a channel (verified agents only); the creator joins it."""

    type: Literal["CREATE_CHANNEL"] = "CREATE_CHANNEL"
    channel: Annotated[str, CHANNEL]
    invite_only: Any = None
    verified_only: Any = None


class Invite(ClientFrame):
    """Invite an agent to an invite-only channel the sender is in."""

    type: Literal["INVITE"] = "INVITE"
    channel: Annotated[str, CHANNEL]
    agent: Annotated[
        str,
        _rule(lambda v: truthy(v) and is_agent(v), "Invalid agent target", "`@id`"),
    ]


# ---- messages and presence


class Msg(ClientFrame):
    """Post to a channel (every member, the sender included, gets it) or to ``@id``."""

    type: Literal["MSG"] = "MSG"
    to: Annotated[
        str,
        _rule(truthy, "Missing target", "present"),
        _rule(is_target, "Invalid target (must start with # or @)", "`#channel` or `@id`"),
    ]
    content: Annotated[
        str,
        _rule(is_str, "Missing or invalid content", "a string"),
        _rule(
            length_between(0, MAX_CONTENT_CHARS),
            "Content too long (max 2MB)",
            "at most 2 Mi UTF-16 units",
        ),
    ]
    sig: Annotated[
        str | None,
        _rule(if_present(is_str), "Invalid signature format", "a string when present (not null)"),
    ] = None
    in_reply_to: Any = None
    ts: Any = None


class FileChunk(ClientFrame):
    """A file transfer piece (always refused: file transfers are disabled)."""

    type: Literal["FILE_CHUNK"] = "FILE_CHUNK"
    to: Annotated[
        str,
        _rule(truthy, "Missing target", "present"),
        _rule(is_agent, "FILE_CHUNK only supports DM targets (@agent)", "`@id`"),
    ]
    content: Annotated[
        str,
        _rule(is_str, "Missing or invalid content", "a string"),
        _rule(
            length_between(0, MAX_CONTENT_CHARS),
            "FILE_CHUNK too large (max 2MB)",
            "at most 2 Mi UTF-16 units",
        ),
    ]


class Ping(ClientFrame):
    """App-level keepalive; PONG follows (works before IDENTIFY too)."""

    type: Literal["PING"] = "PING"


class SetNick(ClientFrame):
    """Change the display name (once per 30 s; some names are reserved)."""

    type: Literal["SET_NICK"] = "SET_NICK"
    nick: Annotated[
        str,
        _rule(required_str, "Missing or invalid nick", "a non-empty string"),
        _rule(length_between(1, 24), "Nick must be 1-24 characters", "1-24 chars"),
        _rule(
            is_valid_nick_chars,
            "Nick must contain only alphanumeric characters, hyphens, and underscores",
            "only `[A-Za-z0-9_-]`",
        ),
    ]


class SetPresence(ClientFrame):
    """Set presence (and an optional status text) for the agent's co-members to see."""

    type: Literal["SET_PRESENCE"] = "SET_PRESENCE"
    status: Annotated[
        str,
        _rule(
            one_of(PRESENCE_STATUSES),
            "Invalid presence status. Must be one of: " + ", ".join(PRESENCE_STATUSES),
            " / ".join(PRESENCE_STATUSES),
        ),
    ]
    status_text: Annotated[
        str | None,
        _rule(if_present(is_str), "status_text must be a string", "a string when present"),
        _rule(
            if_truthy(length_between(0, MAX_STATUS_TEXT)),
            "status_text too long (max 100 chars)",
            "at most 100 chars",
        ),
    ] = None


class Typing(ClientFrame):
    """Tell a channel's other members that the agent is typing."""

    type: Literal["TYPING"] = "TYPING"
    channel: Annotated[str, CHANNEL]


class RespondingTo(ClientFrame):
    """Claim the floor before answering ``msg_id`` (the earliest ``started_at`` wins)."""

    type: Literal["RESPONDING_TO"] = "RESPONDING_TO"
    msg_id: Annotated[str, _rule(required_str, "Missing or invalid msg_id", "a non-empty string")]
    channel: Annotated[
        str,
        _rule(
            lambda v: truthy(v) and is_valid_channel(v),
            "Missing or invalid channel",
            "a channel name",
        ),
    ]
    started_at: Annotated[
        int | float,
        _rule(
            lambda v: truthy(v) and js_is_number(v),
            "Missing or invalid started_at timestamp",
            "a non-zero number (ms)",
        ),
    ]


# ---- marketplace


class RegisterSkills(ClientFrame):
    """Advertise the agent's skills (replaces its list; signed)."""

    type: Literal["REGISTER_SKILLS"] = "REGISTER_SKILLS"
    skills: Annotated[
        list[Any],
        _rule(is_list, "Missing or invalid skills array", "an array"),
        _rule(bool, "Skills array cannot be empty", "not empty"),
        _rule(
            skills_have_capability,
            "Each skill must have a capability string",
            "objects with a non-empty `capability` string",
        ),
    ]
    sig: Annotated[str, signed("Skill registration must be signed")]


class SearchSkills(ClientFrame):
    """Search registered skills: ``capability`` substring, ``max_rate``, ``currency``,
    ``limit``."""

    type: Literal["SEARCH_SKILLS"] = "SEARCH_SKILLS"
    query: Annotated[
        Any, _rule(is_query, "Missing or invalid query object", "a non-empty object or array")
    ]
    query_id: Any = None


class Proposal(ClientFrame):
    """Offer a task to an online agent (signed); ``expires`` is seconds from now."""

    type: Literal["PROPOSAL"] = "PROPOSAL"
    to: Annotated[
        str,
        _rule(truthy, "Missing target (to)", "present"),
        _rule(is_agent, "Proposals must be sent to an agent (@id)", "`@id`"),
    ]
    task: Annotated[
        str, _rule(required_str, "Missing or invalid task description", "a non-empty string")
    ]
    sig: Annotated[str, signed("Proposals must be signed")]
    expires: Annotated[
        Any,
        _rule(
            if_present(js_is_number), "expires must be a number (seconds)", "a number when present"
        ),
        _rule(
            is_relative_expiry,
            "expires is out of range",
            "small enough that now + expires is a finite time (ours, not upstream's)",
        ),
    ] = None
    elo_stake: Annotated[Any, STAKE] = None
    amount: Any = None
    currency: Any = None
    payment_code: Any = None
    terms: Any = None
    capability: Any = None


class Accept(ClientFrame):
    """Accept a proposal made to the agent (signed); stakes are escrowed."""

    type: Literal["ACCEPT"] = "ACCEPT"
    proposal_id: Annotated[Any, PROPOSAL_ID]
    sig: Annotated[str, signed("Accept must be signed")]
    elo_stake: Annotated[Any, STAKE] = None
    payment_code: Any = None


class Reject(ClientFrame):
    """Reject a proposal made to the agent (signed)."""

    type: Literal["REJECT"] = "REJECT"
    proposal_id: Annotated[Any, PROPOSAL_ID]
    sig: Annotated[str, signed("Reject must be signed")]
    reason: Any = None


class Complete(ClientFrame):
    """Mark an accepted proposal done (signed); ratings change."""

    type: Literal["COMPLETE"] = "COMPLETE"
    proposal_id: Annotated[Any, PROPOSAL_ID]
    sig: Annotated[str, signed("Complete must be signed")]
    proof: Any = None


class Dispute(ClientFrame):
    """Dispute an accepted proposal (signed); the other party is at fault."""

    type: Literal["DISPUTE"] = "DISPUTE"
    proposal_id: Annotated[Any, PROPOSAL_ID]
    reason: Annotated[
        str, _rule(required_str, "Missing or invalid dispute reason", "a non-empty string")
    ]
    sig: Annotated[str, signed("Dispute must be signed")]


# ---- Agentcourt (validated as upstream; this server refuses them after validation)


class DisputeIntent(ClientFrame):
    """Agentcourt step 1: commit to a secret nonce."""

    type: Literal["DISPUTE_INTENT"] = "DISPUTE_INTENT"
    proposal_id: Annotated[Any, PROPOSAL_ID]
    reason: Annotated[str, _rule(required_str, "Missing or invalid reason", "a non-empty string")]
    commitment: Annotated[
        str,
        _rule(required_str, "Missing or invalid commitment hash", "a non-empty string"),
    ]
    sig: Annotated[str, signed("Dispute intent must be signed")]


class DisputeReveal(ClientFrame):
    """Agentcourt step 2: reveal the nonce."""

    type: Literal["DISPUTE_REVEAL"] = "DISPUTE_REVEAL"
    proposal_id: Annotated[Any, PROPOSAL_ID]
    nonce: Annotated[str, _rule(required_str, "Missing or invalid nonce", "a non-empty string")]
    sig: Annotated[str, signed("Dispute reveal must be signed")]


class Evidence(ClientFrame):
    """Agentcourt: a party's evidence."""

    type: Literal["EVIDENCE"] = "EVIDENCE"
    dispute_id: Annotated[str, DISPUTE_ID]
    items: Annotated[list[Any], _rule(is_list, "Missing or invalid items array", "an array")]
    statement: Annotated[str, _rule(is_str, "Missing or invalid statement", "a string")]
    sig: Annotated[str, signed("Evidence must be signed")]


class ArbiterAccept(ClientFrame):
    """Agentcourt: an arbiter takes the case."""

    type: Literal["ARBITER_ACCEPT"] = "ARBITER_ACCEPT"
    dispute_id: Annotated[str, DISPUTE_ID]
    sig: Annotated[str, signed("Arbiter accept must be signed")]


class ArbiterDecline(ClientFrame):
    """Agentcourt: an arbiter declines."""

    type: Literal["ARBITER_DECLINE"] = "ARBITER_DECLINE"
    dispute_id: Annotated[str, DISPUTE_ID]
    reason: Any = None
    sig: Any = None


class ArbiterVote(ClientFrame):
    """Agentcourt: an arbiter's vote."""

    type: Literal["ARBITER_VOTE"] = "ARBITER_VOTE"
    dispute_id: Annotated[str, DISPUTE_ID]
    verdict: Annotated[
        str,
        _rule(
            one_of(VERDICTS),
            "Invalid verdict (must be disputant, respondent, or mutual)",
            " / ".join(VERDICTS),
        ),
    ]
    reasoning: Annotated[str, _rule(is_str, "Missing or invalid reasoning", "a string")]
    sig: Annotated[str, signed("Arbiter vote must be signed")]


# ---- peer verification


class VerifyRequest(ClientFrame):
    """Ask an online agent to prove it holds its key by signing ``nonce``."""

    type: Literal["VERIFY_REQUEST"] = "VERIFY_REQUEST"
    target: Annotated[
        str,
        _rule(truthy, "Missing target agent", "present"),
        _rule(is_agent, "Target must be an agent (@id)", "`@id`"),
    ]
    nonce: Annotated[
        str,
        _rule(required_str, "Missing or invalid nonce", "a non-empty string"),
        _rule(length_between(16, 128), "Nonce must be 16-128 characters", "16-128 chars"),
    ]


class VerifyResponse(ClientFrame):
    """The target's answer to a VERIFY_REQUEST: ``sig`` over the raw nonce."""

    type: Literal["VERIFY_RESPONSE"] = "VERIFY_RESPONSE"
    request_id: Annotated[Any, _rule(truthy, "Missing request_id", "present")]
    nonce: Annotated[str, _rule(required_str, "Missing or invalid nonce", "a non-empty string")]
    sig: Annotated[str, _rule(required_str, "Missing or invalid signature", "a non-empty string")]


# ---- administration


class AdminApprove(ClientFrame):
    """Allowlist a key (this server has no allowlist and says so)."""

    type: Literal["ADMIN_APPROVE"] = "ADMIN_APPROVE"
    pubkey: Annotated[str, _rule(required_str, "Missing or invalid pubkey", "a non-empty string")]
    admin_key: Annotated[str, ADMIN_KEY]
    note: Any = None


class AdminRevoke(ClientFrame):
    """Remove a key from the allowlist (no allowlist here)."""

    frame_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            either_field("pubkey", "agent_id"),
            "Missing pubkey or agent_id",
            "`pubkey` or `agent_id`",
            whole=True,
        ),
    )
    type: Literal["ADMIN_REVOKE"] = "ADMIN_REVOKE"
    admin_key: Annotated[str, ADMIN_KEY]
    pubkey: Any = None
    agent_id: Any = None


class AdminList(ClientFrame):
    """List the allowlist (no allowlist here)."""

    type: Literal["ADMIN_LIST"] = "ADMIN_LIST"
    admin_key: Annotated[str, ADMIN_KEY]


_AGENT_ID = _rule(required_str, "Missing or invalid agent_id", "a non-empty string")


class AdminKick(ClientFrame):
    """Disconnect an agent."""

    type: Literal["ADMIN_KICK"] = "ADMIN_KICK"
    agent_id: Annotated[str, _AGENT_ID]
    admin_key: Annotated[str, ADMIN_KEY]
    reason: Any = None


class AdminBan(ClientFrame):
    """Ban an agent id (and disconnect it if online)."""

    type: Literal["ADMIN_BAN"] = "ADMIN_BAN"
    agent_id: Annotated[str, _AGENT_ID]
    admin_key: Annotated[str, ADMIN_KEY]
    reason: Any = None


class AdminUnban(ClientFrame):
    """Lift a ban."""

    type: Literal["ADMIN_UNBAN"] = "ADMIN_UNBAN"
    agent_id: Annotated[str, _AGENT_ID]
    admin_key: Annotated[str, ADMIN_KEY]


class AdminMotd(ClientFrame):
    """Set (or clear) the message of the day; ``kick`` also disconnects everyone else."""

    type: Literal["ADMIN_MOTD"] = "ADMIN_MOTD"
    admin_key: Annotated[str, ADMIN_KEY]
    motd: Annotated[
        str | None,
        _rule(unless_null(is_str), "motd must be a string or null", "a string or null"),
    ] = None
    kick: Any = None


class AdminVerify(ClientFrame):
    """Grant or revoke an agent's ``verified`` flag."""

    type: Literal["ADMIN_VERIFY"] = "ADMIN_VERIFY"
    admin_key: Annotated[str, ADMIN_KEY]
    agent_id: Annotated[str, _rule(required_str, "Missing agent_id", "a non-empty string")]
    verified: Annotated[bool, _rule(is_bool, "verified must be a boolean", "true or false")]


#: Every client frame model, in the order of the reference document.
CLIENT_FRAMES: tuple[type[ClientFrame], ...] = (
    Identify,
    VerifyIdentity,
    CaptchaResponse,
    Join,
    Leave,
    Msg,
    ListChannels,
    ListAgents,
    CreateChannel,
    Invite,
    Ping,
    SetNick,
    SetPresence,
    Typing,
    RespondingTo,
    RegisterSkills,
    SearchSkills,
    Proposal,
    Accept,
    Reject,
    Complete,
    Dispute,
    DisputeIntent,
    DisputeReveal,
    Evidence,
    ArbiterAccept,
    ArbiterDecline,
    ArbiterVote,
    VerifyRequest,
    VerifyResponse,
    FileChunk,
    AdminApprove,
    AdminRevoke,
    AdminList,
    AdminKick,
    AdminBan,
    AdminUnban,
    AdminMotd,
    AdminVerify,
)

ClientFrameModel = (
    Identify
    | VerifyIdentity
    | CaptchaResponse
    | Join
    | Leave
    | Msg
    | ListChannels
    | ListAgents
    | CreateChannel
    | Invite
    | Ping
    | SetNick
    | SetPresence
    | Typing
    | RespondingTo
    | RegisterSkills
    | SearchSkills
    | Proposal
    | Accept
    | Reject
    | Complete
    | Dispute
    | DisputeIntent
    | DisputeReveal
    | Evidence
    | ArbiterAccept
    | ArbiterDecline
    | ArbiterVote
    | VerifyRequest
    | VerifyResponse
    | FileChunk
    | AdminApprove
    | AdminRevoke
    | AdminList
    | AdminKick
    | AdminBan
    | AdminUnban
    | AdminMotd
    | AdminVerify
)


def frame_type(model: type[Frame]) -> str:
    """The ``type`` string a model describes."""
    return str(model.model_fields["type"].default)


def rules_of(model: type[ClientFrame]) -> list[tuple[str | None, Rule]]:
    """``(field or None for a frame rule, rule)`` in the order they are checked."""
    out: list[tuple[str | None, Rule]] = [(None, r) for r in model.frame_rules]
    for name, info in model.model_fields.items():
        key = info.alias or name
        out.extend((key, r) for r in info.metadata if isinstance(r, Rule))
    return out


CLIENT_MODELS: dict[str, type[ClientFrame]] = {frame_type(m): m for m in CLIENT_FRAMES}

#: type -> ``(field or None, test, error)`` to run in order; compiled from the models.
CLIENT_CHECKS: dict[str, tuple[tuple[str | None, Callable[[Any], bool], str], ...]] = {
    frame_type(m): tuple((key, r.test, r.error) for key, r in rules_of(m)) for m in CLIENT_FRAMES
}
