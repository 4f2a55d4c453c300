"""Text as the wire carries it: Unicode, never a lone UTF-16 surrogate (pure).

JSON can spell a lone surrogate (``"\\ud83d"``) and Python keeps it in a ``str``, but it is
not text: UTF-8 cannot encode it, so it cannot be sent, stored or signed. JavaScript peers
turn each one into U+FFFD when they encode a string; :func:`clean_text` does the same, so
the server, the clients and the signatures all agree on the bytes
(owl/reference/agentchat-protocol.md, "JSON rules").
"""

from __future__ import annotations

import re

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (split pairs are joined)."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def utf8(text: str) -> bytes:
    """The UTF-8 bytes of ``text`` as a JavaScript peer would produce them."""
    return clean_text(text).encode("utf-8")
