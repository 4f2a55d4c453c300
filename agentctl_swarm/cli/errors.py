"""The one place where failures become output and exit codes.

Every command raises :class:`~agentctl_swarm.core.errors.AgentctlError` (or a subclass)
for an expected failure; :func:`run` turns it into its detail lines (e.g. every problem of
a fleet file), one ``error: ...`` line with the fix, and the error's documented exit code.
Anything else is a bug: one line and exit 70, or the full traceback and the chain of
causes with ``AGENTCTL_DEBUG=1``.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape

from agentctl_swarm.core.errors import EXIT_INTERNAL, AgentctlError, cause_chain
from agentctl_swarm.core.logs import logs_json

_err = Console(stderr=True, highlight=False)


def _debug() -> bool:
    return os.environ.get("AGENTCTL_DEBUG", "").lower() not in ("", "0", "false", "no")


def report(exc: AgentctlError, *, debug: bool = False) -> None:
    """Print an expected failure: its detail lines, then one ``error:`` line."""
    for line in exc.details():
        _err.print(escape(line), soft_wrap=True)
    _err.print(f"[red]error:[/red] {escape(exc.one_line())}", soft_wrap=True)
    if debug:
        for cause in cause_chain(exc):
            _err.print(f"  caused by {escape(cause)}", soft_wrap=True)


def run(app: Callable[[], object]) -> None:
    """Run the Typer app; map errors to output and exit codes (the console script's body)."""
    debug = _debug()
    try:
        app()
    except AgentctlError as exc:
        report(exc, debug=debug)
        if debug:
            traceback.print_exc()
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        _err.print("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:  # a bug: keep the user's terminal readable
        if debug:
            raise
        if logs_json():  # a daemon logging JSON lines: the crash is one more record
            logging.getLogger("agentctl.cli").critical(
                "internal error: %s: %s (please report it)", type(exc).__name__, exc,
                exc_info=exc, extra={"event": "agentctl.internal_error"},
            )  # fmt: skip
            raise SystemExit(EXIT_INTERNAL) from None
        print(
            f"agentctl: internal error: {type(exc).__name__}: {exc}\n"
            "(set AGENTCTL_DEBUG=1 to see the traceback, and please report it)",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_INTERNAL) from None
