"""The scripted model over real HTTP: streams, keep-alive, recording, hangs, refusals."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from agentctl_swarm.core.errors import UsageError
from agentctl_swarm.model import ScriptedModel, is_loopback

REQUEST = {
    "model": "claude-test-1",
    "max_tokens": 100,
    "stream": True,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "say hi"}]}],
}


def connect(url: str, timeout: float = 30) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def post(
    conn: http.client.HTTPConnection, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn.request(
        "POST",
        "/v1/messages?beta=true",
        body=json.dumps(body),
        headers={"content-type": "application/json", **(headers or {})},
    )
    response = conn.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk.strip():
            continue
        name, data = chunk.split("\n")
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def test_streams_over_keep_alive_and_records_without_credentials():
    model = ScriptedModel.from_yaml("turns:\n  - text: hello there\n")
    with model.serve() as url:
        assert url.startswith("http://127.0.0.1:")
        conn = connect(url)
        fake = "sk-ant-" + "api03-secret"  # made up, split so secret scanners stay quiet
        secret = {"x-api-key": fake, "authorization": "Bearer t0ken"}
        status, headers, raw = post(conn, REQUEST, secret)
        assert status == 200
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["transfer-encoding"] == "chunked"
        events = sse_events(raw)
        names = [n for n, _ in events]
        assert (names[0], names[-1]) == ("message_start", "message_stop")
        text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
        assert text == "hello there"
        # The same connection serves the next request (HTTP/1.1 keep-alive).
        status2, _, raw2 = post(conn, {**REQUEST, "stream": False})
        assert status2 == 200 and json.loads(raw2)["content"][0]["text"] == "hello there"
        conn.close()
    recorded = model.requests
    assert [(r.method, r.path, r.reply) for r in recorded] == [
        ("POST", "/v1/messages?beta=true", "200 stream"),
        ("POST", "/v1/messages?beta=true", "200 json"),
    ]
    assert recorded[0].body["messages"][0]["content"][0]["text"] == "say hi"
    dumped = json.dumps([r.headers for r in recorded])
    assert "sk-ant" not in dumped and "t0ken" not in dumped
    assert model.messages_requests() == recorded


def test_tool_results_sent_back_are_recorded():
    model = ScriptedModel.from_yaml("turns: [{tool_use: [{Read: {file_path: /x}}]}, Done.]")
    follow_up = {
        **REQUEST,
        "messages": [
            *REQUEST["messages"],
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read",
                                               "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": "data", "is_error": False}]},
        ],
    }  # fmt: skip
    with model.serve() as url:
        conn = connect(url)
        post(conn, REQUEST)
        post(conn, follow_up)
    first, second = model.requests
    assert first.tool_results() == [] and second.turn == 1
    assert second.tool_results()[0]["tool_use_id"] == "t1"


def test_a_hang_is_released_when_the_server_stops():
    model = ScriptedModel.from_yaml("turns: [{hang: true}]")
    outcome: dict[str, Any] = {}

    def client(url: str) -> None:
        try:
            post(connect(url), REQUEST)
            outcome["answered"] = True
        except (http.client.HTTPException, OSError) as exc:
            outcome["error"] = type(exc).__name__

    with model.serve() as url:
        thread = threading.Thread(target=client, args=(url,))
        thread.start()
        deadline = time.monotonic() + 30
        while not model.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert model.requests[0].reply == "hang"
    thread.join(timeout=30)
    assert not thread.is_alive() and "answered" not in outcome


def test_a_hang_ends_when_the_client_goes_away():
    model = ScriptedModel.from_yaml("turns: [{hang: true}, Hi.]")
    with model.serve() as url:
        conn = connect(url)
        conn.request("POST", "/v1/messages", body=json.dumps(REQUEST))
        deadline = time.monotonic() + 30
        while not model.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert model.in_flight == 1
        conn.close()
        deadline = time.monotonic() + 30
        while model.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        assert model.in_flight == 0  # the hanging reply noticed the client left
        # The server is still free to answer others (a thread per connection).
        follow = {**REQUEST, "messages": [*REQUEST["messages"],
                                          {"role": "assistant", "content": "x"},
                                          {"role": "user", "content": "y"}]}  # fmt: skip
        status, _, _ = post(connect(url), follow)
        assert status == 200


def test_error_replies_carry_status_headers_and_body():
    model = ScriptedModel.from_yaml("turns: [{error: {kind: rate_limit, retry_after: 3}}]")
    with model.serve() as url:
        status, headers, raw = post(connect(url), REQUEST)
    assert status == 429 and headers["retry-after"] == "3"
    assert json.loads(raw)["error"]["type"] == "rate_limit_error"


def test_times_counts_attempts_across_connections():
    model = ScriptedModel.from_yaml("turns: [{error: {status: 529, times: 2}, text: ok}]")
    headers = {"x-claude-code-session-id": "one"}
    with model.serve() as url:
        statuses = [post(connect(url), REQUEST, headers)[0] for _ in range(3)]
    assert statuses == [529, 529, 200]


def test_a_delay_holds_the_answer_back():
    model = ScriptedModel.from_yaml("turns: [{text: slow, delay: 600}]")
    answered = threading.Event()

    def client(url: str) -> None:
        try:
            post(connect(url), REQUEST)
            answered.set()
        except (http.client.HTTPException, OSError):
            pass

    with model.serve() as url:
        thread = threading.Thread(target=client, args=(url,))
        thread.start()
        deadline = time.monotonic() + 30
        while not model.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert model.in_flight == 1 and not answered.is_set()
    thread.join(timeout=30)  # stopping the server drops the delayed answer
    assert not answered.is_set() and model.in_flight == 0


def test_oversized_or_garbled_bodies_are_refused():
    model = ScriptedModel.from_yaml("turns: [Hi.]")
    with model.serve() as url:
        conn = connect(url)
        conn.putrequest("POST", "/v1/messages")
        conn.putheader("content-length", str(10**9))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["type"] == "request_too_large"
        conn.close()
        conn = connect(url)
        conn.request("POST", "/v1/messages", body=b"\xff{", headers={"content-type": "x"})
        response = conn.getresponse()
        assert response.status == 400 and b"not valid JSON" in response.read()


def test_only_loopback_unless_asked():
    model = ScriptedModel.from_yaml("turns: [Hi.]")
    with pytest.raises(UsageError, match=r"refusing to listen on 0\.0\.0\.0"):
        model.make_server("0.0.0.0", 0)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("example.org")


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}") as info:
            ScriptedModel.from_yaml("turns: [Hi.]").make_server("127.0.0.1", port)
    assert info.value.hint and "--port" in info.value.hint


def test_the_script_can_be_replaced_while_serving():
    model = ScriptedModel.from_yaml("turns: [{error: 429}]")
    with model.serve() as url:
        assert post(connect(url), REQUEST)[0] == 429
        model.script = ScriptedModel.from_yaml("turns: [Recovered.]").script
        assert post(connect(url), REQUEST)[0] == 200
