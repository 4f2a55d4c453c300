"""Classifying how a Claude Code run ended, on real recorded streams (pure).

The fixtures in tests/fixtures/claude_streams/ were recorded from the real binary
against the scripted model (`python -m tests.model.record_streams` re-records them);
test_claude_real.py checks that a fresh run of each scenario still classifies the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentctl_swarm.agent.claude_stream import (
    ApiRetryEvent,
    AssistantEvent,
    InitEvent,
    NotJson,
    OtherEvent,
    Outcome,
    PermissionDeniedEvent,
    ResultEvent,
    StreamState,
    UserEvent,
    classify_lines,
    parse_line,
    redact_line,
    redactor,
    transcript_redactor,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude_streams"
NAMES = sorted(p.name.removesuffix(".jsonl") for p in FIXTURES.glob("*.jsonl"))


def fixture(name: str) -> tuple[list[str], dict]:
    lines = (FIXTURES / f"{name}.jsonl").read_text().splitlines()
    exit_info = json.loads((FIXTURES / f"{name}.exit.json").read_text())
    return [line for line in lines if line.strip()], exit_info


def test_every_outcome_has_a_recording():
    assert set(NAMES) >= {
        "success_write_edit",
        "mcp_send",
        "auth_401",
        "rate_limit_429",
        "overloaded_529",
        "prompt_too_long",
        "bash_permission_denied",
        "killed_sigkill",
        "terminated_sigterm",
    }


@pytest.mark.parametrize("name", NAMES)
def test_each_recording_classifies_as_recorded(name: str):
    lines, exit_info = fixture(name)
    end = classify_lines(lines, exit_info["returncode"])
    assert end.outcome == Outcome(exit_info["expect"]), end.reason
    assert end.session_id  # every run says who it was, even a killed one


def test_success_totals_come_from_the_result():
    lines, exit_info = fixture("success_write_edit")
    state = StreamState().feed_all(lines)
    end = state.classify(exit_info["returncode"])
    assert end.ok and end.exit_code == 0 and end.signal is None
    assert end.terminal_reason == "completed" and end.num_turns == 3
    assert end.usage.input_tokens > 0 and end.usage.output_tokens > 0
    assert end.usage.cache_read_input_tokens == 700  # the script's usage for the last turn
    assert end.total_cost_usd > 0
    assert [t.name for t in state.tool_uses] == ["Write", "Edit"]
    assert state.activity == "Created and edited hello.txt."  # the last thing it did
    assert "Write" in state.tools and state.version == exit_info["claude_code_version"]


def test_mcp_servers_and_their_tools_are_seen():
    lines, _ = fixture("mcp_send")
    state = StreamState().feed_all(lines)
    assert [(s.name, s.status) for s in state.mcp_servers] == [("agentchat", "connected")]
    assert "mcp__agentchat__agentchat_send" in state.tools
    assert [t.name for t in state.tool_uses] == [
        "mcp__agentchat__agentchat_connect",
        "mcp__agentchat__agentchat_send",
    ]
    partial = StreamState().feed_all(lines[:4])
    assert partial.activity == "mcp__agentchat__agentchat_send #general"


def test_an_auth_failure_shows_at_the_first_retry():
    lines, exit_info = fixture("auth_401")
    state = StreamState()
    seen_at = None
    for index, line in enumerate(lines):
        state.feed(line)
        if state.early_outcome() is Outcome.AUTH:
            seen_at = index
            break
    first_retry = next(i for i, line in enumerate(lines) if '"api_retry"' in line)
    assert seen_at == first_retry  # the runner can kill claude here, not 10 retries later
    # Killed there by the runner, the run is still an auth failure.
    end = state.classify(-9, stopped_early=Outcome.AUTH)
    assert end.outcome is Outcome.AUTH and end.api_error_status == 401
    assert end.signal == "SIGKILL" and "stopped early" in end.reason
    full = classify_lines(lines, exit_info["returncode"])
    assert full.outcome is Outcome.AUTH and full.retries == 2


def test_quota_can_stop_early_when_asked():
    lines, _ = fixture("rate_limit_429")
    state = StreamState().feed_all(lines[:2])
    assert state.rate_limited
    assert state.early_outcome() is None
    assert state.early_outcome(stop_on_quota=True) is Outcome.QUOTA


def test_permission_denials_are_collected_once():
    lines, _ = fixture("bash_permission_denied")
    state = StreamState().feed_all(lines)
    assert [(d.tool_name, d.reason) for d in state.denials] == [("Bash", "subcommandResults")]
    user = next(e for e in map(parse_line, lines) if isinstance(e, UserEvent))
    assert user.tool_results[0].denied and user.tool_results[0].is_error


def test_a_killed_run_keeps_what_it_spent():
    lines, exit_info = fixture("killed_sigkill")
    end = classify_lines(lines, exit_info["returncode"])
    assert end.outcome is Outcome.KILLED and end.signal == "SIGKILL" and end.exit_code is None
    assert end.usage.input_tokens > 0  # from the assistant messages seen before the kill


def test_sigterm_exit_143_is_a_signal_and_a_deadline_is_a_timeout():
    lines, exit_info = fixture("terminated_sigterm")
    assert exit_info["returncode"] == 143  # claude catches SIGTERM and exits 128+15
    end = classify_lines(lines, 143)
    assert (end.outcome, end.signal, end.exit_code) == (Outcome.KILLED, "SIGTERM", 143)
    assert classify_lines(lines, 143, timed_out=True).outcome is Outcome.TIMEOUT


def test_exits_without_a_result_are_crashes():
    init = fixture("success_write_edit")[0][0]
    assert classify_lines([init], 1).outcome is Outcome.CRASH
    zero = classify_lines([init, "Segmentation fault"], 0)
    assert zero.outcome is Outcome.CRASH and zero.reason == "exited 0 without a result"
    assert classify_lines([], 3).reason == "exited 3 without a result"
    assert classify_lines([], None).outcome is Outcome.CRASH


def result_line(**fields) -> str:
    base = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 1,
            "session_id": "s", "terminal_reason": "completed", "api_error_status": None}  # fmt: skip
    return json.dumps({**base, **fields})


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        ({"is_error": True, "api_error_status": 403, "terminal_reason": "api_error"}, "auth"),
        ({"is_error": True, "api_error_status": 503, "terminal_reason": "api_error"}, "overloaded"),
        ({"is_error": True, "api_error_status": 500, "terminal_reason": "api_error"}, "api_error"),
        ({"is_error": True, "subtype": "error_max_turns", "terminal_reason": None}, "error"),
        ({"subtype": "error_during_execution"}, "error"),
    ],
)
def test_results_map_to_outcomes(fields, outcome):
    assert classify_lines([result_line(**fields)], 1).outcome == Outcome(outcome)


def test_events_are_typed_and_garbage_is_tolerated():
    lines, _ = fixture("auth_401")
    kinds = [type(parse_line(line)) for line in lines]
    assert kinds[0] is InitEvent and ApiRetryEvent in kinds and kinds[-1] is ResultEvent
    synthetic = next(e for e in map(parse_line, lines) if isinstance(e, AssistantEvent))
    assert synthetic.synthetic  # Claude Code's own error message, not the model's
    denied = fixture("bash_permission_denied")[0]
    assert any(isinstance(parse_line(line), PermissionDeniedEvent) for line in denied)
    assert isinstance(parse_line("not json"), NotJson)
    assert isinstance(parse_line("[1, 2]"), NotJson)
    other = parse_line('{"type": "stream_event", "event": {}}')
    assert isinstance(other, OtherEvent) and other.type == "stream_event"
    weird = parse_line('{"type": "result", "usage": "x", "num_turns": "3", "is_error": 1}')
    assert isinstance(weird, ResultEvent) and weird.num_turns == 0 and not weird.is_error
    state = StreamState().feed_all(["", "garbage", '{"type":"assistant","message":null}'])
    assert state.not_json == 1


# ------------------------------------------------------------------------- redaction


def test_redaction_keeps_json_lines_valid_and_hides_secrets():
    key = 'sk-live-"quoted"\\and-long-secret'
    redactor = transcript_redactor([key], env={"GITHUB_TOKEN": "ghs_abcdefghijklmnop12345"})
    line = json.dumps(
        {
            "type": "assistant",
            "message": {
                "content": [
                    {"type": "text", "text": f"the key is {key}"},
                    {"type": "tool_use", "input": {"api_key": "sk-ant-api03-" + "A" * 30,
                                                   "token": "ghs_abcdefghijklmnop12345"}},
                ]
            },
        }
    )  # fmt: skip
    out = redact_line(line, redactor)
    decoded = json.loads(out)  # still valid JSON
    text = json.dumps(decoded)
    assert "quoted" not in out and "sk-ant-api03" not in out and "ghs_abc" not in out
    assert "[REDACTED:secret]" in text and "[REDACTED:anthropic_api_key]" in text
    assert "[REDACTED:env:GITHUB_TOKEN]" in text
    assert decoded["type"] == "assistant"


def test_redactor_is_a_line_function_for_the_transcript_writer():
    redact = redactor(["runner-secret-abcdef"])
    line = '{"type":"user","message":{"content":"runner-secret-abcdef"}}'
    assert json.loads(redact(line))["message"]["content"] == "[REDACTED:secret]"


def test_redaction_of_plain_lines_and_clean_lines():
    key = "plain-secret-value-123"
    redactor = transcript_redactor([key, ""])
    assert redact_line(f"error: {key} rejected", redactor) == "error: [REDACTED:secret] rejected"
    clean = '{"type": "system",  "subtype": "init"}'
    assert redact_line(clean, redactor) == clean  # untouched when nothing matched
    assert redact_line('"' + key + '"', redactor) == '"[REDACTED:secret]"'
    escaped = json.dumps("x" + 'sec"ret-value-12345')[1:-1]
    assert transcript_redactor(['sec"ret-value-12345']).clean(escaped) == "x[REDACTED:secret]"
