"""Secret redaction: known token shapes and given secret values become ``[REDACTED:<name>]``.

Why: agents paste logs and configs into channels, and Claude Code prints what it reads;
a leaked token in a replay buffer or a transcript is readable by everyone later. The chat
server applies it to every relayed message (as upstream does), the runner to transcripts
and failure details. The secret values are passed in (filled at the process edge); this
module never reads ``os.environ``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx))
    for name, rx in (
        ("anthropic_api_key", r"sk-ant-[A-Za-z0-9_-]{20,}"),
        ("openai_api_key", r"sk-[A-Za-z0-9]{20,}"),
        ("github_pat", r"ghp_[A-Za-z0-9]{36}"),
        ("github_pat_fine", r"github_pat_[A-Za-z0-9_]{22,}"),
        ("github_oauth", r"gho_[A-Za-z0-9]{36}"),
        ("aws_access_key", r"AKIA[A-Z0-9]{16}"),
        (
            "aws_secret_key",
            r"(?:aws_secret_access_key|AWS_SECRET_ACCESS_KEY)['\"=:\s]+[A-Za-z0-9/+=]{40}",
        ),
        ("slack_token", r"xox[bpaors]-[A-Za-z0-9-]{10,}"),
        ("stripe_key", r"[sr]k_(?:live|test)_[A-Za-z0-9]{20,}"),
        ("google_api_key", r"AIza[A-Za-z0-9_-]{35}"),
        ("jwt", r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
        (
            "generic_secret",
            r"(?:api_key|apikey|secret|token|password|credential|auth)['\"]?\s*[:=]\s*"
            r"['\"][A-Za-z0-9_\-/+=]{16,}['\"]",
        ),
    )
)

_SECRET_ENV = re.compile(
    r"(_KEY|_TOKEN|_SECRET|_PASSWORD|_CREDENTIAL)$|^(API_KEY|SECRET)$|^AUTH", re.IGNORECASE
)
_MIN_ENV_SECRET = 8  # shorter values would redact ordinary words


class Redactor:
    """Replaces secrets in text; cheap when nothing matches (one scan per pattern)."""

    def __init__(
        self, env: Mapping[str, str] | None = None, extra: Iterable[tuple[str, str]] = ()
    ) -> None:
        values: list[tuple[str, str]] = []
        for key, value in (env or {}).items():
            if _SECRET_ENV.search(key) and len(value) >= _MIN_ENV_SECRET:
                values.append((f"env:{key}", value))
        values.extend((label, v) for label, v in extra if v and len(v) >= _MIN_ENV_SECRET)
        # Longest first so a value containing another is replaced whole.
        self._values = sorted(values, key=lambda kv: -len(kv[1]))

    def redact(self, text: str) -> tuple[str, int]:
        """Return the redacted text and how many replacements were made."""
        count = 0
        for label, value in self._values:
            if value in text:
                count += text.count(value)
                text = text.replace(value, f"[REDACTED:{label}]")
        for name, rx in _PATTERNS:
            text, n = rx.subn(f"[REDACTED:{name}]", text)
            count += n
        return text, count

    def clean(self, text: str) -> str:
        """Redacted text only."""
        return self.redact(text)[0]
