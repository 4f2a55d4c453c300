"""core/env.py: the one way settings are read from the environment, and the lax
text-to-number rules (pydantic's, with its messages) the supervisor uses without it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from agentctl_swarm.config import AgentChatSettings, Settings, load_settings
from agentctl_swarm.core.env import (
    ENV_HINT,
    FINITE,
    FLOAT_PARSING,
    FLOAT_TYPE,
    INT_FROM_FLOAT,
    INT_PARSING,
    INT_TYPE,
    env_values,
    env_var,
    holds_collection,
    parse_float,
    parse_int,
)
from agentctl_swarm.core.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
FIELDS = {"grace": False, "codes": True, "name": False}


def test_variables_are_prefix_plus_upper_case_field() -> None:
    assert env_var("AGENTCTL_", "api_concurrency") == "AGENTCTL_API_CONCURRENCY"
    env = {"X_GRACE": "3", "X_NAME": "n", "OTHER": "1", "X_UNKNOWN": "u"}
    assert env_values(FIELDS, "X_", env) == {"grace": "3", "name": "n"}


def test_names_match_case_insensitively_and_the_last_spelling_wins() -> None:
    assert env_values(FIELDS, "X_", {"x_grace": "1"}) == {"grace": "1"}
    assert env_values(FIELDS, "X_", {"X_GRACE": "1", "x_Grace": "2"}) == {"grace": "2"}


def test_empty_values_count_as_unset() -> None:
    assert env_values(FIELDS, "X_", {"X_GRACE": "", "X_CODES": ""}) == {}


def test_json_is_decoded_only_for_collections_and_only_for_brackets() -> None:
    env = {"X_CODES": ' [2, "3"]', "X_NAME": "[not json for a plain field"}
    assert env_values(FIELDS, "X_", env) == {"codes": [2, "3"], "name": env["X_NAME"]}
    assert env_values(FIELDS, "X_", {"X_CODES": "2,78"}) == {"codes": "2,78"}
    assert env_values(FIELDS, "X_", {"X_CODES": '{"a": 1}'}) == {"codes": {"a": 1}}


def test_bad_json_names_every_variable_and_the_fix() -> None:
    with pytest.raises(UsageError) as info:
        env_values({"a": True, "b": True}, "X_", {"X_A": "[1,", "X_B": "{x"})
    assert str(info.value) == (
        "X_A='[1,': must be a JSON list or object; X_B='{x': must be a JSON list or object"
    )
    assert info.value.hint == ENV_HINT


def test_holds_collection_sees_through_optional_and_annotated() -> None:
    from typing import Annotated

    assert holds_collection(list[str])
    assert holds_collection(list[str] | None)
    assert holds_collection(Annotated[frozenset[int], "meta"])
    assert holds_collection(dict)
    assert not holds_collection(str)
    assert not holds_collection(int | None)


@pytest.mark.parametrize(
    ("text", "value"),
    [("5", 5), (" 7\n", 7), ("+3", 3), ("-0", 0), ("007", 7), ("1_000", 1000), ("3.0", 3),
     ("2.00", 2), ("-0.0", 0), (True, 1), (4.0, 4), (12, 12)],
)  # fmt: skip
def test_parse_int_accepts(text: object, value: int) -> None:
    assert parse_int(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [("x", INT_PARSING), ("", INT_PARSING), ("5.", INT_PARSING), (".5", INT_PARSING),
     ("3.5", INT_PARSING), ("1e3", INT_PARSING), ("5 .0", INT_PARSING), ("1__0", INT_PARSING),
     ("\u0661\u0662", INT_PARSING), ("inf", INT_PARSING), (2.5, INT_FROM_FLOAT),
     (math.nan, FINITE), (None, INT_TYPE), ([1], INT_TYPE)],
)  # fmt: skip
def test_parse_int_rejects_with_pydantics_message(text: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message + "$"):
        parse_int(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("5", 5.0), (" 5 ", 5.0), ("5.", 5.0), (".5", 0.5), ("1e3", 1000.0), ("1_000", 1000.0),
     ("1_.5", 1.5), ("inf", math.inf), ("-Infinity", -math.inf), ("1e400", math.inf),
     (True, 1.0), (3, 3.0)],
)  # fmt: skip
def test_parse_float_accepts(text: object, value: float) -> None:
    assert parse_float(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [("x", FLOAT_PARSING), ("", FLOAT_PARSING), ("0x10", FLOAT_PARSING),
     ("\u0661\u0662", FLOAT_PARSING), (" 1_0", FLOAT_PARSING), ("1_", FLOAT_PARSING),
     (None, FLOAT_TYPE), ([1.0], FLOAT_TYPE)],
)  # fmt: skip
def test_parse_float_rejects_with_pydantics_message(text: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message + "$"):
        parse_float(text)


def test_nan_text_is_a_float() -> None:
    assert math.isnan(parse_float("nan"))


def test_load_settings_reads_through_env_values() -> None:
    s = load_settings(Settings, {"agentctl_api_concurrency": "9", "AGENTCTL_DEBUG": ""})
    assert (s.api_concurrency, s.debug) == (9, False)
    with pytest.raises(UsageError) as info:
        load_settings(AgentChatSettings, {"AGENTCHAT_SETTLE_MS": "soon"})
    assert str(info.value) == "AGENTCHAT_SETTLE_MS='soon': must be a number"
    assert info.value.hint == ENV_HINT


def test_load_settings_decodes_json_for_list_fields() -> None:
    from agentctl_swarm.agent.runner import RunnerSettings

    env = {"AGENTCTL_RUNNER_AGENT": "a", "AGENTCTL_RUNNER_ROLE": "r"}
    cmd = ["run", "{prompt}"]
    s = load_settings(RunnerSettings, {**env, "AGENTCTL_RUNNER_COMMAND": json.dumps(cmd)})
    assert s.command == cmd
    with pytest.raises(UsageError, match="AGENTCTL_RUNNER_COMMAND='\\[bad': must be a JSON"):
        load_settings(RunnerSettings, {**env, "AGENTCTL_RUNNER_COMMAND": "[bad"})


def test_core_env_is_stdlib_only() -> None:
    # The supervisor reads its environment through this module: nothing but the stdlib
    # (and agentctl_swarm.core.errors) may come with it.
    code = (
        "import json, sys, agentctl_swarm.core.env; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m != '__main__' and m.split('.')[0] not in sys.stdlib_module_names)))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    assert json.loads(out) == [
        "agentctl_swarm",
        "agentctl_swarm.core",
        "agentctl_swarm.core.env",
        "agentctl_swarm.core.errors",
    ]
