"""The AgentChat wire protocol: the contract between the chat server and every client
(client library, agentchat-mcp, ``agentctl chat``). Pure: no sockets, no files, no clock.

It follows upstream AgentChat (``tjamescouch/agentchat`` 0.36.19) literally, as the
project's own owl/reference/agentchat-protocol.md describes it. One module per concern:

- :mod:`.json_rules` — what JSON the wire carries (finite numbers, Unicode text) and
  JavaScript's value rules (truthiness, ``String(x)``, UTF-16 lengths);
- :mod:`.rules`, :mod:`.client_frames`, :mod:`.server_frames` — each frame described once,
  as a model; a client frame's fields carry upstream's checks and error texts;
- :mod:`.codec` — decoding (the validator compiled from those models) and encoding;
- :mod:`.signing` — the canonical strings that get Ed25519-signed;
- :mod:`.errors` — ``ERROR`` codes, close codes, :class:`ProtocolError`;
- :mod:`.reference` — renders the frame sections of the reference document.

The server's own tuning (rate limits, timers, default channels) is not part of the wire
contract; it lives in ``agentctl_swarm.chat.server.config``.
"""

from __future__ import annotations

from agentctl_swarm.chat.protocol.client_frames import (
    CLIENT_CHECKS,
    CLIENT_FRAMES,
    CLIENT_MODELS,
    ClientFrame,
    ClientFrameModel,
    Join,
    Msg,
)
from agentctl_swarm.chat.protocol.codec import (
    check_frame_size,
    decode_client_dict,
    decode_client_frame,
    decode_server_frame,
    encode,
    frame_dict,
    make_error,
    parse_frame_json,
    server_frame_model,
    validate_client_dict,
)
from agentctl_swarm.chat.protocol.errors import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    ErrorCode,
    ProtocolError,
)
from agentctl_swarm.chat.protocol.frame import Frame
from agentctl_swarm.chat.protocol.json_rules import (
    js_is_number,
    js_json,
    js_len,
    js_number_str,
    js_str,
    js_truthy,
)
from agentctl_swarm.chat.protocol.rules import (
    DEFAULT_PORT,
    MAX_CONTENT_CHARS,
    MAX_FRAME_CHARS,
    MAX_PAYLOAD,
    MAX_STATUS_TEXT,
    PRESENCE_STATUSES,
    RESERVED_NICKS,
    VERDICTS,
    is_agent,
    is_channel,
    is_valid_channel,
    is_valid_name,
)
from agentctl_swarm.chat.protocol.server_frames import (
    SERVER_MODELS,
    ServerFrame,
    ServerMsg,
    Welcome,
)
from agentctl_swarm.chat.protocol.signing import (
    auth_signing_string,
    sign_string_accept,
    sign_string_arbiter_accept,
    sign_string_arbiter_decline,
    sign_string_arbiter_vote,
    sign_string_complete,
    sign_string_dispute,
    sign_string_dispute_intent,
    sign_string_dispute_reveal,
    sign_string_evidence,
    sign_string_msg,
    sign_string_proposal,
    sign_string_register_skills,
    sign_string_reject,
    sign_string_verify_response,
)
from agentctl_swarm.chat.text import clean_text

#: Transitional: ``agentctl_swarm/cli/server.py`` (owned outside the chat package) still
#: imports the replay-buffer default from here. The server's own constant is
#: ``agentctl_swarm.chat.server.config.DEFAULT_BUFFER_SIZE``; a test keeps them equal.
DEFAULT_BUFFER_SIZE = 20

__all__ = [
    "CLIENT_CHECKS",
    "CLIENT_FRAMES",
    "CLIENT_MODELS",
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_TOO_BIG",
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_PORT",
    "MAX_CONTENT_CHARS",
    "MAX_FRAME_CHARS",
    "MAX_PAYLOAD",
    "MAX_STATUS_TEXT",
    "PRESENCE_STATUSES",
    "RESERVED_NICKS",
    "SERVER_MODELS",
    "VERDICTS",
    "ClientFrame",
    "ClientFrameModel",
    "ErrorCode",
    "Frame",
    "Join",
    "Msg",
    "ProtocolError",
    "ServerFrame",
    "ServerMsg",
    "Welcome",
    "auth_signing_string",
    "check_frame_size",
    "clean_text",
    "decode_client_dict",
    "decode_client_frame",
    "decode_server_frame",
    "encode",
    "frame_dict",
    "is_agent",
    "is_channel",
    "is_valid_channel",
    "is_valid_name",
    "js_is_number",
    "js_json",
    "js_len",
    "js_number_str",
    "js_str",
    "js_truthy",
    "make_error",
    "parse_frame_json",
    "server_frame_model",
    "sign_string_accept",
    "sign_string_arbiter_accept",
    "sign_string_arbiter_decline",
    "sign_string_arbiter_vote",
    "sign_string_complete",
    "sign_string_dispute",
    "sign_string_dispute_intent",
    "sign_string_dispute_reveal",
    "sign_string_evidence",
    "sign_string_msg",
    "sign_string_proposal",
    "sign_string_register_skills",
    "sign_string_reject",
    "sign_string_verify_response",
    "validate_client_dict",
]
