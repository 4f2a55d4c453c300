"""Re-record the Claude Code stream fixtures under tests/fixtures/claude_streams/.

    .venv/bin/python -m tests.model.record_streams            # all scenarios
    .venv/bin/python -m tests.model.record_streams auth_401   # some

Each scenario runs the real claude binary (the one `agentctl build` caches) against the
scripted model and writes ``<name>.jsonl`` (its stdout, one stream-json event per line)
and ``<name>.exit.json`` (exit code or signal, version, arguments). The classifier's
tests read these files, so a new Claude Code version is checked by re-recording and
running tests/model/test_claude_stream.py.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from agentctl_swarm.model import ScriptedModel
from agentctl_swarm.podman.claude_code import CLAUDE_CODE_VERSION
from tests.model.claude_harness import ClaudeRun, find_claude, finish, start_claude, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude_streams"
MCP_TOOLS = "mcp__agentchat__agentchat_connect,mcp__agentchat__agentchat_send"


@dataclass(frozen=True)
class Scenario:
    """One recorded run: a script, a prompt, claude's arguments and environment."""

    name: str
    script: str
    prompt: str
    expect: str  # the outcome the classifier must find (see test_claude_stream.py)
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    chat: bool = False  # start an AgentChat server and give claude agentchat-mcp
    signal: int | None = None  # sent to claude once the model received `after` requests
    after: int = 1


SCENARIOS = [
    Scenario(
        "success_write_edit",
        """
turns:
  - text: "I'll create the file."
    tool_use:
      - Write: {file_path: "${cwd}/hello.txt", content: "hello\\n"}
  - tool_use:
      - Edit: {file_path: "${cwd}/hello.txt", old_string: hello, new_string: hello world}
  - text: Created and edited hello.txt.
    usage: {input_tokens: 1500, output_tokens: 12, cache_read_input_tokens: 700}
""",
        "create hello.txt",
        "success",
        args=("--permission-mode", "acceptEdits"),
    ),
    Scenario(
        "mcp_send",
        """
turns:
  - tool_use:
      - mcp__agentchat__agentchat_connect: {name: recorder}
  - tool_use:
      - mcp__agentchat__agentchat_send: {target: "#general", message: "STATUS recorded"}
  - text: Posted.
""",
        "post a status",
        "success",
        args=("--allowedTools", MCP_TOOLS),
        chat=True,
    ),
    Scenario(
        "auth_401",
        "turns:\n  - error: authentication\n",
        "hello",
        "auth",
        env={"CLAUDE_CODE_MAX_RETRIES": "2"},
    ),
    Scenario(
        "rate_limit_429",
        "turns:\n  - error: {kind: rate_limit, retry_after: 1}\n",
        "hello",
        "quota",
        env={"CLAUDE_CODE_MAX_RETRIES": "1"},
    ),
    Scenario(
        "overloaded_529",
        "turns:\n  - error: overloaded\n",
        "hello",
        "overloaded",
        env={"CLAUDE_CODE_MAX_RETRIES": "1"},
    ),
    Scenario(
        "prompt_too_long", "turns:\n  - error: prompt_too_long\n", "hello", "context_overflow"
    ),
    Scenario(
        "bash_permission_denied",
        """
turns:
  - tool_use:
      - Bash: {command: "touch made-by-bash", description: Create a file}
  - text: The command was refused.
""",
        "touch a file",
        "permission_denied",
        args=(
            "--permission-mode",
            "acceptEdits",
            "--settings",
            '{"permissions": {"deny": ["Bash(touch:*)"]}}',
        ),
    ),
    Scenario(
        "killed_sigkill",
        "turns:\n  - text: Starting.\n    tool_use:\n      - Read: {file_path: '${cwd}/x'}\n"
        "  - hang: true\n",
        "work",
        "killed",
        signal=signal.SIGKILL,
        after=2,
    ),
    Scenario(
        "terminated_sigterm",
        "turns:\n  - hang: true\n",
        "work",
        "killed",
        signal=signal.SIGTERM,
    ),
]
BY_NAME = {s.name: s for s in SCENARIOS}


@contextmanager
def _chat_server() -> Iterator[str]:
    from agentctl_swarm.chat.server import ServerConfig, run_in_thread

    server = run_in_thread(ServerConfig(host="127.0.0.1", port=0))
    try:
        yield server.url
    finally:
        server.stop()


def mcp_config(chat_url: str, home: Path) -> str:
    """--mcp-config for agentchat-mcp (this checkout's agentctl-agent) on ``chat_url``."""
    agent = Path(sys.executable).with_name("agentctl-agent")
    return json.dumps(
        {
            "mcpServers": {
                "agentchat": {
                    "command": str(agent),
                    "args": ["mcp"],
                    "env": {"AGENTCHAT_URL": chat_url, "HOME": str(home)},
                }
            }
        }
    )


def run_scenario(binary: Path, scenario: Scenario, tmp: Path) -> ClaudeRun:
    """Run one scenario in ``tmp`` (workspace and home inside it)."""
    cwd, home = tmp / "workspace", tmp / "home"
    cwd.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    model = ScriptedModel.from_yaml(scenario.script, scenario.name)
    with model.serve() as url, _chat_server() if scenario.chat else _nothing() as chat_url:
        args = list(scenario.args)
        if chat_url:
            args += ["--mcp-config", mcp_config(chat_url, home)]
        started = time.monotonic()
        proc = start_claude(
            binary, url, scenario.prompt, cwd=cwd, home=home, args=args, env=scenario.env
        )
        if scenario.signal is not None:
            wait_for(lambda: len(model.messages_requests()) >= scenario.after, timeout=60)
            time.sleep(0.3)  # let claude print what it got so far
            proc.send_signal(scenario.signal)
        return finish(proc, started)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def record(binary: Path, scenario: Scenario) -> ClaudeRun:
    with tempfile.TemporaryDirectory(prefix=f"record-{scenario.name}-") as tmp:
        run = run_scenario(binary, scenario, Path(tmp))
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{scenario.name}.jsonl").write_text("\n".join(run.lines) + "\n")
    exit_info = {
        "returncode": run.returncode,
        "signal": -run.returncode if run.returncode < 0 else None,
        "expect": scenario.expect,
        "claude_code_version": CLAUDE_CODE_VERSION,
        "args": list(scenario.args),
        "env": scenario.env,
        "recorded_with": "python -m tests.model.record_streams",
    }
    (FIXTURES / f"{scenario.name}.exit.json").write_text(json.dumps(exit_info, indent=2) + "\n")
    return run


def main(names: list[str]) -> int:
    binary = find_claude()
    if binary is None:
        print("Claude Code is not installed; run `agentctl build` first", file=sys.stderr)
        return 1
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
        return 2
    for scenario in [BY_NAME[n] for n in names] or SCENARIOS:
        run = record(binary, scenario)
        print(f"{scenario.name}: exit {run.returncode}, {len(run.lines)} lines, {run.seconds:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
