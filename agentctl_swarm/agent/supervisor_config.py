"""Command line and environment of ``agentctl-agent supervise``, parsed into a config.

The knobs are one pydantic-settings model (:class:`SupervisorSettings`): every option can
be given as a flag or as ``AGENTCTL_SUPERVISOR_<OPTION>`` (flags win). Kept apart from the
process machinery in supervisor.py so the rules for options can be read and tested alone.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agentctl_swarm.config import load_settings
from agentctl_swarm.core.backoff import RestartPolicy
from agentctl_swarm.core.errors import UsageError

ENV_PREFIX = "AGENTCTL_SUPERVISOR_"
DEFAULT_PREPARE = "agentctl_swarm.agent.workspace:prepare"

__all__ = [
    "DEFAULT_PREPARE",
    "ENV_PREFIX",
    "SupervisorConfig",
    "SupervisorSettings",
    "UsageError",
    "parse_args",
]


def _codes(value: object) -> object:
    """``2,78`` / ``2 78`` / ``none`` → a set of exit codes."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in {"", "none"}:
        return frozenset()
    try:
        return frozenset(int(p) for p in text.replace(" ", ",").split(",") if p)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a list of exit codes like 2,78 or none") from exc


def _at_least(bound: float, *, strict: bool) -> BeforeValidator:
    def check(value: object) -> object:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError("must be a number of seconds") from None
        if number != number or (number <= bound if strict else number < bound):
            raise ValueError(f"must be {'>' if strict else '>='} {bound:g}")
        return value

    return BeforeValidator(check)


Positive = Annotated[float, _at_least(0, strict=True)]
NonNegative = Annotated[float, _at_least(0, strict=False)]


class SupervisorSettings(BaseSettings):
    """Every supervisor knob; env ``AGENTCTL_SUPERVISOR_<NAME>``, overridden by flags."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    state_dir: Path = Field(
        Path("/state"), description="state volume: state.json, heartbeat, stop file"
    )
    workspace: Path = Field(
        Path("/workspace"), description="git workspace prepared before first start"
    )
    grace: NonNegative = Field(10.0, description="between SIGTERM and SIGKILL of the child group")
    initial_backoff: Positive = Field(1.0, description="first restart delay")
    max_backoff: Positive = Field(300.0, description="restart delay cap")
    backoff_multiplier: float = Field(2.0, description="delay growth per restart")
    stable_after: NonNegative = Field(300.0, description="a run this long resets the backoff")
    quick_crash: NonNegative = Field(10.0, description="a crash sooner than this is quick")
    max_quick_crashes: int = Field(
        5, ge=1, description="this many quick crashes in the window: degraded"
    )
    crash_window: Positive = Field(600.0, description="window for counting quick crashes")
    fatal_exit_codes: Annotated[frozenset[int], NoDecode, BeforeValidator(_codes)] = Field(
        frozenset({2}), description="never retried, e.g. 2,78 or none"
    )
    on_clean_exit: Literal["restart", "stop"] = Field("restart", description="on exit 0")
    heartbeat_interval: Positive = Field(10.0, description="touch <state-dir>/heartbeat this often")
    poll_interval: Positive = Field(1.0, description="how often the stop file is checked")
    prepare: str = Field(DEFAULT_PREPARE, description="workspace hook MOD:FUNC, or 'none'")

    @field_validator("fatal_exit_codes")
    @classmethod
    def _code_range(cls, codes: frozenset[int]) -> frozenset[int]:
        for code in codes:
            if not 1 <= code <= 255:
                raise ValueError(f"exit code {code} is not in 1..255")
        return codes

    def policy(self) -> RestartPolicy:
        return RestartPolicy(
            initial=self.initial_backoff,
            multiplier=self.backoff_multiplier,
            cap=self.max_backoff,
            stable_after=self.stable_after,
            quick_crash=self.quick_crash,
            max_quick_crashes=self.max_quick_crashes,
            window=self.crash_window,
            fatal_exit_codes=self.fatal_exit_codes,
            restart_on_clean_exit=self.on_clean_exit == "restart",
        )


@dataclass(frozen=True)
class SupervisorConfig:
    """Everything the supervisor needs; built by :func:`parse_args`."""

    command: list[str]
    state_dir: Path = Path("/state")
    workspace: Path = Path("/workspace")
    grace: float = 10.0
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    heartbeat_interval: float = 10.0
    poll_interval: float = 1.0
    name: str | None = None
    mission: str | None = None
    prepare: str = DEFAULT_PREPARE  # "module:function", or "none"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _metavar(name: str, info: Any) -> str:
    if name in {"state_dir", "workspace"}:
        return "DIR"
    if name == "fatal_exit_codes":
        return "CODES"
    if name == "on_clean_exit":
        return "restart|stop"
    if name == "prepare":
        return "MOD:FUNC"
    return "N" if info.annotation is int else "SECONDS"


def _show(default: Any) -> str:
    if isinstance(default, frozenset):
        return ",".join(str(c) for c in sorted(default)) or "none"
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentctl-agent supervise",
        description="Keep CMD alive: restart with backoff, stop its process group on SIGTERM.",
        epilog="Every option can also be set as "
        + ENV_PREFIX
        + "<OPTION> (e.g. "
        + ENV_PREFIX
        + "GRACE=30). Stop: SIGTERM/SIGINT, or create <state-dir>/stop. "
        "Fresh start after degraded: create <state-dir>/reset, then restart.",
    )
    for name, info in SupervisorSettings.model_fields.items():
        p.add_argument(
            _flag(name),
            default=None,
            metavar=_metavar(name, info),
            help=f"{info.description} ({_show(info.default)})",
        )
    p.add_argument(
        "--name", default=None, help="agent name ($AGENTCTL_AGENT, $AGENT_NAME, hostname)"
    )
    p.add_argument("--mission", default=None, help="mission text kept in state.json ($MISSION)")
    return p


def parse_args(argv: list[str], environ: Mapping[str, str] | None = None) -> SupervisorConfig:
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
    flags = {
        name: getattr(ns, name)
        for name in SupervisorSettings.model_fields
        if getattr(ns, name) is not None
    }
    env_only = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    try:
        base = load_settings(SupervisorSettings, env_only)
        settings = SupervisorSettings.model_validate({**base.model_dump(), **flags})
    except ValidationError as exc:
        raise UsageError(_describe(exc, flags, env_only)) from exc
    except UsageError as exc:  # from the environment: name the variable (load_settings did)
        raise UsageError(_env_message(exc, env_only)) from exc
    try:
        policy = settings.policy()
    except ValueError as exc:
        raise UsageError(f"backoff options: {exc}") from exc
    name = ns.name or env.get("AGENTCTL_AGENT") or env.get("AGENT_NAME")
    mission = ns.mission if ns.mission is not None else env.get("MISSION")
    return SupervisorConfig(
        command=command,
        state_dir=settings.state_dir,
        workspace=settings.workspace,
        grace=settings.grace,
        policy=policy,
        heartbeat_interval=settings.heartbeat_interval,
        poll_interval=settings.poll_interval,
        name=name or os.uname().nodename,
        mission=mission,
        prepare=settings.prepare,
    )


def _reason(err: Mapping[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    if "error" in ctx:
        return str(ctx["error"])
    return str(err.get("msg", "invalid value")).removeprefix("Value error, ")


def _describe(exc: ValidationError, flags: Mapping[str, str], env: Mapping[str, str]) -> str:
    """``--grace='-1': must be >= 0`` or ``AGENTCTL_SUPERVISOR_GRACE='x': ...``."""
    parts = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err.get("loc") else ""
        if name in flags:
            where, raw = _flag(name), flags[name]
        else:
            where = ENV_PREFIX + name.upper()
            raw = env.get(where, err.get("input"))
        parts.append(f"{where}={raw!r}: {_reason(err)}")
    return "; ".join(parts)


def _env_message(exc: UsageError, env: Mapping[str, str]) -> str:
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        return _describe(cause, {}, env)
    return str(exc)
