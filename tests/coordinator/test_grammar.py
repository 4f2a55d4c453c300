"""The coordination grammar: every kind's example line, round trips (property-tested),
upstream styles, and garbage that must parse to "not a message" without raising."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentctl_swarm.coordinator import grammar as g

# --------------------------------------------------------------------------- examples

EXAMPLES: list[tuple[str, g.Message]] = [
    (
        "TASK id=t-3f9a role=builder priority=5 timeout=1800 retries=2 -- Add a section on X to README.md",
        g.Task(id="t-3f9a", role="builder", priority=5, timeout=1800, retries=2,
               text="Add a section on X to README.md"),
    ),
    ("TASK role=builder -- fix the bug", g.Task(role="builder", text="fix the bug")),
    (
        "TASK id=t-1 role=builder repo=demo branch=swarm/x -- do it",
        g.Task(id="t-1", role="builder", repo="demo", branch="swarm/x", text="do it"),
    ),
    (
        "CLAIM id=t-3f9a agent=swarm-builder-001 role=builder",
        g.Claim(id="t-3f9a", agent="swarm-builder-001", role="builder"),
    ),
    (
        "ASSIGN id=t-3f9a agent=swarm-builder-001 attempt=1",
        g.Assign(id="t-3f9a", agent="swarm-builder-001", attempt=1),
    ),
    (
        'REJECTED id=t-3f9a agent=swarm-builder-000 reason="assigned to swarm-builder-001"',
        g.Rejected(id="t-3f9a", agent="swarm-builder-000", reason="assigned to swarm-builder-001"),
    ),
    (
        'REJECTED id=t-3f9a agent=swarm-builder-000,swarm-builder-002 reason="assigned to swarm-builder-001"',
        g.Rejected(id="t-3f9a", agent="swarm-builder-000,swarm-builder-002",
                   reason="assigned to swarm-builder-001"),
    ),
    (
        "UNCLAIM id=t-3f9a agent=swarm-builder-001 reason=no-slot",
        g.Unclaim(id="t-3f9a", agent="swarm-builder-001", reason="no-slot"),
    ),
    (
        "STATUS id=t-3f9a agent=swarm-builder-001 -- editing README.md",
        g.Status(id="t-3f9a", agent="swarm-builder-001", text="editing README.md"),
    ),
    (
        "DONE id=t-3f9a agent=swarm-builder-001 tokens_in=1200 tokens_out=340 cost_usd=0.0123 -- added the section",
        g.Done(id="t-3f9a", agent="swarm-builder-001", tokens_in=1200, tokens_out=340,
               cost_usd=0.0123, text="added the section"),
    ),
    (
        "FAIL id=t-3f9a agent=swarm-builder-001 reason=crash -- claude exited with signal 9",
        g.Fail(id="t-3f9a", agent="swarm-builder-001", reason="crash",
               text="claude exited with signal 9"),
    ),
    (
        "BLOCKED id=t-3f9a agent=swarm-builder-001 reason=auth -- 401 from the API",
        g.Blocked(id="t-3f9a", agent="swarm-builder-001", reason="auth", text="401 from the API"),
    ),
    (
        "HEARTBEAT agent=swarm-builder-001 role=builder state=active id=t-3f9a",
        g.Heartbeat(agent="swarm-builder-001", role="builder", state="active", id="t-3f9a"),
    ),
    (
        "HEARTBEAT agent=swarm-builder-001 role=builder state=idle",
        g.Heartbeat(agent="swarm-builder-001", role="builder", state="idle"),
    ),
    (
        "QUOTA id=t-3f9a agent=swarm-builder-001 retry_after=60.0",
        g.Quota(id="t-3f9a", agent="swarm-builder-001", retry_after=60.0),
    ),
    ("PROBE id=p-1 agent=swarm-builder-002", g.Probe(id="p-1", agent="swarm-builder-002")),
    (
        'CANCEL id=t-3f9a agent=swarm-builder-001 reason="cancelled by alice"',
        g.Cancel(id="t-3f9a", agent="swarm-builder-001", reason="cancelled by alice"),
    ),
    ("CANCEL id=t-3f9a", g.Cancel(id="t-3f9a")),
    ("RETRY id=t-3f9a", g.Retry(id="t-3f9a")),
    ("RETRY agent=swarm-builder-001", g.Retry(agent="swarm-builder-001")),
]  # fmt: skip


@pytest.mark.parametrize(("line", "msg"), EXAMPLES, ids=[e[1].KIND for e in EXAMPLES])
def test_example_lines_parse_and_format_exactly(line: str, msg: g.Message) -> None:
    assert g.parse_line(line) == msg
    assert g.format_line(msg) == line


def test_every_kind_has_an_example() -> None:
    assert {m.KIND for _, m in EXAMPLES} == set(g.KINDS)


def test_quoting_and_escapes_in_values_and_text() -> None:
    msg = g.Fail(
        id="t-1",
        agent="a",
        reason='say "hi" = \\ ok\nnext',
        text="line one\nline two\\n (literal) \r end",
    )
    line = g.format_line(msg)
    assert "\n" not in line and "\r" not in line
    assert line.startswith('FAIL id=t-1 agent=a reason="say \\"hi\\" = \\\\ ok\\nnext" -- ')
    assert g.parse_line(line) == msg


def test_one_chat_message_carries_several_lines_and_skips_chatter() -> None:
    content = "ASSIGN id=t-1 agent=a attempt=1\nhello there\nREJECTED id=t-1 agent=b,c reason=x"
    msgs = g.parse_message(content)
    assert [type(m) for m in msgs] == [g.Assign, g.Rejected]
    assert msgs[1].agents == ("b", "c")  # type: ignore[attr-defined]


def test_merge_rejections_folds_same_task_and_reason() -> None:
    msgs = [
        g.Assign(id="t-1", agent="a"),
        g.Rejected(id="t-1", agent="b", reason="assigned to a"),
        g.Rejected(id="t-1", agent="c", reason="assigned to a"),
        g.Rejected(id="t-2", agent="b", reason="assigned to a"),
        g.Rejected(id="t-1", agent="b", reason="assigned to a"),
    ]
    out = g.merge_rejections(msgs)
    assert [g.format_line(m) for m in out] == [
        "ASSIGN id=t-1 agent=a",
        'REJECTED id=t-1 agent=b,c reason="assigned to a"',
        'REJECTED id=t-2 agent=b reason="assigned to a"',
    ]


def test_unknown_fields_are_kept_for_newer_peers() -> None:
    msg = g.parse_line('DONE id=t-1 agent=a model=opus note="two words" -- ok')
    assert msg == g.Done(id="t-1", agent="a", text="ok",
                         extra=(("model", "opus"), ("note", "two words")))  # fmt: skip
    assert g.parse_line(g.format_line(msg)) == msg


def test_people_may_type_lowercase_keywords_and_leave_out_the_dashes() -> None:
    assert g.parse_line("task role=builder fix the C:\\temp bug") == g.Task(
        role="builder", text="fix the C:\\temp bug"
    )
    assert g.parse_line("  cancel id=t-9") == g.Cancel(id="t-9")
    assert g.parse_line("TASK -- just do it") == g.Task(text="just do it")


# --------------------------------------------------------------------------- upstream styles


def test_container_skill_colon_style() -> None:
    assert g.parse_line("CLAIM: fix flaky test") == g.Claim(text="fix flaky test")
    assert g.parse_line("TASK: write the docs") == g.Task(text="write the docs")
    assert g.parse_line("SITREP: halfway") is None  # no task id to report on
    assert g.parse_line("DONE: something") is None  # no id: nothing to mark done


def test_js_swarm_json_strings() -> None:
    claim = json.dumps({"type": "CLAIM", "agentId": "alice", "component": "api", "role": "builder"})
    assert g.parse_line(claim) == g.Claim(agent="alice", role="builder", text="api")
    avail = json.dumps(
        {"type": "TASK_AVAILABLE",
         "task": {"role": "builder", "component": "api", "prompt": "build it", "id": "t-7"}}
    )  # fmt: skip
    assert g.parse_line(avail) == g.Task(
        id="t-7", role="builder", text="build it", extra=(("component", "api"),)
    )
    assign = json.dumps({"type": "ASSIGN", "agentId": "alice", "task": {"id": "t-7"}})
    assert g.parse_line(assign) == g.Assign(id="t-7", agent="alice")
    done = json.dumps({"type": "TASK_DONE", "agentId": "alice", "task": {"id": "t-7"},
                       "success": True})  # fmt: skip
    assert g.parse_line(done) == g.Done(id="t-7", agent="alice")
    fail = json.dumps({"type": "TASK_FAIL", "agentId": "alice", "task": "t-7", "error": "boom"})
    assert g.parse_line(fail) == g.Fail(id="t-7", agent="alice", reason="error", text="boom")
    assert g.parse_line(json.dumps({"type": "heartbeat"})) is None
    assert g.parse_line(json.dumps({"type": "TASK_DONE", "agentId": "a b", "task": "t"})) is None


# --------------------------------------------------------------------------- garbage


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "Done, thanks!",
        "task list looks good",
        "done -- with lunch",
        "TASK",
        "TASKS are piling up",
        "CLAIM",
        "DONE id=",
        "DONE id=t-1 tokens_in=abc",
        "DONE id=t-1 tokens_in=-5",
        "DONE id=t-1 cost_usd=nan",
        "DONE id=t-1 cost_usd=inf",
        'DONE id=t-1 agent="unterminated',
        'DONE id=t-1 agent="a"b',
        'DONE id=t-1 agent=a"b',
        "DONE id=bad/id",
        "ASSIGN id=t-1",
        "CLAIM id=t-1 agent=a,b",
        "HEARTBEAT agent=a state=not/valid",
        "PROBE id=p-1",
        "{not json",
        "[1,2,3]",
        '{"type": 5}',
        '{"type":"CLAIM","agentId":"x"}',
        "@@cb:5s@@ping",
        "\x00\x01\x02 DONE",
        "DONE id=t-1 tokens_in=99999999999999999999999",
    ],
)
def test_garbage_is_not_a_message(line: str) -> None:
    assert g.parse_line(line) is None


def test_malformed_lines_are_explained_chatter_is_not() -> None:
    assert g.explain_line("DONE id=t-1 tokens_in=abc") == (
        None,
        "tokens_in='abc': not a whole number",
    )
    assert g.explain_line("Done, thanks!") == (None, None)
    assert g.explain_line(None) == (None, None)
    assert g.parse_message(None) == []


def test_huge_inputs_are_skipped_fast() -> None:
    assert g.parse_line("TASK -- " + "x" * (g.MAX_LINE_CHARS + 1)) is None
    big = g.parse_line("TASK -- " + "y" * 500_000)
    assert isinstance(big, g.Task) and len(big.text) == 500_000
    many = "\n".join(["CANCEL id=t-1"] * (g.MAX_LINES + 50))
    assert len(g.parse_message(many)) == g.MAX_LINES
    deep = "[" * 100_000
    assert g.parse_line(deep) is None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_text_never_raises(text: str) -> None:
    for msg in g.parse_message(text):
        assert g.parse_line(g.format_line(msg)) == msg


@settings(max_examples=200)
@given(st.sampled_from(sorted(g.KINDS)), st.text(max_size=80))
def test_keyword_plus_any_text_never_raises(kind: str, rest: str) -> None:
    msg = g.parse_line(f"{kind} {rest}")
    if msg is not None:
        assert g.parse_line(g.format_line(msg)) == msg


def test_formatter_refuses_invalid_messages() -> None:
    with pytest.raises(ValueError, match="needs id"):
        g.format_line(g.Done(agent="a"))
    with pytest.raises(ValueError, match="ids are"):
        g.format_line(g.Done(id="bad id"))
    with pytest.raises(ValueError, match="finite"):
        g.format_line(g.Done(id="t", cost_usd=float("nan")))
    with pytest.raises(ValueError, match="only REJECTED"):
        g.format_line(g.Claim(id="t", agent="a,b"))
    with pytest.raises(ValueError, match="field name"):
        g.format_line(g.Done(id="t", extra=(("Bad Key", "x"),)))


# --------------------------------------------------------------------------- round trip

_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,15}", fullmatch=True)
_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", fullmatch=True)
_values = st.text(max_size=30)
_texts = st.text(max_size=60)
_counts = st.integers(min_value=0, max_value=10**17)
_money = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
_keys = st.from_regex(r"[a-z_][a-z0-9_.-]{0,10}", fullmatch=True)

_FIELD_STRATEGIES = {
    "id": _ids,
    "agent": _names,
    "role": _names,
    "state": _names,
    "reason": _values,
    "repo": _values,
    "branch": _values,
    "priority": st.integers(min_value=-(10**17), max_value=10**17),
    "timeout": _counts,
    "retries": _counts,
    "attempt": _counts,
    "tokens_in": _counts,
    "tokens_out": _counts,
    "cost_usd": _money,
    "retry_after": _money,
}


@st.composite
def messages(draw: st.DrawFn) -> g.Message:
    cls = draw(st.sampled_from(sorted(g.KINDS.values(), key=lambda c: c.KIND)))
    known = g._FIELDS[cls]
    kwargs = {name: draw(st.none() | _FIELD_STRATEGIES[name]) for name in sorted(known)}
    if cls is g.Rejected and kwargs.get("agent") and draw(st.booleans()):
        kwargs["agent"] = kwargs["agent"] + "," + draw(_names)
    extra = draw(st.lists(st.tuples(_keys.filter(lambda k: k not in known), _values), max_size=3))
    msg = cls(text=draw(_texts), extra=tuple(extra), **kwargs)
    try:
        g.format_line(msg)
    except ValueError:
        from hypothesis import assume

        assume(False)
    return msg


@settings(max_examples=600, suppress_health_check=[HealthCheck.filter_too_much])
@given(messages())
def test_round_trip_every_kind(msg: g.Message) -> None:
    line = g.format_line(msg)
    assert "\n" not in line
    assert g.parse_line(line) == msg
    # and as part of a multi-line chat message
    assert g.parse_message(f"chatter\n{line}\n{line}") == [msg, msg]
