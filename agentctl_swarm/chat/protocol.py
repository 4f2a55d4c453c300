"""AgentChat wire protocol: frames, validation, canonical signing strings (pure, no I/O).

This module is the shared contract between the chat server and the client side
(client library, agentchat-mcp, ``agentctl chat``). It follows upstream AgentChat
(``tjamescouch/agentchat`` 0.36.19, see agentchat-protocol.md) literally:

* ``decode_client_frame`` applies upstream's validator with JavaScript truthiness and
  returns the same ``INVALID_MSG`` texts ("Invalid JSON", "Missing message type",
  "Unknown message type: X", ...), raised as :class:`ProtocolError`.
* ``sign_string_*`` build the exact strings that get Ed25519-signed (§6), including
  JavaScript's number-to-string and ``x || ''`` rules, so signatures made by either
  side verify on the other.
* Typed pydantic models exist for every client frame (§3) and server frame (§4);
  unknown fields are kept (``extra="allow"``) because upstream ignores them.

One deliberate difference: a JSON ``null`` frame crashes upstream's validator; here it
is answered like any other frame without a type ("Missing message type").
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentctl_swarm.chat.identity import is_valid_pubkey

# --------------------------------------------------------------------------- constants

DEFAULT_PORT = 6667
#: Largest WebSocket message the server accepts; bigger ones close the socket with 1009.
MAX_PAYLOAD = 2 * 1024 * 1024
#: Frames whose text is longer than this (in UTF-16 units, like JS) get INVALID_MSG.
MAX_FRAME_CHARS = 2 * 1024 * 1024
MAX_CONTENT_CHARS = 2 * 1024 * 1024
RATE_LIMIT_MS = 1000  # one MSG per second per socket
FLOOD_WINDOW_MS = 10_000
FLOOD_MAX_PRE_AUTH = 10
FLOOD_MAX_POST_AUTH = 60
CHALLENGE_TIMEOUT_MS = 60_000
HEARTBEAT_INTERVAL_MS = 30_000
HEARTBEAT_GRACE_MS = 10_000  # dropped after 2 x interval + grace = 70 s without pong
CLAIM_TTL_MS = 45_000
NICK_COOLDOWN_MS = 30_000
VERIFY_REQUEST_TIMEOUT_MS = 30_000
TAKEOVER_BACKOFF_MS = 5_000
TAKEOVER_BACKOFF_MAX_MS = 60_000
TAKEOVER_WINDOW_MS = 5 * 60_000
COMPLETE_MIN_AGE_MS = 60_000
DEFAULT_BUFFER_SIZE = 20  # upstream CLI default
DEFAULT_RATING = 1200
RATING_FLOOR = 100
CALLBACK_MAX_SECONDS = 3600
CALLBACK_MAX_PENDING = 50
CALLBACK_MAX_PAYLOAD = 500
DEFAULT_CHANNELS: tuple[str, ...] = (
    "#general",
    "#engineering",
    "#pull-requests",
    "#help",
    "#love",
    "#agents",
    "#discovery",
    "#bounties",
)
VERIFIED_ONLY_CHANNELS: tuple[str, ...] = ("#ops",)
RESERVED_NICKS = frozenset(
    {
        "server",
        "admin",
        "system",
        "root",
        "moderator",
        "mod",
        "bot",
        "agentchat",
        "operator",
        "shadow",
        "god",
        "jc",
    }
)
PRESENCE_STATUSES: tuple[str, ...] = ("online", "away", "busy", "offline", "listening")
VERDICTS: tuple[str, ...] = ("disputant", "respondent", "mutual")

# Close codes the server uses.
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


class ErrorCode:
    """``ERROR.code`` values (§7)."""

    AUTH_REQUIRED = "AUTH_REQUIRED"
    CHANNEL_NOT_FOUND = "CHANNEL_NOT_FOUND"
    NOT_INVITED = "NOT_INVITED"
    INVALID_MSG = "INVALID_MSG"
    RATE_LIMITED = "RATE_LIMITED"
    AGENT_NOT_FOUND = "AGENT_NOT_FOUND"
    CHANNEL_EXISTS = "CHANNEL_EXISTS"
    INVALID_NAME = "INVALID_NAME"
    PROPOSAL_NOT_FOUND = "PROPOSAL_NOT_FOUND"
    PROPOSAL_EXPIRED = "PROPOSAL_EXPIRED"
    INVALID_PROPOSAL = "INVALID_PROPOSAL"
    SIGNATURE_REQUIRED = "SIGNATURE_REQUIRED"
    NOT_PROPOSAL_PARTY = "NOT_PROPOSAL_PARTY"
    INSUFFICIENT_REPUTATION = "INSUFFICIENT_REPUTATION"
    INVALID_STAKE = "INVALID_STAKE"
    VERIFICATION_FAILED = "VERIFICATION_FAILED"
    VERIFICATION_EXPIRED = "VERIFICATION_EXPIRED"
    NO_PUBKEY = "NO_PUBKEY"
    NOT_ALLOWED = "NOT_ALLOWED"
    DISPUTE_NOT_FOUND = "DISPUTE_NOT_FOUND"
    DISPUTE_INVALID_PHASE = "DISPUTE_INVALID_PHASE"
    DISPUTE_COMMITMENT_MISMATCH = "DISPUTE_COMMITMENT_MISMATCH"
    DISPUTE_NOT_PARTY = "DISPUTE_NOT_PARTY"
    DISPUTE_NOT_ARBITER = "DISPUTE_NOT_ARBITER"
    DISPUTE_DEADLINE_PASSED = "DISPUTE_DEADLINE_PASSED"
    DISPUTE_ALREADY_EXISTS = "DISPUTE_ALREADY_EXISTS"
    INSUFFICIENT_ARBITERS = "INSUFFICIENT_ARBITERS"
    BANNED = "BANNED"
    LURK_MODE = "LURK_MODE"
    CAPTCHA_FAILED = "CAPTCHA_FAILED"
    CAPTCHA_EXPIRED = "CAPTCHA_EXPIRED"
    DM_AGE_GATE = "DM_AGE_GATE"


class ProtocolError(Exception):
    """A frame failed validation; ``code``/``message`` are what goes into ``ERROR``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- JS helpers


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness: '', 0, NaN, null, false are falsy; [] and {} are truthy."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value != ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return not (value == 0 or (isinstance(value, float) and math.isnan(value)))
    return True


def js_is_number(value: Any) -> bool:
    """``typeof value === 'number'``."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def js_len(text: str) -> int:
    """``text.length`` in JavaScript: UTF-16 code units."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def js_number_str(value: float) -> str:
    """``String(n)`` for a JavaScript number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) < 10**21:
            return str(value)
        value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if 1e-7 <= abs(value) < 1e21:
        text = repr(value)
        if "e" not in text:
            return text
        # Python switches to exponent form earlier than JS (1e-05 vs 0.00001).
        return format(value, "f").rstrip("0").rstrip(".") if abs(value) >= 1e-6 else _js_exp(text)
    return _js_exp(repr(value))


def _js_exp(text: str) -> str:
    mantissa, _, exp = text.partition("e")
    sign = "-" if exp.startswith("-") else "+"
    return f"{mantissa}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"


def js_str(value: Any) -> str:
    """``String(value)`` / template-literal conversion in JavaScript."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number_str(value)
    if isinstance(value, list):
        return ",".join("" if v is None else js_str(v) for v in value)
    return "[object Object]"


def js_json(value: Any) -> str:
    """``JSON.stringify(value)`` for JSON-shaped data: compact, keys in insertion order."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return frame_dict(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")


def is_valid_name(name: Any) -> bool:
    """Agent names: 1-32 chars of ``[A-Za-z0-9_-]``."""
    return isinstance(name, str) and 1 <= len(name) <= 32 and _NAME_RE.fullmatch(name) is not None


def is_valid_channel(channel: Any) -> bool:
    """Channel names: ``#`` then 1-31 chars of ``[A-Za-z0-9_-]``."""
    if not isinstance(channel, str) or not channel.startswith("#"):
        return False
    rest = channel[1:]
    return 1 <= len(rest) <= 31 and _NAME_RE.fullmatch(rest) is not None


def is_channel(target: Any) -> bool:
    """A ``#channel`` target."""
    return isinstance(target, str) and target.startswith("#")


def is_agent(target: Any) -> bool:
    """An ``@id`` target."""
    return isinstance(target, str) and target.startswith("@")


# --------------------------------------------------------------------------- signing strings


def auth_signing_string(nonce: str, challenge_id: str, timestamp: int) -> str:
    """What VERIFY_IDENTITY signs: ``AGENTCHAT_AUTH|<nonce>|<challenge_id>|<timestamp>``."""
    return f"AGENTCHAT_AUTH|{js_str(nonce)}|{js_str(challenge_id)}|{js_str(timestamp)}"


def _or_empty(value: Any) -> str:
    return js_str(value) if js_truthy(value) else ""


def sign_string_proposal(
    to: str,
    task: str,
    amount: Any = None,
    currency: Any = None,
    payment_code: Any = None,
    expires: Any = None,
    elo_stake: Any = None,
) -> str:
    """PROPOSAL: ``to|task|amount|currency|payment_code|expires|elo_stake``; falsy -> ''.

    ``expires`` is the relative seconds value as sent, not the absolute time.
    """
    fields = [to, task, amount, currency, payment_code, expires, elo_stake]
    head = [js_str(to) if to is not None else "", js_str(task) if task is not None else ""]
    return "|".join(head + [_or_empty(v) for v in fields[2:]])


def sign_string_accept(proposal_id: str, payment_code: Any = None, elo_stake: Any = None) -> str:
    """ACCEPT: ``ACCEPT|<proposal_id>|<payment_code>|<elo_stake>`` (falsy -> '')."""
    return f"ACCEPT|{js_str(proposal_id)}|{_or_empty(payment_code)}|{_or_empty(elo_stake)}"


def sign_string_reject(proposal_id: str, reason: Any = None) -> str:
    """REJECT: ``REJECT|<proposal_id>|<reason>``."""
    return f"REJECT|{js_str(proposal_id)}|{_or_empty(reason)}"


def sign_string_complete(proposal_id: str, proof: Any = None) -> str:
    """COMPLETE: ``COMPLETE|<proposal_id>|<proof>``."""
    return f"COMPLETE|{js_str(proposal_id)}|{_or_empty(proof)}"


def sign_string_dispute(proposal_id: str, reason: str) -> str:
    """DISPUTE: ``DISPUTE|<proposal_id>|<reason>``."""
    return f"DISPUTE|{js_str(proposal_id)}|{js_str(reason)}"


def sign_string_register_skills(skills: list[Any]) -> str:
    """REGISTER_SKILLS: ``REGISTER_SKILLS|<sha256 hex of JSON.stringify(skills)>``."""
    digest = hashlib.sha256(js_json(skills).encode("utf-8")).hexdigest()
    return f"REGISTER_SKILLS|{digest}"


def sign_string_dispute_intent(proposal_id: str, reason: str, commitment: str) -> str:
    """DISPUTE_INTENT: ``DISPUTE_INTENT|<proposal_id>|<reason>|<commitment>``."""
    return f"DISPUTE_INTENT|{js_str(proposal_id)}|{js_str(reason)}|{js_str(commitment)}"


def sign_string_dispute_reveal(proposal_id: str, nonce: str) -> str:
    """DISPUTE_REVEAL: ``DISPUTE_REVEAL|<proposal_id>|<nonce>``."""
    return f"DISPUTE_REVEAL|{js_str(proposal_id)}|{js_str(nonce)}"


def sign_string_evidence(dispute_id: str, items: list[Any]) -> str:
    """EVIDENCE: ``EVIDENCE|<dispute_id>|<sha256 hex of JSON.stringify(items)>``."""
    digest = hashlib.sha256(js_json(items).encode("utf-8")).hexdigest()
    return f"EVIDENCE|{js_str(dispute_id)}|{digest}"


def sign_string_arbiter_accept(dispute_id: str) -> str:
    """ARBITER_ACCEPT: ``ARBITER_ACCEPT|<dispute_id>``."""
    return f"ARBITER_ACCEPT|{js_str(dispute_id)}"


def sign_string_arbiter_decline(dispute_id: str, reason: Any = None) -> str:
    """ARBITER_DECLINE: ``ARBITER_DECLINE|<dispute_id>|<reason>``."""
    return f"ARBITER_DECLINE|{js_str(dispute_id)}|{_or_empty(reason)}"


def sign_string_arbiter_vote(dispute_id: str, verdict: str) -> str:
    """ARBITER_VOTE: ``VOTE|<dispute_id>|<verdict>``."""
    return f"VOTE|{js_str(dispute_id)}|{js_str(verdict)}"


def sign_string_verify_response(nonce: str) -> str:
    """VERIFY_RESPONSE signs the raw nonce."""
    return nonce


def sign_string_msg(to: str, content: str, ts: int) -> str:
    """Optional MSG ``sig``: ``JSON.stringify({to, content, ts})`` (relayed, never checked)."""
    return js_json({"to": to, "content": content, "ts": ts})


# --------------------------------------------------------------------------- models


class Frame(BaseModel):
    """Base of every frame model; extra fields are kept, as upstream ignores them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    type: str


# ---- client -> server (§3)


class Identify(Frame):
    type: Literal["IDENTIFY"] = "IDENTIFY"
    name: str
    pubkey: str | None = None


class VerifyIdentity(Frame):
    type: Literal["VERIFY_IDENTITY"] = "VERIFY_IDENTITY"
    challenge_id: str
    signature: str
    timestamp: int | float


class CaptchaResponse(Frame):
    type: Literal["CAPTCHA_RESPONSE"] = "CAPTCHA_RESPONSE"
    captcha_id: str
    answer: str


class Join(Frame):
    type: Literal["JOIN"] = "JOIN"
    channel: str


class Leave(Frame):
    type: Literal["LEAVE"] = "LEAVE"
    channel: str


class Msg(Frame):
    type: Literal["MSG"] = "MSG"
    to: str
    content: str
    sig: str | None = None
    in_reply_to: Any = None
    ts: Any = None


class ListChannels(Frame):
    type: Literal["LIST_CHANNELS"] = "LIST_CHANNELS"


class ListAgents(Frame):
    type: Literal["LIST_AGENTS"] = "LIST_AGENTS"
    channel: str


class CreateChannel(Frame):
    type: Literal["CREATE_CHANNEL"] = "CREATE_CHANNEL"
    channel: str
    invite_only: Any = None
    verified_only: Any = None


class Invite(Frame):
    type: Literal["INVITE"] = "INVITE"
    channel: str
    agent: str


class Ping(Frame):
    type: Literal["PING"] = "PING"


class SetNick(Frame):
    type: Literal["SET_NICK"] = "SET_NICK"
    nick: str


class SetPresence(Frame):
    type: Literal["SET_PRESENCE"] = "SET_PRESENCE"
    status: str
    status_text: str | None = None


class Typing(Frame):
    type: Literal["TYPING"] = "TYPING"
    channel: str


class RespondingTo(Frame):
    type: Literal["RESPONDING_TO"] = "RESPONDING_TO"
    msg_id: str
    channel: str
    started_at: int | float


class Skill(BaseModel):
    """One advertised capability."""

    model_config = ConfigDict(extra="allow")
    capability: str
    description: Any = None
    rate: Any = None
    currency: Any = None


class RegisterSkills(Frame):
    type: Literal["REGISTER_SKILLS"] = "REGISTER_SKILLS"
    skills: list[Any]
    sig: str


class SearchSkills(Frame):
    type: Literal["SEARCH_SKILLS"] = "SEARCH_SKILLS"
    query: Any
    query_id: Any = None


class Proposal(Frame):
    type: Literal["PROPOSAL"] = "PROPOSAL"
    to: str
    task: str
    sig: str
    amount: Any = None
    currency: Any = None
    payment_code: Any = None
    terms: Any = None
    expires: Any = None
    elo_stake: Any = None
    capability: Any = None


class Accept(Frame):
    type: Literal["ACCEPT"] = "ACCEPT"
    proposal_id: Any
    sig: str
    elo_stake: Any = None
    payment_code: Any = None


class Reject(Frame):
    type: Literal["REJECT"] = "REJECT"
    proposal_id: Any
    sig: str
    reason: Any = None


class Complete(Frame):
    type: Literal["COMPLETE"] = "COMPLETE"
    proposal_id: Any
    sig: str
    proof: Any = None


class Dispute(Frame):
    type: Literal["DISPUTE"] = "DISPUTE"
    proposal_id: Any
    reason: str
    sig: str


class DisputeIntent(Frame):
    type: Literal["DISPUTE_INTENT"] = "DISPUTE_INTENT"
    proposal_id: Any
    reason: str
    commitment: str
    sig: str


class DisputeReveal(Frame):
    type: Literal["DISPUTE_REVEAL"] = "DISPUTE_REVEAL"
    proposal_id: Any
    nonce: str
    sig: str


class Evidence(Frame):
    type: Literal["EVIDENCE"] = "EVIDENCE"
    dispute_id: str
    items: list[Any]
    statement: str
    sig: str


class ArbiterAccept(Frame):
    type: Literal["ARBITER_ACCEPT"] = "ARBITER_ACCEPT"
    dispute_id: str
    sig: str


class ArbiterDecline(Frame):
    type: Literal["ARBITER_DECLINE"] = "ARBITER_DECLINE"
    dispute_id: str
    reason: Any = None
    sig: Any = None


class ArbiterVote(Frame):
    type: Literal["ARBITER_VOTE"] = "ARBITER_VOTE"
    dispute_id: str
    verdict: str
    reasoning: str
    sig: str


class VerifyRequest(Frame):
    type: Literal["VERIFY_REQUEST"] = "VERIFY_REQUEST"
    target: str
    nonce: str


class VerifyResponse(Frame):
    type: Literal["VERIFY_RESPONSE"] = "VERIFY_RESPONSE"
    request_id: Any
    nonce: str
    sig: str


class FileChunk(Frame):
    type: Literal["FILE_CHUNK"] = "FILE_CHUNK"
    to: str
    content: str


class AdminApprove(Frame):
    type: Literal["ADMIN_APPROVE"] = "ADMIN_APPROVE"
    pubkey: str
    admin_key: str
    note: Any = None


class AdminRevoke(Frame):
    type: Literal["ADMIN_REVOKE"] = "ADMIN_REVOKE"
    admin_key: str
    pubkey: Any = None
    agent_id: Any = None


class AdminList(Frame):
    type: Literal["ADMIN_LIST"] = "ADMIN_LIST"
    admin_key: str


class AdminKick(Frame):
    type: Literal["ADMIN_KICK"] = "ADMIN_KICK"
    agent_id: str
    admin_key: str
    reason: Any = None


class AdminBan(Frame):
    type: Literal["ADMIN_BAN"] = "ADMIN_BAN"
    agent_id: str
    admin_key: str
    reason: Any = None


class AdminUnban(Frame):
    type: Literal["ADMIN_UNBAN"] = "ADMIN_UNBAN"
    agent_id: str
    admin_key: str


class AdminMotd(Frame):
    type: Literal["ADMIN_MOTD"] = "ADMIN_MOTD"
    admin_key: str
    motd: str | None = None
    kick: Any = None


class AdminVerify(Frame):
    type: Literal["ADMIN_VERIFY"] = "ADMIN_VERIFY"
    agent_id: str
    admin_key: str
    verified: bool


ClientFrame = (
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

CLIENT_MODELS: dict[str, type[Frame]] = {
    m.model_fields["type"].default: m  # type: ignore[misc]
    for m in (
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
}

# ---- server -> client (§4)


class ServerFrame(Frame):
    """Every server frame carries ``ts`` (server clock, ms)."""

    ts: int = 0


class Challenge(ServerFrame):
    type: Literal["CHALLENGE"] = "CHALLENGE"
    challenge_id: str
    nonce: str
    expires_at: int


class CaptchaChallenge(ServerFrame):
    type: Literal["CAPTCHA_CHALLENGE"] = "CAPTCHA_CHALLENGE"
    captcha_id: str
    question: str
    hint: str | None = None
    expires_at: int


class Welcome(ServerFrame):
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
    type: Literal["JOINED"] = "JOINED"
    channel: str
    agents: list[Any]


class Left(ServerFrame):
    type: Literal["LEFT"] = "LEFT"
    channel: str


class AgentJoined(ServerFrame):
    type: Literal["AGENT_JOINED"] = "AGENT_JOINED"
    channel: str
    agent: str
    name: str | None = None
    verified: bool | None = None


class AgentLeft(ServerFrame):
    type: Literal["AGENT_LEFT"] = "AGENT_LEFT"
    channel: str
    agent: str
    name: str | None = None


class Channels(ServerFrame):
    type: Literal["CHANNELS"] = "CHANNELS"
    list: list[Any]


class Agents(ServerFrame):
    type: Literal["AGENTS"] = "AGENTS"
    channel: str
    list: list[Any]


class NickChanged(ServerFrame):
    type: Literal["NICK_CHANGED"] = "NICK_CHANGED"
    agent_id: str
    old_nick: str
    new_nick: str


class PresenceChanged(ServerFrame):
    type: Literal["PRESENCE_CHANGED"] = "PRESENCE_CHANGED"
    agent_id: str
    name: str | None = None
    presence: str
    status_text: str | None = None


class TypingNotice(ServerFrame):
    type: Literal["TYPING"] = "TYPING"
    from_: str = Field(alias="from")
    from_name: str | None = None
    channel: str


class FloorClaimed(ServerFrame):
    type: Literal["FLOOR_CLAIMED"] = "FLOOR_CLAIMED"
    msg_id: str
    channel: str
    holder: str
    holder_name: str | None = None
    started_at: int | float


class Yield(ServerFrame):
    type: Literal["YIELD"] = "YIELD"
    msg_id: str
    channel: str
    holder: str
    holder_started_at: int | float
    reason: str


class Pong(ServerFrame):
    type: Literal["PONG"] = "PONG"


class Error(ServerFrame):
    type: Literal["ERROR"] = "ERROR"
    code: str
    message: str


class SessionDisplaced(ServerFrame):
    type: Literal["SESSION_DISPLACED"] = "SESSION_DISPLACED"
    reason: str
    new_ip: str | None = None


class SkillsRegistered(ServerFrame):
    type: Literal["SKILLS_REGISTERED"] = "SKILLS_REGISTERED"
    agent_id: str
    skills_count: int
    registered_at: int


class SearchResults(ServerFrame):
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
    type: Literal["VERIFY_REQUEST"] = "VERIFY_REQUEST"
    request_id: str
    from_: str | None = Field(default=None, alias="from")
    nonce: str | None = None
    target: str | None = None
    status: str | None = None


class VerifySuccess(ServerFrame):
    type: Literal["VERIFY_SUCCESS"] = "VERIFY_SUCCESS"
    request_id: str
    agent: str | None = None
    pubkey: str | None = None
    verified: bool | None = None


class VerifyFailed(ServerFrame):
    type: Literal["VERIFY_FAILED"] = "VERIFY_FAILED"
    request_id: str
    target: str | None = None
    reason: str | None = None
    verified: bool | None = None


class AdminResult(ServerFrame):
    type: Literal["ADMIN_RESULT"] = "ADMIN_RESULT"
    action: str
    success: bool


class MotdUpdate(ServerFrame):
    type: Literal["MOTD_UPDATE"] = "MOTD_UPDATE"
    motd: str | None = None


class Kicked(ServerFrame):
    type: Literal["KICKED"] = "KICKED"
    reason: str | None = None


class Banned(ServerFrame):
    type: Literal["BANNED"] = "BANNED"
    reason: str | None = None


class DisputeIntentAck(ServerFrame):
    type: Literal["DISPUTE_INTENT_ACK"] = "DISPUTE_INTENT_ACK"
    dispute_id: str
    proposal_id: str
    server_nonce: str


class DisputeRevealed(ServerFrame):
    type: Literal["DISPUTE_REVEALED"] = "DISPUTE_REVEALED"
    dispute_id: str
    panel_size: int
    seed: str


class PanelFormed(ServerFrame):
    type: Literal["PANEL_FORMED"] = "PANEL_FORMED"
    dispute_id: str
    proposal_id: str
    arbiters: list[Any]


class ArbiterAssigned(ServerFrame):
    type: Literal["ARBITER_ASSIGNED"] = "ARBITER_ASSIGNED"
    dispute_id: str
    proposal_id: str


class EvidenceReceived(ServerFrame):
    type: Literal["EVIDENCE_RECEIVED"] = "EVIDENCE_RECEIVED"
    dispute_id: str
    from_: str = Field(alias="from")
    items_count: int


class CaseReady(ServerFrame):
    type: Literal["CASE_READY"] = "CASE_READY"
    dispute_id: str


class Verdict(ServerFrame):
    type: Literal["VERDICT"] = "VERDICT"
    dispute_id: str
    proposal_id: str
    verdict: str


class SettlementComplete(ServerFrame):
    type: Literal["SETTLEMENT_COMPLETE"] = "SETTLEMENT_COMPLETE"
    dispute_id: str
    proposal_id: str
    verdict: str
    rating_changes: Any = None


class DisputeFallback(ServerFrame):
    type: Literal["DISPUTE_FALLBACK"] = "DISPUTE_FALLBACK"
    dispute_id: str
    proposal_id: str | None = None
    reason: str


class FileChunkNotice(ServerFrame):
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


# --------------------------------------------------------------------------- decode / encode


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _parse_json(text: str | bytes) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError(ErrorCode.INVALID_MSG, "Invalid JSON") from None


def check_frame_size(text: str) -> None:
    """Upstream's application-level size check, run before rate limiting and parsing."""
    size = js_len(text)
    if size > MAX_FRAME_CHARS:
        raise ProtocolError(
            ErrorCode.INVALID_MSG, f"Message too large ({size} bytes, max {MAX_FRAME_CHARS})"
        )


def _bad(text: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_MSG, text)


def _require_str(msg: dict[str, Any], key: str, text: str) -> None:
    """Upstream's ``!msg.x || typeof msg.x !== 'string'`` check."""
    v = msg.get(key)
    if not js_truthy(v) or not isinstance(v, str):
        raise _bad(text)


def _check_stake(msg: dict[str, Any]) -> None:
    stake = msg.get("elo_stake")
    if stake is None:
        return
    ok = js_is_number(stake) and stake >= 0 and float(stake).is_integer()
    if not ok:
        raise _bad("elo_stake must be a non-negative integer")


def validate_client_dict(msg: Any) -> str:
    """Validate a parsed frame exactly like upstream; return its type or raise ProtocolError."""
    if not isinstance(msg, dict) or not js_truthy(msg.get("type")):
        raise _bad("Missing message type")
    t = msg["type"]
    g = msg.get
    if t == "IDENTIFY":
        if not is_valid_name(g("name")):
            raise _bad("Invalid agent name")
        if g("pubkey") is not None and not is_valid_pubkey(g("pubkey")):
            raise _bad("Invalid public key format (must be Ed25519 PEM)")
    elif t in ("JOIN", "LEAVE", "LIST_AGENTS", "CREATE_CHANNEL", "TYPING"):
        if not is_valid_channel(g("channel")):
            raise _bad("Invalid channel name")
    elif t == "MSG":
        if not js_truthy(g("to")):
            raise _bad("Missing target")
        if not is_channel(g("to")) and not is_agent(g("to")):
            raise _bad("Invalid target (must start with # or @)")
        if not isinstance(g("content"), str):
            raise _bad("Missing or invalid content")
        if js_len(g("content")) > MAX_CONTENT_CHARS:
            raise _bad("Content too long (max 2MB)")
        if "sig" in msg and not isinstance(g("sig"), str):  # null counts: null !== undefined
            raise _bad("Invalid signature format")
    elif t == "FILE_CHUNK":
        if not js_truthy(g("to")):
            raise _bad("Missing target")
        if not is_agent(g("to")):
            raise _bad("FILE_CHUNK only supports DM targets (@agent)")
        if not isinstance(g("content"), str):
            raise _bad("Missing or invalid content")
        if js_len(g("content")) > MAX_CONTENT_CHARS:
            raise _bad("FILE_CHUNK too large (max 2MB)")
    elif t == "INVITE":
        if not is_valid_channel(g("channel")):
            raise _bad("Invalid channel name")
        if not js_truthy(g("agent")) or not is_agent(g("agent")):
            raise _bad("Invalid agent target")
    elif t in ("LIST_CHANNELS", "PING"):
        pass
    elif t == "PROPOSAL":
        if not js_truthy(g("to")):
            raise _bad("Missing target (to)")
        if not is_agent(g("to")):
            raise _bad("Proposals must be sent to an agent (@id)")
        _require_str(msg, "task", "Missing or invalid task description")
        if not js_truthy(g("sig")):
            raise _bad("Proposals must be signed")
        if "expires" in msg and not js_is_number(g("expires")):
            raise _bad("expires must be a number (seconds)")
        _check_stake(msg)
    elif t in ("ACCEPT", "REJECT", "COMPLETE"):
        if not js_truthy(g("proposal_id")):
            raise _bad("Missing proposal_id")
        if not js_truthy(g("sig")):
            raise _bad(f"{t.capitalize()} must be signed")
        if t == "ACCEPT":
            _check_stake(msg)
    elif t == "DISPUTE":
        if not js_truthy(g("proposal_id")):
            raise _bad("Missing proposal_id")
        _require_str(msg, "reason", "Missing or invalid dispute reason")
        if not js_truthy(g("sig")):
            raise _bad("Dispute must be signed")
    elif t == "REGISTER_SKILLS":
        skills = g("skills")
        if not isinstance(skills, list):
            raise _bad("Missing or invalid skills array")
        if not skills:
            raise _bad("Skills array cannot be empty")
        for skill in skills:
            cap = skill.get("capability") if isinstance(skill, dict) else None
            if skill is None:
                raise _bad("Each skill must have a capability string")
            if not js_truthy(cap) or not isinstance(cap, str):
                raise _bad("Each skill must have a capability string")
        if not js_truthy(g("sig")):
            raise _bad("Skill registration must be signed")
    elif t == "SEARCH_SKILLS":
        if not js_truthy(g("query")) or not isinstance(g("query"), dict | list):
            raise _bad("Missing or invalid query object")
    elif t == "SET_PRESENCE":
        if g("status") not in PRESENCE_STATUSES:
            raise _bad("Invalid presence status. Must be one of: " + ", ".join(PRESENCE_STATUSES))
        if "status_text" in msg and not isinstance(g("status_text"), str):
            raise _bad("status_text must be a string")
        if js_truthy(g("status_text")) and js_len(g("status_text")) > 100:
            raise _bad("status_text too long (max 100 chars)")
    elif t == "VERIFY_REQUEST":
        if not js_truthy(g("target")):
            raise _bad("Missing target agent")
        if not is_agent(g("target")):
            raise _bad("Target must be an agent (@id)")
        _require_str(msg, "nonce", "Missing or invalid nonce")
        if not 16 <= js_len(g("nonce")) <= 128:
            raise _bad("Nonce must be 16-128 characters")
    elif t == "VERIFY_RESPONSE":
        if not js_truthy(g("request_id")):
            raise _bad("Missing request_id")
        _require_str(msg, "nonce", "Missing or invalid nonce")
        _require_str(msg, "sig", "Missing or invalid signature")
    elif t == "ADMIN_APPROVE":
        _require_str(msg, "pubkey", "Missing or invalid pubkey")
        _require_str(msg, "admin_key", "Missing admin_key")
    elif t == "ADMIN_REVOKE":
        if not js_truthy(g("pubkey")) and not js_truthy(g("agent_id")):
            raise _bad("Missing pubkey or agent_id")
        _require_str(msg, "admin_key", "Missing admin_key")
    elif t == "ADMIN_LIST":
        _require_str(msg, "admin_key", "Missing admin_key")
    elif t == "DISPUTE_INTENT":
        if not js_truthy(g("proposal_id")):
            raise _bad("Missing proposal_id")
        _require_str(msg, "reason", "Missing or invalid reason")
        _require_str(msg, "commitment", "Missing or invalid commitment hash")
        if not js_truthy(g("sig")):
            raise _bad("Dispute intent must be signed")
    elif t == "DISPUTE_REVEAL":
        if not js_truthy(g("proposal_id")):
            raise _bad("Missing proposal_id")
        _require_str(msg, "nonce", "Missing or invalid nonce")
        if not js_truthy(g("sig")):
            raise _bad("Dispute reveal must be signed")
    elif t == "EVIDENCE":
        _require_str(msg, "dispute_id", "Missing or invalid dispute_id")
        if not isinstance(g("items"), list):
            raise _bad("Missing or invalid items array")
        if not isinstance(g("statement"), str):
            raise _bad("Missing or invalid statement")
        if not js_truthy(g("sig")):
            raise _bad("Evidence must be signed")
    elif t == "ARBITER_ACCEPT":
        _require_str(msg, "dispute_id", "Missing or invalid dispute_id")
        if not js_truthy(g("sig")):
            raise _bad("Arbiter accept must be signed")
    elif t == "ARBITER_DECLINE":
        _require_str(msg, "dispute_id", "Missing or invalid dispute_id")
    elif t == "ARBITER_VOTE":
        _require_str(msg, "dispute_id", "Missing or invalid dispute_id")
        if g("verdict") not in VERDICTS:
            raise _bad("Invalid verdict (must be disputant, respondent, or mutual)")
        if not isinstance(g("reasoning"), str):
            raise _bad("Missing or invalid reasoning")
        if not js_truthy(g("sig")):
            raise _bad("Arbiter vote must be signed")
    elif t == "SET_NICK":
        _require_str(msg, "nick", "Missing or invalid nick")
        if not 1 <= js_len(g("nick")) <= 24:
            raise _bad("Nick must be 1-24 characters")
        if _NAME_RE.fullmatch(g("nick")) is None:
            raise _bad("Nick must contain only alphanumeric characters, hyphens, and underscores")
    elif t == "RESPONDING_TO":
        _require_str(msg, "msg_id", "Missing or invalid msg_id")
        if not js_truthy(g("channel")) or not is_valid_channel(g("channel")):
            raise _bad("Missing or invalid channel")
        if not js_truthy(g("started_at")) or not js_is_number(g("started_at")):
            raise _bad("Missing or invalid started_at timestamp")
    elif t == "VERIFY_IDENTITY":
        _require_str(msg, "challenge_id", "Missing or invalid challenge_id")
        _require_str(msg, "signature", "Missing or invalid signature")
        if not js_truthy(g("timestamp")) or not js_is_number(g("timestamp")):
            raise _bad("Missing or invalid timestamp")
    elif t in ("ADMIN_KICK", "ADMIN_BAN", "ADMIN_UNBAN"):
        _require_str(msg, "agent_id", "Missing or invalid agent_id")
        _require_str(msg, "admin_key", "Missing admin_key")
    elif t == "ADMIN_MOTD":
        _require_str(msg, "admin_key", "Missing admin_key")
        if g("motd") is not None and not isinstance(g("motd"), str):
            raise _bad("motd must be a string or null")
    elif t == "ADMIN_VERIFY":
        _require_str(msg, "admin_key", "Missing admin_key")
        _require_str(msg, "agent_id", "Missing agent_id")
        if not isinstance(g("verified"), bool):
            raise _bad("verified must be a boolean")
    elif t == "CAPTCHA_RESPONSE":
        _require_str(msg, "captcha_id", "Missing or invalid captcha_id")
        _require_str(msg, "answer", "Missing or invalid answer")
    else:
        raise _bad(f"Unknown message type: {js_str(t)}")
    return t


def decode_client_dict(text: str | bytes) -> dict[str, Any]:
    """Parse and validate a client frame, returning the raw dict (the server's fast path)."""
    msg = _parse_json(text)
    validate_client_dict(msg)
    return msg


def decode_client_frame(text: str | bytes) -> Frame:
    """Parse and validate a client frame into its typed model.

    Raises :class:`ProtocolError` with upstream's code and text. The model is built
    without coercion (``model_construct``) because upstream forwards values as sent.
    """
    msg = decode_client_dict(text)
    return CLIENT_MODELS[msg["type"]].model_construct(**msg)


def decode_server_frame(text: str | bytes) -> dict[str, Any]:
    """Parse a server frame leniently: any JSON object with a string ``type``."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(ErrorCode.INVALID_MSG, "Invalid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError(ErrorCode.INVALID_MSG, "Missing message type")
    return data


def server_frame_model(frame: dict[str, Any]) -> ServerFrame | dict[str, Any]:
    """Best-effort typed view of a decoded server frame; the dict itself if it does not fit."""
    model = SERVER_MODELS.get(str(frame.get("type")))
    if model is None:
        return frame
    try:
        return model.model_validate(frame)
    except ValueError:
        return frame


def frame_dict(frame: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """A frame as the JSON object that goes on the wire (``type`` first, aliases applied)."""
    if isinstance(frame, dict):
        return frame
    data = frame.model_dump(by_alias=True, exclude_unset=True)
    return {"type": getattr(frame, "type", data.get("type")), **data}


def encode(frame: BaseModel | dict[str, Any]) -> str:
    """Serialise a frame (model or dict) to its wire text, like ``JSON.stringify``."""
    return js_json(frame_dict(frame))


def make_error(code: str, message: str, ts: int) -> dict[str, Any]:
    """An ``ERROR`` frame."""
    return {"type": "ERROR", "ts": ts, "code": code, "message": message}
