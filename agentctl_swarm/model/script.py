"""The model script: what the scripted model answers, conversation by conversation, turn
by turn (pure: the schema and its validation; reading files is ``script_file``'s job).

A script is YAML a person writes by hand::

    conversations:
      - name: writer                        # shown in logs and recordings
        match: {prompt: "write (?P<file>\\S+)"}   # regex over the task prompt
        turns:
          - text: "Writing ${file}."
            tool_use:
              - Write: {file_path: "${cwd}/${file}", content: "hello\\n"}
          - text: Done.
      - turns:                              # no match: the fallback for every other prompt
          - error: rate_limit

Turn *n* of a conversation answers the request that already holds *n* assistant turns,
so the position comes from the request itself: the server keeps no per-client state, and
retries and concurrent clients are safe. ``${cwd}`` (the working directory Claude Code
reports), ``${prompt}`` and the match's named groups are substituted into texts and tool
inputs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

# Tool names as the Messages API accepts them (Claude Code's MCP tools included).
TOOL_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,128}\Z")
MAX_DELAY = 3600.0

# error shortcuts → (HTTP status, API error type, message); the messages are the real
# API's wording, so Claude Code reacts to them as it does to the real thing.
ERROR_KINDS: dict[str, tuple[int, str, str]] = {
    "invalid_request": (400, "invalid_request_error", "invalid request"),
    "prompt_too_long": (
        400,
        "invalid_request_error",
        "prompt is too long: 215000 tokens > 200000 maximum",
    ),
    "authentication": (401, "authentication_error", "invalid x-api-key"),
    "permission": (403, "permission_error", "your API key does not have permission to use "
                   "the specified resource"),
    "not_found": (404, "not_found_error", "not found"),
    "request_too_large": (413, "request_too_large", "request exceeds the maximum size"),
    "rate_limit": (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests "
        "per minute. Please reduce the prompt length or the maximum tokens requested, or "
        "try again later.",
    ),
    "api_error": (500, "api_error", "Internal server error"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
}  # fmt: skip
_STATUS_KIND = {
    400: "invalid_request",
    401: "authentication",
    403: "permission",
    404: "not_found",
    413: "request_too_large",
    429: "rate_limit",
    500: "api_error",
    529: "overloaded",
}


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
    return value


Regex = Annotated[str, AfterValidator(_regex)]
Seconds = Annotated[float, Field(ge=0, le=MAX_DELAY, allow_inf_nan=False)]
Tokens = Annotated[int, Field(ge=0, le=10_000_000)]
StopReason = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal"]


class _Strict(BaseModel):
    """Unknown keys are errors (with a "did you mean" from the loader)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Usage(_Strict):
    """Token counts a turn reports; unset counts are estimated from the text sizes."""

    input_tokens: Tokens | None = None
    output_tokens: Tokens | None = None
    cache_creation_input_tokens: Tokens = 0
    cache_read_input_tokens: Tokens = 0


class ToolCall(_Strict):
    """One ``tool_use`` block: a Claude Code tool (Write, Edit, Bash, ...) or an MCP
    tool (``mcp__<server>__<tool>``). Written either as ``{name: Write, input: {...}}``
    or, shorter, as ``{Write: {...}}`` (``id`` may stand next to either)."""

    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "name" in data:
            return data
        unknown = [k for k in data if k not in cls.model_fields]
        if len(unknown) == 1 and isinstance(unknown[0], str):
            key = unknown[0]
            rest = {k: v for k, v in data.items() if k != key}
            return {"name": key, "input": {} if data[key] is None else data[key], **rest}
        return data

    @field_validator("name")
    @classmethod
    def _tool_name(cls, value: str) -> str:
        if not TOOL_NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a tool name (letters, digits, _ and -; "
                "MCP tools look like mcp__agentchat__agentchat_send)"
            )
        return value


class ErrorReply(_Strict):
    """An API error instead of an answer. Written as a kind (``rate_limit``), a status
    (``429``) or a mapping with ``status`` or ``kind`` and the optional fields below.

    Without ``times`` the error is permanent: every retry gets it again. With
    ``times: N`` only the first N attempts at this turn fail and the next gets the turn's
    answer (its ``text``/``tool_use``); attempts are counted per Claude Code session
    (``scope: session``, the default) or across everything the server sees
    (``scope: server``: "the first N requests to reach this turn fail", e.g. a quota that
    recovers for the fleet).
    """

    kind: Literal[tuple(ERROR_KINDS)] | None = None  # type: ignore[valid-type]
    status: int | None = Field(default=None, ge=400, le=599)
    type: str | None = None
    message: str | None = None
    retry_after: Seconds | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    times: int | None = Field(default=None, ge=1, le=1_000_000)
    scope: Literal["session", "server"] = "session"

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, bool):
            return data  # let pydantic say it must be a mapping
        if isinstance(data, int):
            return {"status": data}
        if isinstance(data, str):
            return {"kind": data}
        return data

    @model_validator(mode="after")
    def _status_or_kind(self) -> ErrorReply:
        if self.kind is None and self.status is None:
            raise ValueError(f"give a status (e.g. 429) or a kind: {', '.join(ERROR_KINDS)}")
        return self

    def resolved(self) -> tuple[int, str, str]:
        """(status, error type, message), filling what the script left out."""
        kind = self.kind or _STATUS_KIND.get(self.status or 0)
        status, etype, message = ERROR_KINDS.get(kind or "", (self.status, "api_error", "error"))
        status = self.status or status
        return status, self.type or etype, self.message or message


class Turn(_Strict):
    """One answer of the model: text and/or tool calls, or an error, or a hang.

    A bare string is a text turn. ``delay`` waits before answering (any turn);
    ``hang`` never answers (the connection stays open until the client gives up).
    An ``error`` with ``times`` fails that many attempts, then the turn's text and tool
    calls answer (a transient outage); without ``times`` the error is all the turn does.
    ``stop_reason`` defaults to ``tool_use`` when there are tool calls, else ``end_turn``.
    """

    text: str | None = None
    tool_use: list[ToolCall] = Field(default_factory=list)
    error: ErrorReply | None = None
    hang: bool = False
    delay: Seconds = 0.0
    usage: Usage | None = None
    stop_reason: StopReason | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"text": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_thing(self) -> Turn:
        answers = self.text is not None or bool(self.tool_use)
        if (
            self.error is not None
            and self.error.times is None
            and (answers or self.usage or self.stop_reason)
        ):
            raise ValueError(
                "an error without `times` never lets the answer through: remove text, "
                "tool_use, usage and stop_reason, or give error.times"
            )
        if self.error is not None and self.error.times is not None and not answers:
            raise ValueError(
                "error.times says the turn recovers, so give the answer that follows "
                "(text and/or tool_use)"
            )
        if self.hang and (answers or self.error is not None):
            raise ValueError("a hang turn never answers: remove text, tool_use and error")
        if not (answers or self.error is not None or self.hang):
            raise ValueError("a turn needs text, tool_use, error or hang: true")
        return self

    @property
    def effective_stop_reason(self) -> str:
        return self.stop_reason or ("tool_use" if self.tool_use else "end_turn")


class Match(_Strict):
    """Which requests a conversation answers; every given regex must match (re.search).

    ``prompt``: the text of the first user message (Claude Code's system reminders
    removed), i.e. the task prompt. ``system``: the system prompt. Named groups become
    ``${name}`` variables in the conversation's turns.
    """

    prompt: Regex | None = None
    system: Regex | None = None


class Conversation(_Strict):
    """A scripted conversation: the requests it matches and its turns, in order."""

    name: str | None = None
    match: Match = Field(default_factory=Match)
    turns: list[Turn] = Field(min_length=1)

    def label(self, index: int) -> str:
        return self.name or f"conversations[{index}]"


class Script(_Strict):
    """A whole script: ``conversations`` (first match wins), or ``turns`` for a script
    with a single conversation that answers every request."""

    conversations: list[Conversation] = Field(default_factory=list)
    turns: list[Turn] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Script:
        if self.turns is not None and self.conversations:
            raise ValueError("give either `turns` (one conversation) or `conversations`, not both")
        if self.turns is None and not self.conversations:
            raise ValueError("the script needs `conversations` (or `turns` for a single one)")
        return self

    def all_conversations(self) -> list[Conversation]:
        """The conversations in match order (``turns`` is one conversation matching all)."""
        if self.turns is not None:
            return [Conversation(name="default", turns=self.turns)]
        return list(self.conversations)
