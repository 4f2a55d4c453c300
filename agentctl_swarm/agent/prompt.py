"""What Claude Code is asked to do for one task, and the notes kept between tasks (pure).

The prompt is built fresh for every task from parts that cannot drift apart: the role's
personality, the fleet's mission, the task itself, how to work in this container (branch,
channel, identity), a note when a task is resumed after an interruption, and the notes
the previous task left in ``context.md``. Nothing here reads files or the clock; the
runner passes everything in.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PREVIOUS_NOTES = 4000
MAX_SUMMARY = 1500


@dataclass(frozen=True)
class TaskContext:
    """Everything the prompt and context.md say about one task."""

    agent: str
    role: str
    fleet: str
    channel: str
    task_id: str
    prompt: str
    branch: str
    attempt: int = 1
    mission: str | None = None
    personality: str | None = None
    resumed: bool = False
    previous_notes: str | None = None

    @property
    def chat_name(self) -> str:
        """The name the Claude session connects to AgentChat with: not the runner's own,
        which stays connected (one identity on two sockets displaces the older one)."""
        return f"{self.agent}-claude"[:32]


def build_prompt(ctx: TaskContext) -> str:
    """The prompt for ``claude -p`` (sent on stdin, so it never shows in ``ps``)."""
    parts: list[str] = []
    if ctx.personality:
        parts.append(ctx.personality.strip())
    who = f'You are {ctx.agent}, an agent with the role "{ctx.role}" in the fleet "{ctx.fleet}".'
    parts.append(who + (f"\nThe fleet's mission: {ctx.mission.strip()}" if ctx.mission else ""))
    parts.append(f"## Your task ({ctx.task_id}, attempt {ctx.attempt})\n{ctx.prompt.strip()}")
    parts.append(
        "## How to work\n"
        f"- Work in /workspace, a git repository, on the branch {ctx.branch}. Commit your "
        "work there with clear messages; do not push (the host collects it).\n"
        f"- The AgentChat tools (mcp__agentchat__*) reach the fleet's channel {ctx.channel}; "
        f'connect as "{ctx.chat_name}" if you need them, and keep messages short.\n'
        "- Finish with a short summary of what you did and what is left."
    )
    if ctx.resumed:
        parts.append(
            "## Resumed\nThis task was interrupted and is resumed in the same session: "
            "check the state of /workspace and continue where you left off."
        )
    if ctx.previous_notes:
        notes = ctx.previous_notes.strip()[-MAX_PREVIOUS_NOTES:]
        parts.append(f"## Notes from your previous task\n{notes}")
    return "\n\n".join(parts) + "\n"


def active_context(ctx: TaskContext, started_at: str) -> str:
    """context.md while a task runs (a person can read what the agent is on)."""
    return (
        f"# Active task {ctx.task_id}\n\n"
        f"- agent: {ctx.agent} (role {ctx.role})\n"
        f"- attempt: {ctx.attempt}\n"
        f"- branch: {ctx.branch}\n"
        f"- started: {started_at}\n\n"
        f"## Task\n{ctx.prompt.strip()}\n"
    )


def finished_context(
    ctx: TaskContext,
    *,
    outcome: str,
    summary: str,
    tokens_in: int,
    tokens_out: int,
    cost_usd: float,
    ended_at: str,
) -> str:
    """context.md after a task: what the next task's prompt will quote."""
    text = summary.strip()
    if len(text) > MAX_SUMMARY:
        text = text[: MAX_SUMMARY - 3] + "..."
    return (
        f"# Last task {ctx.task_id}: {outcome}\n\n"
        f"- branch: {ctx.branch}\n"
        f"- ended: {ended_at}\n"
        f"- tokens: {tokens_in} in, {tokens_out} out (${cost_usd:.4f})\n\n"
        f"## Task\n{ctx.prompt.strip()}\n\n"
        f"## Result\n{text or '(no summary)'}\n"
    )
