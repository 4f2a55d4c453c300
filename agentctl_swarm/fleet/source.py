"""Reading a fleet file from disk: the I/O edge in front of the pure parser.

Only regular files of bounded size are read, so pointing ``-f`` at a FIFO, a device
(``/dev/zero``) or a huge file is a located error, never a hang or an exhausted memory.
Relative paths in the fleet are resolved against the file's own directory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agentctl_swarm.fleet.loader import FleetError, LoadedFleet, Problem, parse_fleet

MAX_FLEET_BYTES = 1024 * 1024


def _problem(path: Path, message: str) -> FleetError:
    return FleetError([Problem(str(path), 1, 1, "", message)])


def read_fleet(path: str | Path) -> LoadedFleet:
    """Read and validate a fleet file; FleetError listing every problem otherwise."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not block; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise _problem(path, "file not found") from exc
    except OSError as exc:
        raise _problem(path, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _problem(path, "not a regular file; give the path of a fleet YAML file")
        if info.st_size > MAX_FLEET_BYTES:
            raise _problem(
                path, f"the file is {info.st_size} bytes; fleet files are limited to 1 MiB"
            )
        raw = os.read(fd, MAX_FLEET_BYTES + 1)
    except OSError as exc:
        raise _problem(path, f"cannot read file: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(raw) > MAX_FLEET_BYTES:
        raise _problem(path, "the file is larger than 1 MiB; fleet files are limited to 1 MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _problem(path, f"not UTF-8 text (byte {exc.start})") from exc
    loaded = parse_fleet(text, str(path), base_dir=path.parent.absolute())
    return _with_personalities(loaded)


MAX_PERSONALITY_BYTES = 64 * 1024


def _with_personalities(loaded: LoadedFleet) -> LoadedFleet:
    """Read each ``personality_file`` (next to the fleet file) into ``personality``."""
    problems: list[Problem] = []
    agents = []
    for index, agent in enumerate(loaded.fleet.agents):
        if agent.personality_file is None:
            agents.append(agent)
            continue
        file = Path(agent.personality_file).expanduser()
        if not file.is_absolute():
            file = loaded.path.parent.absolute() / file
        loc = ("agents", index, "personality_file")
        try:
            raw = file.read_bytes()[: MAX_PERSONALITY_BYTES + 1]
            if len(raw) > MAX_PERSONALITY_BYTES:
                raise ValueError("is larger than 64 KiB")
            text = raw.decode("utf-8")
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            problems.append(loaded.locate(loc, f"cannot read {file}: {reason}"))
            continue
        agents.append(agent.model_copy(update={"personality": text}))
    if problems:
        raise FleetError(problems)
    return LoadedFleet(
        fleet=loaded.fleet.model_copy(update={"agents": agents}), path=loaded.path, tree=loaded.tree
    )
