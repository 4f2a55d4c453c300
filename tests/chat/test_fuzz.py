"""Property-based fuzzing (hypothesis) of the protocol decoder, the server core and the
client-side frame handling (issue 8).

Properties: no exception escapes but :class:`ProtocolError` from the decoder; the server
core never raises and every frame it emits is strict JSON (``json.loads`` with NaN and
Infinity refused accepts it), encodes to UTF-8, round-trips byte for byte and fits its
model in ``SERVER_MODELS``; the store keeps working; the MCP inbox code takes any frame.
Example counts are bounded so the module runs in seconds in CI.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agentctl_swarm.chat import protocol as p
from agentctl_swarm.chat.identity import Identity
from agentctl_swarm.chat.inbox import Cursor, Inbox, inbox_line, output_line, relevant, select_new
from agentctl_swarm.chat.protocol.json_rules import dumps_record
from agentctl_swarm.chat.server import ServerConfig, ServerCore, Store
from agentctl_swarm.chat.server.state import Send

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays deterministic
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: For properties whose examples touch the disk (SQLite, fsync'd files).
FUZZ_IO = settings(FUZZ, max_examples=60)

# ------------------------------------------------------------------ strategies

LONE_SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "x\ud83d", "\ude00y"])
TEXT = st.one_of(st.text(max_size=20), LONE_SURROGATES, st.sampled_from(["#general", "@x", ""]))
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 1e308, 1e306, 2**53 + 1, 10**400, 0.5]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
TYPES = st.one_of(
    st.sampled_from([*sorted(p.CLIENT_MODELS), "", "NOPE", "ADMIN_OPEN_WINDOW"]),
    # the frames whose handlers build, store or fan out the most
    st.sampled_from(["MSG", "PROPOSAL", "ACCEPT", "COMPLETE", "DISPUTE", "RESPONDING_TO"]),
)


#: A well-formed example of every client frame; the fuzz mutates these, so most frames get
#: past validation and into the handlers. "@x" stands for another live agent.
TEMPLATES: dict[str, dict[str, Any]] = {
    "IDENTIFY": {"name": "again"},
    "VERIFY_IDENTITY": {"challenge_id": "chal_x", "signature": "c2ln", "timestamp": 17},
    "CAPTCHA_RESPONSE": {"captcha_id": "captcha_x", "answer": "4"},
    "JOIN": {"channel": "#general"},
    "LEAVE": {"channel": "#help"},
    "MSG": {"to": "#general", "content": "hi @@cb:0.01s@@later", "in_reply_to": "1-a"},
    "LIST_CHANNELS": {},
    "LIST_AGENTS": {"channel": "#general"},
    "CREATE_CHANNEL": {"channel": "#new1", "invite_only": True},
    "INVITE": {"channel": "#new1", "agent": "@x"},
    "PING": {},
    "SET_NICK": {"nick": "ally"},
    "SET_PRESENCE": {"status": "listening", "status_text": "waiting"},
    "TYPING": {"channel": "#general"},
    "RESPONDING_TO": {"msg_id": "1-a", "channel": "#general", "started_at": 5},
    "REGISTER_SKILLS": {"skills": [{"capability": "review", "rate": 5}]},
    "SEARCH_SKILLS": {"query": {"capability": "rev", "max_rate": 9}, "query_id": "q1"},
    "PROPOSAL": {"to": "@x", "task": "do it", "expires": 60, "elo_stake": 3, "amount": 2},
    "ACCEPT": {"proposal_id": "LAST", "elo_stake": 0},
    "REJECT": {"proposal_id": "LAST"},
    "COMPLETE": {"proposal_id": "LAST", "proof": "url"},
    "DISPUTE": {"proposal_id": "LAST", "reason": "bad"},
    "DISPUTE_INTENT": {"proposal_id": "p", "reason": "r", "commitment": "ab", "sig": "s"},
    "DISPUTE_REVEAL": {"proposal_id": "p", "nonce": "n", "sig": "s"},
    "EVIDENCE": {"dispute_id": "d", "items": [], "statement": "", "sig": "s"},
    "ARBITER_ACCEPT": {"dispute_id": "d", "sig": "s"},
    "ARBITER_DECLINE": {"dispute_id": "d"},
    "ARBITER_VOTE": {"dispute_id": "d", "verdict": "mutual", "reasoning": "", "sig": "s"},
    "VERIFY_REQUEST": {"target": "@x", "nonce": "n" * 16},
    "VERIFY_RESPONSE": {"request_id": "LAST", "nonce": "n" * 16, "sig": "s"},
    "FILE_CHUNK": {"to": "@x", "content": "x"},
    "ADMIN_APPROVE": {"pubkey": "k", "admin_key": "admin-key-123"},
    "ADMIN_REVOKE": {"agent_id": "x", "admin_key": "admin-key-123"},
    "ADMIN_LIST": {"admin_key": "admin-key-123"},
    "ADMIN_KICK": {"agent_id": "@x", "admin_key": "admin-key-123", "reason": "r"},
    "ADMIN_BAN": {"agent_id": "@nobody", "admin_key": "admin-key-123", "reason": "r"},
    "ADMIN_UNBAN": {"agent_id": "@nobody", "admin_key": "admin-key-123"},
    "ADMIN_MOTD": {"admin_key": "admin-key-123", "motd": "hello"},
    "ADMIN_VERIFY": {"agent_id": "@x", "admin_key": "admin-key-123", "verified": True},
}
assert set(TEMPLATES) == set(p.CLIENT_MODELS)


@st.composite
def frames(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed frame with some fields replaced, dropped or added at random."""
    kind = draw(TYPES)
    frame: dict[str, Any] = {"type": kind, **TEMPLATES.get(kind, {"to": "#general"})}
    for name in list(frame)[1:]:
        roll = draw(st.integers(0, 9))
        if roll == 0:
            del frame[name]
        elif roll <= 2:
            frame[name] = draw(_plausible(name) | VALUES)
    if draw(st.integers(0, 4)) == 0:
        frame[draw(TEXT)] = draw(VALUES)
    return frame


def _plausible(name: str) -> st.SearchStrategy[Any]:
    """Values of the right kind for a field, often but not always acceptable."""
    if name == "channel":
        return st.sampled_from(["#general", "#help", "#new1", "#ops", "#nope"])
    if name in ("to", "agent", "target", "agent_id"):
        return st.sampled_from(["#general", "#help", "@nobody", "@x"])
    if name == "status":
        return st.sampled_from(p.PRESENCE_STATUSES)
    if name in ("started_at", "expires", "elo_stake", "amount", "timestamp"):
        return NUMBERS
    if name == "skills":
        return st.lists(st.fixed_dictionaries({"capability": TEXT}, optional={"rate": NUMBERS}))
    if name == "query":
        return st.dictionaries(st.sampled_from(["capability", "max_rate", "limit"]), SCALARS)
    return TEXT


def wire(value: Any) -> str:
    """JSON text as a sloppy or hostile client writes it (NaN/Infinity allowed)."""
    return json.dumps(value, ensure_ascii=True)


# ------------------------------------------------------------------ checks


def _no_constant(name: str) -> Any:
    raise AssertionError(f"{name} in an outgoing frame")


def _double_int(text: str) -> int:
    value = int(text)
    assert abs(value) <= sys.float_info.max, f"{text[:30]}... is Infinity to a JS peer"
    return value


def assert_strict_frame(text: str) -> dict[str, Any]:
    text.encode("utf-8")  # sendable
    frame = json.loads(text, parse_constant=_no_constant, parse_int=_double_int)
    again = json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert again == text, "does not round-trip"
    model = p.SERVER_MODELS.get(frame["type"])
    assert model is not None, frame["type"]
    try:
        model.model_validate(frame)
    except ValidationError as exc:  # the frame does not fit its own description
        raise AssertionError(f"{frame} does not fit {model.__name__}: {exc}") from exc
    return frame


# ------------------------------------------------------------------ the decoder


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_decoder_raises_only_protocol_errors_on_any_text(text: str) -> None:
    try:
        msg = p.decode_client_dict(text)
    except p.ProtocolError:
        return
    p.js_json(msg).encode("utf-8")


@FUZZ
@given(st.one_of(frames(), VALUES))
def test_decoder_accepts_only_strict_frames(value: Any) -> None:
    try:
        msg = p.decode_client_dict(wire(value))
    except p.ProtocolError:
        return
    assert msg["type"] in p.CLIENT_MODELS
    text = p.js_json(msg)  # no NaN/Infinity survived, no lone surrogate either
    text.encode("utf-8")
    p.decode_client_frame(text)


# ------------------------------------------------------------------ the server core

KEYS = [Identity.generate(f"k{i}") for i in range(2)]


class Harness:
    """A ServerCore with a real SQLite store and three identified connections."""

    def __init__(self, data: Path) -> None:
        cfg = ServerConfig(
            data_dir=data,
            admin_key="admin-key-123",
            allow_dm=True,
            private_channels=True,
            ephemeral_lurk=False,
            complete_min_age_ms=0,
            takeover_backoff_ms=0,
            limits_enabled=False,
        )
        self.store = Store(data)
        self.now = int(time.time() * 1000)
        self.core = ServerCore(cfg, self.store, now=self.now)
        self.out: list[Send] = []
        for conn, ident in enumerate([*KEYS, None], start=1):
            self.feed(self.core.connect(conn, "127.0.0.1", self.now))
            self.login(conn, ident)

    def tick(self) -> int:
        self.now += 7
        return self.now

    def feed(self, actions: list[Any]) -> None:
        for act in actions:
            if isinstance(act, Send):
                assert_strict_frame(act.text)
                self.out.append(act)

    def login(self, conn: int, ident: Identity | None) -> None:
        if ident is None:
            self.receive(conn, wire({"type": "IDENTIFY", "name": "eph"}))
            return
        self.receive(
            conn, wire({"type": "IDENTIFY", "name": ident.name, "pubkey": ident.public_pem})
        )
        chal = next(json.loads(a.text) for a in reversed(self.out) if '"CHALLENGE"' in a.text)
        ts = self.tick()
        sig = ident.sign(p.auth_signing_string(chal["nonce"], chal["challenge_id"], ts))
        verify = {"type": "VERIFY_IDENTITY", "challenge_id": chal["challenge_id"], "timestamp": ts,
                  "signature": sig}  # fmt: skip
        self.receive(conn, wire(verify))

    def receive(self, conn: int, text: str) -> None:
        self.feed(self.core.receive(conn, text, self.tick()))


def _signed(frame: dict[str, Any], ident: Identity) -> dict[str, Any]:
    """Sign the frames that carry a signature, so the fuzz reaches past the sig check."""
    kind, g = frame.get("type"), frame.get
    texts = {
        "PROPOSAL": lambda: p.sign_string_proposal(
            g("to"),
            g("task"),
            g("amount"),
            g("currency"),
            g("payment_code"),
            g("expires"),
            g("elo_stake"),
        ),
        "ACCEPT": lambda: p.sign_string_accept(g("proposal_id"), g("payment_code"), g("elo_stake")),
        "COMPLETE": lambda: p.sign_string_complete(g("proposal_id"), g("proof")),
        "REJECT": lambda: p.sign_string_reject(g("proposal_id"), g("reason")),
        "DISPUTE": lambda: p.sign_string_dispute(g("proposal_id"), g("reason")),
        "REGISTER_SKILLS": lambda: p.sign_string_register_skills(g("skills")),
        "VERIFY_RESPONSE": lambda: p.sign_string_verify_response(g("nonce")),
    }
    if kind not in texts:
        return frame
    try:
        return {**frame, "sig": ident.sign(texts[kind]())}
    except (TypeError, ValueError, AttributeError):  # a value no client could sign
        return frame


def _resolve(frame: dict[str, Any], conn: int, h: Harness) -> dict[str, Any]:
    """Fill the templates' placeholders: "@x" is another agent, "LAST" the latest id."""
    other = f"@{KEYS[1 if conn == 1 else 0].agent_id}"
    last: dict[str, str] = {}
    for act in h.out:
        if '"PROPOSAL"' in act.text or '"VERIFY_REQUEST"' in act.text:
            sent = json.loads(act.text)
            if sent["type"] == "PROPOSAL":
                last["proposal_id"] = sent["id"]
            elif sent["type"] == "VERIFY_REQUEST":
                last["request_id"] = sent["request_id"]
    out = {}
    for key, value in frame.items():
        if value == "@x":
            value = other
        elif value == "LAST":
            value = last.get(key, "none")
        out[key] = value
    return out


@FUZZ_IO
@given(
    st.lists(
        st.tuples(st.integers(1, 3), frames(), st.booleans(), st.booleans()),
        min_size=1,
        max_size=12,
    ),
    st.booleans(),
)
def test_server_core_survives_anything_and_emits_strict_json(
    tmp_path_factory, script, market
) -> None:
    data = tmp_path_factory.mktemp("store")
    h = Harness(data)
    if market:  # an accepted proposal first, so COMPLETE and DISPUTE get somewhere
        setup = [(1, {"type": "PROPOSAL", **TEMPLATES["PROPOSAL"]}, True, True),
                 (2, {"type": "ACCEPT", **TEMPLATES["ACCEPT"]}, True, True)]  # fmt: skip
        script = setup + script
    for conn, frame, sign, as_text in script:
        frame = _resolve(frame, conn, h)
        if sign and conn <= 2:
            frame = _signed(frame, KEYS[conn - 1])
        h.receive(conn, wire(frame) if as_text else json.dumps(frame, ensure_ascii=False))
    h.feed(h.core.tick(h.now + 4 * 3600 * 1000))  # every timer fires
    h.store.flush()
    for conn in (1, 2, 3):
        h.feed(h.core.disconnect(conn, h.tick()))
    h.store.put("probe", "k", {"ok": True})  # the store still writes
    h.store.close()
    again = Store(data)
    assert again.load("probe") == {"k": {"ok": True}}
    again.close()


# ------------------------------------------------------------------ the client side

SERVER_TYPES = st.sampled_from([*sorted(p.SERVER_MODELS), "EVENT", "NOPE"])


@st.composite
def server_frames(draw: st.DrawFn) -> dict[str, Any]:
    frame = draw(st.dictionaries(TEXT, VALUES, max_size=6))
    frame["type"] = draw(SERVER_TYPES)
    for key in ("ts", "to", "from", "msg_id", "channel", "content", "event"):
        if draw(st.booleans()):
            frame[key] = draw(VALUES)
    return frame


@FUZZ_IO
@given(st.lists(server_frames(), min_size=1, max_size=8), st.integers(0, 2**41))
def test_mcp_inbox_takes_any_server_frame(tmp_path_factory, raw_frames, now) -> None:
    inbox = Inbox(tmp_path_factory.mktemp("inbox"))
    lines = []
    for raw in raw_frames:
        try:
            frame = p.decode_server_frame(wire(raw))
        except p.ProtocolError:
            continue
        line = inbox_line(frame, now)
        if line is None:
            continue
        assert isinstance(line["ts"], int)
        inbox.append(line)
        lines.append(line)
    cursor = Cursor()
    for chans in (["#general"], []):
        picked = select_new(lines, cursor, chans, "@me")
        for line, shown in picked:
            relevant(line, chans, None)
            dumps_record(output_line(line))
            dumps_record(shown)
        cursor.advance(line for line, _ in picked)
    inbox.save_cursor(cursor)
    reloaded = Inbox(inbox.dir)
    assert len(reloaded.lines) == len(lines)
    assert all(math.isfinite(ln["ts"]) for ln in reloaded.lines)


@FUZZ
@given(st.lists(server_frames(), min_size=1, max_size=8))
def test_client_and_cli_take_any_server_frame(raw_frames) -> None:
    from agentctl_swarm.chat.client import AgentChatClient
    from agentctl_swarm.chat.client.connection import _decode
    from agentctl_swarm.cli.chat import _format

    client = AgentChatClient("ws://127.0.0.1:9", name="fuzz")
    for raw in raw_frames:
        frame = _decode(wire(raw))
        if frame is None:
            continue
        client._dispatch(frame)
        for output in ("text", "json"):
            _format(frame, output).encode("utf-8")
