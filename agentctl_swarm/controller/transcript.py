"""A Claude Code session, readable: what `agentctl transcript` prints (pure: no I/O).

The runner keeps every line Claude Code printed (``--output-format stream-json``,
redacted) in ``/state/transcripts/<task>-<attempt>.jsonl``. Raw, that is pages of JSON per
turn; a person wants the conversation: the prompt, what the model said, each tool call
with its input in a few words, what the tool answered (shortened, errors marked),
API retries, refusals, and how it ended (outcome, turns, tokens, cost).

Parsing is ``agent.claude_stream``'s, the same code the runner uses to classify the run,
so the transcript never tells a different story from the task's outcome. This module
turns those typed events into :class:`Entry` items, which render as text lines or JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agentctl_swarm.agent.claude_stream import (
    ApiRetryEvent,
    AssistantEvent,
    InitEvent,
    NotJson,
    PermissionDeniedEvent,
    ResultEvent,
    StreamState,
    UserEvent,
)

#: How much of a tool's answer is shown (lines, characters).
RESULT_LINES = 6
RESULT_CHARS = 600
#: How much of one tool input value is shown.
INPUT_CHARS = 80


@dataclass(frozen=True)
class Entry:
    """One readable item of a session.

    ``kind``: session, prompt, text, tool_call, tool_result, retry, denied, result, end,
    output (a line that is not stream-json: a ``runtime: command`` agent's output) or
    omitted (the middle of a transcript too large to show whole).
    """

    kind: str
    text: str
    body: str = ""
    error: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.body:
            doc["body"] = self.body
        if self.error:
            doc["error"] = True
        if self.data:
            doc["data"] = self.data
        return doc


@dataclass(frozen=True)
class Session:
    """A transcript turned into entries, with the run's totals."""

    entries: tuple[Entry, ...]
    summary: dict[str, Any]


@dataclass(frozen=True)
class Clipped:
    """A transcript's text, with its middle left out when it is larger than the cap."""

    head: list[str]
    omitted_bytes: int = 0
    tail: list[str] = field(default_factory=list)


def clip(data: bytes, cap: int) -> Clipped:
    """Split ``data`` into lines; above ``cap`` bytes keep whole lines from the start and
    the end, about ``cap / 2`` each (the start says what was asked, the end how it
    ended). The first and the last line are kept even when longer than that (the
    session's start and its result), unless one alone is over ``cap``."""
    if len(data) <= cap:
        return Clipped(_decode(data))
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    budget = cap // 2

    def take(order: Sequence[bytes]) -> tuple[int, int]:
        count = used = 0
        for part in order:
            size = len(part) + 1
            if used + size > budget and not (count == 0 and size <= cap):
                break
            count, used = count + 1, used + size
        return count, used

    head_n, head_bytes = take(parts)
    tail_n, tail_bytes = take(parts[head_n:][::-1])
    if head_n + tail_n >= len(parts):
        return Clipped(_decode(data))
    head = [p.decode("utf-8", "replace") for p in parts[:head_n]]
    tail = [p.decode("utf-8", "replace") for p in parts[len(parts) - tail_n :]]
    return Clipped(head, max(0, len(data) - head_bytes - tail_bytes), tail)


def _decode(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines()


def session(
    text: Clipped | Sequence[str],
    *,
    prompt: str | None = None,
    result_lines: int = RESULT_LINES,
    result_chars: int = RESULT_CHARS,
) -> Session:
    """The entries of one transcript. ``prompt``: the task as posted (the stream itself
    does not hold it: Claude Code gets it on stdin), shown after the session starts."""
    clipped = text if isinstance(text, Clipped) else Clipped(list(text))
    state = StreamState()
    tools: dict[str, str] = {}  # tool_use id -> tool name
    out: list[Entry] = []
    pending_prompt = prompt
    saw_json = False

    def lines() -> Iterable[str | None]:
        yield from clipped.head
        if clipped.omitted_bytes:
            yield None  # the gap
        yield from clipped.tail

    for line in lines():
        if line is None:
            out.append(Entry("omitted", f"... {clipped.omitted_bytes:,} bytes left out ..."))
            continue
        if not line.strip():
            continue
        event = state.feed(line)
        saw_json = saw_json or not isinstance(event, NotJson)
        match event:
            case InitEvent():
                out.append(_init(event))
                if pending_prompt:
                    out.append(Entry("prompt", _first_line(pending_prompt), body=pending_prompt))
                    pending_prompt = None
            case AssistantEvent():
                out += _assistant(event, tools)
            case UserEvent():
                asked = _user_text(event.raw)
                if asked and not event.tool_results:
                    out.append(Entry("prompt", _first_line(asked), body=asked))
                    pending_prompt = None
                for result in event.tool_results:
                    out.append(_tool_result(result, tools, result_lines, result_chars))
            case ApiRetryEvent():
                status = event.error_status if event.error_status is not None else "?"
                delay = event.retry_delay_ms / 1000
                out.append(
                    Entry(
                        "retry",
                        f"API call failed ({status} {event.error}); retry "
                        f"{event.attempt}/{event.max_retries} in {delay:.1f}s",
                        error=True,
                        data={"status": event.error_status, "attempt": event.attempt},
                    )
                )
            case PermissionDeniedEvent():
                d = event.denial
                out.append(Entry("denied", f"{d.tool_name} refused ({d.reason})", error=True))
            case ResultEvent():
                said = next((e.body for e in reversed(out) if e.kind == "text"), "")
                entry = _result(event, state)
                if said and entry.body.strip() == said.strip():
                    entry = replace(entry, body="")  # the model's last message, shown above
                out.append(entry)
            case NotJson():
                out.append(Entry("output", line))
            case _:
                pass  # hooks, stream deltas and the like: not part of the conversation
    if pending_prompt:
        out.insert(0, Entry("prompt", _first_line(pending_prompt), body=pending_prompt))
    if state.result is None and saw_json:
        out.append(
            Entry("end", "the stream ends without a result: the run was stopped or is still going")
        )
    return Session(tuple(out), summary(state))


def summary(state: StreamState) -> dict[str, Any]:
    """The run's totals and outcome, as the runner classifies them."""
    end = state.classify(None)
    usage = state.usage
    return {
        "outcome": end.outcome.value if state.result is not None else None,
        "reason": end.reason if state.result is not None else "no result in the stream",
        "session_id": state.session_id or None,
        "model": state.model or None,
        "turns": state.num_turns,
        "tool_calls": len(state.tool_uses),
        "retries": len(state.retries),
        "denials": len(state.denials),
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
        },
        "cost_usd": state.total_cost_usd,
    }


def compact_input(params: Mapping[str, Any], limit: int = INPUT_CHARS) -> str:
    """A tool call's input in a few words: ``file_path="/w/a.py", content="…" (120 chars)``."""
    parts = []
    for key, value in params.items():
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        if isinstance(value, str) and len(text) > limit:
            head = json.dumps(value[: max(limit - 10, 1)], ensure_ascii=False)
            text = f'{head[:-1]}..." ({len(value):,} chars)'
        elif len(text) > limit:
            text = text[: limit - 3] + "..."
        parts.append(f"{key}={text}")
    return ", ".join(parts)


def render_text(entries: Iterable[Entry]) -> list[tuple[str, str]]:
    """(tag, line) pairs for a terminal; the tag is the entry's kind, or "error" for an
    entry marked as one (the caller styles by tag)."""
    out: list[tuple[str, str]] = []
    for e in entries:
        tag = "error" if e.error else e.kind
        match e.kind:
            case "session":
                out.append((tag, e.text))
            case "prompt":
                out.append((tag, "prompt:"))
                out += [(tag, f"  {line}") for line in e.body.splitlines() or [e.text]]
            case "text":
                lines = e.body.splitlines() or [""]
                out.append((tag, f"assistant: {lines[0]}"))
                out += [(tag, f"  {line}") for line in lines[1:]]
            case "tool_call":
                out.append((tag, f"  → {e.text}"))
            case "tool_result":
                mark = "✗" if e.error else "←"
                lines = e.body.splitlines() or [""]
                out.append((tag, f"  {mark} {e.text}"))
                out += [(tag, f"      {line}") for line in lines]
            case "result":
                out.append((tag, e.text))
                out += [(tag, f"  {line}") for line in e.body.splitlines()]
            case "output":
                out.append((tag, f"| {e.text}"))
            case _:
                out.append((tag, f"! {e.text}" if e.error else e.text))
    return out


# --------------------------------------------------------------------------- pieces


def _init(event: InitEvent) -> Entry:
    parts = [f"session {event.session_id[:8] or '?'}", event.model or "model ?"]
    if event.version:
        parts.append(f"Claude Code {event.version}")
    if event.mcp_servers:
        parts.append("mcp: " + ", ".join(f"{s.name} ({s.status})" for s in event.mcp_servers))
    failed = [s.name for s in event.mcp_servers if s.status not in ("connected", "pending")]
    return Entry(
        "session",
        " · ".join(parts),
        error=bool(failed),
        data={"session_id": event.session_id, "model": event.model, "cwd": event.cwd,
              "version": event.version, "permission_mode": event.permission_mode},
    )  # fmt: skip


def _assistant(event: AssistantEvent, tools: dict[str, str]) -> list[Entry]:
    out = []
    if event.text.strip():
        if event.synthetic:  # Claude Code's own words (an API error), not the model's
            out.append(Entry("note", f"Claude Code: {_first_line(event.text)}", error=True))
        else:
            out.append(Entry("text", _first_line(event.text), body=event.text.strip()))
    for call in event.tool_uses:
        tools[call.id] = call.name
        out.append(
            Entry(
                "tool_call",
                f"{call.name}({compact_input(call.input)})",
                data={"id": call.id, "name": call.name, "input": call.input},
            )
        )
    return out


def _tool_result(result: Any, tools: Mapping[str, str], max_lines: int, max_chars: int) -> Entry:
    name = tools.get(result.tool_use_id, "tool")
    body, cut = _shorten(result.content, max_lines, max_chars)
    if result.denied:
        label = f"{name}: refused by a permission rule"
    elif result.is_error:
        label = f"{name}: error"
    else:
        label = name
    return Entry(
        "tool_result",
        label,
        body=body + (f"\n... ({cut})" if cut else ""),
        error=result.is_error or result.denied,
        data={"tool_use_id": result.tool_use_id, "name": name, "denied": result.denied,
              "chars": len(result.content)},
    )  # fmt: skip


def _result(event: ResultEvent, state: StreamState) -> Entry:
    end = state.classify(None)
    u = event.usage
    tokens = f"{u.input_tokens:,} tokens in, {u.output_tokens:,} out"
    if u.cache_read_input_tokens or u.cache_creation_input_tokens:
        tokens += (
            f" (cache: {u.cache_read_input_tokens:,} read, "
            f"{u.cache_creation_input_tokens:,} written)"
        )
    parts = [
        f"result: {end.outcome.value}",
        *([] if end.ok else [end.reason]),  # a success's reason is only the turn count
        f"{event.num_turns} turn(s)",
        tokens,
        f"${event.total_cost_usd:.4f}",
        f"{event.duration_ms / 1000:.1f}s",
    ]
    if state.retries:
        parts.append(f"{len(state.retries)} API retr{'y' if len(state.retries) == 1 else 'ies'}")
    body, _ = _shorten(event.result, 20, 2000)
    return Entry(
        "result",
        " · ".join(parts),
        body=body,
        error=not end.ok,
        data={"outcome": end.outcome.value, "terminal_reason": event.terminal_reason,
              "api_error_status": event.api_error_status, "turns": event.num_turns,
              "cost_usd": event.total_cost_usd, "duration_ms": event.duration_ms},
    )  # fmt: skip


def _user_text(raw: Mapping[str, Any]) -> str:
    """The text of a user message that is not tool results (a prompt replayed in the
    stream, e.g. with ``--replay-user-messages``)."""
    message = raw.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        texts = [
            str(b.get("text"))
            for b in content
            if isinstance(b, Mapping) and b.get("type") == "text" and b.get("text")
        ]
        return "\n".join(texts).strip()
    return ""


def _shorten(text: str, max_lines: int, max_chars: int) -> tuple[str, str]:
    """At most ``max_lines`` lines and ``max_chars`` characters, and what was left out."""
    lines = text.strip().splitlines()
    kept = lines[:max_lines]
    body = "\n".join(kept)
    if len(body) > max_chars:
        body = body[:max_chars].rstrip() + "..."
    left = len(lines) - len(kept)
    if left:
        return body, f"{left} more line{'s' if left != 1 else ''}, {len(text):,} chars in all"
    if len(text.strip()) > max_chars:
        return body, f"{len(text):,} chars in all"
    return body, ""


def _first_line(text: str, limit: int = 160) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."
