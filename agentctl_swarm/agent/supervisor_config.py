"""Command line and environment of ``agentctl-agent supervise``, parsed into a config.

The knobs are one dataclass (:class:`SupervisorSettings`): every option can be given as
a flag or as ``AGENTCTL_SUPERVISOR_<OPTION>`` (flags win). Kept apart from the process
machinery in supervisor.py so the rules for options can be read and tested alone.

No pydantic here (nor anywhere on the supervisor's import path): the supervisor stays
resident in every agent container, and importing pydantic and building its models was
~8 MiB of the process's anonymous memory (RssAnon with the supervisor imported, in the
agent image: 18,332 KiB with pydantic, 10,344 KiB without), against an idle target of
40 MiB per container (bench/dispatch). The
environment is read by the same helper as every other settings model
(:func:`agentctl_swarm.core.env.env_values`); each option's parser below keeps the
rules and the messages users saw when this was a pydantic model (``--grace='-1': must
be >= 0``, ``AGENTCTL_SUPERVISOR_MAX_QUICK_CRASHES='0': Input should be greater than or
equal to 1``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from agentctl_swarm.core.backoff import RestartPolicy
from agentctl_swarm.core.env import env_values, env_var, parse_float, parse_int
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

Parser = Callable[[object], Any]


class _Invalid(ValueError):
    """Several reasons at once (a JSON list of exit codes with more than one bad item)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


# --------------------------------------------------------------------------- parsers
# Each takes the raw value (flag or variable text; a JSON-decoded list for the exit
# codes) and returns the option's value or raises ValueError with the reason.


def _seconds(bound: float, *, strict: bool) -> Parser:
    def parse(value: object) -> float:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError("must be a number of seconds") from None
        if number != number or (number <= bound if strict else number < bound):
            raise ValueError(f"must be {'>' if strict else '>='} {bound:g}")
        return parse_float(value)  # ASCII only: "١٢" passes float() but is no number here

    return parse


_positive = _seconds(0, strict=True)
_non_negative = _seconds(0, strict=False)


def _count(value: object) -> int:
    number = parse_int(value)
    if number < 1:
        raise ValueError("Input should be greater than or equal to 1")
    return number


def _restart_or_stop(value: object) -> str:
    if value in ("restart", "stop"):
        return str(value)
    raise ValueError("Input should be 'restart' or 'stop'")


def _path(value: object) -> Path:
    return Path(str(value))


def _text(value: object) -> str:
    return str(value)


def _codes(value: object) -> frozenset[int]:
    """``2,78`` / ``2 78`` / ``none`` (or, from the environment, a JSON list) → exit codes."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in {"", "none"}:
            return frozenset()
        try:
            codes = frozenset(int(p) for p in text.replace(" ", ",").split(",") if p)
        except ValueError:
            raise ValueError(f"{text!r} is not a list of exit codes like 2,78 or none") from None
    elif isinstance(value, list | tuple | set | frozenset):
        items: list[int] = []
        reasons: list[str] = []
        for item in value:
            try:
                items.append(parse_int(item))
            except ValueError as exc:
                reasons.append(str(exc))
        if reasons:
            raise _Invalid(reasons)
        codes = frozenset(items)
    else:
        raise ValueError("Input should be a valid frozenset")
    for code in codes:
        if not 1 <= code <= 255:
            raise ValueError(f"exit code {code} is not in 1..255")
    return codes


def _meta(
    help_: str, parse: Parser, metavar: str = "SECONDS", *, collection: bool = False
) -> dict[str, Any]:
    """What a :class:`SupervisorSettings` field needs besides its default: help text,
    parser, metavar, and whether its variable may hold JSON (a list)."""
    return {"help": help_, "parse": parse, "metavar": metavar, "collection": collection}


@dataclass(frozen=True)
class SupervisorSettings:
    """Every supervisor knob; env ``AGENTCTL_SUPERVISOR_<NAME>``, overridden by flags."""

    state_dir: Path = field(
        default=Path("/state"),
        metadata=_meta("state volume: state.json, heartbeat, stop file", _path, "DIR"),
    )
    workspace: Path = field(
        default=Path("/workspace"),
        metadata=_meta("git workspace prepared before first start", _path, "DIR"),
    )
    grace: float = field(
        default=10.0,
        metadata=_meta("between SIGTERM and SIGKILL of the child group", _non_negative),
    )
    initial_backoff: float = field(default=1.0, metadata=_meta("first restart delay", _positive))
    max_backoff: float = field(default=300.0, metadata=_meta("restart delay cap", _positive))
    backoff_multiplier: float = field(
        default=2.0, metadata=_meta("delay growth per restart", parse_float)
    )
    stable_after: float = field(
        default=300.0, metadata=_meta("a run this long resets the backoff", _non_negative)
    )
    quick_crash: float = field(
        default=10.0, metadata=_meta("a crash sooner than this is quick", _non_negative)
    )
    max_quick_crashes: int = field(
        default=5, metadata=_meta("this many quick crashes in the window: degraded", _count, "N")
    )
    crash_window: float = field(
        default=600.0, metadata=_meta("window for counting quick crashes", _positive)
    )
    fatal_exit_codes: frozenset[int] = field(
        default=frozenset({2}),
        metadata=_meta("never retried, e.g. 2,78 or none", _codes, "CODES", collection=True),
    )
    on_clean_exit: str = field(
        default="restart", metadata=_meta("on exit 0", _restart_or_stop, "restart|stop")
    )
    heartbeat_interval: float = field(
        default=10.0, metadata=_meta("touch <state-dir>/heartbeat this often", _positive)
    )
    poll_interval: float = field(
        default=1.0, metadata=_meta("how often the stop file is checked", _positive)
    )
    prepare: str = field(
        default=DEFAULT_PREPARE,
        metadata=_meta("workspace hook MOD:FUNC, or 'none'", _text, "MOD:FUNC"),
    )

    @classmethod
    def options(cls) -> tuple[Field[Any], ...]:
        """The knobs, in order, with ``metadata``: help, parse, metavar, collection."""
        return fields(cls)

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
    for opt in SupervisorSettings.options():
        p.add_argument(
            _flag(opt.name),
            default=None,
            metavar=opt.metadata["metavar"],
            help=f"{opt.metadata['help']} ({_show(opt.default)})",
        )
    p.add_argument(
        "--name", default=None, help="agent name ($AGENTCTL_AGENT, $AGENT_NAME, hostname)"
    )
    p.add_argument("--mission", default=None, help="mission text kept in state.json ($MISSION)")
    return p


def _parsed(raw: Mapping[str, object], where: Callable[[str, object], str]) -> dict[str, Any]:
    """Each option's parser over ``raw``; every problem at once, as ``where='raw': why``."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for opt in SupervisorSettings.options():
        if opt.name not in raw:
            continue
        value = raw[opt.name]
        try:
            values[opt.name] = opt.metadata["parse"](value)
        except _Invalid as exc:
            problems += [f"{where(opt.name, value)}: {reason}" for reason in exc.reasons]
        except ValueError as exc:
            problems.append(f"{where(opt.name, value)}: {exc}")
    if problems:
        raise UsageError("; ".join(problems))
    return values


def parse_args(argv: list[str], environ: Mapping[str, str] | None = None) -> SupervisorConfig:
    """Options from argv, then ``AGENTCTL_SUPERVISOR_*``, then defaults.

    A bad variable is reported even when a flag overrides it (the environment is
    checked first, as a whole); errors name the variable or the flag and the value.
    """
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
    options = SupervisorSettings.options()
    flags = {o.name: getattr(ns, o.name) for o in options if getattr(ns, o.name) is not None}
    env_only = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    try:
        raw_env = env_values(
            {o.name: o.metadata["collection"] for o in options}, ENV_PREFIX, env_only
        )
    except UsageError as exc:  # undecodable JSON; the message names the variable
        raise UsageError(str(exc)) from exc

    def env_where(name: str, value: object) -> str:
        var = env_var(ENV_PREFIX, name)
        return f"{var}={env_only.get(var, value)!r}"

    from_env = _parsed(raw_env, env_where)
    from_flags = _parsed(flags, lambda name, value: f"{_flag(name)}={value!r}")
    settings = SupervisorSettings(**{**from_env, **from_flags})
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
