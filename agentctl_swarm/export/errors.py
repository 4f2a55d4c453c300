"""Why a fleet cannot be exported, said at the place in the fleet file to change.

The generators are pure and know the fleet model, not the file it came from, so they
report problems as model locations (``("agents", 0, "volumes", 1, "source")``); the CLI
turns them into ``FILE:LINE:COL`` with :meth:`ExportError.located`, the same way the
loader reports its own problems.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentctl_swarm.core.errors import UsageError
from agentctl_swarm.fleet.loader import FleetError, LoadedFleet, Loc, Problem


class ExportError(UsageError):
    """The fleet is valid but uses something the export target cannot express (exit 2)."""

    def __init__(self, target: str, problems: Sequence[tuple[Loc, str]]) -> None:
        self.target = target
        self.problems = list(problems)
        lines = [f"{_dotted(loc)}: {message}" for loc, message in self.problems]
        super().__init__(f"the fleet cannot be exported to {target}:\n" + "\n".join(lines))

    def details(self) -> list[str]:
        return [f"{_dotted(loc)}: {message}" for loc, message in self.problems]

    def one_line(self) -> str:
        n = len(self.problems)
        return f"{n} problem{'s' if n != 1 else ''} exporting to {self.target}; nothing was written"

    def located(self, loaded: LoadedFleet) -> FleetError:
        """The same problems as FILE:LINE:COL lines of the fleet file they came from."""
        return _Located(self.target, [loaded.locate(loc, msg) for loc, msg in self.problems])


class _Located(FleetError):
    def __init__(self, target: str, problems: Sequence[Problem]) -> None:
        super().__init__(problems)
        self.target = target

    def one_line(self) -> str:
        n = len(self.problems)
        return f"{n} problem{'s' if n != 1 else ''} exporting to {self.target}; nothing was written"


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
