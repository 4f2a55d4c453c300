"""The scripted model's engine: request in, reply out, with no sockets (pure)."""

from __future__ import annotations

import json
from typing import Any

from agentctl_swarm.model import answer, parse_script
from agentctl_swarm.model.engine import Reply
from agentctl_swarm.model.wire import count_assistant_turns

NOW = 1_800_000_000.0
SYSTEM = [{"type": "text", "text": "You are Claude Code."}]
ENVIRONMENT = {
    "role": "system",
    "content": [{"type": "text", "text": "# Environment\n - Primary working directory: /work/x\n"}],
}
REMINDER = {"type": "text", "text": "<system-reminder>\nwrite nothing\n</system-reminder>\n"}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [REMINDER, {"type": "text", "text": text}]}


def assistant(text: str = "ok") -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def tool_result(tool_id: str = "toolu_1") -> dict[str, Any]:
    return {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "done"}],
    }


def body(*messages: dict[str, Any], stream: bool = True, **extra: Any) -> bytes:
    """A request as Claude Code sends it: the environment rides in a system message
    right after the first user message."""
    listed = list(messages)
    if ENVIRONMENT not in listed:
        listed[1:1] = [ENVIRONMENT]
    return json.dumps(
        {
            "model": "claude-test-1",
            "system": SYSTEM,
            "messages": listed,
            "max_tokens": 1000,
            "stream": stream,
            **extra,
        }
    ).encode()


def ask(
    script_text: str,
    raw: bytes,
    *,
    path: str = "/v1/messages?beta=true",
    method: str = "POST",
    headers: dict[str, str] | None = None,
    attempts: dict[str, int] | None = None,
) -> Reply:
    return answer(
        parse_script(script_text),
        method=method,
        path=path,
        headers=headers or {},
        body=raw,
        now=NOW,
        attempts=attempts,
    )


def replay(reply: Reply) -> dict[str, Any]:
    """Rebuild the message from its SSE events the way an SDK does, checking the order."""
    names = [e.name for e in reply.events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    message = dict(reply.events[0].data["message"])
    assert message["content"] == [] and message["stop_reason"] is None
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    open_index = None
    for event in reply.events[1:-2]:
        data = event.data
        assert data["type"] == event.name
        if event.name == "content_block_start":
            assert open_index is None and data["index"] == len(blocks)
            open_index = data["index"]
            blocks.append(dict(data["content_block"]))
        elif event.name == "content_block_delta":
            assert data["index"] == open_index
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[-1]["text"] += delta["text"]
            else:
                partial[open_index] = partial.get(open_index, "") + delta["partial_json"]
        elif event.name == "content_block_stop":
            assert data["index"] == open_index
            if open_index in partial:
                blocks[-1]["input"] = json.loads(partial[open_index])
            open_index = None
        else:
            assert event.name == "ping"
    delta = reply.events[-2].data
    message.update(content=blocks, stop_reason=delta["delta"]["stop_reason"])
    message["usage"] = {**message["usage"], **delta["usage"]}
    return message


WRITER = """
conversations:
  - name: writer
    match: {prompt: "^write (?P<file>\\\\S+)"}
    turns:
      - text: "Writing ${file} in ${cwd}; costs $$0."
        tool_use:
          - Write: {file_path: "${cwd}/${file}", content: "a long text that is cut into json chunks ${prompt}"}
      - tool_use:
          - Edit: {file_path: "${cwd}/${file}", old_string: a, new_string: b}
            id: toolu_fixed
      - text: Done.
        usage: {input_tokens: 10, output_tokens: 2, cache_read_input_tokens: 7}
  - name: system-match
    match: {system: "Claude Code", prompt: "^review"}
    turns: [Reviewed.]
"""


def test_a_turn_streams_text_and_tool_use_as_the_real_api_does():
    reply = ask(WRITER, body(user("write notes.md")))
    assert (reply.status, reply.conversation, reply.turn) == (200, "writer", 0)
    message = replay(reply)
    assert message["model"] == "claude-test-1" and message["id"].startswith("msg_")
    assert message["stop_reason"] == "tool_use"
    text, call = message["content"]
    assert text == {"type": "text", "text": "Writing notes.md in /work/x; costs $0."}
    assert call["type"] == "tool_use" and call["name"] == "Write"
    assert call["id"].startswith("toolu_")
    assert call["input"] == {
        "file_path": "/work/x/notes.md",
        "content": "a long text that is cut into json chunks write notes.md",
    }
    deltas = [e for e in reply.events if e.name == "content_block_delta"]
    assert len(deltas) > 2  # really chunked, as the real API streams
    assert message["usage"]["input_tokens"] > 0 and message["usage"]["output_tokens"] > 0


def test_the_position_comes_from_the_assistant_turns_in_the_request():
    first = ask(WRITER, body(user("write a.txt")))
    second = ask(WRITER, body(user("write a.txt"), ENVIRONMENT, assistant(), tool_result()))
    third = ask(
        WRITER,
        body(user("write a.txt"), assistant(), tool_result(), assistant(), tool_result(),
             stream=False),
    )  # fmt: skip
    assert (first.turn, second.turn, third.turn) == (0, 1, 2)
    edit = replay(second)["content"][0]
    assert edit["id"] == "toolu_fixed" and edit["input"]["old_string"] == "a"
    done = third.body
    assert done is not None and not third.streamed
    assert done["content"] == [{"type": "text", "text": "Done."}]
    assert done["stop_reason"] == "end_turn"
    assert done["usage"]["input_tokens"] == 10 and done["usage"]["cache_read_input_tokens"] == 7


def test_cwd_stays_unsubstituted_when_the_request_does_not_say_it():
    raw = json.dumps({"model": "m", "messages": [user("write x.txt")], "stream": False})
    reply = ask(WRITER, raw.encode())
    assert reply.body is not None
    assert reply.body["content"][1]["input"]["file_path"] == "${cwd}/x.txt"


def test_retries_and_identical_requests_get_identical_answers():
    raw = body(user("write a.txt"))
    assert ask(WRITER, raw).events == ask(WRITER, raw).events
    other = ask(WRITER, body(user("write b.txt")))
    assert replay(other)["content"][1]["id"] != replay(ask(WRITER, raw))["content"][1]["id"]


def test_adjacent_assistant_messages_are_one_answer():
    split = [user("x"), assistant("a"), assistant("b"), tool_result(), assistant("c")]
    assert count_assistant_turns(split) == 2
    assert count_assistant_turns([user("x"), ENVIRONMENT]) == 0


def test_conversations_are_picked_by_prompt_and_system():
    reply = ask(WRITER, body(user("review the code")))
    assert reply.conversation == "system-match"
    nothing = ask(WRITER, body(user("something else")))
    assert nothing.status == 400 and nothing.body is not None
    assert nothing.body["error"]["type"] == "invalid_request_error"
    assert "no conversation of the script matches" in nothing.body["error"]["message"]
    assert "'something else'" in nothing.body["error"]["message"]


def test_asking_past_the_last_turn_is_a_clear_error():
    reply = ask("turns: [Hi.]", body(user("x"), assistant(), tool_result()))
    assert reply.status == 400 and reply.body is not None
    message = reply.body["error"]["message"]
    assert "conversation 'default' has 1 turn, but the client asked for turn 2" in message


def test_errors_have_the_real_body_shape_and_rate_limit_headers():
    reply = ask("turns:\n  - error: {kind: rate_limit, retry_after: 7}\n", body(user("x")))
    assert reply.status == 429 and not reply.streamed
    assert reply.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": reply.body["error"]["message"]},
        "request_id": reply.body["request_id"],
    }
    headers = dict(reply.headers)
    assert headers["retry-after"] == "7"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["anthropic-ratelimit-tokens-reset"] == "2027-01-15T08:00:07Z"
    assert headers["request-id"] == reply.body["request_id"]

    custom = ask(
        "turns:\n  - error: {status: 429, headers: {retry-after: '2', x-extra: y}}\n",
        body(user("x")),
    )
    assert dict(custom.headers)["retry-after"] == "2" and dict(custom.headers)["x-extra"] == "y"

    too_long = ask("turns: [{error: prompt_too_long}]", body(user("x")))
    assert too_long.status == 400 and too_long.body is not None
    assert too_long.body["error"]["message"].startswith("prompt is too long: ")
    overloaded = ask("turns: [{error: 529}]", body(user("x")))
    assert overloaded.status == 529 and overloaded.body is not None
    assert overloaded.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


RECOVERS = """
turns:
  - error: {kind: overloaded, times: 2}
    text: Back.
"""


def test_an_error_with_times_fails_that_often_per_session_then_answers():
    attempts: dict[str, int] = {}
    session = {"X-Claude-Code-Session-Id": "s1"}
    seen = []
    for _ in range(3):
        reply = ask(RECOVERS, body(user("x")), headers=session, attempts=attempts)
        seen.append(reply.status)
        assert reply.attempt_key is not None
        attempts[reply.attempt_key] = attempts.get(reply.attempt_key, 0) + 1
    assert seen == [529, 529, 200]
    other = ask(RECOVERS, body(user("x")), headers={"x-claude-code-session-id": "s2"},
                attempts=attempts)  # fmt: skip
    assert other.status == 529  # a new session starts over


def test_server_scope_counts_every_session_together():
    script = RECOVERS.replace("times: 2", "times: 1, scope: server")
    attempts: dict[str, int] = {}
    first = ask(script, body(user("x")), headers={"x-claude-code-session-id": "a"})
    assert first.attempt_key is not None
    attempts[first.attempt_key] = 1
    second = ask(script, body(user("x")), headers={"x-claude-code-session-id": "b"},
                 attempts=attempts)  # fmt: skip
    assert (first.status, second.status) == (529, 200)


def test_hang_and_delay_are_instructions_for_the_shell():
    hang = ask("turns: [{hang: true, delay: 1.5}]", body(user("x")))
    assert hang.hang and hang.delay == 1.5 and hang.summary() == "hang"
    slow = ask("turns: [{text: hi, delay: 0.25}]", body(user("x")))
    assert slow.delay == 0.25 and not slow.hang and slow.streamed


def test_other_endpoints():
    script = "turns: [Hi.]"
    counted = ask(script, body(user("hello")), path="/v1/messages/count_tokens")
    assert counted.status == 200 and counted.body is not None
    assert counted.body["input_tokens"] > 0
    models = ask(script, b"", method="GET", path="/v1/models")
    assert models.body is not None and models.body["data"][0]["type"] == "model"
    for method, path in (("HEAD", "/api/hello"), ("GET", "/"), ("GET", "/health")):
        assert ask(script, b"", method=method, path=path).status == 200
    missing = ask(script, b"", method="GET", path="/v1/files")
    assert missing.status == 404 and missing.body is not None
    assert missing.body["error"]["type"] == "not_found_error"
    assert "POST /v1/messages" in missing.body["error"]["message"]


def test_malformed_requests_are_400_with_the_reason():
    script = "turns: [Hi.]"
    for raw, why in (
        (b"{not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (json.dumps({"model": "m", "messages": "x"}).encode(), "messages: must be a list"),
        (json.dumps({"messages": []}).encode(), "model: must be a non-empty string"),
    ):
        reply = ask(script, raw)
        assert reply.status == 400 and reply.body is not None
        assert why in reply.body["error"]["message"]
    bad_count = ask(script, b"{}", path="/v1/messages/count_tokens")
    assert bad_count.status == 400
