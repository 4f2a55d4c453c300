"""The one error model: every expected failure is an :class:`AgentctlError`.

An error carries the message a user reads, the fix to suggest (``hint``) and the exit code
the CLI returns, so the CLI turns any of them into one line and the documented code in
one place (``agentctl_swarm/cli/errors.py``). Causes are chained (``raise ... from exc``)
so ``AGENTCTL_DEBUG=1`` can still show what went wrong underneath.

Exit codes (documented in the README): 0 success; 1 an operation failed; 2 bad input
(a fleet file, arguments: nothing was changed); 3 a service (Podman, the chat server)
cannot be reached; 70 a bug.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERNAL = 70


class AgentctlError(Exception):
    """Root of every expected failure; ``str()`` is the message, ``hint`` the fix."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def details(self) -> list[str]:
        """Lines printed before the one-line summary (e.g. each problem of a file)."""
        return []

    def one_line(self) -> str:
        """The message and the fix, as the CLI prints them."""
        if self.hint and self.hint not in self.message:
            return f"{self.message}; {self.hint}"
        return self.message


class UsageError(AgentctlError):
    """Bad input from the user (arguments, a file): nothing was changed."""

    exit_code = EXIT_USAGE


class UnavailableError(AgentctlError):
    """A service the command needs (Podman, the chat server) cannot be reached."""

    exit_code = EXIT_UNAVAILABLE


def cause_chain(exc: BaseException) -> list[str]:
    """``Type: message`` for every cause below ``exc`` (for debug output and logs)."""
    out: list[str] = []
    seen: set[int] = {id(exc)}
    cur = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out.append(f"{type(cur).__name__}: {cur}")
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return out
