"""The one way to run a short-lived command: bounded in time, output captured, and a
failure that says what ran and how it ended (the last lines of its output).

Long-lived children with their own lifecycle (the supervised agent, Claude Code, the
`podman build` whose lines are streamed as progress) use :func:`stream_lines` or their
own ``Popen``; everything else goes through :func:`run`.
"""

from __future__ import annotations

import shlex
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from agentctl_swarm.core.errors import AgentctlError


class CommandFailed(AgentctlError):
    """A command exited non-zero, could not start, or ran past its time."""

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str],
        code: int | None,
        tail: str,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.argv = list(argv)
        self.code = code
        self.tail = tail


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def describe(argv: Sequence[str]) -> str:
    """The command as a person would type it (first 200 characters)."""
    text = shlex.join(str(a) for a in argv)
    return text if len(text) <= 200 else text[:197] + "..."


def run(
    argv: Sequence[str | Path],
    *,
    timeout: float,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    check: bool = True,
    text: bool = True,
    hint: str | None = None,
) -> subprocess.CompletedProcess:
    """Run ``argv`` to completion (stdin closed unless ``input``), capturing its output.

    With ``check`` a non-zero exit raises :class:`CommandFailed`; a missing program or a
    timeout always does. ``hint`` is the fix to suggest when it fails.
    """
    args = [str(a) for a in argv]
    try:
        result = subprocess.run(
            args,
            capture_output=True,
            text=text,
            timeout=timeout,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise CommandFailed(
            f"{args[0]} is not installed (or not on PATH)", argv=args, code=None, tail="", hint=hint
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(
            f"`{describe(args)}` did not finish within {timeout:g}s",
            argv=args,
            code=None,
            tail="",
            hint=hint,
        ) from exc
    if check and result.returncode != 0:
        raw = result.stderr or result.stdout or ""
        out = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        tail = _tail(out)
        raise CommandFailed(
            f"`{describe(args)}` failed (exit {result.returncode})"
            + (f":\n{tail}" if tail else ""),
            argv=args,
            code=result.returncode,
            tail=tail,
            hint=hint,
        )
    return result


def stream_lines(
    argv: Sequence[str | Path],
    on_line: Callable[[str], None],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    keep: int = 40,
) -> tuple[int, list[str]]:
    """Run ``argv`` passing each non-empty output line (stdout+stderr) to ``on_line``.

    Returns (exit code, the last ``keep`` lines) for the caller's error message.
    """
    args = [str(a) for a in argv]
    tail: deque[str] = deque(maxlen=keep)
    try:
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            cwd=cwd,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError as exc:
        raise CommandFailed(
            f"{args[0]} is not installed (or not on PATH)", argv=args, code=None, tail=""
        ) from exc
    with proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if line:
                tail.append(line)
                on_line(line)
        code = proc.wait()
    return code, list(tail)
