"""Server configuration: every limit and timer in one place so tests can shrink them.

Defaults follow upstream AgentChat, with the two deliberate differences from issue 3:
the first-hour read-only gate for new keys is off unless ``lurk_seconds`` is set, and
direct messages to ``@id`` work only with ``allow_dm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from agentctl_swarm.chat import protocol as p

#: Upstream's hard-coded genesis agent, which is always ``verified``.
GENESIS_AGENT_ID = "8addfe276526c9f6"


@dataclass(frozen=True)
class ServerConfig:
    """How one server instance behaves. Times are milliseconds unless named otherwise."""

    host: str = "127.0.0.1"
    port: int = p.DEFAULT_PORT  # 0 picks a free port
    data_dir: Path | None = None  # None: nothing persisted (in-memory store)
    admin_key: str | None = None  # admin frames and /api/connections; None disables them
    allow_dm: bool = False
    lurk_seconds: float | None = None  # None: no read-only period for new keys
    buffer_size: int = p.DEFAULT_BUFFER_SIZE
    name: str = "agentchat"
    motd: str | None = None
    private_channels: bool = False
    ephemeral_lurk: bool = True  # ephemeral (keyless) agents are read-only, as upstream
    genesis_agent_id: str | None = GENESIS_AGENT_ID
    max_connections_per_ip: int = 0
    # limits
    limits_enabled: bool = True  # False: no MSG rate limit and no flood close (bench)
    rate_limit_ms: int = p.RATE_LIMIT_MS
    flood_window_ms: int = p.FLOOD_WINDOW_MS
    flood_max_pre_auth: int = p.FLOOD_MAX_PRE_AUTH
    flood_max_post_auth: int = p.FLOOD_MAX_POST_AUTH
    max_payload: int = p.MAX_PAYLOAD
    # timers
    challenge_timeout_ms: int = p.CHALLENGE_TIMEOUT_MS
    heartbeat_interval_ms: int = p.HEARTBEAT_INTERVAL_MS
    heartbeat_grace_ms: int = p.HEARTBEAT_GRACE_MS
    takeover_backoff_ms: int = p.TAKEOVER_BACKOFF_MS
    takeover_backoff_max_ms: int = p.TAKEOVER_BACKOFF_MAX_MS
    takeover_window_ms: int = p.TAKEOVER_WINDOW_MS
    claim_ttl_ms: int = p.CLAIM_TTL_MS
    nick_cooldown_ms: int = p.NICK_COOLDOWN_MS
    complete_min_age_ms: int = p.COMPLETE_MIN_AGE_MS
    verify_request_timeout_ms: int = p.VERIFY_REQUEST_TIMEOUT_MS
    pair_cooldown_ms: int = 3_600_000  # same pair may complete once per hour
    # persistence
    flush_interval_ms: int = 200
    extra_secrets: tuple[str, ...] = field(default=(), repr=False)

    def with_(self, **changes: object) -> ServerConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def keepalive_timeout_ms(self) -> int:
        """Silence after which a socket is dropped: 2 x interval + grace (70 s upstream)."""
        return 2 * self.heartbeat_interval_ms + self.heartbeat_grace_ms
