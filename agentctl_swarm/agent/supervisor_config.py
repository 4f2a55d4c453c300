"""Command line and environment of ``agentctl-agent supervise``, parsed into a config.

Kept apart from the process machinery in supervisor.py so the rules for options (each
also readable as ``AGENTCTL_SUPERVISOR_<OPTION>``) can be read and tested on their own.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentctl_swarm.agent.backoff import BackoffPolicy

ENV_PREFIX = "AGENTCTL_SUPERVISOR_"
DEFAULT_PREPARE = "agentctl_swarm.agent.workspace:prepare"


class UsageError(Exception):
    """Bad command line or environment; the message names the place and the fix."""


@dataclass(frozen=True)
class SupervisorConfig:
    """Everything the supervisor needs; built by :func:`parse_args`."""

    command: list[str]
    state_dir: Path = Path("/state")
    workspace: Path = Path("/workspace")
    grace: float = 10.0
    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    heartbeat_interval: float = 10.0
    poll_interval: float = 1.0
    name: str | None = None
    mission: str | None = None
    prepare: str = DEFAULT_PREPARE  # "module:function", or "none"


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _codes(text: str) -> frozenset[int]:
    text = text.strip()
    if text.lower() in {"", "none"}:
        return frozenset()
    codes = set()
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        code = int(part)
        if not 1 <= code <= 255:
            raise ValueError(f"exit code {code} is not in 1..255")
        codes.add(code)
    return frozenset(codes)


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text

    return parse


# (flag, type, default, help); env var = AGENTCTL_SUPERVISOR_<FLAG upper, - → _>
_OPTIONS: list[tuple[str, Callable[[str], Any], Any, str, str]] = [
    ("--state-dir", Path, Path("/state"), "DIR", "state volume: state.json, heartbeat, stop file"),
    ("--workspace", Path, Path("/workspace"), "DIR", "git workspace prepared before first start"),
    ("--grace", _non_negative, 10.0, "SECONDS", "between SIGTERM and SIGKILL of the child group"),
    ("--initial-backoff", _positive, 1.0, "SECONDS", "first restart delay"),
    ("--max-backoff", _positive, 300.0, "SECONDS", "restart delay cap"),
    ("--backoff-multiplier", float, 2.0, "FACTOR", "delay growth per restart"),
    ("--stable-after", _non_negative, 300.0, "SECONDS", "a run this long resets the backoff"),
    ("--quick-crash", _non_negative, 10.0, "SECONDS", "a crash sooner than this is quick"),
    ("--max-quick-crashes", _count, 5, "N", "this many quick crashes in the window: degraded"),
    ("--crash-window", _positive, 600.0, "SECONDS", "window for counting quick crashes"),
    ("--fatal-exit-codes", _codes, frozenset({2}), "CODES", "never retried, e.g. 2,78 or none"),
    ("--on-clean-exit", _choice("restart", "stop"), "restart", "restart|stop", "on exit 0"),
    ("--heartbeat-interval", _positive, 10.0, "SECONDS", "touch <state-dir>/heartbeat this often"),
    ("--poll-interval", _positive, 1.0, "SECONDS", "how often the stop file is checked"),
    ("--prepare", str, DEFAULT_PREPARE, "MOD:FUNC", "workspace hook, or 'none'"),
]


def _show(default: Any) -> str:
    if isinstance(default, frozenset):
        return ",".join(str(c) for c in sorted(default)) or "none"
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentctl-agent supervise",
        description="Keep CMD alive: restart with backoff, stop its process group on SIGTERM.",
        epilog="Every option can also be set as "
        + ENV_PREFIX
        + "<OPTION> (e.g. "
        + _env_name("--grace")
        + "=30). Stop: SIGTERM/SIGINT, or create <state-dir>/stop. "
        "Fresh start after degraded: create <state-dir>/reset, then restart.",
    )
    for flag, _type, default, metavar, help_ in _OPTIONS:
        p.add_argument(flag, default=None, metavar=metavar, help=f"{help_} ({_show(default)})")
    p.add_argument(
        "--name", default=None, help="agent name ($AGENTCTL_AGENT, $AGENT_NAME, hostname)"
    )
    p.add_argument("--mission", default=None, help="mission text kept in state.json ($MISSION)")
    return p


def parse_args(argv: list[str], environ: dict[str, str] | None = None) -> SupervisorConfig:
    """Options from argv, then ``AGENTCTL_SUPERVISOR_*``, then defaults."""
    env = os.environ if environ is None else environ
    if "--" not in argv:
        if {"-h", "--help"} & set(argv):
            _parser().parse_args(["--help"])  # prints the help, exits 0
        raise UsageError(
            "missing the command to supervise: use "
            "'agentctl-agent supervise [OPTIONS] -- CMD [ARGS...]'"
        )
    cut = argv.index("--")
    opts, command = argv[:cut], argv[cut + 1 :]
    if not command:
        raise UsageError("nothing after '--': give the command to supervise")
    ns = _parser().parse_args(opts)
    values: dict[str, Any] = {}
    for flag, type_, default, _metavar, _help in _OPTIONS:
        dest = flag.lstrip("-").replace("-", "_")
        raw, where = getattr(ns, dest), flag
        if raw is None and _env_name(flag) in env:
            raw, where = env[_env_name(flag)], _env_name(flag)
        if raw is None:
            values[dest] = default
            continue
        try:
            values[dest] = type_(raw)
        except ValueError as exc:
            raise UsageError(f"{where}={raw!r}: {exc}") from None
    try:
        policy = BackoffPolicy(
            initial=values["initial_backoff"],
            multiplier=values["backoff_multiplier"],
            cap=values["max_backoff"],
            stable_after=values["stable_after"],
            quick_crash=values["quick_crash"],
            max_quick_crashes=values["max_quick_crashes"],
            window=values["crash_window"],
            fatal_exit_codes=values["fatal_exit_codes"],
            restart_on_clean_exit=values["on_clean_exit"] == "restart",
        )
    except ValueError as exc:
        raise UsageError(f"backoff options: {exc}") from None
    name = ns.name or env.get("AGENTCTL_AGENT") or env.get("AGENT_NAME")
    mission = ns.mission if ns.mission is not None else env.get("MISSION")
    return SupervisorConfig(
        command=command,
        state_dir=values["state_dir"],
        workspace=values["workspace"],
        grace=values["grace"],
        policy=policy,
        heartbeat_interval=values["heartbeat_interval"],
        poll_interval=values["poll_interval"],
        name=name or os.uname().nodename,
        mission=mission,
        prepare=values["prepare"],
    )
