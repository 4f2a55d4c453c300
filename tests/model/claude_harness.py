"""Running the real Claude Code binary against a scripted model, for tests and for
re-recording the stream fixtures (``python -m tests.model.record_streams``).

The binary is the one `agentctl build` installs with npm into the cache
(``~/.cache/agentctl/claude-code/<version>``). Missing, the tests that need it are
skipped on a developer's machine and fail under CI (AGENTCTL_REQUIRE_PODMAN=1), like the
Podman tests. Claude Code only ever talks to the scripted model on 127.0.0.1:
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 turns off everything else (checked with
strace: one connect(), to the base URL).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentctl_swarm.podman.claude_code import CLAUDE_CODE_VERSION, default_cache_dir, installed

# A placeholder key: the scripted model accepts anything, and a real key never goes here.
FAKE_KEY = "scripted-model-key"


def find_claude() -> Path | None:
    """The cached binary of the pinned version, if `agentctl build` installed it."""
    found = installed(default_cache_dir(), CLAUDE_CODE_VERSION)
    return found.path if found else None


def require_claude() -> Path:
    """The binary, or skip (developer machine) / fail (CI) with the fix."""
    path = find_claude()
    if path is None:
        reason = (
            f"Claude Code {CLAUDE_CODE_VERSION} is not installed in "
            f"{default_cache_dir()}/claude-code (run `agentctl build`, which installs it)"
        )
        if os.environ.get("AGENTCTL_REQUIRE_PODMAN") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return path


def claude_env(url: str, home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: the scripted model, no other traffic, a private config dir."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": FAKE_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "ENABLE_TOOL_SEARCH": "false",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    env.update(extra or {})
    return env


@dataclass
class ClaudeRun:
    """One finished claude process: its exit status and its stream-json lines."""

    argv: list[str]
    returncode: int
    lines: list[str]
    stderr: str
    seconds: float
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for line in self.lines:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue

    @property
    def result(self) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e.get("type") == "result"), None)

    def describe(self) -> str:
        return (
            f"exit {self.returncode}\nstdout:\n"
            + "\n".join(self.lines[-5:])
            + (f"\nstderr:\n{self.stderr[-2000:]}")
        )


def argv_for(binary: Path, prompt: str, args: Sequence[str] = ()) -> list[str]:
    return [str(binary), "-p", prompt, "--output-format", "stream-json", "--verbose", *args]


def start_claude(
    binary: Path,
    url: str,
    prompt: str,
    *,
    cwd: Path,
    home: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start claude (stdout: stream-json lines) without waiting for it."""
    return subprocess.Popen(
        argv_for(binary, prompt, args),
        cwd=cwd,
        env=claude_env(url, home, env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], started: float, timeout: float = 120) -> ClaudeRun:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return ClaudeRun(
        argv=[str(a) for a in proc.args],  # type: ignore[union-attr]
        returncode=proc.returncode,
        lines=[line for line in out.splitlines() if line.strip()],
        stderr=err,
        seconds=time.monotonic() - started,
    )


def run_claude(
    binary: Path,
    url: str,
    prompt: str,
    *,
    cwd: Path,
    home: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> ClaudeRun:
    """Run claude to its end (killed after ``timeout``, which only a bug reaches)."""
    started = time.monotonic()
    proc = start_claude(binary, url, prompt, cwd=cwd, home=home, args=args, env=env)
    return finish(proc, started, timeout)


def wait_for(predicate, timeout: float = 60, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    """Poll until ``predicate()`` is true (the timeout is only reached when broken)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def lines_of(path: Path) -> Iterator[str]:
    with open(path) as fh:
        for line in fh:
            if line.strip():
                yield line.rstrip("\n")
