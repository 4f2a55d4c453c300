"""owl/reference/agentchat-protocol.md stays true: its frame sections are what the frame
models generate, and every section the chat code cites exists.

Regenerate the frame sections with ``UPDATE_PROTOCOL_REFERENCE=1 pytest <this file>``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from agentctl_swarm.chat import protocol
from agentctl_swarm.chat.protocol import reference
from agentctl_swarm.chat.server import config

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "owl" / "reference" / "agentchat-protocol.md"
SECTIONS = [
    (reference.CLIENT_BEGIN, reference.client_frames_markdown),
    (reference.SERVER_BEGIN, reference.server_frames_markdown),
]


def _splice(text: str, begin: str, body: str) -> str:
    start = text.index(begin) + len(begin)
    end = text.index(reference.END, start)
    return text[:start] + "\n\n" + body + "\n" + text[end:]


def test_generated_frame_sections_are_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    want = text
    for begin, render in SECTIONS:
        want = _splice(want, begin, render())
    if want != text and os.environ.get("UPDATE_PROTOCOL_REFERENCE"):
        DOC.write_text(want, encoding="utf-8")
        pytest.skip("regenerated the frame sections")
    assert want == text, "frame sections are stale: rerun with UPDATE_PROTOCOL_REFERENCE=1"


def test_every_cited_section_exists() -> None:
    headings = {
        m.group(1).strip()
        for m in re.finditer(r"^#+ (.+)$", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    }
    cited: set[tuple[str, str]] = set()
    for root in ("agentctl_swarm/chat", "agentctl_swarm/cli/chat.py", "tests/chat"):
        paths = [REPO / root] if root.endswith(".py") else (REPO / root).rglob("*.py")
        for path in paths:
            flat = " ".join(path.read_text(encoding="utf-8").split())
            flat = flat.replace('"""', "").replace("#: ", "").replace(" # ", " ")
            for m in re.finditer(r'agentchat-protocol\.md, "([^"]+)"', flat):
                cited.add((str(path.relative_to(REPO)), m.group(1)))
    assert cited, "no citations found: has the citation style changed?"
    missing = sorted(c for c in cited if c[1] not in headings)
    assert missing == []


def test_nothing_cites_documents_outside_the_repository() -> None:
    for root in ("agentctl_swarm/chat", "tests/chat", "bench/chat"):
        for path in (REPO / root).rglob("*.py"):
            if path == Path(__file__).resolve():
                continue
            text = path.read_text(encoding="utf-8")
            assert "original-system.md" not in text, path
            assert re.search(r"(?<!reference/)agentchat-protocol\.md", text) is None, path
            assert "§" not in text, path


def test_the_transitional_buffer_default_matches_the_server() -> None:
    assert protocol.DEFAULT_BUFFER_SIZE == config.DEFAULT_BUFFER_SIZE
