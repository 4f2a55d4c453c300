"""The pieces frame descriptions are made of: wire limits, name shapes, and :class:`Rule`,
one upstream check with the exact ``INVALID_MSG`` text it answers (pure).

A client frame is described once, as a model whose fields carry their rules
(:mod:`.client_frames`); the validator and the reference document are both derived from
those rules, so what the server enforces and what the docs say cannot drift apart.

Rules see the raw parsed value, or :data:`MISSING` when the field is absent, because
upstream distinguishes the two in places (``"sig": null`` is refused, no ``sig`` is
fine). Tests follow upstream's JavaScript: truthiness, ``typeof``, UTF-16 lengths.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any, Final

from agentctl_swarm.chat.identity import is_valid_pubkey
from agentctl_swarm.chat.protocol.json_rules import js_is_number, js_len, js_truthy

# --------------------------------------------------------------------------- wire limits

#: Upstream's default port.
DEFAULT_PORT = 6667
#: Largest WebSocket message the server accepts; bigger ones close the socket with 1009.
MAX_PAYLOAD = 2 * 1024 * 1024
#: Frames whose text is longer than this (in UTF-16 units, like JS) get INVALID_MSG.
MAX_FRAME_CHARS = 2 * 1024 * 1024
#: Longest MSG ``content`` (UTF-16 units).
MAX_CONTENT_CHARS = 2 * 1024 * 1024
MAX_STATUS_TEXT = 100
PRESENCE_STATUSES: tuple[str, ...] = ("online", "away", "busy", "offline", "listening")
VERDICTS: tuple[str, ...] = ("disputant", "respondent", "mutual")
#: Nicks nobody may take (compared lower-cased).
RESERVED_NICKS = frozenset(
    {
        "server",
        "admin",
        "system",
        "root",
        "moderator",
        "mod",
        "bot",
        "agentchat",
        "operator",
        "shadow",
        "god",
        "jc",
    }
)


# --------------------------------------------------------------------------- the rule type


class _Missing:
    """The value a rule sees for an absent field (distinct from JSON ``null``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


@dataclass(frozen=True, slots=True)
class Rule:
    """One check: when ``test(value)`` is false the frame is refused with ``error``.

    ``needs`` says in words what passes (it is what the reference document shows).
    A rule on the whole frame (``whole=True``) is given the frame dict instead of one
    field's value; it runs before the field rules.
    """

    test: Callable[[Any], bool]
    error: str
    needs: str
    whole: bool = False


# --------------------------------------------------------------------------- names

_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")


def is_valid_name(name: Any) -> bool:
    """Agent names: 1-32 chars of ``[A-Za-z0-9_-]``."""
    return isinstance(name, str) and 1 <= len(name) <= 32 and _NAME_RE.fullmatch(name) is not None


def is_valid_nick_chars(nick: str) -> bool:
    """Only ``[A-Za-z0-9_-]``."""
    return _NAME_RE.fullmatch(nick) is not None


def is_valid_channel(channel: Any) -> bool:
    """Channel names: ``#`` then 1-31 chars of ``[A-Za-z0-9_-]``."""
    if not isinstance(channel, str) or not channel.startswith("#"):
        return False
    rest = channel[1:]
    return 1 <= len(rest) <= 31 and _NAME_RE.fullmatch(rest) is not None


def is_channel(target: Any) -> bool:
    """A ``#channel`` target."""
    return isinstance(target, str) and target.startswith("#")


def is_agent(target: Any) -> bool:
    """An ``@id`` target."""
    return isinstance(target, str) and target.startswith("@")


# --------------------------------------------------------------------------- tests


def truthy(value: Any) -> bool:
    """Present and JavaScript-truthy."""
    return value is not MISSING and js_truthy(value)


def required_str(value: Any) -> bool:
    """Upstream's ``!msg.x || typeof msg.x !== 'string'`` check, negated."""
    return isinstance(value, str) and value != ""


def is_str(value: Any) -> bool:
    """A string (possibly empty)."""
    return isinstance(value, str)


def is_list(value: Any) -> bool:
    return isinstance(value, list)


def is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def is_target(value: Any) -> bool:
    return is_channel(value) or is_agent(value)


def if_present(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """Absent passes; present (even ``null``) must pass ``test``."""
    return lambda v: v is MISSING or test(v)


def unless_null(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """Absent or ``null`` passes; anything else must pass ``test``."""
    return lambda v: v is MISSING or v is None or test(v)


def if_truthy(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A falsy (or absent) value passes; a truthy one must pass ``test``."""
    return lambda v: not truthy(v) or test(v)


def length_between(low: int, high: int) -> Callable[[Any], bool]:
    """A string of ``low``-``high`` UTF-16 units (apply after a string check)."""
    return lambda v: low <= js_len(v) <= high


def one_of(choices: Container[Any]) -> Callable[[Any], bool]:
    return lambda v: v is not MISSING and _hashable_in(v, choices)


def _hashable_in(value: Any, choices: Container[Any]) -> bool:
    try:
        return value in choices
    except TypeError:  # an unhashable value is in no set of names
        return False


def is_stake(value: Any) -> bool:
    """``elo_stake``: absent, null, or a non-negative integer-valued number."""
    if value is MISSING or value is None:
        return True
    return js_is_number(value) and value >= 0 and float(value).is_integer()


def is_relative_expiry(value: Any) -> bool:
    """``expires``: seconds from now whose absolute time (ms) is a finite number."""
    if value is MISSING or value is None or not js_is_number(value):
        return True  # the type rule before this one decides those
    try:
        return math.isfinite(float(value) * 1000 + 1e13)
    except OverflowError:
        return False


def is_query(value: Any) -> bool:
    return truthy(value) and isinstance(value, dict | list)


def skills_have_capability(value: Any) -> bool:
    """Every skill is an object with a non-empty ``capability`` string."""
    return all(isinstance(skill, dict) and required_str(skill.get("capability")) for skill in value)


def either_field(*keys: str) -> Callable[[Mapping[str, Any]], bool]:
    """A frame rule: at least one of ``keys`` is truthy."""
    return lambda msg: any(js_truthy(msg.get(k)) for k in keys)


# --------------------------------------------------------------------------- shared rules

CHANNEL = Rule(is_valid_channel, "Invalid channel name", "`#` then 1-31 of `[A-Za-z0-9_-]`")
PUBKEY = Rule(
    unless_null(is_valid_pubkey),
    "Invalid public key format (must be Ed25519 PEM)",
    "an Ed25519 public key PEM, or null/absent",
)
ADMIN_KEY = Rule(required_str, "Missing admin_key", "a non-empty string")
PROPOSAL_ID = Rule(truthy, "Missing proposal_id", "present (any truthy value)")
DISPUTE_ID = Rule(required_str, "Missing or invalid dispute_id", "a non-empty string")
STAKE = Rule(is_stake, "elo_stake must be a non-negative integer", "a non-negative integer")


def signed(error: str) -> Rule:
    """The ``sig`` rule of a signed frame (``error`` is that frame's text)."""
    return Rule(truthy, error, "present (the signature, base64)")
