"""The scripted model's brain: one HTTP request in, one :class:`Reply` out (pure).

No sockets, no clocks, no state: the HTTP shell (``server.py``) passes the method, path,
headers, body and the time in, and writes out what :func:`answer` returns (like the
websockets library's sans-I/O core). Which conversation answers is decided by the
script's ``match`` rules over the request; which turn, by the number of assistant turns
the request already holds. So a retry gets the same answer, and one server answers any
number of concurrent Claude Code processes.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from agentctl_swarm.model import wire
from agentctl_swarm.model.script import Conversation, ErrorReply, Script, Turn, Usage
from agentctl_swarm.model.wire import ApiRequest, BadRequest, SseEvent

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
MODELS_PATH = "/v1/models"
# Claude Code checks that its base URL answers (HEAD /api/hello) unless
# CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC is set.
HEALTH_PATHS = ("/", "/health", "/api/hello")
DEFAULT_MODELS = ("claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5")
RATE_LIMIT_WINDOW = 60  # seconds the anthropic-ratelimit-*-reset headers point ahead


@dataclass(frozen=True)
class Reply:
    """What to send back. ``events`` non-empty: an SSE stream (status 200); else a JSON
    ``body`` with ``status``. ``delay``: seconds to wait first; ``hang``: never answer."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: dict[str, Any] | None = None
    events: tuple[SseEvent, ...] = ()
    delay: float = 0.0
    hang: bool = False
    conversation: str | None = None
    turn: int | None = None
    attempt_key: str | None = None

    @property
    def streamed(self) -> bool:
        return bool(self.events)

    def summary(self) -> str:
        """A short description for logs and recordings."""
        if self.hang:
            return "hang"
        if self.body is not None and self.body.get("type") == "error":
            return f"{self.status} {self.body['error']['type']}"
        return f"{self.status} {'stream' if self.streamed else 'json'}"


def answer(
    script: Script,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    attempts: Mapping[str, int] | None = None,
) -> Reply:
    """The reply to one HTTP request.

    ``now``: epoch seconds (for the rate-limit reset headers). ``attempts``: how often
    each ``Reply.attempt_key`` was answered before (the shell counts them; only turns
    whose error has ``times`` use it).
    """
    route = path.split("?", 1)[0].rstrip("/") or "/"
    request_id = wire.stable_id("req", method, path, body)
    if method in ("GET", "HEAD") and route in HEALTH_PATHS:
        return Reply(body={"status": "ok", "service": "agentctl scripted model"})
    if method == "GET" and route == MODELS_PATH:
        return Reply(body=wire.models_list(DEFAULT_MODELS))
    if method != "POST" or route not in (MESSAGES_PATH, COUNT_TOKENS_PATH):
        return _error(
            404,
            "not_found_error",
            f"agentctl model serves POST {MESSAGES_PATH} and {COUNT_TOKENS_PATH}, "
            f"not {method} {route}",
            request_id,
        )
    try:
        decoded = json.loads(body or b"null")
    except ValueError:
        return _error(400, "invalid_request_error", "the body is not valid JSON", request_id)
    if route == COUNT_TOKENS_PATH:
        return _count_tokens(decoded, request_id)
    try:
        request = ApiRequest.parse(decoded)
    except BadRequest as exc:
        return _error(400, "invalid_request_error", str(exc), request_id)
    session = _header(headers, "x-claude-code-session-id") or wire.stable_id("s", request.prompt)
    return _scripted(script, request, session, attempts or {}, request_id, now)


def _count_tokens(decoded: Any, request_id: str) -> Reply:
    if not isinstance(decoded, dict) or not isinstance(decoded.get("messages"), list):
        return _error(400, "invalid_request_error", "messages: must be a list", request_id)
    counted = {k: decoded.get(k) for k in ("system", "messages", "tools")}
    return Reply(body={"input_tokens": wire.estimate_tokens(counted)})


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def pick(script: Script, request: ApiRequest) -> tuple[int, Conversation, dict[str, str]] | None:
    """The first conversation whose ``match`` fits the request, with its index and the
    named groups its regexes captured; None when none does."""
    for index, conversation in enumerate(script.all_conversations()):
        groups: dict[str, str] = {}
        ok = True
        for pattern, text in ((conversation.match.prompt, request.prompt),
                              (conversation.match.system, request.system)):  # fmt: skip
            if pattern is None:
                continue
            found = re.search(pattern, text)
            if found is None:
                ok = False
                break
            groups.update({k: v for k, v in found.groupdict().items() if v is not None})
        if ok:
            return index, conversation, groups
    return None


def _scripted(
    script: Script,
    request: ApiRequest,
    session: str,
    attempts: Mapping[str, int],
    request_id: str,
    now: float,
) -> Reply:
    picked = pick(script, request)
    if picked is None:
        shown = request.prompt[:80].replace("\n", " ")
        return _error(
            400,
            "invalid_request_error",
            f"agentctl model: no conversation of the script matches this request "
            f"(prompt {shown!r}); add a conversation without `match` as the fallback",
            request_id,
        )
    index, conversation, groups = picked
    label = conversation.label(index)
    position = request.assistant_turns
    if position >= len(conversation.turns):
        n = len(conversation.turns)
        return _error(
            400,
            "invalid_request_error",
            f"agentctl model: conversation {label!r} has {n} turn{'s' if n != 1 else ''}, "
            f"but the client asked for turn {position + 1}; end the conversation with a "
            "turn without tool_use, or add turns",
            request_id,
            conversation=label,
            turn=position,
        )
    turn = conversation.turns[position]
    key = None
    if turn.error is not None and turn.error.times is not None:
        who = session if turn.error.scope == "session" else "*"
        key = f"{who}|{index}|{position}"
    where = Reply(conversation=label, turn=position, delay=turn.delay, attempt_key=key)
    if turn.hang:
        return replace(where, hang=True)
    error = turn.error
    if error is not None and (error.times is None or attempts.get(key or "", 0) < error.times):
        return _error_reply(error, request_id, now, where)
    # ${cwd} stays as written when the request does not say where Claude Code works,
    # so a script never writes to "/file" by accident.
    variables = {"prompt": request.prompt, **({"cwd": request.cwd} if request.cwd else {})}
    variables.update(groups)
    content = _content(turn, variables, label, position, request)
    shape: dict[str, Any] = {
        "message_id": wire.stable_id("msg", label, position, request.prompt),
        "model": request.model,
        "content": content,
        "stop_reason": turn.effective_stop_reason,
        "usage": _usage(turn, request, content),
    }
    headers = (("request-id", request_id),)
    if request.stream:
        return replace(where, headers=headers, events=tuple(wire.message_events(**shape)))
    return replace(where, headers=headers, body=wire.message_json(**shape))


def _substitute(value: Any, variables: Mapping[str, str]) -> Any:
    """``${name}`` in every string of ``value`` (``$$`` is a dollar; unknown names stay)."""
    if isinstance(value, str):
        return string.Template(value).safe_substitute(variables)
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    return value


def _content(
    turn: Turn, variables: Mapping[str, str], label: str, position: int, request: ApiRequest
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.text is not None:
        blocks.append({"type": "text", "text": _substitute(turn.text, variables)})
    for n, call in enumerate(turn.tool_use):
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id or wire.stable_id("toolu", label, position, n, request.prompt),
                "name": call.name,
                "input": _substitute(call.input, variables),
            }
        )
    return blocks


def _usage(turn: Turn, request: ApiRequest, content: list[dict[str, Any]]) -> dict[str, Any]:
    """The turn's usage; counts it leaves out are estimated from the text sizes."""
    given = turn.usage or Usage()
    sent = {k: request.body.get(k) for k in ("system", "messages", "tools")}
    return wire.usage_block(
        input_tokens=wire.estimate_tokens(sent)
        if given.input_tokens is None
        else given.input_tokens,
        output_tokens=wire.estimate_tokens(content)
        if given.output_tokens is None
        else given.output_tokens,
        cache_creation=given.cache_creation_input_tokens,
        cache_read=given.cache_read_input_tokens,
    )


def _error(
    status: int,
    error_type: str,
    message: str,
    request_id: str,
    *,
    conversation: str | None = None,
    turn: int | None = None,
) -> Reply:
    """An API error of the server's own (bad request, unknown path, script exhausted)."""
    return Reply(
        status=status,
        headers=(("request-id", request_id),),
        body=wire.error_body(error_type, message, request_id),
        conversation=conversation,
        turn=turn,
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _error_reply(error: ErrorReply, request_id: str, now: float, where: Reply) -> Reply:
    """The scripted error with the real API's headers (``retry-after``, and for 429 the
    ``anthropic-ratelimit-*`` family, all exhausted); the script's headers win."""
    status, error_type, message = error.resolved()
    headers: list[tuple[str, str]] = []
    if error.retry_after is not None:
        headers.append(("retry-after", f"{error.retry_after:g}"))
    if status == 429:
        reset = _iso(now + (error.retry_after or RATE_LIMIT_WINDOW))
        for what, limit in (("requests", "50"), ("tokens", "40000"),
                            ("input-tokens", "30000"), ("output-tokens", "8000")):  # fmt: skip
            headers += [
                (f"anthropic-ratelimit-{what}-limit", limit),
                (f"anthropic-ratelimit-{what}-remaining", "0"),
                (f"anthropic-ratelimit-{what}-reset", reset),
            ]
    given = {k.lower() for k in error.headers}
    headers = [h for h in headers if h[0] not in given]
    headers += [(k.lower(), v) for k, v in error.headers.items()]
    return replace(
        where,
        status=status,
        headers=(("request-id", request_id), *headers),
        body=wire.error_body(error_type, message, request_id),
    )
