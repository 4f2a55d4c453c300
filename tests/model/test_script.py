"""The model script format: short forms a person writes by hand, and every mistake
reported as FILE:LINE:COL: field: message (through the fleet loader's mechanism)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from agentctl_swarm.cli.model import EXAMPLE
from agentctl_swarm.model import ScriptError, parse_script, read_script
from agentctl_swarm.model.script import ErrorReply


def problems(text: str) -> list[str]:
    with pytest.raises(ScriptError) as info:
        parse_script(text, "s.yaml")
    return info.value.details()


def test_short_forms_mean_what_the_long_forms_say():
    short = parse_script(
        """
turns:
  - Hello.
  - tool_use:
      - Write: {file_path: /w/a.txt, content: "x"}
      - mcp__agentchat__agentchat_send: {target: "#general", message: hi}
      - {name: Read, input: {file_path: /w/a.txt}}
  - error: 429
  - error: overloaded
""",
        "s.yaml",
    )
    turns = short.all_conversations()[0].turns
    assert turns[0].text == "Hello."
    assert [(c.name, c.input) for c in turns[1].tool_use] == [
        ("Write", {"file_path": "/w/a.txt", "content": "x"}),
        ("mcp__agentchat__agentchat_send", {"target": "#general", "message": "hi"}),
        ("Read", {"file_path": "/w/a.txt"}),
    ]
    assert turns[1].effective_stop_reason == "tool_use"
    assert turns[0].effective_stop_reason == "end_turn"
    assert turns[2].error is not None and turns[2].error.resolved()[:2] == (429, "rate_limit_error")
    assert turns[3].error is not None and turns[3].error.resolved()[:2] == (529, "overloaded_error")


@pytest.mark.parametrize(
    ("written", "status", "etype"),
    [
        ({"kind": "authentication"}, 401, "authentication_error"),
        ({"status": 403}, 403, "permission_error"),
        ({"kind": "prompt_too_long"}, 400, "invalid_request_error"),
        ({"status": 502}, 502, "api_error"),
        ({"status": 429, "type": "custom_error", "message": "m"}, 429, "custom_error"),
    ],
)
def test_errors_resolve_to_the_real_apis_status_and_type(written, status, etype):
    resolved = ErrorReply.model_validate(written).resolved()
    assert resolved[:2] == (status, etype)
    if written.get("kind") == "prompt_too_long":
        assert resolved[2].startswith("prompt is too long: ")


def test_every_problem_is_located_at_once():
    lines = problems(
        """conversations:
  - match: {prompt: "([", system: ok}
    turns:
      - txt: hi
      - error: {status: 429, times: 2}
      - error: 7
      - tool_use: [{name: "bad name"}]
      - text: hi
        error: 401
      - {}
      - hang: true
        text: no
      - delay: -1
        text: x
  - turns: []
"""
    )
    assert lines == [
        "s.yaml:2:21: conversations[0].match.prompt: not a valid regular expression: "
        "unterminated character set at position 1",
        "s.yaml:4:9: conversations[0].turns[0].txt: unknown key 'txt'",
        "s.yaml:5:9: conversations[0].turns[1]: error.times says the turn recovers, so give "
        "the answer that follows (text and/or tool_use)",
        "s.yaml:6:16: conversations[0].turns[2].error.status: must be at least 400 (got 7)",
        "s.yaml:7:27: conversations[0].turns[3].tool_use[0].name: 'bad name' is not a tool "
        "name (letters, digits, _ and -; MCP tools look like mcp__agentchat__agentchat_send)",
        "s.yaml:8:9: conversations[0].turns[4]: an error without `times` never lets the "
        "answer through: remove text, tool_use, usage and stop_reason, or give error.times",
        "s.yaml:10:9: conversations[0].turns[5]: a turn needs text, tool_use, error or hang: true",
        "s.yaml:11:9: conversations[0].turns[6]: a hang turn never answers: remove text, "
        "tool_use and error",
        "s.yaml:13:16: conversations[0].turns[7].delay: must be at least 0.0 (got -1)",
        "s.yaml:15:12: conversations[1].turns: must have at least 1 item",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "s.yaml:1:1: the script is empty"),
        ("- a\n", "s.yaml:1:1: the top level must be a mapping (turns: or conversations:)"),
        ("turns: [a]\nturns: [b]\n", "s.yaml:2:1: turns: duplicate key; keep only one"),
        ("turns: [a\n", "s.yaml:2:1: YAML syntax error:"),
        ("{}\n", "s.yaml:1:1: the script needs `conversations` (or `turns` for a single one)"),
        (
            "turns: [a]\nconversations: [{turns: [b]}]\n",
            "s.yaml:1:1: give either `turns` (one conversation) or `conversations`, not both",
        ),
        ("turns: [{error: frobnicate}]\n", "s.yaml:1:17: turns[0].error.kind: got 'frobnicate'"),
        ("turns: [{error: {}}]\n", "s.yaml:1:17: turns[0].error: give a status (e.g. 429)"),
    ],
)
def test_whole_file_problems(text: str, expected: str):
    (line,) = problems(text)
    assert line.startswith(expected), line


def test_read_script_refuses_what_is_not_a_small_regular_utf8_file(tmp_path: Path):
    cases = {}
    cases["missing"] = tmp_path / "missing.yaml"
    cases["directory"] = tmp_path
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases["fifo"] = fifo
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (4 * 1024 * 1024 + 1))
    cases["big"] = big
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"turns: [\xe9]\n")
    cases["latin"] = latin
    expected = {
        "missing": "file not found",
        "directory": "not a regular file",
        "fifo": "not a regular file",
        "big": "larger than 4 MiB",
        "latin": "not UTF-8 text (byte 8)",
    }
    for name, path in cases.items():
        with pytest.raises(ScriptError) as info:
            read_script(path)
        (line,) = info.value.details()
        assert line.startswith(f"{path}:1:1: ") and expected[name] in line, line
        assert "agentctl model serve --help" in info.value.one_line()


def test_the_help_example_is_a_valid_script():
    # The YAML between "Example" and the first prose paragraph of `serve --help`.
    # Click's "\b" (a backspace character) keeps the block as written.
    block = EXAMPLE.split("\b\n", 2)[1].split("\n\n")[0]
    script = parse_script(block, "help-example.yaml")
    names = [c.name for c in script.all_conversations()]
    assert names == ["writer", None]
    assert re.search(script.conversations[0].match.prompt or "", "write hello.txt")
