"""The scripted model's HTTP shell: sockets in, :func:`engine.answer` out, bytes back.

``ThreadingHTTPServer`` from the standard library, one thread per connection, HTTP/1.1
with keep-alive: JSON replies carry a ``content-length``, streams use chunked transfer
encoding (as the real API does). Everything a client sent is recorded, so tests can
assert what Claude Code asked (for example that tool results came back).

    with ScriptedModel(script).serve() as url:
        env = {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "test", ...}
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agentctl_swarm.core.errors import UsageError
from agentctl_swarm.core.net import is_loopback
from agentctl_swarm.model import wire
from agentctl_swarm.model.engine import Reply, answer
from agentctl_swarm.model.script import Script
from agentctl_swarm.model.script_file import parse_script, read_script

log = logging.getLogger("agentctl.model")

MAX_BODY = 64 * 1024 * 1024  # Claude Code's requests are large, but not this large
MAX_ATTEMPT_KEYS = 100_000  # attempt counters kept for `times`; the oldest go first
# Headers worth keeping in a recording; credentials (x-api-key, authorization) never are.
RECORDED_HEADERS = (
    "user-agent",
    "anthropic-version",
    "anthropic-beta",
    "x-stainless-retry-count",
    "x-claude-code-session-id",
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received and how it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    reply: str
    conversation: str | None
    turn: int | None
    at: float = field(default_factory=time.time)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []

    def tool_results(self) -> list[dict[str, Any]]:
        """The ``tool_result`` blocks the client sent back in this request."""
        return [
            block
            for message in self.messages
            if message.get("role") == "user" and isinstance(message.get("content"), list)
            for block in message["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]


class ScriptedModel:
    """A scripted Anthropic Messages API. ``serve()`` runs it on a background thread;
    ``requests`` lists what it received. ``script`` may be replaced while it runs
    (a test can turn a 429 into an answer, as a quota that recovers)."""

    def __init__(self, script: Script | Mapping[str, Any]) -> None:
        self.script = script if isinstance(script, Script) else Script.model_validate(script)
        self._requests: list[RecordedRequest] = []
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Requests being answered right now (a hanging one counts until released)."""
        with self._lock:
            return self._in_flight

    def _busy(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Ask the engine, and count the attempt (under the lock, so two concurrent
        attempts at a ``times``-limited error never both see the same count)."""
        with self._lock:
            reply = answer(
                self.script,
                method=method,
                path=path,
                headers=headers,
                body=body,
                now=time.time(),
                attempts=self._attempts,
            )
            if reply.attempt_key is not None:
                if len(self._attempts) >= MAX_ATTEMPT_KEYS:
                    self._attempts.pop(next(iter(self._attempts)))
                self._attempts[reply.attempt_key] = self._attempts.get(reply.attempt_key, 0) + 1
        return reply

    @classmethod
    def from_yaml(cls, text: str, filename: str = "<script>") -> ScriptedModel:
        """A model for a script given as YAML text (ScriptError with every problem)."""
        return cls(parse_script(text, filename))

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedModel:
        """A model for a script file (ScriptError with every problem)."""
        return cls(read_script(path))

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def messages_requests(self) -> list[RecordedRequest]:
        """Only the ``POST /v1/messages`` requests (the model calls)."""
        return [r for r in self.requests if r.path.split("?")[0] == "/v1/messages"]

    def record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    def make_server(
        self, host: str = "127.0.0.1", port: int = 0, *, allow_remote: bool = False
    ) -> ThreadingHTTPServer:
        """Bind (``port`` 0: a free port). Non-loopback addresses need ``allow_remote``:
        the server answers anyone without a key."""
        if not allow_remote and not is_loopback(host):
            raise UsageError(
                f"refusing to listen on {host}: the scripted model answers anyone who connects",
                hint="use 127.0.0.1, or pass --allow-remote if you mean it",
            )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        handler = type("Handler", (_Handler,), {"model": self})
        server_cls = type(
            "Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True}
        )
        try:
            return server_cls((host, port), handler)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                hint="pick another --port or stop what uses it",
            ) from exc

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Run on a background thread; yields the base URL (``http://127.0.0.1:PORT``)."""
        server = self.make_server(host, port)
        self._stopping.clear()
        thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="scripted-model", daemon=True
        )
        thread.start()
        try:
            yield url_of(server)
        finally:
            self._stopping.set()  # releases hanging replies
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    def stop_event(self) -> threading.Event:
        return self._stopping


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    return f"http://{shown}:{port}"


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the engine, writes the reply."""

    model: ScriptedModel
    protocol_version = "HTTP/1.1"
    server_version = "agentctl-model"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every request is logged once, with its outcome, in _handle

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        self.model._busy(1)
        try:
            self._answer(method)
        finally:
            self.model._busy(-1)

    def _answer(self, method: str) -> None:
        body = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        if body is None:
            message = f"the body is larger than {MAX_BODY} bytes or its length is invalid"
            self._send_json(413, wire.error_body("request_too_large", message, "req_none"))
            self.close_connection = True
            return
        reply = self.model.answer(method, self.path, headers, body)
        self._record(method, headers, body, reply)
        log.info(
            "request",
            extra={
                "method": method,
                "path": self.path,
                "reply": reply.summary(),
                "conversation": reply.conversation,
                "turn": reply.turn,
            },
        )
        stop = self.model.stop_event()
        if reply.delay and self._wait(reply.delay, stop):
            return
        if reply.hang:
            self._wait(None, stop)
            self.close_connection = True
            return
        try:
            if reply.streamed:
                self._send_stream(reply)
            else:
                self._send_json(reply.status, reply.body or {}, reply.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _record(self, method: str, headers: dict[str, str], body: bytes, reply: Reply) -> None:
        try:
            decoded: Any = json.loads(body) if body else None
        except ValueError:
            decoded = body.decode("utf-8", "replace")
        self.model.record(
            RecordedRequest(
                method=method,
                path=self.path,
                headers={k: headers[k] for k in RECORDED_HEADERS if k in headers},
                body=decoded,
                reply=reply.summary(),
                conversation=reply.conversation,
                turn=reply.turn,
            )
        )

    def _wait(self, seconds: float | None, stop: threading.Event) -> bool:
        """Wait ``seconds`` (None: forever) unless the server stops or the client goes
        away; True when the reply should be dropped."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if left <= 0:
                return False
            if stop.wait(left) or self._client_gone():
                self.close_connection = True
                return True

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send_json(
        self, status: int, body: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)

    def _send_stream(self, reply: Reply) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        for key, value in reply.headers:
            self.send_header(key, value)
        self.end_headers()
        for event in reply.events:
            data = event.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
