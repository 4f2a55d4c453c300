"""Server configuration: every limit, timer and default channel in one place, so tests can
shrink them and the wire protocol (``chat.protocol``) holds only what peers must agree on.

Defaults follow upstream AgentChat (owl/reference/agentchat-protocol.md, "Limits and
timers"), with the deliberate differences listed in owl/components/chat-server.md: the
first-hour read-only gate for new keys is off unless ``lurk_seconds`` is set, and direct
messages to ``@id`` work only with ``allow_dm``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from agentctl_swarm.chat.protocol import DEFAULT_PORT, MAX_PAYLOAD
from agentctl_swarm.core.backoff import BackoffCurve

#: Upstream's hard-coded genesis agent, which is always ``verified``.
GENESIS_AGENT_ID = "8addfe276526c9f6"

#: Channels every server has from the start (upstream's defaults).
BUILTIN_CHANNELS: tuple[str, ...] = (
    "#general",
    "#engineering",
    "#pull-requests",
    "#help",
    "#love",
    "#agents",
    "#discovery",
    "#bounties",
)
#: Built-in channels only verified agents may join.
BUILTIN_VERIFIED_CHANNELS: tuple[str, ...] = ("#ops",)

#: Messages replayed per channel on JOIN (upstream CLI's default).
DEFAULT_BUFFER_SIZE = 20
RATE_LIMIT_MS = 1000  # one MSG per second per socket
FLOOD_WINDOW_MS = 10_000
FLOOD_MAX_PRE_AUTH = 10
FLOOD_MAX_POST_AUTH = 60
CHALLENGE_TIMEOUT_MS = 60_000
HEARTBEAT_INTERVAL_MS = 30_000
HEARTBEAT_GRACE_MS = 10_000  # dropped after 2 x interval + grace = 70 s without pong
CLAIM_TTL_MS = 45_000
NICK_COOLDOWN_MS = 30_000
VERIFY_REQUEST_TIMEOUT_MS = 30_000
TAKEOVER_BACKOFF_MS = 5_000
TAKEOVER_BACKOFF_MAX_MS = 60_000
TAKEOVER_WINDOW_MS = 5 * 60_000
COMPLETE_MIN_AGE_MS = 60_000
CALLBACK_MAX_SECONDS = 3600
CALLBACK_MAX_PENDING = 50
CALLBACK_MAX_PAYLOAD = 500


@dataclass(frozen=True)
class ServerConfig:
    """How one server instance behaves. Times are milliseconds unless named otherwise."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0 picks a free port
    data_dir: Path | None = None  # None: nothing persisted (in-memory store)
    admin_key: str | None = None  # admin frames and /api/connections; None disables them
    allow_dm: bool = False
    lurk_seconds: float | None = None  # None: no read-only period for new keys
    buffer_size: int = DEFAULT_BUFFER_SIZE
    name: str = "agentchat"
    motd: str | None = None
    private_channels: bool = False
    ephemeral_lurk: bool = True  # ephemeral (keyless) agents are read-only, as upstream
    genesis_agent_id: str | None = GENESIS_AGENT_ID
    max_connections_per_ip: int = 0
    # limits
    limits_enabled: bool = True  # False: no MSG rate limit and no flood close (bench)
    rate_limit_ms: int = RATE_LIMIT_MS
    flood_window_ms: int = FLOOD_WINDOW_MS
    flood_max_pre_auth: int = FLOOD_MAX_PRE_AUTH
    flood_max_post_auth: int = FLOOD_MAX_POST_AUTH
    max_payload: int = MAX_PAYLOAD
    # timers
    challenge_timeout_ms: int = CHALLENGE_TIMEOUT_MS
    heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS
    heartbeat_grace_ms: int = HEARTBEAT_GRACE_MS
    takeover_backoff_ms: int = TAKEOVER_BACKOFF_MS
    takeover_backoff_max_ms: int = TAKEOVER_BACKOFF_MAX_MS
    takeover_window_ms: int = TAKEOVER_WINDOW_MS
    claim_ttl_ms: int = CLAIM_TTL_MS
    nick_cooldown_ms: int = NICK_COOLDOWN_MS
    complete_min_age_ms: int = COMPLETE_MIN_AGE_MS
    verify_request_timeout_ms: int = VERIFY_REQUEST_TIMEOUT_MS
    pair_cooldown_ms: int = 3_600_000  # same pair may complete once per hour
    # persistence
    flush_interval_ms: int = 200
    extra_secrets: tuple[str, ...] = field(default=(), repr=False)
    #: The environment of the process the server runs in, passed in at the edge
    #: (``run_forever`` passes ``os.environ``): the values of its secret-looking variables
    #: are redacted from relayed text. The library never reads ``os.environ`` itself.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # hooks for an embedded task coordinator (agentctl_swarm.coordinator): these agent ids
    # (16 hex, no "@") are verified and exempt from the MSG rate limit and the flood
    # close, so its replies are not paced at 1/s; these channels exist from the start.
    trusted_ids: frozenset[str] = frozenset()
    extra_channels: tuple[str, ...] = ()

    def with_(self, **changes: object) -> ServerConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def takeover_curve(self) -> BackoffCurve | None:
        """How long a socket taking over a live identity is held: 5 s, doubling on repeats
        within ``takeover_window_ms`` up to 60 s (no jitter: peers compare it). None when
        ``takeover_backoff_ms`` is 0 (no hold)."""
        if self.takeover_backoff_ms <= 0:
            return None
        return BackoffCurve(
            initial=self.takeover_backoff_ms,
            multiplier=2.0,
            cap=max(self.takeover_backoff_ms, self.takeover_backoff_max_ms),
        )

    @property
    def keepalive_timeout_ms(self) -> int:
        """Silence after which a socket is dropped: 2 x interval + grace (70 s upstream)."""
        return 2 * self.heartbeat_interval_ms + self.heartbeat_grace_ms
