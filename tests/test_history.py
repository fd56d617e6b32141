"""Stored turns -> Messages API requests (`vigil/model/history.py`) and the history window (`actors/engine/window.py`).

Whatever happened to a turn (stopped, failed, cut by a crash between a tool_use and its result),
the request built from it must be one the API accepts. "Accepts" is decided by the Messages API
stand-in's own validator (`validate_request`), the same rules the end-to-end tests run against.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.standins.messages_api import validate_request
from vigil.actors.engine.window import SLIDE_TO, HistoryWindow
from vigil.model.history import (
    INTERRUPTED_RESULT,
    estimate_tokens,
    input_text,
    join,
    normalize,
    normalized_turn,
    turn_messages,
    with_cache_point,
)
from vigil.records.schema import Input, Message, SessionHeader, Target, Turn, TurnKind
from vigil.store.store import LmdbStore

Msg = dict[str, Any]
TOOLS = [{"name": "bash", "description": "run a command", "input_schema": {"type": "object"}}]
NEXT: Msg = {"role": "user", "content": [{"type": "text", "text": "and now?"}]}


def refusal(history: list[Msg]) -> str | None:
    """What the API would say to `history` followed by the next user message (None: accepted)."""
    return validate_request({"model": "claude-sonnet-5-5", "max_tokens": 10, "tools": TOOLS,
                             "messages": join([history, [NEXT]])})


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def use(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": "bash", "input": {"command": "ls"}}


def result(tool_id: str, content: str = "ok") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": content}


def interrupted(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": INTERRUPTED_RESULT, "is_error": True}


def user(*blocks: dict[str, Any]) -> Msg:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict[str, Any]) -> Msg:
    return {"role": "assistant", "content": list(blocks)}


def make_turn(seq: int, said: str = "hello", messages: tuple[Message, ...] | None = None, **fields: Any) -> Turn:
    if messages is None:
        messages = (Message(role="assistant", content=(text(f"answer {seq}"),)),)
    return Turn(seq=seq, started_at=float(seq), status=fields.pop("status", "done"),
                inputs=(Input(text=said, at=float(seq), user_id=42, user_name="Ann"),), messages=messages, **fields)


# ----------------------------------------------------------------------------- the validator itself


def test_the_validator_refuses_what_normalize_must_repair() -> None:
    # If these were accepted, the tests below could not fail.
    assert refusal([user(text("hi")), assistant(use("a"))]) is not None
    assert refusal([user(result("a"), text("hi"))]) is not None
    assert refusal([user(text(" "))]) is not None
    assert refusal([assistant(text("hi"))]) is not None
    assert refusal([user(text("hi")), assistant(use("a")), user(text("x"), result("a"))]) is not None
    assert refusal([user(text("hi")), assistant(text("a")), assistant(text("b"))]) is not None
    assert refusal([user(text("hi")), assistant(text("a"))]) is None


# ----------------------------------------------------------------------------- normalize


def test_a_dangling_tool_use_gets_an_interrupted_result() -> None:
    out = normalize([user(text("list files")), assistant(text("Sure."), use("toolu_1"))])
    assert out == [user(text("list files")), assistant(text("Sure."), use("toolu_1")),
                   user(interrupted("toolu_1"))]
    assert refusal(out) is None


def test_a_tool_use_followed_by_an_assistant_message_is_still_answered() -> None:
    # The two assistant messages merge first; the tool_use is then the merged message's dangling one.
    out = normalize([user(text("go")), assistant(use("a")), assistant(text("done"))])
    assert out == [user(text("go")), assistant(use("a"), text("done")), user(interrupted("a"))]
    assert refusal(out) is None


def test_missing_results_are_filled_in_tool_use_order_before_other_content() -> None:
    out = normalize([user(text("go")), assistant(use("a"), use("b"), use("c")),
                     user(text("also this"), result("b", "B"))])
    assert out[2] == user(interrupted("a"), result("b", "B"), interrupted("c"), text("also this"))
    assert refusal(out) is None


def test_orphan_and_duplicate_tool_results_are_dropped() -> None:
    out = normalize([user(result("ghost"), text("hi")), assistant(use("a")),
                     user(result("a", "first"), result("a", "second"), result("b"))])
    assert out == [user(text("hi")), assistant(use("a")), user(result("a", "first"))]
    assert refusal(out) is None


def test_a_message_of_only_orphan_results_disappears() -> None:
    out = normalize([user(text("hi")), assistant(text("hello")), user(result("nobody")), assistant(text("more"))])
    assert out == [user(text("hi")), assistant(text("hello"), text("more"))]
    assert refusal(out) is None


def test_empty_and_whitespace_text_is_dropped() -> None:
    out = normalize([user(text(""), text("hi"), text(" \n\t")), {"role": "assistant", "content": "   "},
                     assistant(text(""), text("answer")), {"role": "user", "content": "plain string"}])
    assert out == [user(text("hi")), assistant(text("answer")), user(text("plain string"))]
    assert refusal(out) is None


def test_same_role_neighbours_merge_with_tool_results_first() -> None:
    out = normalize([user(text("a")), user(text("b")), assistant(use("t1")), user(text("c")),
                     user(result("t1")), assistant(text("x")), assistant(text("y"))])
    assert out == [user(text("a"), text("b")), assistant(use("t1")), user(result("t1"), text("c")),
                   assistant(text("x"), text("y"))]
    assert refusal(out) is None


def test_leading_assistant_and_leading_results_are_dropped() -> None:
    assert normalize([assistant(text("I start")), user(text("hi"))]) == [user(text("hi"))]
    out = normalize([assistant(use("a")), user(result("a"), text("hi")), assistant(text("yo"))])
    assert out == [user(text("hi")), assistant(text("yo"))]
    assert normalize([assistant(use("a")), user(result("a"))]) == []
    assert normalize([]) == []


def test_a_repeated_tool_use_id_is_dropped() -> None:
    out = normalize([user(text("go")), assistant(use("a")), user(result("a")), assistant(use("a"), text("again"))])
    assert out == [user(text("go")), assistant(use("a")), user(result("a")), assistant(text("again"))]
    assert refusal(out) is None


def test_normalize_does_not_change_its_input() -> None:
    given_messages = [user(text("go"), text(" ")), user(text("more")), assistant(use("a"))]
    before = copy.deepcopy(given_messages)
    normalize(given_messages)
    assert given_messages == before


# ----------------------------------------------------------------------------- turns


def test_turn_messages_of_a_done_turn() -> None:
    t = make_turn(0, said="hi", messages=(Message(role="assistant", content=(use("a"),)),
                                          Message(role="user", content=(result("a"),)),
                                          Message(role="assistant", content=(text("done"),))))
    assert turn_messages(t) == [user(text("hi")), assistant(use("a")), user(result("a")), assistant(text("done"))]


@pytest.mark.parametrize(("status", "note"), [
    ("stopped", "[reply stopped by the user]"),
    ("failed", "[reply failed]"),
    ("interrupted", "[reply interrupted by a restart]"),
])
def test_a_cut_turn_ends_with_an_assistant_note(status: str, note: str) -> None:
    t = make_turn(0, said="write a poem", status=status,
                  messages=(Message(role="assistant", content=(text("Roses are"),)),))
    messages = turn_messages(t)
    assert messages[-1] == assistant(text(note))
    out = normalize(messages)
    assert out == [user(text("write a poem")), assistant(text("Roses are"), text(note))]
    assert refusal(out) is None


def test_a_turn_cut_before_any_answer_still_alternates() -> None:
    out = normalize(turn_messages(make_turn(0, said="hello?", status="failed", messages=())))
    assert out == [user(text("hello?")), assistant(text("[reply failed]"))]
    assert normalize(turn_messages(make_turn(0, said="hello?", status="open", messages=()))) == [user(text("hello?"))]


def test_a_turn_cut_between_tool_use_and_result() -> None:
    t = make_turn(0, said="ls", status="interrupted", messages=(Message(role="assistant", content=(use("a"),)),))
    out = normalize(turn_messages(t))
    assert out == [user(text("ls")), assistant(use("a"), text("[reply interrupted by a restart]")),
                   user(interrupted("a"))]
    assert refusal(out) is None


def test_heartbeat_turns_only_when_they_said_something() -> None:
    silent = Turn(seq=3, kind="heartbeat", started_at=3.0, prompt="check in?", reply="  ",
                  messages=(Message(role="assistant", content=(use("send"),)),))
    assert turn_messages(silent) == []
    spoke = Turn(seq=4, kind="heartbeat", started_at=4.0, prompt="check in?", reply="Don't forget the dentist.",
                 messages=(Message(role="assistant", content=(use("send"),)),))
    assert turn_messages(spoke) == [user(text("check in?")), assistant(text("Don't forget the dentist."))]
    no_prompt = Turn(seq=5, kind="heartbeat", started_at=5.0, reply="Hi!")
    assert turn_messages(no_prompt)[0] == user(text("(scheduled check-in)"))
    assert input_text(spoke, group=True) == "check in?"


def test_input_text_names_senders_in_groups() -> None:
    t = Turn(seq=0, started_at=0.0, inputs=(Input(text="hi", at=0.0, user_id=1, user_name="Ann"),
                                            Input(text="yo", at=1.0, user_id=2)))
    assert input_text(t, group=False) == "hi\n\nyo"
    assert input_text(t, group=True) == "[Ann] hi\n\n[2] yo"
    assert turn_messages(t, group=True)[0] == user(text("[Ann] hi\n\n[2] yo"))


# ----------------------------------------------------------------------------- join, tokens, cache points


def test_join_merges_the_joint_without_changing_the_parts() -> None:
    first = [user(text("a")), assistant(use("x")), user(interrupted("x"))]
    second = [user(text("b")), assistant(text("c"))]
    parts = copy.deepcopy([first, [], second])
    joined = join(parts)
    assert joined == [user(text("a")), assistant(use("x")), user(interrupted("x"), text("b")), assistant(text("c"))]
    assert parts == [first, [], second]
    assert refusal(joined) is None
    assert join([]) == []


def test_estimate_tokens() -> None:
    assert estimate_tokens([]) == 4
    assert estimate_tokens([user(text("x" * 350))]) == 104
    block = use("a")
    assert estimate_tokens([assistant(block)]) == int(len(json.dumps(block, ensure_ascii=False)) / 3.5) + 4
    assert estimate_tokens([user(text("é" * 35))]) == 14  # characters, not bytes


def test_with_cache_point_copies_and_marks_the_last_block() -> None:
    message = user(result("a"), text("hi"))
    marked = with_cache_point(message)
    assert marked["content"][-1] == {**text("hi"), "cache_control": {"type": "ephemeral"}}
    assert marked["content"][0] == result("a")
    assert message == user(result("a"), text("hi")), "the original is unchanged"
    history = [user(text("go")), assistant(use("a")), marked]
    assert refusal(history) is None


# ----------------------------------------------------------------------------- properties

_IDS = st.sampled_from(["a", "b", "toolu_01", "x-y_z"])
_TEXTS = st.one_of(st.sampled_from(["", " ", "\n\t ", "ok", " padded ", "Grüße 👋"]), st.text(max_size=12))
_ASSISTANT_BLOCKS = st.one_of(_TEXTS.map(text), _IDS.map(use))
_USER_BLOCKS = st.one_of(_TEXTS.map(text), st.tuples(_IDS, _TEXTS).map(lambda r: result(r[0], r[1] or "-")))


@st.composite
def _api_messages(draw: st.DrawFn) -> Msg:
    if draw(st.booleans()):
        return {"role": "assistant", "content": draw(st.lists(_ASSISTANT_BLOCKS, max_size=4))}
    if draw(st.integers(0, 5)) == 0:
        return {"role": "user", "content": draw(_TEXTS)}
    return {"role": "user", "content": draw(st.lists(_USER_BLOCKS, max_size=4))}


def _stored(message: Msg) -> Message:
    content = message["content"]
    return Message(role=message["role"], content=tuple([text(content)] if isinstance(content, str) else content))


@st.composite
def _turns(draw: st.DrawFn, seq: int) -> Turn:
    """Any stored turn; its tool ids are its own (the API's ids are unique across a conversation)."""
    messages = tuple(_stored(m) for m in draw(st.lists(_api_messages(), max_size=6)))

    def own(block: dict[str, Any]) -> dict[str, Any]:
        if block.get("type") == "tool_use":
            return {**block, "id": f"t{seq}_{block['id']}"}
        if block.get("type") == "tool_result":
            return {**block, "tool_use_id": f"t{seq}_{block['tool_use_id']}"}
        return block

    messages = tuple(Message(role=m.role, content=tuple(own(b) for b in m.content)) for m in messages)
    kind: TurnKind = draw(st.sampled_from(["user", "user", "heartbeat"]))
    inputs = tuple(Input(text=t, at=0.0, user_id=draw(st.integers(0, 3)), user_name=draw(st.sampled_from(["", "Ann"])))
                   for t in draw(st.lists(_TEXTS, max_size=3)))
    return Turn(seq=seq, kind=kind, status=draw(st.sampled_from(["open", "done", "stopped", "failed", "interrupted"])),
                started_at=float(seq), inputs=inputs, prompt=draw(_TEXTS), reply=draw(_TEXTS), messages=messages)


@st.composite
def _histories(draw: st.DrawFn) -> list[Turn]:
    return [draw(_turns(seq)) for seq in range(draw(st.integers(0, 6)))]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_api_messages(), max_size=10))
def test_normalize_makes_any_message_sequence_valid(messages: list[Msg]) -> None:
    out = normalize(messages)
    assert refusal(out) is None
    assert normalize(out) == out, "normalizing twice changes nothing"


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(_histories(), st.booleans())
def test_joined_turns_are_always_a_valid_request(turns: list[Turn], group: bool) -> None:
    history = join(normalize(turn_messages(t, group)) for t in turns)
    assert refusal(history) is None


def test_tool_ids_repeated_across_turns() -> None:
    # Within a turn a repeated tool_use id is dropped; across turns nothing removes it, and the API refuses
    # the request. Real ids (toolu_ + 24 random characters) never repeat, so this only pins the behaviour.
    first = make_turn(0, messages=(Message(role="assistant", content=(use("a"),)),
                                   Message(role="user", content=(result("a"),))))
    second = make_turn(1, messages=(Message(role="assistant", content=(use("a"),)),
                                    Message(role="user", content=(result("a"),))))
    history = join(normalize(turn_messages(t)) for t in (first, second))
    assert refusal(history) is not None
    assert "must be unique" in (refusal(history) or "")


# ----------------------------------------------------------------------------- the window


def sized_turn(seq: int, chars: int) -> Turn:
    return make_turn(seq, said="q" * chars, messages=(Message(role="assistant", content=(text(f"a{seq}"),)),))


def test_window_slides_in_steps_and_stays_under_budget() -> None:
    budget = 2000
    window = HistoryWindow(generation=1, start=0, group=False)
    moves: list[int] = []
    starts: list[int] = []
    for seq in range(200):
        window.add(sized_turn(seq, 700))  # ~200 tokens a turn
        before = window.start
        moved = window.slide(budget)
        assert window.tokens <= budget
        assert moved == (window.start != before)
        if moved:
            moves.append(seq)
            assert window.tokens <= int(budget * SLIDE_TO)
        starts.append(window.start)
        assert refusal(window.messages()) is None
    assert window.upto == 200
    # Each move drops the window to 60% of the budget, so it then stays put for several turns.
    gaps = [b - a for a, b in itertools.pairwise(moves)]
    assert len(moves) >= 10
    assert min(gaps) >= 3
    assert len(set(starts)) == len(moves) + 1
    assert window.messages()[0] == user(text("q" * 700))
    assert window.start == int(window.messages()[1]["content"][0]["text"][1:])


def test_window_under_budget_never_moves() -> None:
    window = HistoryWindow(generation=1, start=5, group=False)
    for seq in range(5, 15):
        window.add(sized_turn(seq, 10))
        assert window.slide(100_000) is False
    assert window.start == 5
    assert window.upto == 15
    assert window.tokens == sum(estimate_tokens(normalize(turn_messages(sized_turn(s, 10)))) for s in range(5, 15))


def test_a_turn_larger_than_the_budget_empties_the_window() -> None:
    window = HistoryWindow(generation=1, start=0, group=False)
    window.add(sized_turn(0, 10))
    window.add(sized_turn(1, 10_000))
    assert window.slide(1000) is True
    assert window.messages() == []
    assert window.tokens == 0
    assert window.start == window.upto == 2


def test_window_from_the_store_matches_the_incremental_one(store: LmdbStore, tmp_path: Path) -> None:
    h = SessionHeader(key="tg:1", incarnation=1, created_at=0.0, target=Target(channel="telegram", chat_id=1),
                      cwd=str(tmp_path), model="claude-sonnet-5-5")
    store.commit(h, create=True).result(timeout=10)
    incremental = HistoryWindow(generation=1, start=0, group=True)
    turns = [make_turn(0, said="hi"),
             make_turn(1, said="ls", status="interrupted",
                       messages=(Message(role="assistant", content=(use("toolu_1"),)),)),
             make_turn(2, said="again", status="stopped", messages=()),
             Turn(seq=3, kind="heartbeat", started_at=3.0, prompt="beat", reply=""),
             make_turn(4, said="bye")]
    for t in turns:
        store.commit(h, turn=t).result(timeout=10)
        incremental.add(t)
    loaded = HistoryWindow.load(store, "tg:1", 1, 0, 5, group=True)
    assert loaded.matches(1, 0, 5, True)
    assert not loaded.matches(1, 0, 5, False)
    assert loaded.messages() == incremental.messages()
    assert loaded.tokens == incremental.tokens
    assert refusal(loaded.messages()) is None
    tail = HistoryWindow.load(store, "tg:1", 1, 2, 5, group=True)
    assert tail.messages()[0] == user(text("[Ann] again"))
    assert refusal(tail.messages()) is None
    empty = HistoryWindow.load(store, "tg:1", 1, 5, 7, group=True)
    assert (empty.messages(), empty.upto) == ([], 7)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(_histories(), st.integers(min_value=50, max_value=400))
def test_any_window_after_sliding_is_valid_and_under_budget(turns: list[Turn], budget: int) -> None:
    window = HistoryWindow(generation=1, start=0, group=False)
    for t in turns:
        window.add(t)
        window.slide(budget)
        assert window.tokens <= budget
        history = window.messages()
        if history:
            history[-1] = with_cache_point(history[-1])
        assert refusal(history) is None


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(_histories(), st.booleans(), st.integers(20, 400))
def test_the_window_equals_the_plain_join_of_its_turns_across_slides(turns: list[Turn], group: bool,
                                                                    budget: int) -> None:
    """The encoded window (with its joint bookkeeping) reads back as joining the turns it still holds."""
    window = HistoryWindow(generation=1, start=0, group=group)
    for turn in turns:
        window.add(turn)
        window.slide(budget)
        kept = [t for t in turns[: turn.seq + 1] if t.seq >= window.start]
        assert window.messages() == join(normalize(turn_messages(t, group)) for t in kept)
        assert refusal(window.messages()) is None


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(_turns(0), st.booleans())
def test_the_plain_turn_fast_path_agrees_with_normalize(turn: Turn, group: bool) -> None:
    assert normalized_turn(turn, group) == normalize(turn_messages(turn, group))
