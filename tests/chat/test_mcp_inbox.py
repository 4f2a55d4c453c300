"""Pure tests of agentchat-mcp's inbox: line shapes, cursor, listen selection, the ring."""

from __future__ import annotations

import json
from pathlib import Path

from agentctl_swarm.chat.inbox import Cursor, Inbox, inbox_line, select_new

ME = "@aaaaaaaaaaaaaaaa"
BOB = "@bbbbbbbbbbbbbbbb"


def msg(
    ts: int, content: str = "x", *, frm: str = BOB, to: str = "#general", mid: str = ""
) -> dict:
    return {
        "type": "MSG",
        "ts": ts,
        "from": frm,
        "from_name": "bob",
        "to": to,
        "content": content,
        "msg_id": mid or f"{ts}-{content}",
        "verified": False,
    }


def test_msg_line_keeps_msg_id_and_reply_but_not_verified() -> None:
    line = inbox_line({**msg(5, "hi"), "in_reply_to": "1-a", "sig": "zz"})
    assert line == {
        "type": "MSG",
        "msg_id": "5-hi",
        "from": BOB,
        "from_name": "bob",
        "to": "#general",
        "content": "hi",
        "ts": 5,
        "in_reply_to": "1-a",
    }


def test_events_become_event_lines_and_noise_is_dropped() -> None:
    assert inbox_line({"type": "PROPOSAL", "id": "prop_1", "ts": 3})["event"] == "PROPOSAL"
    assert inbox_line({"type": "PONG", "ts": 1}) is None
    assert inbox_line({"type": "JOINED", "channel": "#x"}) is None


def test_select_skips_own_server_and_other_channels_and_shows_msg_id() -> None:
    lines = [
        inbox_line(msg(1, "mine", frm=ME)),
        inbox_line(msg(2, "notice", frm="@server")),
        inbox_line(msg(3, "elsewhere", to="#other")),
        inbox_line(msg(4, "yes")),
    ]
    got = select_new(lines, Cursor(), ["#general"], ME)
    assert [shown["content"] for _, shown in got] == ["yes"]
    assert got[0][1]["msg_id"] == "4-yes"


def test_cursor_same_millisecond_neither_lost_nor_repeated() -> None:
    a, b = inbox_line(msg(7, "a")), inbox_line(msg(7, "b"))
    cur = Cursor()
    first = select_new([a], cur, ["#general"], ME)
    cur.advance(line for line, _ in first)
    got = select_new([a, b], cur, ["#general"], ME)
    assert [s["content"] for _, s in got] == ["b"]
    cur.advance(line for line, _ in got)
    assert select_new([a, b], cur, ["#general"], ME) == []
    assert Cursor.from_json(json.loads(json.dumps(cur.to_json()))) == cur


def test_select_caps_count_and_bytes_and_truncates_a_giant() -> None:
    lines = [inbox_line(msg(i, f"m{i}")) for i in range(1, 80)]
    assert len(select_new(lines, Cursor(), ["#general"], ME, limit=50)) == 50
    big = [inbox_line(msg(1, "x" * 5000)), inbox_line(msg(2, "y" * 5000))]
    got = select_new(big, Cursor(), ["#general"], ME, max_bytes=6000)
    assert len(got) == 1
    huge = select_new(big, Cursor(), ["#general"], ME, max_bytes=1000)
    assert huge[0][1]["truncated"] is True and len(huge[0][1]["content"]) == 500


def test_proposal_to_me_wakes_listen_but_my_own_echo_does_not() -> None:
    to_me = inbox_line({"type": "PROPOSAL", "id": "p1", "from": BOB, "to": ME, "ts": 9})
    mine = inbox_line({"type": "PROPOSAL", "id": "p2", "from": ME, "to": BOB, "ts": 9})
    got = select_new([to_me, mine], Cursor(), ["#general"], ME)
    assert [s["id"] for _, s in got] == ["p1"]


def test_inbox_ring_file_and_cursor_roundtrip(tmp_path: Path) -> None:
    box = Inbox(tmp_path / "d", ring=10)
    for i in range(30):
        box.append(inbox_line(msg(i, f"m{i}")))
    file_lines = (tmp_path / "d" / "inbox.jsonl").read_text().splitlines()
    assert len(file_lines) <= 12
    assert json.loads(file_lines[-1])["content"] == "m29"
    again = Inbox(tmp_path / "d", ring=10)
    assert [ln["content"] for ln in again.lines][-1] == "m29"
    assert len(again.lines) == 10
    assert again.load_cursor() is None
    again.save_cursor(Cursor(ts=5, ids={"5-m5"}))
    assert Inbox(tmp_path / "d").load_cursor() == Cursor(ts=5, ids={"5-m5"})


def test_inbox_survives_garbage_lines(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "inbox.jsonl").write_text('not json\n[1]\n{"type":"MSG","ts":1}\n')
    assert list(Inbox(d).lines) == [{"type": "MSG", "ts": 1}]
