"""JSON on the wire: what the decoder accepts, what the encoder emits, and the JavaScript
value rules that upstream's server applies to what it parsed (pure, no I/O).

Why strict: every frame is read by JavaScript's ``JSON.parse`` somewhere, and a frame one
strict parser rejects cuts that client off. So (owl/reference/agentchat-protocol.md,
"JSON rules"):

- **Numbers are finite.** ``NaN``/``Infinity`` literals and numbers too large for a
  double (``1e999``, a 400-digit integer) are refused on the way in, and the encoder
  refuses to write a non-finite float, so nothing can come back out as ``Infinity``.
- **Text is Unicode.** A lone UTF-16 surrogate (``"\\ud83d"`` written as a JSON escape) is
  legal JSON but not text: it cannot be UTF-8 encoded, sent, stored or signed. The
  decoder replaces each one with U+FFFD, which is what a JavaScript peer's UTF-8 encoder
  does to it when it sends, stores or signs that string. Every string the server accepts
  is therefore storable and sendable; the encoder applies the same rule once more, so no
  frame it writes can fail to encode.

The ``js_*`` helpers reproduce JavaScript semantics (truthiness, ``typeof``, ``.length``
in UTF-16 units, ``String(x)``) because upstream's validator and canonical strings are
defined in those terms.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from agentctl_swarm.chat.text import clean_text

#: Largest magnitude a JavaScript number can hold; beyond it ``JSON.parse`` gives Infinity.
_MAX_DOUBLE = 1.7976931348623157e308
#: Surrogate escapes in JSON text, or raw surrogate code points in a Python string.
_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


class JsonRuleError(ValueError):
    """Text that is not a frame under the JSON rules; the message says which rule."""


class NumberOutOfRange(JsonRuleError):
    """Valid JSON grammar, but a number no JavaScript peer can hold (it would be Infinity)."""


# --------------------------------------------------------------------------- text


def _clean_tree(value: Any) -> Any:
    """Clean every string (keys too) in parsed JSON, without recursion (depth is unbounded)."""
    if isinstance(value, str):
        return clean_text(value)
    if not isinstance(value, dict | list):
        return value
    root: list[Any] = [value]
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    node[i] = clean_text(item)
                elif isinstance(item, dict | list):
                    stack.append(item)
        else:
            for key in list(node):
                item = node[key]
                if isinstance(item, str):
                    item = clean_text(item)
                elif isinstance(item, dict | list):
                    stack.append(item)
                new_key = clean_text(key)
                if new_key != key:
                    del node[key]
                node[new_key] = item
    return root[0]


# --------------------------------------------------------------------------- decode


def _reject_constant(name: str) -> Any:
    raise JsonRuleError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NumberOutOfRange(f"number {text[:40]} is out of range")
    return value


def _finite_int(text: str) -> int:
    value = int(text)
    if len(text) > 300 and abs(value) > _MAX_DOUBLE:
        raise NumberOutOfRange(f"number {text[:40]}... is out of range")
    return value


_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_finite_int
)


def loads(text: str | bytes) -> Any:
    """Parse JSON under the rules above; raise :class:`JsonRuleError` (a ValueError) if not.

    Malformed JSON, nesting too deep for the parser, undecodable bytes and non-finite
    numbers all raise; lone surrogates are replaced, not refused.
    """
    try:
        raw = text if isinstance(text, str) else text.decode(json.detect_encoding(text))
        value = _DECODER.decode(raw)
    except JsonRuleError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise JsonRuleError(f"not JSON ({exc})") from exc
    if _SURROGATE_HINT.search(raw) is not None:
        value = _clean_tree(value)
    return value


# --------------------------------------------------------------------------- encode


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def js_json(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """``JSON.stringify(value)``: compact, keys in insertion order, never NaN/Infinity.

    Raises ValueError for a non-finite float rather than writing a frame a strict parser
    rejects; any lone surrogate in the output becomes U+FFFD, so the text always encodes.
    (The server encodes every fan-out once through here, so it avoids per-call setup.)
    """
    if default is None:
        text = _ENCODER.encode(value)
    else:
        text = json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default
        )
    return text if text.isascii() else clean_text(text)


def dumps_record(value: Any) -> str:
    """Compact strict JSON for records kept on disk (the server's store, the MCP inbox)."""
    return js_json(value)


# --------------------------------------------------------------------------- JS values


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
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def js_number_str(value: float) -> str:
    """``String(n)`` for a JavaScript number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) < 10**21:
            return str(value)
        if abs(value) > _MAX_DOUBLE:  # beyond a double: JavaScript would hold Infinity
            return "Infinity" if value > 0 else "-Infinity"
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
