"""``agentctl chat send|tail|whoami`` run as real subprocesses against a real
``agentctl server`` process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentctl_swarm.chat.identity import Identity
from tests.chat.conftest import AGENTCTL, start_server_process


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    proc, url = start_server_process()
    yield url
    stop(proc)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def chat(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTCHAT_", "AGENTCTL_"))}
    return subprocess.run(
        [AGENTCTL, "chat", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "HOME": str(home), **(env or {})},
    )


def test_whoami_creates_identity_where_upstream_keeps_it(home: Path) -> None:
    first = chat(home, "whoami", "--as", "alice", "-o", "json")
    assert first.returncode == 0, first.stderr
    info = json.loads(first.stdout)
    path = home / ".agentchat" / "identities" / "alice.json"
    assert info["identity_path"] == str(path) and info["new"] is True
    assert path.stat().st_mode & 0o777 == 0o600
    assert info["agent_id"] == "@" + Identity.load(path).agent_id
    again = json.loads(chat(home, "whoami", "--as", "alice", "-o", "json").stdout)
    assert again["agent_id"] == info["agent_id"] and again["new"] is False
    default = chat(home, "whoami")
    assert default.returncode == 0
    assert str(home / ".agentchat" / "identity.json") in default.stdout


def test_send_then_tail(home: Path, server_url: str) -> None:
    sent = chat(home, "send", "--server", server_url, "--as", "alice", "#general", "hello humans")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("sent ") and "to #general as alice (@" in sent.stdout
    msg_id = sent.stdout.split()[1]
    # The server URL may also come from the environment.
    env = {"AGENTCHAT_URL": server_url}
    second = chat(
        home, "send", "--as", "bob", "#general", "hi alice", "--reply-to", msg_id, env=env
    )
    assert second.returncode == 0, second.stderr

    tail = chat(home, "tail", "--server", server_url, "#general", "-n", "2")
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("hello humans") and "alice (@" in lines[0]
    assert lines[1].endswith("hi alice") and "bob (@" in lines[1]

    js = chat(home, "tail", "--server", server_url, "#general", "-n", "1", "-o", "json")
    frame = json.loads(js.stdout)
    assert frame["content"] == "hi alice" and frame["in_reply_to"] == msg_id

    # --notices shows the server's own lines too (bob came online / went offline).
    noisy = chat(home, "tail", "--server", server_url, "#general", "-n", "20", "--notices")
    assert "* bob came online" in noisy.stdout


def test_tail_follow_prints_new_messages_until_interrupted(home: Path, server_url: str) -> None:
    assert chat(home, "send", "-s", server_url, "--as", "carol", "#help", "first").returncode == 0
    env = {**os.environ, "HOME": str(home)}
    proc = subprocess.Popen(
        [AGENTCTL, "chat", "tail", "-s", server_url, "#help", "-n", "1", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().rstrip().endswith("first")  # history printed: following
        assert (
            chat(home, "send", "-s", server_url, "--as", "carol", "#help", "second").returncode == 0
        )
        assert proc.stdout.readline().rstrip().endswith("second")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) in (0, 130)
        assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_unreachable_server_is_one_line(home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"ws://127.0.0.1:{port}"
    for args in (
        ("send", "-s", url, "--as", "a", "#general", "x"),
        ("tail", "-s", url, "#general"),
    ):
        res = chat(home, *args)
        # The CLI's one error handler: "error: ..." and the documented exit code 3
        # ("a service cannot be reached"), as every agentctl command.
        assert res.returncode == 3
        # (send may first note that it created the identity)
        assert res.stderr.strip().splitlines()[-1] == (
            f"error: cannot reach AgentChat server at {url}: connection refused"
        )
        assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("send", "general", "x"), "'general' is not a channel name"),
        (("tail", "#general", "-o", "yaml"), "use 'text' or 'json'"),
        (("whoami", "--as", "***"), "--as: identity name '***'"),
        (("send", "-s", "http://x", "--as", "a", "#general", "x"), "not a WebSocket URL"),
    ],
)
def test_bad_input_is_a_clear_error(home: Path, args: tuple[str, ...], needle: str) -> None:
    res = chat(home, *args)
    assert res.returncode in (1, 2)
    assert needle in res.stderr and "Traceback" not in res.stderr


def test_corrupt_identity_file_is_named(home: Path, server_url: str) -> None:
    path = home / ".agentchat" / "identities" / "broken.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    res = chat(home, "send", "-s", server_url, "--as", "broken", "#general", "x")
    assert res.returncode == 2
    assert str(path) in res.stderr and "Traceback" not in res.stderr
