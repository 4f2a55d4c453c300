"""Loading a model script from YAML, with every problem reported as
``FILE:LINE:COL: field: message``.

This reuses the fleet loader's mechanism (ruamel round-trip parsing that remembers
positions, pydantic validation, errors mapped back to lines and columns) instead of
writing a second one; only the error class and the file reading are the script's own.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from agentctl_swarm.fleet import loader
from agentctl_swarm.fleet.loader import Problem
from agentctl_swarm.model.script import Script

MAX_SCRIPT_BYTES = 4 * 1024 * 1024


class ScriptError(loader.ProblemsError):
    """A script that cannot be used; carries every problem found, in file order."""

    summary = "see `agentctl model serve --help` for the script format"

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(problems, hint=self.summary)


def parse_script(text: str, filename: str = "<script>") -> Script:
    """Validate a script given as YAML text (``filename`` is used in messages)."""
    try:
        tree = loader._parse_yaml(text, filename)
    except loader.FleetError as exc:
        raise ScriptError(exc.problems) from exc
    if tree is None:
        raise ScriptError([Problem(filename, 1, 1, "", "the script is empty")])
    if not isinstance(tree, dict):
        raise ScriptError(
            [
                Problem(
                    filename, 1, 1, "", "the top level must be a mapping (turns: or conversations:)"
                )
            ]
        )
    try:
        plain = loader._plain(tree)
    except (loader._TooBig, RecursionError) as exc:
        raise ScriptError(
            [Problem(filename, 1, 1, "", "the script is too large or nested too deeply")]
        ) from exc
    try:
        return Script.model_validate(plain)
    except ValidationError as exc:
        problems = [loader._from_pydantic(err, tree, filename) for err in exc.errors()]
        raise ScriptError(loader._dedupe(problems)) from exc


def read_script(path: str | Path) -> Script:
    """Read and validate a script file; ScriptError listing every problem otherwise.

    Only regular files of bounded size are read, so a FIFO or a device is a clear error.
    """
    path = Path(path)

    def problem(message: str) -> ScriptError:
        return ScriptError([Problem(str(path), 1, 1, "", message)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise problem("file not found") from exc
    except OSError as exc:
        raise problem(f"cannot read file: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise problem("not a regular file; give the path of a model script (YAML)")
        raw = os.read(fd, MAX_SCRIPT_BYTES + 1)
    except OSError as exc:
        raise problem(f"cannot read file: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(raw) > MAX_SCRIPT_BYTES:
        raise problem("the file is larger than 4 MiB; scripts are limited to 4 MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise problem(f"not UTF-8 text (byte {exc.start})") from exc
    return parse_script(text, str(path))
