"""Manifests as YAML text that Kubernetes and Podman read back unchanged (pure).

Kubernetes' and Podman's YAML readers follow YAML 1.1, where an unquoted ``yes``, ``on``
or ``0755`` is not a string; ruamel.yaml writes YAML 1.2 by default and would leave them
bare. Dumping as 1.1 quotes every such string; the ``%YAML 1.1`` directive is dropped
because it is the readers' default anyway.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

from ruamel.yaml import YAML


def dump_documents(documents: Iterable[Mapping[str, Any]], header: Iterable[str] = ()) -> str:
    """``documents`` as one multi-document YAML text, ``header`` lines as comments on top."""
    yaml = YAML(typ="rt", pure=True)
    yaml.version = (1, 1)
    yaml.default_flow_style = False
    yaml.width = 4096  # long commands stay on one line
    parts = [comment_block(header)] if header else []
    for doc in documents:
        buf = io.StringIO()
        yaml.dump(_plain(doc), buf)
        lines = buf.getvalue().splitlines(keepends=True)
        while lines and (lines[0].startswith("%YAML") or lines[0].strip() == "---"):
            lines.pop(0)
        parts.append("---\n" + "".join(lines))
    return "".join(parts)


def comment_block(lines: Iterable[str]) -> str:
    """Each line (and each line inside a multi-line entry) as a ``#`` comment."""
    out = []
    for entry in lines:
        for line in str(entry).splitlines() or [""]:
            out.append(f"# {line}".rstrip() + "\n")
    return "".join(out)


def _plain(value: Any) -> Any:
    """Plain dicts and lists (ruamel's round-trip dumper keeps their order)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
