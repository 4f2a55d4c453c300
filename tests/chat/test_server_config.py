"""Server tuning lives in ``chat.server.config``; the takeover hold is the project's one
backoff curve (core/backoff.py)."""

from __future__ import annotations

import pytest

from agentctl_swarm.chat.server import ServerConfig, ServerCore
from agentctl_swarm.chat.server.config import BUILTIN_CHANNELS, BUILTIN_VERIFIED_CHANNELS


def test_takeover_hold_doubles_within_the_window_and_resets_after_it() -> None:
    core = ServerCore(ServerConfig())
    window = core.cfg.takeover_window_ms
    delays = [core._takeover_delay("a", now=1000 * i) for i in range(7)]
    assert delays == [5_000, 10_000, 20_000, 40_000, 60_000, 60_000, 60_000]
    assert core._takeover_delay("a", now=6000 + window) == 5_000
    assert core._takeover_delay("b", now=0) == 5_000  # per identity


def test_no_takeover_hold_when_it_is_zero() -> None:
    assert ServerConfig(takeover_backoff_ms=0).takeover_curve is None
    assert ServerCore(ServerConfig(takeover_backoff_ms=0))._takeover_delay("a", 0) == 0


async def test_zero_hold_takes_over_at_once(make_chat_server, raw_connect) -> None:
    srv = make_chat_server(takeover_backoff_ms=0)
    old = await raw_connect(srv.url, "alice")
    new = await raw_connect(srv.url)
    await new.login("alice", old.identity)
    await old.expect("SESSION_DISPLACED", timeout=2)


def test_builtin_channels_exist_from_the_start() -> None:
    core = ServerCore(ServerConfig())
    assert set(BUILTIN_CHANNELS) | set(BUILTIN_VERIFIED_CHANNELS) <= set(core.channels)
    assert core.channels["#ops"].verified_only


@pytest.mark.parametrize("value", [-1, 0])
def test_takeover_curve_never_fails_to_build(value: int) -> None:
    assert ServerConfig(takeover_backoff_ms=value).takeover_curve is None


def test_a_failing_timer_does_not_stop_the_others(caplog) -> None:
    import json

    core = ServerCore(ServerConfig())
    core.connect(1, "127.0.0.1", 0)
    core.receive(1, json.dumps({"type": "IDENTIFY", "name": "a"}), 0)

    def boom(payload: object, now: int) -> None:
        raise RuntimeError("timer bug")

    core._t_boom = boom  # type: ignore[attr-defined]
    core._timer(10, "boom", None)
    core._timer(20, "verify", "no-such-request")  # a real timer after the broken one
    with caplog.at_level("ERROR", logger="agentctl.chat.server"):
        core.tick(30)
    assert core.next_deadline() is None  # both ran
    assert [r.getMessage() for r in caplog.records] == ["chat.timer_failed"]
