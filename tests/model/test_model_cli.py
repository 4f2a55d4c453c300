"""`agentctl model serve` as a user runs it: help, refusals, serving, reloading, stopping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

AGENTCTL = [sys.executable, "-m", "agentctl_swarm.cli"]
REQUEST = json.dumps(
    {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    }
).encode()


def agentctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTCTL, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120"},
        stdin=subprocess.DEVNULL,
    )


def ask(url: str) -> dict:
    request = urllib.request.Request(f"{url}/v1/messages", data=REQUEST, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    script = tmp_path / "script.yaml"
    script.write_text("turns: [First.]\n")
    proc = subprocess.Popen(
        [*AGENTCTL, "model", "serve", "--script", str(script), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AGENTCTL_LOG_FORMAT": "json"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ANTHROPIC_BASE_URL=http://127.0.0.1:"), line
        yield proc, line.strip().split("=", 1)[1], script
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_help_teaches_with_an_example():
    result = agentctl("model", "serve", "--help")
    assert result.returncode == 0
    for words in ("conversations:", "mcp__agentchat__agentchat_send", "rate_limit",
                  "ANTHROPIC_BASE_URL=http://127.0.0.1:PORT", "--allow-remote"):  # fmt: skip
        assert words in result.stdout


def test_a_bad_script_is_reported_by_line_and_column(tmp_path: Path):
    script = tmp_path / "bad.yaml"
    script.write_text("turns:\n  - txt: hi\n")
    result = agentctl("model", "serve", "--script", str(script))
    assert result.returncode == 2
    assert f"{script}:2:5: turns[0].txt: unknown key 'txt'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_remote_address_is_refused_unless_asked(tmp_path: Path):
    script = tmp_path / "s.yaml"
    script.write_text("turns: [Hi.]\n")
    result = agentctl("model", "serve", "--script", str(script), "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr and "--allow-remote" in result.stderr
    bad_port = agentctl("model", "serve", "--script", str(script), "--port", "70000")
    assert bad_port.returncode == 2 and "--port 70000" in bad_port.stderr


def wait_until(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


def test_serves_reloads_a_changed_script_and_stops_on_sigterm(served):
    proc, url, script = served
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(iter(proc.stderr.readline, "")))
    reader.start()
    assert ask(url)["content"][0]["text"] == "First."
    script.write_text("turns: [Second.]\n")
    os.utime(script, (time.time() + 5, time.time() + 5))  # a new mtime even on coarse clocks
    wait_until(lambda: ask(url)["content"][0]["text"] == "Second.")
    script.write_text("turns: [{txt: broken}]\n")
    os.utime(script, (time.time() + 10, time.time() + 10))
    wait_until(lambda: any("script has problems" in line for line in err_lines))
    assert ask(url)["content"][0]["text"] == "Second."  # the old script keeps answering
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    reader.join(timeout=30)
    records = [json.loads(line) for line in err_lines if line.startswith("{")]
    events = [(r.get("message"), r.get("reply")) for r in records]
    assert ("request", "200 json") in events
    assert any(m == "script reloaded" for m, _ in events)
    broken = [r for r in records if r.get("message", "").startswith("script has problems")]
    assert broken and "unknown key 'txt'" in " ".join(broken[0]["problems"])
