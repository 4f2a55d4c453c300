"""Options of ``agentctl-agent supervise`` (flags and AGENTCTL_SUPERVISOR_*), in process,
and the supervisor's import path staying free of pydantic (its memory budget)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentctl_swarm.agent.supervisor_config import SupervisorSettings, UsageError, parse_args

REPO = Path(__file__).resolve().parents[2]
ENV = "AGENTCTL_SUPERVISOR_"


def _error(argv: list[str], env: dict[str, str] | None = None) -> str:
    with pytest.raises(UsageError) as info:
        parse_args([*argv, "--", "true"], env or {})
    return str(info.value)


def test_supervisor_imports_no_pydantic() -> None:
    # pydantic is ~8 MiB of anonymous memory in a process that stays resident in every
    # agent container; the supervisor (and `agentctl-agent supervise`) must not load it.
    code = (
        "import json, sys, agentctl_swarm.agent.cli, agentctl_swarm.agent.supervisor; "
        "from agentctl_swarm.agent.supervisor import parse_args; "
        "parse_args(['--', 'true'], {'AGENTCTL_SUPERVISOR_FATAL_EXIT_CODES': '[2, 78]'}); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('pydantic'))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert json.loads(proc.stdout) == []


def test_defaults() -> None:
    cfg = parse_args(["--", "sleep", "1"], {"AGENT_NAME": "a"})
    assert (cfg.command, cfg.state_dir, cfg.workspace, cfg.grace) == (
        ["sleep", "1"],
        Path("/state"),
        Path("/workspace"),
        10.0,
    )
    assert cfg.policy.fatal_exit_codes == frozenset({2})
    assert cfg.policy.restart_on_clean_exit
    assert (cfg.name, cfg.mission) == ("a", None)


def test_flags_win_over_the_environment() -> None:
    env = {ENV + "GRACE": "30", ENV + "MAX_QUICK_CRASHES": " 7 ", ENV + "ON_CLEAN_EXIT": "stop"}
    cfg = parse_args(["--grace", "1.5", "--", "true"], env)
    assert cfg.grace == 1.5
    assert cfg.policy.max_quick_crashes == 7
    assert not cfg.policy.restart_on_clean_exit


@pytest.mark.parametrize(
    ("value", "codes"),
    [("2,78", {2, 78}), ("2 78", {2, 78}), ("none", set()), (" ", set()), ("[2, 78]", {2, 78}),
     ('["3", 4.0]', {3, 4}), ("[]", set())],
)  # fmt: skip
def test_fatal_exit_codes_from_the_environment(value: str, codes: set[int]) -> None:
    cfg = parse_args(["--", "true"], {ENV + "FATAL_EXIT_CODES": value})
    assert cfg.policy.fatal_exit_codes == frozenset(codes)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--grace", "-1"], {}, "--grace='-1': must be >= 0"),
        (["--grace", "nan"], {}, "--grace='nan': must be >= 0"),
        (["--initial-backoff", "0"], {}, "--initial-backoff='0': must be > 0"),
        (["--poll-interval", "soon"], {}, "--poll-interval='soon': must be a number of seconds"),
        (
            ["--backoff-multiplier", "x"],
            {},
            "--backoff-multiplier='x': Input should be a valid number, unable to parse "
            "string as a number",
        ),
        (
            ["--max-quick-crashes", "0"],
            {},
            "--max-quick-crashes='0': Input should be greater than or equal to 1",
        ),
        (
            ["--max-quick-crashes", "2.5"],
            {},
            "--max-quick-crashes='2.5': Input should be a valid integer, unable to parse "
            "string as an integer",
        ),
        (["--on-clean-exit", "STOP"], {}, "--on-clean-exit='STOP': Input should be 'restart' or 'stop'"),
        (["--fatal-exit-codes", "2,300"], {}, "--fatal-exit-codes='2,300': exit code 300 is not in 1..255"),
        (
            ["--fatal-exit-codes", "[2]"],
            {},
            "--fatal-exit-codes='[2]': '[2]' is not a list of exit codes like 2,78 or none",
        ),
        (
            [],
            {ENV + "INITIAL_BACKOFF": "soon"},
            "AGENTCTL_SUPERVISOR_INITIAL_BACKOFF='soon': must be a number of seconds",
        ),
        (
            [],
            {ENV + "FATAL_EXIT_CODES": "[bad"},
            "AGENTCTL_SUPERVISOR_FATAL_EXIT_CODES='[bad': must be a JSON list or object",
        ),
        (
            [],
            {ENV + "FATAL_EXIT_CODES": '{"a": 1}'},
            "AGENTCTL_SUPERVISOR_FATAL_EXIT_CODES='{\"a\": 1}': Input should be a valid frozenset",
        ),
        (
            [],
            {ENV + "FATAL_EXIT_CODES": '["a", 2.5]'},
            "AGENTCTL_SUPERVISOR_FATAL_EXIT_CODES='[\"a\", 2.5]': Input should be a valid "
            "integer, unable to parse string as an integer; "
            "AGENTCTL_SUPERVISOR_FATAL_EXIT_CODES='[\"a\", 2.5]': Input should be a valid "
            "integer, got a number with a fractional part",
        ),
        (
            ["--initial-backoff", "10", "--max-backoff", "5"],
            {},
            "backoff options: backoff cap 5 is below the initial backoff 10",
        ),
    ],
)  # fmt: skip
def test_errors_name_the_flag_or_variable(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    assert _error(argv, env) == message


def test_every_bad_option_is_reported_in_option_order() -> None:
    message = _error(["--poll-interval", "x", "--grace", "-1"])
    assert message == "--grace='-1': must be >= 0; --poll-interval='x': must be a number of seconds"


def test_the_environment_is_checked_first_even_when_a_flag_overrides_it() -> None:
    message = _error(["--grace", "x"], {ENV + "GRACE": "y"})
    assert message == "AGENTCTL_SUPERVISOR_GRACE='y': must be a number of seconds"


def test_empty_variables_are_unset_but_empty_flags_are_values() -> None:
    cfg = parse_args(["--", "true"], {ENV + "PREPARE": "", ENV + "FATAL_EXIT_CODES": ""})
    assert (cfg.prepare, cfg.policy.fatal_exit_codes) == (
        "agentctl_swarm.agent.workspace:prepare",
        frozenset({2}),
    )
    assert _error(["--grace", ""]) == "--grace='': must be a number of seconds"


def test_help_lists_every_option_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(["--help"], {})
    assert info.value.code == 0
    out = capsys.readouterr().out
    for opt in SupervisorSettings.options():
        assert "--" + opt.name.replace("_", "-") in out
    assert "--max-quick-crashes N" in out
    assert "never retried, e.g. 2,78 or none (2)" in out
    assert "AGENTCTL_SUPERVISOR_GRACE=30" in out
