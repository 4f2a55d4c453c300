"""Claude Code's ``--output-format stream-json --verbose`` output: typed events, the
running totals of a session, and how the run ended (pure).

Why structured fields and never the text: the result's ``terminal_reason``
(``completed``, ``api_error``, ``prompt_too_long``, ...), ``api_error_status`` and
``is_error``, the ``system/api_retry`` events (``error_status``), the
``system/permission_denied`` events and the process's exit status say what happened in
words that do not change with a translation or a reworded message. The runner feeds
each line to :class:`StreamState` as it arrives, so it can act before the end: an
``api_retry`` with 401/403 means the credentials are wrong and every retry (up to ten,
with growing delays) is wasted, so :attr:`StreamState.early_outcome` says "auth" at
once and the runner kills Claude Code instead of waiting.

Checked against real streams of Claude Code 2.1.x recorded in
``tests/fixtures/claude_streams/`` (``python -m tests.model.record_streams``).
"""

from __future__ import annotations

import json
import signal as signals
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agentctl_swarm.core.redact import Redactor

AUTH_STATUSES = frozenset({401, 403})
QUOTA_STATUSES = frozenset({429})
OVERLOADED_STATUSES = frozenset({529, 503})


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Usage:
    """Token counts (the result's totals, or what the stream showed so far)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @classmethod
    def of(cls, raw: Any) -> Usage:
        if not isinstance(raw, Mapping):
            return cls()
        return cls(**{name: _int(raw.get(name)) for name in cls.__dataclass_fields__})

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, n) + getattr(other, n) for n in self.__dataclass_fields__))

    @property
    def total(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )


@dataclass(frozen=True)
class McpServer:
    name: str
    status: str  # connected | failed | pending | needs-auth ...


@dataclass(frozen=True)
class InitEvent:
    """``system/init``: the session starts."""

    session_id: str
    model: str
    cwd: str
    tools: tuple[str, ...]
    mcp_servers: tuple[McpServer, ...]
    permission_mode: str
    version: str
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class AssistantEvent:
    """An assistant message (Claude Code prints one per content block)."""

    message_id: str
    model: str
    text: str
    tool_uses: tuple[ToolUse, ...]
    usage: Usage
    synthetic: bool  # made up by Claude Code itself (e.g. an API error), not the model
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ToolResult:
    tool_use_id: str
    is_error: bool
    content: str
    denied: bool  # refused by a permission rule or the user, not run


@dataclass(frozen=True)
class UserEvent:
    """A user message: in ``-p`` runs, the tool results going back to the model."""

    tool_results: tuple[ToolResult, ...]
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ApiRetryEvent:
    """``system/api_retry``: a model call failed and Claude Code will try again."""

    attempt: int
    max_retries: int
    retry_delay_ms: int
    error_status: int | None
    error: str
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class PermissionDenial:
    tool_name: str
    tool_use_id: str
    reason: str


@dataclass(frozen=True)
class PermissionDeniedEvent:
    """``system/permission_denied``: a tool call was refused."""

    denial: PermissionDenial
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ResultEvent:
    """``result``: the session's end, with totals."""

    subtype: str
    is_error: bool
    terminal_reason: str | None
    api_error_status: int | None
    api_error_type: str | None
    result: str
    session_id: str
    num_turns: int
    total_cost_usd: float
    usage: Usage
    duration_ms: int
    permission_denials: tuple[PermissionDenial, ...]
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class OtherEvent:
    """Any other JSON event (kept, so nothing is lost from a transcript)."""

    type: str
    subtype: str | None
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class NotJson:
    """A line that is not a JSON object (Claude Code printed something else)."""

    line: str


Event = (
    InitEvent
    | AssistantEvent
    | UserEvent
    | ApiRetryEvent
    | PermissionDeniedEvent
    | ResultEvent
    | OtherEvent
    | NotJson
)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _status(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else 0.0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(
        _str(b.get("text")) for b in _list(content) if isinstance(b, dict) and "text" in b
    )


def _denial(raw: Any) -> PermissionDenial:
    raw = _dict(raw)
    return PermissionDenial(
        tool_name=_str(raw.get("tool_name")),
        tool_use_id=_str(raw.get("tool_use_id")),
        reason=_str(raw.get("decision_reason_type") or raw.get("message")),
    )


def parse_line(line: str) -> Event:
    """One line of stream-json as a typed event (never raises)."""
    try:
        raw = json.loads(line)
    except ValueError:
        return NotJson(line)
    if not isinstance(raw, dict):
        return NotJson(line)
    return parse_event(raw)


def parse_event(raw: dict[str, Any]) -> Event:
    """A decoded stream-json object as a typed event."""
    kind, subtype = _str(raw.get("type")), raw.get("subtype")
    if kind == "system" and subtype == "init":
        return InitEvent(
            session_id=_str(raw.get("session_id")),
            model=_str(raw.get("model")),
            cwd=_str(raw.get("cwd")),
            tools=tuple(t for t in _list(raw.get("tools")) if isinstance(t, str)),
            mcp_servers=tuple(
                McpServer(_str(s.get("name")), _str(s.get("status")))
                for s in _list(raw.get("mcp_servers"))
                if isinstance(s, dict)
            ),
            permission_mode=_str(raw.get("permissionMode")),
            version=_str(raw.get("claude_code_version")),
            raw=raw,
        )
    if kind == "system" and subtype == "api_retry":
        return ApiRetryEvent(
            attempt=_int(raw.get("attempt")),
            max_retries=_int(raw.get("max_retries")),
            retry_delay_ms=_int(raw.get("retry_delay_ms")),
            error_status=_status(raw.get("error_status")),
            error=_str(raw.get("error")),
            raw=raw,
        )
    if kind == "system" and subtype == "permission_denied":
        return PermissionDeniedEvent(_denial(raw), raw)
    if kind == "assistant":
        message = _dict(raw.get("message"))
        blocks = [b for b in _list(message.get("content")) if isinstance(b, dict)]
        return AssistantEvent(
            message_id=_str(message.get("id")),
            model=_str(message.get("model")),
            text="".join(_str(b.get("text")) for b in blocks if b.get("type") == "text"),
            tool_uses=tuple(
                ToolUse(_str(b.get("id")), _str(b.get("name")), _dict(b.get("input")))
                for b in blocks
                if b.get("type") == "tool_use"
            ),
            usage=Usage.of(message.get("usage")),
            synthetic=message.get("model") == "<synthetic>",
            raw=raw,
        )
    if kind == "user":
        return UserEvent(_tool_results(raw), raw)
    if kind == "result":
        return ResultEvent(
            subtype=_str(subtype),
            is_error=raw.get("is_error") is True,
            terminal_reason=_str(raw.get("terminal_reason")) or None,
            api_error_status=_status(raw.get("api_error_status")),
            api_error_type=_str(raw.get("api_error_type")) or None,
            result=_str(raw.get("result")),
            session_id=_str(raw.get("session_id")),
            num_turns=_int(raw.get("num_turns")),
            total_cost_usd=_float(raw.get("total_cost_usd")),
            usage=Usage.of(raw.get("usage")),
            duration_ms=_int(raw.get("duration_ms")),
            permission_denials=tuple(_denial(d) for d in _list(raw.get("permission_denials"))),
            raw=raw,
        )
    return OtherEvent(kind, subtype if isinstance(subtype, str) else None, raw)


def _tool_results(raw: dict[str, Any]) -> tuple[ToolResult, ...]:
    """Tool results of a user event; ``denied`` from ``tool_result_meta`` (a permission
    decision of "reject" means the tool never ran)."""
    meta = {_str(m.get("id")): m for m in _list(raw.get("tool_result_meta")) if isinstance(m, dict)}
    out = []
    for block in _list(_dict(raw.get("message")).get("content")):
        if not isinstance(block, dict) or block.get("type") != "tool_result":
            continue
        tool_id = _str(block.get("tool_use_id"))
        decision = _dict(_dict(meta.get(tool_id)).get("permission_decision"))
        out.append(
            ToolResult(
                tool_use_id=tool_id,
                is_error=block.get("is_error") is True,
                content=_text_of(block.get("content")),
                denied=decision.get("decision") == "reject",
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------- outcome


class Outcome(StrEnum):
    """How a Claude Code run ended, as the runner acts on it."""

    SUCCESS = "success"  # the session completed
    AUTH = "auth"  # 401/403: credentials wrong or revoked; stop, retrying cannot help
    QUOTA = "quota"  # 429: rate or usage limit; pause the fleet, probe later
    OVERLOADED = "overloaded"  # 529/503: the API is at capacity; try again later
    CONTEXT_OVERFLOW = "context_overflow"  # the prompt does not fit the context window
    API_ERROR = "api_error"  # another API error (400, 500, ...)
    PERMISSION_DENIED = "permission_denied"  # completed, but tool calls were refused
    ERROR = "error"  # Claude Code reported an error that is none of the above
    TIMEOUT = "timeout"  # the runner stopped it at its deadline
    KILLED = "killed"  # ended by a signal nobody planned (kill -9, OOM killer, ...)
    CRASH = "crash"  # exited without a result (non-zero, or zero with no result)


def outcome_of_status(status: int | None) -> Outcome:
    """The outcome an API error status stands for."""
    if status in AUTH_STATUSES:
        return Outcome.AUTH
    if status in QUOTA_STATUSES:
        return Outcome.QUOTA
    if status in OVERLOADED_STATUSES:
        return Outcome.OVERLOADED
    return Outcome.API_ERROR


@dataclass(frozen=True)
class RunEnd:
    """The classified end of a run, with everything the runner reports."""

    outcome: Outcome
    reason: str  # one line for people (FAIL messages, logs)
    exit_code: int | None
    signal: str | None
    api_error_status: int | None
    terminal_reason: str | None
    session_id: str
    usage: Usage
    total_cost_usd: float
    num_turns: int
    retries: int
    permission_denials: tuple[PermissionDenial, ...]

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS


@dataclass
class StreamState:
    """The running totals of one session, fed line by line (``feed``).

    ``usage`` is the result's total once it arrived; before that, the sum over the
    assistant messages seen (each message id counted once, with the largest counts it
    showed), which is what a killed run leaves.
    """

    session_id: str = ""
    model: str = ""
    version: str = ""
    tools: tuple[str, ...] = ()
    mcp_servers: tuple[McpServer, ...] = ()
    retries: list[ApiRetryEvent] = field(default_factory=list)
    denials: list[PermissionDenial] = field(default_factory=list)
    tool_uses: list[ToolUse] = field(default_factory=list)
    result: ResultEvent | None = None
    not_json: int = 0
    activity: str = ""  # what the model did last, in a few words (for STATUS lines)
    _message_usage: dict[str, Usage] = field(default_factory=dict)

    def feed(self, line: str) -> Event:
        """Parse one line and fold it into the totals; returns the event."""
        event = parse_line(line)
        self.apply(event)
        return event

    def feed_all(self, lines: Iterable[str]) -> StreamState:
        for line in lines:
            if line.strip():
                self.feed(line)
        return self

    def apply(self, event: Event) -> None:
        match event:
            case InitEvent():
                self.session_id = event.session_id or self.session_id
                self.model, self.version = event.model, event.version
                self.tools, self.mcp_servers = event.tools, event.mcp_servers
            case AssistantEvent(synthetic=False):
                old = self._message_usage.get(event.message_id, Usage())
                self._message_usage[event.message_id] = Usage(
                    *(max(getattr(old, n), getattr(event.usage, n))
                      for n in Usage.__dataclass_fields__)
                )  # fmt: skip
                self.tool_uses.extend(event.tool_uses)
                self.activity = describe_activity(event) or self.activity
            case ApiRetryEvent():
                self.retries.append(event)
            case PermissionDeniedEvent():
                if event.denial.tool_use_id not in {d.tool_use_id for d in self.denials}:
                    self.denials.append(event.denial)
            case ResultEvent():
                self.result = event
                self.session_id = event.session_id or self.session_id
                known = {d.tool_use_id for d in self.denials}
                self.denials.extend(
                    d for d in event.permission_denials if d.tool_use_id not in known
                )
            case NotJson():
                self.not_json += 1
            case _:
                pass

    # -- what the runner asks while the run goes on

    @property
    def auth_failed(self) -> bool:
        """The stream shows an auth failure (a retry or the result with 401/403)."""
        if any(r.error_status in AUTH_STATUSES for r in self.retries):
            return True
        return self.result is not None and self.result.api_error_status in AUTH_STATUSES

    @property
    def rate_limited(self) -> bool:
        """A model call got 429 (Claude Code may still be retrying)."""
        if any(r.error_status in QUOTA_STATUSES for r in self.retries):
            return True
        return self.result is not None and self.result.api_error_status in QUOTA_STATUSES

    def early_outcome(self, *, stop_on_quota: bool = False) -> Outcome | None:
        """Whether to stop Claude Code now rather than let it retry: AUTH as soon as the
        first 401/403 shows (retries cannot fix credentials); QUOTA on a 429 when
        ``stop_on_quota`` (the coordinator pauses the fleet anyway)."""
        if self.auth_failed:
            return Outcome.AUTH
        if stop_on_quota and self.rate_limited:
            return Outcome.QUOTA
        return None

    @property
    def usage(self) -> Usage:
        if self.result is not None:
            return self.result.usage
        total = Usage()
        for usage in self._message_usage.values():
            total = total + usage
        return total

    @property
    def total_cost_usd(self) -> float:
        return self.result.total_cost_usd if self.result else 0.0

    @property
    def num_turns(self) -> int:
        return self.result.num_turns if self.result else len(self._message_usage)

    # -- the end

    def classify(
        self,
        returncode: int | None,
        *,
        timed_out: bool = False,
        stopped_early: Outcome | None = None,
    ) -> RunEnd:
        """How the run ended, from the structured fields and the exit status.

        ``returncode``: as ``subprocess`` reports it (negative: killed by that signal;
        None: unknown). ``timed_out``: the caller stopped it at its deadline.
        ``stopped_early``: the caller stopped it for :meth:`early_outcome`'s answer.
        Precedence: the caller's reasons, then an auth failure anywhere in the stream,
        then the result event, then the exit status.
        """
        code, sig = _exit_parts(returncode)
        result = self.result
        outcome, reason = Outcome.CRASH, ""
        if timed_out:
            outcome, reason = Outcome.TIMEOUT, "stopped at its deadline"
        elif stopped_early is not None:
            outcome, reason = stopped_early, f"stopped early: {self._api_reason()}"
        elif self.auth_failed:
            outcome, reason = Outcome.AUTH, self._api_reason()
        elif result is not None:
            outcome, reason = self._from_result(result)
        elif sig is not None:
            outcome, reason = Outcome.KILLED, f"killed by {sig} before it finished"
        elif code == 0:
            reason = "exited 0 without a result"
        else:
            reason = f"exited {code} without a result" if code is not None else "no result"
        return RunEnd(
            outcome=outcome,
            reason=reason,
            exit_code=code,
            signal=sig,
            api_error_status=result.api_error_status if result else self._last_status(),
            terminal_reason=result.terminal_reason if result else None,
            session_id=self.session_id,
            usage=self.usage,
            total_cost_usd=self.total_cost_usd,
            num_turns=self.num_turns,
            retries=len(self.retries),
            permission_denials=tuple(self.denials),
        )

    def _last_status(self) -> int | None:
        return next((r.error_status for r in reversed(self.retries) if r.error_status), None)

    def _api_reason(self) -> str:
        status = (self.result.api_error_status if self.result else None) or self._last_status()
        error = next((r.error for r in reversed(self.retries) if r.error), "")
        if self.result is not None and self.result.api_error_type:
            error = self.result.api_error_type
        return f"API error {status}" + (f" ({error})" if error else "")

    def _from_result(self, result: ResultEvent) -> tuple[Outcome, str]:
        if result.terminal_reason == "prompt_too_long":
            return Outcome.CONTEXT_OVERFLOW, "the prompt is too long for the context window"
        if result.api_error_status is not None:
            return outcome_of_status(result.api_error_status), self._api_reason()
        if result.is_error or result.subtype.startswith("error"):
            why = result.terminal_reason or result.subtype or "error"
            return Outcome.ERROR, f"Claude Code reported an error ({why})"
        if self.denials:
            tools = sorted({d.tool_name for d in self.denials})
            return Outcome.PERMISSION_DENIED, (
                f"completed, but {len(self.denials)} tool call(s) were refused ({', '.join(tools)})"
            )
        return Outcome.SUCCESS, f"completed in {result.num_turns} turn(s)"


ACTIVITY_KEYS = ("file_path", "command", "pattern", "path", "url", "target", "description")


def describe_activity(event: AssistantEvent, limit: int = 120) -> str:
    """A few words on what an assistant message does: its last tool call with the
    input that says most (``Write /workspace/a.py``), else its text's first line."""
    if event.tool_uses:
        call = event.tool_uses[-1]
        detail = next(
            (str(call.input[k]) for k in ACTIVITY_KEYS if isinstance(call.input.get(k), str)),
            "",
        )
        text = f"{call.name} {detail}".strip()
    else:
        text = next((line.strip() for line in event.text.splitlines() if line.strip()), "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exit_parts(returncode: int | None) -> tuple[int | None, str | None]:
    """(exit code, signal name). Exit codes 129..159 mean "ended by signal N" too:
    Claude Code catches SIGTERM and SIGINT and exits 128+N, as shells report them."""
    if returncode is None:
        return None, None
    if returncode < 0:
        return None, _signal_name(-returncode)
    if 128 < returncode < 160:
        return returncode, _signal_name(returncode - 128)
    return returncode, None


def _signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def classify_lines(
    lines: Iterable[str],
    returncode: int | None,
    *,
    timed_out: bool = False,
    stopped_early: Outcome | None = None,
) -> RunEnd:
    """Classify a whole recorded stream (tests, transcripts read back)."""
    return (
        StreamState()
        .feed_all(lines)
        .classify(returncode, timed_out=timed_out, stopped_early=stopped_early)
    )


# ------------------------------------------------------------------------ redaction


def transcript_redactor(
    secrets: Iterable[str] = (), env: Mapping[str, str] | None = None
) -> Redactor:
    """The redactor for transcript lines: the caller's secret values (an API key, an
    OAuth token), the secret-looking variables of ``env``, and known key shapes
    (``sk-ant-...``, ``ghp_...``, AWS keys, ...). A value is also matched in its JSON
    escaped form, as it appears inside a stream-json line."""
    extra: list[tuple[str, str]] = []
    for value in secrets:
        if not value:
            continue
        extra.append(("secret", value))
        escaped = json.dumps(value)[1:-1]
        if escaped != value:
            extra.append(("secret", escaped))
    return Redactor(env=env, extra=extra)


def redactor(
    secrets: Iterable[str] = (), env: Mapping[str, str] | None = None
) -> Callable[[str], str]:
    """A function that redacts one transcript line (see :func:`redact_line`)."""
    built = transcript_redactor(secrets, env)
    return lambda line: redact_line(line, built)


def redact_line(line: str, using: Redactor) -> str:
    """A transcript line with secrets replaced by ``[REDACTED:<what>]``.

    A JSON line is redacted string by string and written back as JSON, so it stays
    valid (a pattern such as ``api_key: "..."`` can never swallow a quote of the JSON
    itself); any other line is redacted as text.
    """
    try:
        raw = json.loads(line)
    except ValueError:
        return using.clean(line)
    if isinstance(raw, str):  # a bare JSON string
        return json.dumps(using.clean(raw))
    cleaned = _redact_value(raw, using)
    if cleaned == raw:
        # Strings were clean; the escaped forms of a secret can still hide in the raw
        # text only if a string held it, so the line is clean as it stands.
        return line
    return json.dumps(cleaned, ensure_ascii=False, separators=(",", ":"))


def _redact_value(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.clean(value)
    if isinstance(value, list):
        return [_redact_value(v, redactor) for v in value]
    if isinstance(value, dict):
        return {redactor.clean(k): _redact_value(v, redactor) for k, v in value.items()}
    return value
