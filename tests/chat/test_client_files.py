"""The files the client side keeps: identities (one load-or-create, atomic, 0600) and the
MCP inbox. A disk that refuses a write is a clear error for an identity and a logged
warning for the inbox; the session goes on."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from agentctl_swarm.chat.identity import Identity, IdentityError, load_or_create
from agentctl_swarm.chat.inbox import Cursor, Inbox, inbox_line


def test_load_or_create_creates_once_then_loads(tmp_path: Path) -> None:
    path = tmp_path / ".agentchat" / "identities" / "a.json"
    first, created = load_or_create(path, "a")
    again, created_again = load_or_create(path, "ignored")
    assert created and not created_again
    assert again.agent_id == first.agent_id and again.name == "a"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["publicKey"] == first.public_pem
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temp file left


def test_load_or_create_never_replaces_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(IdentityError, match="not a readable JSON identity file") as info:
        load_or_create(path, "x")
    assert info.value.exit_code == 2 and info.value.__cause__ is not None
    assert path.read_text() == "{not json"


def test_an_unwritable_identity_file_is_an_identity_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(IdentityError, match="cannot write the identity file") as info:
        Identity.generate("a").save(blocker / "a.json")
    assert isinstance(info.value.__cause__, OSError)


def test_signing_text_with_a_lone_surrogate_works_like_javascript() -> None:
    ident = Identity.generate("a")
    from agentctl_swarm.chat.identity import verify_signature

    sig = ident.sign("x \ud83d")
    assert verify_signature(ident.public_pem, "x \ufffd", sig)  # what a JS peer signed


def test_inbox_keeps_lines_when_the_disk_refuses(tmp_path: Path, caplog) -> None:
    (tmp_path / "inbox").write_text("a file where the directory should be")
    inbox = Inbox(tmp_path / "inbox")
    line = inbox_line({"type": "MSG", "to": "#a", "from": "@b", "content": "hi", "ts": 5})
    assert line is not None
    with caplog.at_level(logging.WARNING, logger="agentctl.chat.mcp"):
        inbox.append(line)
        inbox.save_cursor(Cursor(ts=5))
    assert list(inbox.lines) == [line]
    events = {r.getMessage() for r in caplog.records}
    assert {"inbox.write_failed", "inbox.cursor_write_failed"} <= events


def test_inbox_lines_with_unicode_line_separators_survive_a_reload(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path)
    for n, text in enumerate(["a\u2028b", "c\x85d", "e\u2029f"]):
        inbox.append(inbox_line({"type": "MSG", "to": "#a", "content": text, "ts": n}) or {})
    assert [ln["content"] for ln in Inbox(tmp_path).lines] == ["a\u2028b", "c\x85d", "e\u2029f"]


def test_inbox_lines_take_only_well_typed_fields() -> None:
    line = inbox_line(
        {"type": "MSG", "to": [], "from": {}, "content": 5, "msg_id": 7, "ts": "x"}, now_ms=99
    )
    assert line == {"type": "MSG", "ts": 99}


async def test_mcp_pump_outlives_a_frame_it_cannot_keep(tmp_path: Path) -> None:
    from agentctl_swarm.chat.mcp_server import AgentChatMcp
    from agentctl_swarm.config import AgentChatSettings

    state = AgentChatMcp(AgentChatSettings(), tmp_path)
    kept: list[dict] = []

    def append(line: dict) -> None:
        if not kept and line.get("content") == "first":
            kept.append({})
            raise RuntimeError("disk on fire")
        kept.append(line)

    state.inbox.append = append  # type: ignore[method-assign]

    async def frames():
        for text in ("first", "second"):
            yield {"type": "MSG", "to": "#a", "from": "@b", "content": text, "ts": 1}

    await state._pump_frames(frames())  # type: ignore[arg-type]
    assert [ln.get("content") for ln in kept[1:]] == ["second"]
    assert state._new_data.is_set()
