"""The one logging setup: JSON lines for machines, readable lines for people.

Every long-running part (supervisor, runner, chat server, MCP server, coordinator,
controller, sync-daemon) calls :func:`setup_logging` once at its edge and then logs with
``logging.getLogger("agentctl.<part>")``. Structured fields go in ``extra={...}`` (or
through :func:`log_event`), never spliced into a message template, so:

- in JSON mode every record is one valid JSON object per line (non-finite numbers and
  odd objects are turned into strings; exceptions become an ``exc_info`` field);
- in text mode a record reads ``<time> <source>: <message> key=value ...``.

The format is chosen by the caller (``fmt``), else by ``AGENTCTL_LOG_FORMAT``, else JSON
when the stream is not a terminal and text when it is.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["json", "text", "auto"]
ROOT = "agentctl"
_MARK = "_agentctl_handler"
_RESERVED = frozenset(RESERVED_ATTRS) | {"message", "asctime", "src"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(value: Any) -> Any:
    """What ``json.dumps(allow_nan=False)`` accepts, keeping as much as it can."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        # A lone surrogate (from hostile input) cannot be encoded: U+FFFD instead.
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, int | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _dumps(obj: Any, **_: Any) -> str:
    return json.dumps(_clean(obj), ensure_ascii=False, allow_nan=False)


def _iso(created: float) -> str:
    return (
        datetime.fromtimestamp(created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a caller attached with ``extra=``."""
    return {
        k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")
    }


class JsonLineFormatter(JsonFormatter):
    """One JSON object per record: time, level, logger, component, message, fields."""

    def __init__(self, component: str) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            json_serializer=_dumps,
            static_fields={"component": component},
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = _iso(record.created)
        super().add_fields(log_data, record, message_dict)
        src = getattr(record, "src", None)
        if src:
            log_data["source"] = src


class TextLineFormatter(logging.Formatter):
    """``2026-01-01T00:00:00.000Z source: message key=value`` — one greppable shape."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        src = getattr(record, "src", None) or self.component
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            msg = f"{record.levelname}: {msg}"
        fields = extra_fields(record)
        fields.pop("event", None)
        if fields:
            msg += " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        return f"{_iso(record.created)} {src}: {msg}"


def _text(value: Any) -> str:
    text = _clean(value) if isinstance(value, str) else _dumps(value)
    return json.dumps(text) if (not text or " " in text or '"' in text) else text


_RECORD_KEYS = {"time", "level", "logger", "component", "message", "source", "event", "exc_info"}


def render_record(line: str) -> str:
    """A JSON log line as the readable text line; other lines are returned unchanged.

    Lets ``agentctl logs`` show a container's JSON logs the way a terminal would have.
    """
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "message" not in record or "time" not in record:
        return line
    src = record.get("source") or record.get("component") or record.get("logger", "")
    msg = str(record["message"])
    if record.get("level") in {"WARNING", "ERROR", "CRITICAL"}:
        msg = f"{record['level']}: {msg}"
    fields = {k: v for k, v in record.items() if k not in _RECORD_KEYS}
    if fields:
        msg += " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items())
    if record.get("exc_info"):
        msg += "\n" + str(record["exc_info"])
    return f"{record['time']} {src}: {msg}"


def resolve_format(fmt: LogFormat | None, stream: IO[str]) -> Literal["json", "text"]:
    """``json``/``text`` as asked, else from AGENTCTL_LOG_FORMAT, else by the stream."""
    chosen = fmt or os.environ.get("AGENTCTL_LOG_FORMAT", "auto")
    if chosen in ("json", "text"):
        return chosen  # type: ignore[return-value]
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def setup_logging(
    component: str,
    *,
    fmt: LogFormat | None = None,
    level: int | str = logging.INFO,
    stream: IO[str] | None = None,
) -> logging.Logger:
    """Send ``agentctl.*`` records to ``stream`` (stderr) in one format; idempotent.

    Returns the ``agentctl`` logger. Calling it again replaces the handler (a second
    call with another stream wins), so tests and embedded parts can re-point it.
    """
    stream = stream if stream is not None else sys.stderr
    root = logging.getLogger(ROOT)
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    chosen = resolve_format(fmt, stream)
    handler.setFormatter(
        JsonLineFormatter(component) if chosen == "json" else TextLineFormatter(component)
    )
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return root


def logs_json() -> bool:
    """Whether :func:`setup_logging` was called and writes JSON lines: then a last-resort
    message (a crash of a daemon) must be a JSON record too, or a log shipper reading
    the stream gets one line it cannot parse exactly when it matters."""
    handlers = [h for h in logging.getLogger(ROOT).handlers if getattr(h, _MARK, False)]
    return any(isinstance(h.formatter, JsonLineFormatter) for h in handlers)


def log_event(
    logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any
) -> None:
    """Log a named event with fields: ``log_event(log, "sync.ok", agent="a", bytes=3)``.

    The message is the event name, so text lines stay readable; field names that clash
    with the log record's own attributes get a trailing underscore.
    """
    extra = {"event": event}
    for key, value in fields.items():
        extra[f"{key}_" if key in _RESERVED else key] = value
    logger.log(level, event, extra=extra)
