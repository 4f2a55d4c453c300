"""`agentctl transcript`'s rendering (controller/transcript.py) of real Claude Code
streams recorded in tests/fixtures/claude_streams/: what a person reads must match what
the stream says, and the outcome must be the one the runner classifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentctl_swarm.controller.transcript import (
    Clipped,
    clip,
    compact_input,
    render_text,
    session,
)

STREAMS = Path(__file__).resolve().parents[1] / "fixtures" / "claude_streams"


def lines_of(name: str) -> list[str]:
    return (STREAMS / f"{name}.jsonl").read_text().splitlines()


def text_of(name: str, **kw: object) -> str:
    s = session(lines_of(name), **kw)  # type: ignore[arg-type]
    return "\n".join(line for _, line in render_text(s.entries))


def test_a_successful_session_reads_as_a_conversation() -> None:
    s = session(lines_of("success_write_edit"), prompt="please write hello.txt")
    kinds = [e.kind for e in s.entries]
    assert kinds == ["session", "prompt", "text", "tool_call", "tool_result", "tool_call",
                     "tool_result", "text", "result"]  # fmt: skip
    text = "\n".join(line for _, line in render_text(s.entries))
    assert "session 91ea6236 · claude-opus-5-5 · Claude Code 2.1.332" in text
    assert "prompt:\n  please write hello.txt" in text
    assert "assistant: I'll create the file." in text
    assert '→ Write(file_path="/tmp/record-success_write_edit-bkd0uw68/workspace/hello.txt", ' \
           'content="hello\\n")' in text  # fmt: skip
    assert "← Write\n      File created successfully at:" in text
    assert "→ Edit(replace_all=false, " in text
    assert "result: success · 3 turn(s) · 41,102 tokens in, 125 out (cache: 700 read, 0 written)" \
        " · $0.1670" in text  # fmt: skip
    # the model's last words are shown once, not again under the result
    assert text.count("Created and edited hello.txt.") == 1
    assert s.summary["outcome"] == "success"
    assert s.summary["tool_calls"] == 2
    assert s.summary["usage"]["input_tokens"] == 41102


def test_a_tool_error_and_a_permission_refusal_are_marked() -> None:
    s = session(lines_of("bash_permission_denied"))
    results = [e for e in s.entries if e.kind == "tool_result"]
    assert results[0].error and results[0].data["denied"]
    assert results[0].text == "Bash: refused by a permission rule"
    tags = dict((line.strip(), tag) for tag, line in render_text(s.entries))
    assert tags["✗ Bash: refused by a permission rule"] == "error"
    result = next(e for e in s.entries if e.kind == "result")
    assert result.error and result.text.startswith("result: permission_denied · completed, but 1")
    killed = session(lines_of("killed_sigkill"))
    read = next(e for e in killed.entries if e.kind == "tool_result")
    assert read.error and read.text == "Read: error"


def test_retries_and_the_api_error_outcome() -> None:
    text = text_of("auth_401")
    assert "! API call failed (401 authentication_failed); retry 1/2 in 0.6s" in text
    assert "! API call failed (401 authentication_failed); retry 2/2 in 1.2s" in text
    assert "! Claude Code: Invalid API key" in text
    assert "result: auth · API error 401 (authentication_error)" in text
    assert "2 API retries" in text
    assert "result: quota" in text_of("rate_limit_429")
    assert "result: overloaded" in text_of("overloaded_529")
    assert "result: context_overflow" in text_of("prompt_too_long")


def test_a_run_that_was_killed_ends_without_a_result_and_says_so() -> None:
    for name in ("killed_sigkill", "terminated_sigterm"):
        s = session(lines_of(name))
        assert s.entries[-1].kind == "end"
        assert s.summary["outcome"] is None
        assert s.summary["reason"] == "no result in the stream"


def test_mcp_servers_and_their_calls() -> None:
    text = text_of("mcp_send")
    assert "mcp: agentchat (connected)" in text
    assert '→ mcp__agentchat__agentchat_send(target="#general", message="STATUS recorded")' in text
    assert "← mcp__agentchat__agentchat_send" in text


def test_tool_results_are_shortened_unless_asked_whole() -> None:
    call = {
        "type": "assistant",
        "message": {
            "id": "m1",
            "model": "x",
            "content": [
                {"type": "tool_use", "id": "tu1", "name": "Bash", "input": {"command": "seq 100"}}
            ],
        },
    }
    answer = {"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "tu1",
         "content": "\n".join(str(i) for i in range(1, 101))}]}}  # fmt: skip
    stream = [json.dumps(call), json.dumps(answer)]
    short = next(e for e in session(stream).entries if e.kind == "tool_result")
    assert short.body.splitlines()[:6] == ["1", "2", "3", "4", "5", "6"]
    assert short.body.splitlines()[-1] == "... (94 more lines, 291 chars in all)"
    whole = next(
        e for e in session(stream, result_lines=10**6, result_chars=10**9).entries
        if e.kind == "tool_result"
    )  # fmt: skip
    assert len(whole.body.splitlines()) == 100


def test_compact_input_cuts_long_values_and_says_how_long() -> None:
    text = compact_input({"file_path": "/w/a.py", "content": "x" * 500, "n": list(range(100))})
    assert text.startswith('file_path="/w/a.py", content="xxxx')
    assert '..." (500 chars)' in text
    assert text.endswith("...")
    assert len(text) < 250


def test_lines_that_are_not_stream_json_are_the_commands_output() -> None:
    s = session(["building...", "done: 3 files"])
    assert [(e.kind, e.text) for e in s.entries] == [("output", "building..."),
                                                     ("output", "done: 3 files")]  # fmt: skip
    assert [line for _, line in render_text(s.entries)] == ["| building...", "| done: 3 files"]


def test_a_prompt_replayed_in_the_stream_is_shown_as_the_prompt() -> None:
    replay = {"type": "user", "message": {"role": "user", "content": "write a haiku"}}
    s = session([lines_of("success_write_edit")[0], json.dumps(replay)])
    assert [e.kind for e in s.entries][:2] == ["session", "prompt"]
    assert s.entries[1].body == "write a haiku"


def test_a_large_transcript_keeps_its_start_and_end() -> None:
    data = "\n".join(lines_of("success_write_edit")).encode() + b"\n"
    whole = clip(data, len(data))
    assert whole == Clipped(data.decode().splitlines())
    cut = clip(data, 4000)
    assert cut.omitted_bytes > 0
    assert len(data) == sum(len(x) + 1 for x in cut.head + cut.tail) + cut.omitted_bytes
    s = session(cut)
    kinds = [e.kind for e in s.entries]
    assert kinds[0] == "session" and "omitted" in kinds and kinds[-1] == "result"
    omitted = next(e for e in s.entries if e.kind == "omitted")
    assert f"{cut.omitted_bytes:,} bytes left out" in omitted.text


@pytest.mark.parametrize("name", sorted(p.stem for p in STREAMS.glob("*.jsonl")))
def test_every_recorded_stream_renders_and_agrees_with_the_runner(name: str) -> None:
    from agentctl_swarm.agent.claude_stream import classify_lines

    s = session(lines_of(name))
    assert s.entries and s.entries[0].kind == "session"
    exit_doc = json.loads((STREAMS / f"{name}.exit.json").read_text())
    end = classify_lines(lines_of(name), exit_doc["returncode"])
    if s.summary["outcome"] is not None:
        assert s.summary["outcome"] == end.outcome.value
    json.dumps([e.as_dict() for e in s.entries])  # JSON-ready
