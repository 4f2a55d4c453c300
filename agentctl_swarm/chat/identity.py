"""Ed25519 agent identities, byte-compatible with upstream AgentChat.

This module is the shared contract between the chat server and the client side
(client library, agentchat-mcp, ``agentctl chat``): both derive agent ids and check
signatures through it, so they can never disagree.

Why these exact bytes: the agent id is the first 16 hex chars of SHA-256 over the
*PEM text* sent in IDENTIFY, so the PEM must be exactly what Node's
``export({type:'spki', format:'pem'})`` writes (64-char lines, trailing newline).
``cryptography`` produces the same bytes. Identity files use upstream's JSON fields
(``publicKey``, ``privateKey``, ``agentId``, ``name``, ``created``) so a file written
by the node tools loads here and the reverse (owl/reference/agentchat-protocol.md,
"Identity").

Signatures cover the UTF-8 bytes of a text as JavaScript encodes it (a lone surrogate
becomes U+FFFD), so a signature over any string verifies on either side.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from agentctl_swarm.chat.text import utf8
from agentctl_swarm.core.errors import UsageError
from agentctl_swarm.core.files import atomic_write

__all__ = [
    "Identity",
    "IdentityError",
    "agent_id_for",
    "identity_path",
    "is_valid_pubkey",
    "load_or_create",
    "verify_signature",
]

_SANITISE = re.compile(r"[^A-Za-z0-9_-]")


class IdentityError(UsageError):
    """An identity file or key cannot be used; the message names the file and the fix."""


def agent_id_for(public_pem: str) -> str:
    """Return the 16-hex agent id of a public key PEM (no ``@``), as upstream derives it."""
    return hashlib.sha256(public_pem.encode("utf-8")).hexdigest()[:16]


def _load_public(public_pem: str) -> Ed25519PublicKey | None:
    try:
        key = serialization.load_pem_public_key(public_pem.encode("utf-8"))
    except (ValueError, TypeError, UnicodeError):
        return None
    return key if isinstance(key, Ed25519PublicKey) else None


def is_valid_pubkey(public_pem: object) -> bool:
    """True when ``public_pem`` is a string holding an Ed25519 public key in PEM form."""
    return isinstance(public_pem, str) and bool(public_pem) and _load_public(public_pem) is not None


def verify_signature(public_pem: str, text: str, signature_b64: str) -> bool:
    """Check a base64 Ed25519 signature over the UTF-8 bytes of ``text``; never raises."""
    key = _load_public(public_pem) if isinstance(public_pem, str) else None
    if key is None or not isinstance(signature_b64, str) or not isinstance(text, str):
        return False
    try:
        sig = base64.b64decode(signature_b64, validate=False)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(sig, utf8(text))
    except (InvalidSignature, ValueError):
        return False
    return True


def _public_pem_of(private: Ed25519PrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def _private_pem_of(private: Ed25519PrivateKey) -> str:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _iso_now() -> str:
    """ISO-8601 with milliseconds and ``Z``, like JavaScript's ``toISOString()``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def sanitise_name(name: str) -> str:
    """Strip everything but ``[A-Za-z0-9_-]`` from a name, as upstream's MCP server does."""
    return _SANITISE.sub("", name)


def identity_path(name: str, home: Path | None = None) -> Path:
    """Where upstream's MCP server keeps the identity called ``name``.

    ``~/.agentchat/identities/<sanitised name>.json``; raises IdentityError if nothing
    of the name survives sanitising (upstream then falls back to an ephemeral identity).
    """
    safe = sanitise_name(name)
    if not safe:
        raise IdentityError(
            f"identity name {name!r} has no characters from [A-Za-z0-9_-]; pick a name like 'alice'"
        )
    base = home if home is not None else Path.home()
    return base / ".agentchat" / "identities" / f"{safe}.json"


@dataclass
class Identity:
    """A named Ed25519 key pair; ``public_pem`` is what goes on the wire in IDENTIFY."""

    name: str
    public_pem: str
    created: str
    _private: Ed25519PrivateKey | None = field(default=None, repr=False)
    rotations: list[Any] = field(default_factory=list, repr=False)

    @classmethod
    def generate(cls, name: str) -> Identity:
        """Make a fresh key pair for ``name``."""
        private = Ed25519PrivateKey.generate()
        return cls(
            name=name, public_pem=_public_pem_of(private), created=_iso_now(), _private=private
        )

    @classmethod
    def from_private_pem(cls, name: str, private_pem: str, created: str | None = None) -> Identity:
        """Rebuild an identity from a PKCS#8 private key PEM (used by tests with fixed keys)."""
        try:
            private = serialization.load_pem_private_key(private_pem.encode("ascii"), None)
        except (ValueError, TypeError, UnicodeError) as exc:
            raise IdentityError(f"not a PKCS#8 private key PEM ({exc})") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise IdentityError("private key is not Ed25519; AgentChat identities are Ed25519")
        return cls(
            name=name,
            public_pem=_public_pem_of(private),
            created=created or _iso_now(),
            _private=private,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        """Load an identity file written by this module or by upstream's node tools."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise IdentityError(
                f"{p}: identity file not found; create one with `agentctl chat whoami --as NAME`"
            ) from exc
        except (OSError, UnicodeError, json.JSONDecodeError) as exc:
            raise IdentityError(f"{p}: not a readable JSON identity file ({exc})") from exc
        if not isinstance(data, dict):
            raise IdentityError(f"{p}: identity file must hold a JSON object")
        pub = data.get("pubkey") or data.get("publicKey")
        priv = data.get("privkey") or data.get("privateKey")
        name = data.get("name")
        if not isinstance(pub, str) or not is_valid_pubkey(pub):
            raise IdentityError(f"{p}: field 'publicKey' is missing or not an Ed25519 PEM")
        if not isinstance(name, str) or not name:
            raise IdentityError(f"{p}: field 'name' is missing")
        private: Ed25519PrivateKey | None = None
        if priv:
            try:
                loaded = serialization.load_pem_private_key(str(priv).encode("ascii"), None)
            except (ValueError, TypeError, UnicodeError) as exc:
                raise IdentityError(f"{p}: field 'privateKey' is not a PKCS#8 PEM") from exc
            if not isinstance(loaded, Ed25519PrivateKey):
                raise IdentityError(f"{p}: field 'privateKey' is not an Ed25519 key")
            if _public_pem_of(loaded).strip() != pub.strip():
                raise IdentityError(f"{p}: 'privateKey' does not match 'publicKey'")
            private = loaded
        created = data.get("created") if isinstance(data.get("created"), str) else _iso_now()
        rotations = data.get("rotations") if isinstance(data.get("rotations"), list) else []
        return cls(
            name=name, public_pem=pub, created=created, _private=private, rotations=rotations
        )

    @property
    def agent_id(self) -> str:
        """16-hex agent id (without ``@``)."""
        return agent_id_for(self.public_pem)

    @property
    def has_private_key(self) -> bool:
        """False for a public-only identity, which cannot sign."""
        return self._private is not None

    @property
    def private_pem(self) -> str:
        """PKCS#8 PEM of the private key (empty string if this identity has none)."""
        return _private_pem_of(self._private) if self._private is not None else ""

    def sign(self, text: str) -> str:
        """Base64 Ed25519 signature over the UTF-8 bytes of ``text``."""
        if self._private is None:
            raise IdentityError(f"identity {self.name!r} has no private key and cannot sign")
        return base64.b64encode(self._private.sign(utf8(text))).decode("ascii")

    def to_json(self) -> str:
        """The identity file's text, laid out like upstream's ``JSON.stringify(data, null, 2)``."""
        data: dict[str, Any] = {
            "publicKey": self.public_pem,
            "privateKey": self.private_pem,
            "agentId": self.agent_id,
            "name": self.name,
            "created": self.created,
        }
        if self.rotations:
            data["rotations"] = self.rotations
        return json.dumps(data, indent=2, ensure_ascii=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the identity file atomically with mode 0600.

        Like upstream, a ``.gitignore`` containing ``*`` is dropped into the
        ``.agentchat`` root so private keys are never committed by accident. An OS error
        is an :class:`IdentityError` naming the file.
        """
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            _drop_gitignore(p.parent)
            atomic_write(p, self.to_json(), mode=0o600)
        except OSError as exc:
            raise IdentityError(
                f"{p}: cannot write the identity file ({exc.strerror or exc})"
            ) from exc
        return p


def load_or_create(path: Path, name: str) -> tuple[Identity, bool]:
    """The identity stored at ``path``, or a new one called ``name`` saved there.

    Returns ``(identity, created)``. The one way every client side (``agentctl chat``,
    agentchat-mcp) gets its key, so they agree on files and errors: an unreadable or
    corrupt file is an :class:`IdentityError` naming it, never silently replaced.
    """
    if path.exists():
        return Identity.load(path), False
    ident = Identity.generate(name)
    ident.save(path)
    return ident, True


def _drop_gitignore(directory: Path) -> None:
    parts = directory.parts
    root = Path(*parts[: parts.index(".agentchat") + 1]) if ".agentchat" in parts else directory
    gi = root / ".gitignore"
    with contextlib.suppress(OSError):
        if not gi.exists():
            root.mkdir(parents=True, exist_ok=True)
            gi.write_text("# This directory contains private keys. Never commit.\n*\n")
