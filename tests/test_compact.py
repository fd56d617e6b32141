"""Compaction beneath the end-to-end tests: the window with a summary, the stored Summary record, and the
session's side of it (who pays, a budget refusal, /stop, heartbeats) on runtimes with a scripted model."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import (
    Block,
    HarnessFactory,
    Say,
    Script,
    ScriptedModel,
    check_request,
    echo,
    key_of,
    make_settings,
    wait_until,
)
from tests.test_history import _histories, make_turn, refusal, sized_turn, text, user
from vigil.actors.engine.window import HistoryWindow, summary_message
from vigil.actors.turns.summary import SUMMARY_MARKER, summary_request, transcript
from vigil.control.dispatch import export_session
from vigil.model.history import join, normalize, turn_messages
from vigil.ports import ModelRequest
from vigil.ports.store import ConversationMove
from vigil.records.schema import (
    Conversation,
    Message,
    SessionHeader,
    Summary,
    Target,
    Turn,
    Usage,
    decode_summary,
    encode,
)
from vigil.store.store import LmdbStore

# ----------------------------------------------------------------------------- the window


def summary(upto: int, words: str = "they talked", generation: int = 1) -> Summary:
    return Summary(generation=generation, upto=upto, text=words, made_at=float(upto))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(_histories(), st.integers(20, 400), st.booleans())
def test_leaving_and_drop_are_what_slide_does(turns: list[Turn], budget: int, carried: bool) -> None:
    """Compaction asks `leaving` what a slide would drop, then drops it: the same turns as `slide`."""
    sliding = HistoryWindow(generation=1, start=0, group=False)
    folding = HistoryWindow(generation=1, start=0, group=False)
    if carried:
        for window in (sliding, folding):
            window.carry(summary(0))
    for turn in turns:
        sliding.add(turn)
        folding.add(turn)
        count = folding.leaving(budget)
        upto = folding.seq_after(count)
        assert sliding.slide(budget) == (count > 0)
        folding.drop(count)
        assert folding.start == sliding.start == (upto if count else folding.start)
        assert folding.messages() == sliding.messages()
        assert folding.tokens == sliding.tokens


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(_histories(), st.booleans())
def test_a_carried_summary_stands_first_and_the_history_stays_valid(turns: list[Turn], group: bool) -> None:
    window = HistoryWindow(generation=1, start=0, group=group)
    for turn in turns:
        window.add(turn)
    bare = window.messages()
    tokens = window.tokens
    window.carry(summary(0, "the user likes tea"))
    carried = window.messages()
    assert carried == join([[summary_message(summary(0, "the user likes tea"))], bare])
    assert carried[0]["role"] == "user"
    assert carried[0]["content"][0] == text("[Summary of the conversation so far:\nthe user likes tea]")
    assert window.tokens > tokens
    assert refusal(carried) is None
    window.carry(None)
    assert window.messages() == bare and window.tokens == tokens


def test_the_summary_counts_against_the_budget_so_a_window_slides_sooner() -> None:
    plain = HistoryWindow(generation=1, start=0, group=False)
    carried = HistoryWindow(generation=1, start=0, group=False)
    carried.carry(summary(0, "s" * 1400))  # ~400 tokens
    seq = 0
    while not carried.leaving(2000):
        plain.add(sized_turn(seq, 700))  # ~200 tokens a turn
        carried.add(sized_turn(seq, 700))
        seq += 1
    assert plain.leaving(2000) == 0 and plain.tokens > 2000 - 400


def test_a_window_loads_with_its_newest_summary_and_starts_after_it(store: LmdbStore, tmp_path: Path) -> None:
    header = SessionHeader(key="tg:1", incarnation=1, created_at=0.0, target=Target(channel="telegram", chat_id=1),
                           cwd=str(tmp_path), model="claude-sonnet-5-5")
    store.commit(header, create=True).result(timeout=10)
    for seq in range(8):
        store.commit(header, turn=make_turn(seq, said=f"q{seq}")).result(timeout=10)
    # Written with a header that had not moved its start yet (a crash between): the summary moves it.
    store.commit(header, summary=summary(3, "first")).result(timeout=10)
    store.commit(header, summary=summary(5, "second")).result(timeout=10)
    window = HistoryWindow.load(store, "tg:1", 1, 0, 8, group=False)
    assert window.start == 5 and window.summary is not None and window.summary.text == "second"
    assert window.messages()[0] == user(text("[Summary of the conversation so far:\nsecond]"), text("q5"))
    # A start past the summary (turns dropped after a failed summary) stays; the summary is still carried.
    later = HistoryWindow.load(store, "tg:1", 1, 6, 8, group=False)
    assert later.start == 6 and later.summary is not None and later.summary.upto == 5
    assert later.messages() == join([[summary_message(summary(5, "second"))],
                                     *[normalize(turn_messages(make_turn(s, said=f"q{s}"))) for s in (6, 7)]])
    assert HistoryWindow.load(store, "tg:1", 2, 0, 0, group=False).summary is None  # another conversation's


# ----------------------------------------------------------------------------- the record and the store


def test_summaries_are_kept_per_conversation_and_deleted_with_it(store: LmdbStore, tmp_path: Path) -> None:
    def header(key: str, generation: int = 1) -> SessionHeader:
        chat = int(key.split(":")[1])
        return SessionHeader(key=key, incarnation=chat, created_at=0.0, target=Target(channel="telegram", chat_id=chat),
                             cwd=str(tmp_path), model="claude-sonnet-5-5", generation=generation)

    store.commit(header("tg:1"), create=True).result(timeout=10)
    store.commit(header("tg:10"), create=True).result(timeout=10)  # its key begins like tg:1's
    store.commit(header("tg:1"), turn=make_turn(0), summary=summary(1, "one")).result(timeout=10)
    store.commit(header("tg:1"), turn=make_turn(1), summary=summary(2, "two")).result(timeout=10)
    store.commit(header("tg:1", 2), turn=make_turn(0), summary=summary(1, "gen two", generation=2)).result(timeout=10)
    store.commit(header("tg:10"), turn=make_turn(0), summary=summary(1, "ten")).result(timeout=10)
    assert [s.text for s in store.summaries("tg:1", 1)] == ["one", "two"]
    assert [s.text for s in store.summaries("tg:1", 1, newest=1)] == ["two"]
    assert [s.text for s in store.summaries("tg:1", 2)] == ["gen two"]
    assert store.summaries("tg:1", 3) == [] and store.summaries("tg:2", 1) == []
    exported = json.loads(export_session(store, "tg:1") or b"{}")
    assert [[s["text"] for s in g["summaries"]] for g in exported["generations"]] == [["one", "two"], ["gen two"]]

    assert store.drop_generation("tg:1", 1).result(timeout=10) == 2
    assert store.summaries("tg:1", 1) == [] and [s.text for s in store.summaries("tg:1", 2)] == ["gen two"]
    store.delete_session("tg:1").result(timeout=10)
    assert store.summaries("tg:1", 2) == []
    assert [s.text for s in store.summaries("tg:10", 1)] == ["ten"]


def test_prune_generations_takes_their_summaries_along(store: LmdbStore, tmp_path: Path) -> None:
    header = SessionHeader(key="tg:3", incarnation=3, created_at=0.0, target=Target(channel="telegram", chat_id=3),
                           cwd=str(tmp_path), model="claude-sonnet-5-5", generation=2)
    store.commit(header, create=True, move=ConversationMove(
        left=Conversation(generation=1, turns=1, started_at=0.0, ended_at=10.0))).result(timeout=10)
    old = msgspec.structs.replace(header, generation=1)
    store.commit(old, turn=make_turn(0), summary=summary(1, "old")).result(timeout=10)
    store.commit(header, turn=make_turn(0), summary=summary(1, "kept", generation=2)).result(timeout=10)
    assert store.prune_generations("tg:3", before=20.0).result(timeout=10) == 1
    assert store.summaries("tg:3", 1) == [] and [s.text for s in store.summaries("tg:3", 2)] == ["kept"]
    assert store.scan_conversations("tg:3") == ([], []) and store.generations("tg:3") == [2]


def test_the_summary_record_round_trips_and_keeps_its_tag() -> None:
    record = Summary(generation=2, upto=40, start=12, previous=12, folded=28, text="facts", made_at=5.0,
                     model="claude-sonnet-5-5", usage=Usage(calls=1, input_tokens=900), user_id=7)
    raw = encode(record)
    assert decode_summary(raw) == record
    assert b"summary" in raw  # the tag: a reader that does not know it refuses it rather than misreads it


# ----------------------------------------------------------------------------- the request


def test_the_summary_request_carries_the_earlier_summary_and_a_plain_transcript(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, history_tokens=4000)
    tool_turn = make_turn(4, said="list my files", messages=(
        Message(role="assistant", content=(
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "t1", "name": "bash", "input": {"command": "ls"}})),
        Message(role="user", content=({"type": "tool_result", "tool_use_id": "t1", "content": "notes.txt"},))))
    request = summary_request("claude-sonnet-5-5", summary(4, "the user is Ann"), [make_turn(3), tool_turn],
                              settings)
    check_request(request)
    assert request.system[0]["text"].startswith(SUMMARY_MARKER)
    assert "preferences" in request.system[0]["text"] and "open tasks" in request.system[0]["text"]
    [message] = request.messages
    body = message["content"][0]["text"]
    assert body.startswith("<earlier_summary>\nthe user is Ann\n</earlier_summary>")
    assert "Ann: list my files" in body and "Claude used bash: {\"command\": \"ls\"}" in body
    assert "Result: notes.txt" in body and "Claude: answer 3" in body
    assert request.max_tokens == 800 and not request.tools


def test_a_transcript_over_its_budget_keeps_the_newest_turns() -> None:
    turns = [make_turn(seq, said=f"message {seq} " + "x" * 300) for seq in range(20)]
    kept = transcript(turns, 2000)
    assert kept.startswith("[") and "earlier turns left out" in kept
    assert "message 19 " in kept and "message 0 " not in kept
    assert len(kept) < 2500


# ----------------------------------------------------------------------------- the session's side


def is_summary(request: ModelRequest) -> bool:
    return str(request.system[0]["text"]).startswith(SUMMARY_MARKER)


def scripted(summary_script: Script | None = None) -> ScriptedModel:
    def choose(request: ModelRequest) -> Script:
        if is_summary(request):
            return summary_script or Say("SUMMARY of the start")
        return echo(request)

    return ScriptedModel(choose=choose)


def test_the_summary_call_is_charged_to_the_user_as_compact_usage(make: HarnessFactory) -> None:
    h = make(model=scripted(), history_tokens=600)
    key = key_of(1)
    for n in range(8):
        h.say(key, f"message {n} " + "y" * 300, user_id=31)
        h.outbox.wait_finished(key, n + 1)
    assert [r for r in h.model.requests if is_summary(r)]
    assert wait_until(lambda: any("🗜 Compacted" in s for s in h.outbox.sent(key)))
    rows = [r for r in h.runtime.store.usage_rows(31) if r.kind == "compact"]
    assert len(rows) == 1 and rows[0].usage.calls >= 1 and rows[0].key == key
    last = h.model.requests[-1]
    assert not is_summary(last)
    assert last.messages[0]["content"][0] == text("[Summary of the conversation so far:\nSUMMARY of the start]")
    header = h.runtime.store.header(key)
    assert header is not None and header.window_start == h.runtime.store.summaries(key, 1)[-1].upto


def test_over_budget_the_turns_are_dropped_and_the_chat_is_told(make: HarnessFactory) -> None:
    h = make(model=scripted(), history_tokens=600, daily_budget_usd=0.0)
    key = key_of(1)
    for n in range(6):
        h.say(key, f"message {n} " + "y" * 500, user_id=31)
        h.outbox.wait_finished(key, n + 1)
    assert h.model.requests == []  # nothing was paid for: neither the turns nor a summary
    told = [s for s in h.outbox.sent(key) if "couldn't summarise" in s]
    assert told and "daily budget" in told[0] and "left Claude's view" in told[0]
    assert h.runtime.store.summaries(key, 1) == []
    header = h.runtime.store.header(key)
    assert header is not None and header.window_start > 0


def test_stop_during_the_summary_folds_nothing_and_the_next_turn_tries_again(make: HarnessFactory) -> None:
    release = threading.Event()
    h = make(model=scripted(Block(release, text="late summary")), history_tokens=600)
    key = key_of(1)
    n = 0
    while not any(is_summary(r) for r in h.model.requests):
        h.say(key, f"message {n} " + "y" * 300)
        n += 1

        def answered_or_summarising(count: int = n) -> bool:
            return len(h.outbox.finished(key)) >= count or any(is_summary(r) for r in h.model.requests)

        assert h.outbox.wait_for(answered_or_summarising)
    assert h.runtime.stop_turn(key) is True
    assert h.outbox.wait_finished(key, n)[-1][1] == "⏹ stopped"
    assert h.runtime.store.summaries(key, 1) == []
    assert not any("🗜" in s or "couldn't summarise" in s for s in h.outbox.sent(key))
    release.set()
    h.model.choose = lambda r: Say("SUMMARY after all") if is_summary(r) else echo(r)
    h.say(key, "and again")
    h.outbox.wait_finished(key, n + 1)
    assert [s.text for s in h.runtime.store.summaries(key, 1)] == ["SUMMARY after all"]


def test_heartbeats_never_summarise(make: HarnessFactory) -> None:
    h = make(model=scripted(), history_tokens=600)
    key = key_of(1)
    big = "z" * 3000  # one turn over the whole window: the next user turn would compact
    h.say(key, big)
    h.outbox.wait_finished(key, 1)
    h.command(key, "heartbeat", "test")
    assert h.model.wait_for(lambda m: m.completed >= 2)
    assert h.drain(key)
    assert not any(is_summary(r) for r in h.model.requests)
    h.say(key, "now a user turn")
    h.outbox.wait_finished(key, 2)
    assert any(is_summary(r) for r in h.model.requests)


def test_compact_with_nothing_to_fold_says_so_and_calls_nothing(make: HarnessFactory) -> None:
    h = make(model=scripted())
    key = key_of(1)
    h.command(key, "compact")
    assert wait_until(lambda: any("no conversation yet" in s for s in h.outbox.sent(key)))
    assert h.runtime.store.header(key) is None
    h.say(key, "hello")
    h.outbox.wait_finished(key, 1)
    h.command(key, "compact")
    assert wait_until(lambda: any("Nothing to compact" in s for s in h.outbox.sent(key)))
    assert not any(is_summary(r) for r in h.model.requests)


def test_a_summary_in_progress_does_not_hold_up_other_chats(make: HarnessFactory) -> None:
    release = threading.Event()
    h = make(model=scripted(Block(release, text="slow summary")), history_tokens=600)
    slow, other = key_of(1), key_of(2)
    h.say(slow, "z" * 3000)
    h.outbox.wait_finished(slow, 1)
    h.say(slow, "this one needs a summary first")
    assert h.model.wait_for(lambda m: any(is_summary(r) for r in m.requests))
    h.say(other, "meanwhile, hello")
    assert h.outbox.wait_finished(other, 1) == [("echo: meanwhile, hello", "")]
    assert len(h.outbox.finished(slow)) == 1  # still summarising
    release.set()
    # The big turn left the window whole: its summary and the new message make the one user message.
    assert h.outbox.wait_finished(slow, 2)[1] == (
        "echo: [Summary of the conversation so far:\nslow summary]\nthis one needs a summary first", "")
    assert any("🗜 Compacted 1 earlier turn into a summary" in s for s in h.outbox.sent(slow))
