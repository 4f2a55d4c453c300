"""Frames in and out: the size check, the client-frame validator, lenient server-frame
decoding and the encoder (pure).

Validation follows upstream literally (owl/reference/agentchat-protocol.md, "Client
frames"): the same checks in the same order, JavaScript truthiness, the same
``INVALID_MSG`` texts. The checks themselves are not written here: they are compiled
from the frame models in :mod:`.client_frames`. One deliberate difference: a JSON ``null``
frame crashes upstream's validator; here it is answered like any other frame without a
type ("Missing message type").
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from agentctl_swarm.chat.protocol.client_frames import CLIENT_CHECKS, CLIENT_MODELS, Frame
from agentctl_swarm.chat.protocol.errors import ErrorCode, ProtocolError
from agentctl_swarm.chat.protocol.json_rules import (
    JsonRuleError,
    NumberOutOfRange,
    js_json,
    js_len,
    js_str,
    js_truthy,
    loads,
)
from agentctl_swarm.chat.protocol.rules import MAX_FRAME_CHARS, MISSING
from agentctl_swarm.chat.protocol.server_frames import SERVER_MODELS, ServerFrame


def _bad(text: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_MSG, text)


def check_frame_size(text: str) -> None:
    """Upstream's application-level size check, run before rate limiting and parsing."""
    if len(text) <= MAX_FRAME_CHARS // 2:
        return  # even if every char were astral it would fit
    size = js_len(text)
    if size > MAX_FRAME_CHARS:
        raise _bad(f"Message too large ({size} bytes, max {MAX_FRAME_CHARS})")


def parse_frame_json(text: str | bytes) -> Any:
    """JSON under the wire's JSON rules; "Invalid JSON" (or the number rule) otherwise."""
    try:
        return loads(text)
    except NumberOutOfRange as exc:
        raise _bad("Invalid JSON: numbers must be finite") from exc
    except JsonRuleError as exc:
        raise _bad("Invalid JSON") from exc


def validate_client_dict(msg: Any) -> str:
    """Validate a parsed frame exactly like upstream; return its type or raise ProtocolError."""
    if not isinstance(msg, dict) or not js_truthy(msg.get("type")):
        raise _bad("Missing message type")
    kind = msg["type"]
    checks = CLIENT_CHECKS.get(kind) if isinstance(kind, str) else None
    if checks is None:
        raise _bad(f"Unknown message type: {js_str(kind)}")
    get = msg.get
    for key, test, error in checks:
        if not test(msg if key is None else get(key, MISSING)):
            raise _bad(error)
    return kind


def decode_client_dict(text: str | bytes) -> dict[str, Any]:
    """Parse and validate a client frame, returning the raw dict (the server's fast path)."""
    msg = parse_frame_json(text)
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
    """Parse a server frame leniently: any JSON object with a string ``type``.

    The JSON rules still hold (finite numbers, no lone surrogates), so whatever a client
    keeps or re-emits from a frame is storable and strict JSON.
    """
    try:
        data = loads(text)
    except JsonRuleError as exc:
        raise ProtocolError(ErrorCode.INVALID_MSG, "Invalid JSON") from exc
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
    except ValidationError:
        return frame


def frame_dict(frame: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """A frame as the JSON object that goes on the wire (``type`` first, aliases applied)."""
    if isinstance(frame, dict):
        return frame
    data = frame.model_dump(by_alias=True, exclude_unset=True)
    return {"type": getattr(frame, "type", data.get("type")), **data}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return frame_dict(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def encode(frame: BaseModel | dict[str, Any]) -> str:
    """Serialise a frame (model or dict) to its wire text, like ``JSON.stringify``.

    Strict: a non-finite number raises ValueError instead of producing text a JavaScript
    peer cannot parse.
    """
    return js_json(frame_dict(frame), default=_json_default)


def make_error(code: str, message: str, ts: int) -> dict[str, Any]:
    """An ``ERROR`` frame."""
    return {"type": "ERROR", "ts": ts, "code": code, "message": message}
