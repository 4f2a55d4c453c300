"""The frame sections of owl/reference/agentchat-protocol.md, rendered from the frame models.

The document's "Client frames" and "Server frames" sections are this module's output
(tests/chat/test_protocol_reference.py keeps them equal), so the reference can never say
something the validator does not do.
"""

from __future__ import annotations

import inspect

from agentctl_swarm.chat.protocol.client_frames import CLIENT_FRAMES, frame_type, rules_of
from agentctl_swarm.chat.protocol.frame import Frame
from agentctl_swarm.chat.protocol.server_frames import SERVER_MODELS

CLIENT_BEGIN = "<!-- client-frames: generated from chat/protocol/client_frames.py -->"
SERVER_BEGIN = "<!-- server-frames: generated from chat/protocol/server_frames.py -->"
END = "<!-- end of generated section -->"


def _doc(model: type[Frame]) -> str:
    """The class docstring as one Markdown line (reST ````x```` becomes ```x```)."""
    return " ".join((inspect.getdoc(model) or "").split()).replace("``", "`")


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a bare ``|`` would end the cell)."""
    return text.replace("|", "\\|")


def _fields(model: type[Frame], skip: set[str]) -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in skip and key not in ("type", "ts"):
            names.append(key)
    return names


def client_frames_markdown() -> str:
    """Every client frame: what it does, and each check in order with its error text."""
    out: list[str] = []
    for model in CLIENT_FRAMES:
        out.append(f"#### `{frame_type(model)}`\n")
        out.append(_doc(model) + "\n")
        rules = rules_of(model)
        if rules:
            out.append("| field | must be | else `INVALID_MSG` |")
            out.append("|---|---|---|")
            for key, rule in rules:
                field = f"`{key}`" if key else "(frame)"
                out.append(f"| {field} | {_cell(rule.needs)} | {_cell(rule.error)} |")
            out.append("")
        others = _fields(model, {k for k, _ in rules if k})
        if others:
            out.append("Also read (not checked): " + ", ".join(f"`{n}`" for n in others) + ".\n")
    return "\n".join(out).rstrip() + "\n"


def server_frames_markdown() -> str:
    """Every server frame: when it is sent and the fields it carries (besides ``type``, ``ts``)."""
    out = ["| type | fields | sent when |", "|---|---|---|"]
    seen: set[type[Frame]] = set()
    for kind, model in SERVER_MODELS.items():
        if model in seen:
            continue
        seen.add(model)
        kinds = [k for k, m in SERVER_MODELS.items() if m is model]
        required = []
        for name, info in model.model_fields.items():
            key = info.alias or name
            if key in ("type", "ts"):
                continue
            required.append(f"`{key}`" if info.is_required() else f"`{key}?`")
        label = " / ".join(f"`{k}`" for k in kinds) if len(kinds) > 1 else f"`{kind}`"
        out.append(f"| {label} | {', '.join(required)} | {_cell(_doc(model))} |")
    return "\n".join(out) + "\n"
