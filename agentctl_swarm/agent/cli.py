"""The in-container ``agentctl-agent`` command.

It is deliberately tiny and import-light: it runs as the container's main process
under tini, so each subcommand imports only what it needs.

Subcommands:
  supervise -- CMD...   keep the agent process alive (agent/supervisor.py)
  run                   take tasks from the work channel, run Claude Code (agent/runner.py)
  mcp                   agentchat-mcp stdio server for Claude Code (chat/mcp_server.py)
  workspace ...         prepare and export the git workspace (agent/workspace.py)
"""

from __future__ import annotations

import importlib
import sys

_COMMANDS: dict[str, tuple[str, str]] = {
    "supervise": ("agentctl_swarm.agent.supervisor", "keep the agent process alive"),
    "run": ("agentctl_swarm.agent.runner", "take tasks and run Claude Code (runtime: claude)"),
    "mcp": ("agentctl_swarm.chat.mcp_server", "agentchat-mcp stdio server"),
    "workspace": ("agentctl_swarm.agent.workspace", "prepare and export the git workspace"),
}


def _usage() -> str:
    lines = ["usage: agentctl-agent COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in _COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand's ``main(argv) -> int``."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in _COMMANDS:
        print(f"agentctl-agent: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(_COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
