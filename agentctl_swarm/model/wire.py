"""The Anthropic Messages API's shapes, as the scripted model speaks them (pure).

What a request tells us (the task prompt, the system prompt, the working directory,
how many assistant turns it already holds) and what a reply looks like: the SSE event
sequence of a streamed message (``message_start``, ``content_block_start`` /
``_delta`` / ``_stop`` per block, ``message_delta`` with the stop reason and usage,
``message_stop``), the same message as one JSON body, and the error body
``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

SYSTEM_REMINDER = "<system-reminder>"
_CWD_RE = re.compile(r"Primary working directory: *(\S[^\n]*)")
TEXT_CHUNK = 40  # characters per text_delta
JSON_CHUNK = 64  # characters per input_json_delta


class BadRequest(ValueError):
    """The request body is not a Messages API request."""


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event: ``event: <name>`` and one JSON ``data:`` line."""

    name: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        return f"event: {self.name}\ndata: {json.dumps(self.data)}\n\n".encode()


@dataclass(frozen=True)
class ApiRequest:
    """The parts of a ``POST /v1/messages`` body the script works with."""

    body: dict[str, Any]
    model: str
    stream: bool
    messages: list[dict[str, Any]]
    prompt: str
    system: str
    assistant_turns: int
    cwd: str
    tool_results: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def parse(cls, body: Any) -> ApiRequest:
        """Read a decoded JSON body; BadRequest when it is not a Messages request."""
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("messages: must be a list of objects")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model: must be a non-empty string")
        system_parts = [_text_of(body.get("system"))]
        system_parts += [_text_of(m.get("content")) for m in messages if m.get("role") == "system"]
        system = "\n".join(p for p in system_parts if p)
        user = next((m for m in messages if m.get("role") == "user"), None)
        prompt = _text_of(user.get("content"), skip_reminders=True) if user else ""
        found = _CWD_RE.search(system)
        return cls(
            body=body,
            model=model,
            stream=bool(body.get("stream")),
            messages=messages,
            prompt=prompt,
            system=system,
            assistant_turns=count_assistant_turns(messages),
            cwd=found.group(1).strip() if found else "",
            tool_results=list(_tool_results(messages)),
        )


def count_assistant_turns(messages: Iterable[dict[str, Any]]) -> int:
    """How many times the model has answered so far (adjacent assistant messages are
    one answer: a client may split one response into several messages)."""
    turns, previous = 0, None
    for message in messages:
        role = message.get("role")
        if role == "assistant" and previous != "assistant":
            turns += 1
        if role in ("assistant", "user"):
            previous = role
    return turns


def _text_of(content: Any, *, skip_reminders: bool = False) -> str:
    """The text of a ``content`` (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            text = block.get("text")
            if not isinstance(text, str):
                continue
            if skip_reminders and text.lstrip().startswith(SYSTEM_REMINDER):
                continue
            texts.append(text)
    return "\n".join(texts)


def _tool_results(messages: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for message in messages:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    yield block


# ------------------------------------------------------------------------------ replies


def stable_id(prefix: str, *parts: object) -> str:
    """A deterministic id (``msg_...``, ``toolu_...``, ``req_...``): a retry of the same
    request gets the same answer, ids included."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:24]}"


def estimate_tokens(value: Any) -> int:
    """About four characters per token: deterministic and good enough for budgets."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return max(1, len(text) // 4)


def usage_block(
    input_tokens: int, output_tokens: int, cache_creation: int = 0, cache_read: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message_json(
    *,
    message_id: str,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str,
    usage: dict[str, Any],
) -> dict[str, Any]:
    """A complete (non-streamed) Message."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def message_events(
    *,
    message_id: str,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str,
    usage: dict[str, Any],
) -> list[SseEvent]:
    """The SSE events that stream ``content`` the way the real API does."""
    start_usage = {**usage, "output_tokens": 1}
    events = [
        SseEvent(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    **message_json(
                        message_id=message_id,
                        model=model,
                        content=[],
                        stop_reason=stop_reason,
                        usage=start_usage,
                    ),
                    "stop_reason": None,
                },
            },
        ),
        SseEvent("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(content):
        events += _block_events(index, block)
    events.append(
        SseEvent(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {
                    "input_tokens": usage["input_tokens"],
                    "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                    "cache_read_input_tokens": usage["cache_read_input_tokens"],
                    "output_tokens": usage["output_tokens"],
                },
            },
        )
    )
    events.append(SseEvent("message_stop", {"type": "message_stop"}))
    return events


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _block_events(index: int, block: dict[str, Any]) -> list[SseEvent]:
    if block["type"] == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": c} for c in _chunks(block["text"], TEXT_CHUNK)]
    elif block["type"] == "tool_use":
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        raw = json.dumps(block["input"])
        deltas = [{"type": "input_json_delta", "partial_json": c} for c in _chunks(raw, JSON_CHUNK)]
    else:  # pragma: no cover - the engine only makes text and tool_use blocks
        raise ValueError(f"unknown block type {block['type']!r}")
    return [
        SseEvent(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        ),
        *(
            SseEvent(
                "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}
            )
            for d in deltas
        ),
        SseEvent("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    """The real API's error body."""
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def models_list(names: Iterable[str]) -> dict[str, Any]:
    """A ``GET /v1/models`` page listing ``names``."""
    data = [
        {"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"}
        for n in names
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
