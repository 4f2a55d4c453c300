"""Settings from the environment: ``<PREFIX><FIELD>`` variables to raw values, stdlib only.

The one mechanism for reading settings from the environment. :func:`env_values` finds
each field's variable and decodes JSON for collection fields; the caller validates the
raw values: ``agentctl_swarm.config.load_settings`` with a pydantic model (host tools,
the runner, the MCP server), the in-container supervisor with its own stdlib rules
(``agent/supervisor_config.py``).

Why stdlib only: the supervisor stays resident in every agent container, and importing
pydantic and building models was ~8 MiB of its anonymous memory (RssAnon after importing
the supervisor, in the agent image: 18,332 KiB with pydantic, 10,344 KiB without),
against an idle target of 40 MiB for the whole container (bench/dispatch).
:func:`parse_int` and :func:`parse_float` apply pydantic's lax text-to-number rules,
with its messages, so the supervisor's errors (and its reading of ``state.json``) read
the same as before.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Mapping

from agentctl_swarm.core.errors import UsageError

ENV_HINT = "fix or unset the environment variable"

# pydantic's wording (its lax mode), kept so users see the messages they always saw.
INT_TYPE = "Input should be a valid integer"
INT_PARSING = "Input should be a valid integer, unable to parse string as an integer"
INT_FROM_FLOAT = "Input should be a valid integer, got a number with a fractional part"
INT_SIZE = "Unable to parse input string as an integer, exceeded maximum size"
FLOAT_TYPE = "Input should be a valid number"
FLOAT_PARSING = "Input should be a valid number, unable to parse string as a number"
FINITE = "Input should be a finite number"

_MAX_INT_DIGITS = 4300  # like pydantic (and CPython's int-from-text limit)
_I64 = 2**63


def env_var(prefix: str, name: str) -> str:
    """The variable that sets field ``name``: ``AGENTCTL_`` + ``debug`` → ``AGENTCTL_DEBUG``."""
    return prefix + name.upper()


def env_values(
    fields: Mapping[str, bool], prefix: str, environ: Mapping[str, str]
) -> dict[str, object]:
    """Raw values for ``fields`` (name → whether it holds a list, set or mapping).

    Variable names match case-insensitively (the last of two spellings wins) and empty
    values count as unset. A value for a collection field that starts with ``[`` or
    ``{`` is decoded as JSON; anything else stays text for the field's own rules (e.g.
    ``2,78``). Undecodable JSON is a :class:`UsageError` naming every such variable.
    """
    lowered = {k.lower(): v for k, v in environ.items() if v != ""}
    values: dict[str, object] = {}
    problems: list[str] = []
    for name, collection in fields.items():
        var = env_var(prefix, name)
        raw = lowered.get(var.lower())
        if raw is None:
            continue
        if collection and raw.lstrip()[:1] in ("[", "{"):
            try:
                values[name] = json.loads(raw)
            except ValueError:
                problems.append(f"{var}={raw!r}: must be a JSON list or object")
            continue
        values[name] = raw
    if problems:
        raise UsageError("; ".join(problems), hint=ENV_HINT)
    return values


def holds_collection(annotation: object) -> bool:
    """Whether a field of this type holds a list, set, tuple or mapping (maybe optional)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(holds_collection(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        return holds_collection(typing.get_args(annotation)[0])
    return origin in (list, set, frozenset, tuple, dict) or annotation in (
        list, set, frozenset, tuple, dict,
    )  # fmt: skip


def parse_int(value: object) -> int:
    """An int from an int, a bool, an integral float or text like ``" 12 "``, ``1_000``, ``3.0``.

    Raises ValueError with pydantic's message. Text must be ASCII (``"١٢"`` is not a
    number here, although Python's ``int()`` takes it).
    """
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(FINITE)
        if not value.is_integer():
            raise ValueError(INT_FROM_FLOAT)
        if not -_I64 <= value < _I64:
            raise ValueError(INT_SIZE)
        return int(value)
    if not isinstance(value, str):
        raise ValueError(INT_TYPE)
    text = value.strip()
    if len(text) > _MAX_INT_DIGITS:
        raise ValueError(INT_SIZE)
    whole, dot, fraction = text.partition(".")
    if dot and (not fraction or fraction.strip("0")):
        raise ValueError(INT_PARSING)  # "5.", "5.5", "1.0_0": only ".0…" may follow
    if not whole.isascii() or whole != whole.rstrip():  # "5 .0" is not 5
        raise ValueError(INT_PARSING)
    try:
        return int(whole)
    except ValueError:
        raise ValueError(INT_PARSING) from None


def parse_float(value: object) -> float:
    """A float from a number, a bool or ASCII text (``inf``, ``nan``, ``1e3``, ``1_000``).

    Raises ValueError with pydantic's message.
    """
    if isinstance(value, float):
        return value
    if isinstance(value, bool | int):
        try:
            return float(value)
        except OverflowError:
            raise ValueError(FLOAT_PARSING) from None
    if not isinstance(value, str):
        raise ValueError(FLOAT_TYPE)
    text = value.strip()
    if "_" in text:  # pydantic drops inner underscores ("1_000", "1_.5") but then trims nothing
        if value.startswith("_") or value.endswith("_") or "__" in value:
            raise ValueError(FLOAT_PARSING)
        text = value.replace("_", "")
        if text != text.strip():
            raise ValueError(FLOAT_PARSING)
    if not text.isascii():
        raise ValueError(FLOAT_PARSING)
    try:
        return float(text)
    except ValueError:
        raise ValueError(FLOAT_PARSING) from None
