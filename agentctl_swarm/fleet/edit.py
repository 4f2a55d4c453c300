"""Changing a fleet file in place, as a person would: comments, order and layout kept.

`agentctl scale` writes its result back into the fleet file, so the file stays the one
desired state (the next `apply` or reload does not undo a scale). The edit goes through
ruamel.yaml's round-trip mode, the result is validated like any fleet file before it
replaces the old one (atomically), and nothing is written when it would not load.
"""

from __future__ import annotations

import io
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from agentctl_swarm.core.errors import UsageError
from agentctl_swarm.core.files import atomic_write
from agentctl_swarm.fleet.loader import LoadedFleet, parse_fleet


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def set_instances(path: Path, role: str, indexes: list[int]) -> LoadedFleet:
    """Set ``role``'s agents to exactly ``indexes`` (``replicas`` and, when the numbers are
    not 0..N-1, ``instances``); returns the fleet as written."""
    text = path.read_text(encoding="utf-8")
    tree = _yaml().load(text)
    agents = tree.get("agents") if isinstance(tree, CommentedMap) else None
    entry = next(
        (a for a in agents or [] if isinstance(a, CommentedMap) and a.get("role") == role), None
    )
    if entry is None:
        raise UsageError(f"{path}: no role {role!r} in agents", hint="check the role's name")
    indexes = sorted(indexes)
    entry["replicas"] = len(indexes)
    if indexes == list(range(len(indexes))):
        entry.pop("instances", None)
    else:
        seq = CommentedSeq(indexes)
        seq.fa.set_flow_style()
        entry["instances"] = seq
    out = io.StringIO()
    _yaml().dump(tree, out)
    new_text = out.getvalue()
    loaded = parse_fleet(new_text, str(path), base_dir=path.parent.absolute())
    atomic_write(path, new_text, mode=path.stat().st_mode & 0o777)
    return loaded
