"""How Claude Code is started for one run: argv, environment and its config files (pure).

Every choice here fixes something the original runner got wrong (owl/reference/
original-system.md): stream-json with --verbose so usage and the end are read from
structured fields (D5, D6); a session id per task, resumed with --resume after an
interruption; the personality appended to Claude Code's own system prompt rather than
replacing it (D11); the MCP server declared where Claude Code reads it, with its own chat
identity (D12); the prompt on stdin and secrets only in this process's environment, so
neither shows in ``ps``; the agent's permissions passed by the runner on each start, so
the agent cannot loosen them for its next session (D11).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Under the state volume, so they outlive the container: HOME of the Claude process (the
# MCP server's chat identity and inbox) and Claude Code's own config dir (its sessions,
# so --resume works after a restart).
HOME_SUBDIR = "home"
CONFIG_SUBDIR = "claude"
DEFAULT_DENY = ("WebFetch", "WebSearch")


@dataclass(frozen=True)
class ClaudeRun:
    """One invocation of the real ``claude`` binary (or a promotable command)."""

    session_id: str
    resume: bool
    model: str | None = None
    personality: str | None = None
    allow: Sequence[str] = ()
    deny: Sequence[str] = DEFAULT_DENY
    max_turns: int | None = None
    mcp_config_path: str = "/state/run/mcp.json"
    settings_path: str = "/state/run/settings.json"
    binary: Sequence[str] = ("claude",)
    extra_env: Mapping[str, str] = field(default_factory=dict)


def argv(run: ClaudeRun) -> list[str]:
    """``claude -p`` in stream-json mode; the prompt itself comes on stdin."""
    out = [*run.binary, "-p", "--output-format", "stream-json", "--verbose"]
    out += ["--resume", run.session_id] if run.resume else ["--session-id", run.session_id]
    out += ["--mcp-config", run.mcp_config_path, "--strict-mcp-config"]
    out += ["--settings", run.settings_path]
    # The agent runs as an unprivileged user in its own container and user namespace:
    # what it may do is decided by the permission rules below, not by prompts nobody
    # could answer.
    out += ["--dangerously-skip-permissions"]
    if run.model:
        out += ["--model", run.model]
    if run.personality:
        out += ["--append-system-prompt", run.personality]
    if run.max_turns:
        out += ["--max-turns", str(run.max_turns)]
    return out


def settings_json(run: ClaudeRun) -> str:
    """The run's permission rules (deny wins over allow and over skip-permissions)."""
    permissions: dict[str, list[str]] = {"deny": sorted(set(run.deny))}
    if run.allow:
        permissions["allow"] = sorted(set(run.allow))
    return json.dumps({"permissions": permissions}, indent=2) + "\n"


def mcp_config_json(*, url: str, public: bool, home: str) -> str:
    """agentchat-mcp for this session (``agentctl-agent mcp``, our wire-compatible one)."""
    env = {"AGENTCHAT_URL": url, "HOME": home}
    if public:
        env["AGENTCHAT_PUBLIC"] = "true"
    server = {"command": "agentctl-agent", "args": ["mcp"], "env": env}
    return json.dumps({"mcpServers": {"agentchat": server}}, indent=2) + "\n"


def environment(
    base: Mapping[str, str],
    secrets: Mapping[str, str],
    *,
    state_dir: str,
    base_url: str | None,
    max_retries: int | None,
) -> dict[str, str]:
    """The Claude process's environment: the runner's, its own dirs, the model's URL and
    the secrets (API keys) — which exist in no other process's environment."""
    env = {k: v for k, v in base.items() if not k.startswith("AGENTCTL_RUNNER_")}
    env.update(
        HOME=f"{state_dir}/{HOME_SUBDIR}",
        CLAUDE_CONFIG_DIR=f"{state_dir}/{CONFIG_SUBDIR}",
        ENABLE_TOOL_SEARCH="false",  # MCP tools offered directly as mcp__agentchat__*
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )
    if base_url:
        env["ANTHROPIC_BASE_URL"] = base_url
    if max_retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
    env.update(secrets)
    return env


def command_argv(template: Sequence[str], prompt: str) -> list[str]:
    """A promotable ``runtime: command``: ``{prompt}`` in the argv replaced by the task."""
    return [part.replace("{prompt}", prompt) for part in template]
