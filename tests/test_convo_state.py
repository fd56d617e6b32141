"""Conversation bookkeeping (vigil/records/conversations.py) and edits in the session, beneath the end-to-end tests.

Sessions run on the fakes (scripted model, recording outbox) over a real LMDB store.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import msgspec

from tests.fakes import (
    CHANNEL,
    WAIT_S,
    Block,
    HarnessFactory,
    ScriptedModel,
    all_text,
    key_of,
    last_user_text,
    wait_until,
)
from vigil.actors.core.protocol import Sender, UserText
from vigil.actors.turns.edits import correction_text
from vigil.intake.inbox import entry_of, message_of
from vigil.ports.store import ConversationMove
from vigil.records import conversations
from vigil.records.schema import Conversation, Input, SessionHeader, Target, decode_conversation, encode
from vigil.store.engine import keys
from vigil.store.store import open_store


def _header(**changes: object) -> SessionHeader:
    base = SessionHeader(key="tg:1", incarnation=7, created_at=1.0, target=Target(channel="tg", chat_id=1),
                         cwd="/w", model="m")
    return msgspec.structs.replace(base, **changes)


def _text(key: str, text: str, message_id: int, edited: bool = False) -> UserText:
    return UserText(key=key, target=Target(channel=CHANNEL, chat_id=1), sender=Sender(user_id=7, name="Tess"),
                    text=text, at=time.time(), message_id=message_id, chat_type="private", edited=edited)


# ----------------------------------------------------------------------------- titles and switching


def test_a_title_is_the_first_words_cut_at_a_word() -> None:
    assert conversations.title_from("  short\n question ") == "short question"
    assert conversations.title_from("Planning the garden beds for next spring, with raised boxes") == \
        "Planning the garden beds for next spring…"
    assert conversations.title_from("x" * 60) == "x" * 40 + "…"
    assert conversations.title_from("[replying to Ann: «the deploy»]\nwhy did it fail") == "why did it fail"
    assert conversations.title_from("[forwarded from Build Bot]") == "[forwarded from Build Bot]"
    titled = conversations.titled(_header(), (Input(text="", at=1.0), Input(text="second says", at=2.0)))
    assert titled.conversation_title == "second says"
    assert conversations.titled(titled, (Input(text="later", at=3.0),)).conversation_title == "second says"


def test_switching_moves_every_per_conversation_field_and_back() -> None:
    first = _header(generation=1, generation_started_at=10.0, next_seq=5, window_start=3, conversation_title="one")
    second, move = conversations.start_new(first, now=20.0, last_at=19.0, newest=1, title="two")
    assert (second.generation, second.next_seq, second.window_start, second.conversation_title) == (2, 0, 0, "two")
    left = Conversation(generation=1, turns=5, started_at=10.0, ended_at=20.0, title="one", window_start=3,
                        last_at=19.0)
    assert move == ConversationMove(left=left)
    second = msgspec.structs.replace(second, next_seq=2, window_start=1)
    back, move = conversations.switch_to(second, left, now=30.0, last_at=29.0)
    assert (back.generation, back.generation_started_at, back.next_seq, back.window_start,
            back.conversation_title) == (1, 10.0, 5, 3, "one")
    assert move.resumed == 1 and move.left is not None
    assert (move.left.generation, move.left.turns, move.left.window_start, move.left.title) == (2, 2, 1, "two")
    # The current conversation need not be the newest: /new numbers past everything the store holds.
    assert conversations.start_new(back, now=40.0, last_at=39.0, newest=2)[0].generation == 3
    assert conversations.start_new(back, now=40.0, last_at=39.0, newest=7)[0].generation == 8


def test_an_empty_conversation_is_not_kept() -> None:
    empty = _header(generation=4, next_seq=0)
    assert conversations.start_new(empty, 5.0, 0.0, newest=4)[1] == ConversationMove()
    past = Conversation(generation=1, turns=2, started_at=1.0, ended_at=2.0)
    assert conversations.switch_to(empty, past, 5.0, 0.0)[1] == ConversationMove(resumed=1)


def test_an_old_record_of_an_earlier_conversation_reads_with_its_end_as_last_activity() -> None:
    old = msgspec.msgpack.encode({"type": "conversation", "generation": 1, "turns": 4, "started_at": 1.0,
                                  "ended_at": 9.0})
    info = decode_conversation(old)
    assert (info.title, info.window_start, info.last_at, conversations.last_activity(info)) == ("", 0, 0.0, 9.0)


def test_resume_buttons_fit_telegrams_64_bytes_and_read_back() -> None:
    data = conversations.resume_button(4_294_967_295, 2**62 - 1)
    assert len(data.encode()) <= 64
    assert conversations.resume_args(data) == f"4294967295 {2**62 - 1}"
    for other in ("resume:x:1", "resume:1", "sessions:page:1", "forget:1:tg:1"):
        assert conversations.resume_args(other) is None


# ----------------------------------------------------------------------------- sessions


def test_resume_is_one_durable_write_and_the_window_follows(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    h.say(key, "apples")
    h.outbox.wait_finished(key, 1)
    h.command(key, "new", "Pears talk")
    h.say(key, "pears")
    h.outbox.wait_finished(key, 2)
    h.command(key, "resume", "1")
    assert wait_until(lambda: any("Back to conversation #1" in t for t in h.outbox.sent(key)), WAIT_S)
    header = h.runtime.store.header(key)
    assert header is not None
    assert (header.generation, header.next_seq, header.conversation_title) == (1, 1, "apples")
    past, _ = h.runtime.store.scan_conversations(key)
    assert [(g.generation, g.turns, g.title) for g in past] == [(2, 1, "Pears talk")]
    h.say(key, "which fruit")
    h.outbox.wait_finished(key, 3)
    request = h.model.requests[-1]
    assert "apples" in all_text(request) and "pears" not in all_text(request)
    assert [t.seq for t in h.runtime.store.turns(key, 1)] == [0, 1]
    assert [t.seq for t in h.runtime.store.turns(key, 2)] == [0]


def test_an_edit_travels_through_the_inbox_as_an_edit() -> None:
    edit = _text("tg:1", "new words", 12, edited=True)
    assert entry_of(edit).kind == "edit"
    assert message_of(3, entry_of(edit)) == msgspec.structs.replace(edit, inbox_id=3)
    plain = message_of(4, entry_of(_text("tg:1", "plain", 13)))
    assert isinstance(plain, UserText) and plain.edited is False


def test_a_message_and_its_edit_left_by_a_crash_are_answered_once_with_the_new_text(make: HarnessFactory) -> None:
    h = make(start=False)
    key = key_of(1)
    store = open_store(h.settings.data_dir)
    for arrival, message in enumerate((_text(key, "meet at noon", 5), _text(key, "meet at one", 5, edited=True)),
                                      start=100):
        store.receive(arrival, entry_of(message)).result()
    store.close()
    model = ScriptedModel()
    h.start(model)
    assert h.drain(key)
    assert [last_user_text(r) for r in model.requests] == ["meet at one"]
    [turn] = h.runtime.store.turns(key, 1)
    assert [(i.text, i.edited) for i in turn.inputs] == [("meet at one", "replaced")]
    assert h.runtime.store.inbox() == []


def test_edits_of_a_message_being_answered_make_one_correction_of_the_newest_text(make: HarnessFactory) -> None:
    gate = threading.Event()
    model = ScriptedModel([Block(gate, text="first answer")])
    h = make(model=model)
    key = key_of(1)
    h.runtime.submit(_text(key, "first", 1))
    assert model.wait_for(lambda m: m.in_flight == 1)
    # While "first" is answered: an edit of it (a correction, once the turn ends), and edited again.
    h.runtime.submit(_text(key, "first, better", 1, edited=True))
    h.runtime.submit(_text(key, "first, best", 1, edited=True))
    h.runtime.submit(_text(key, "unknown message edited", 99, edited=True))
    gate.set()
    assert h.drain(key)
    assert [last_user_text(r) for r in model.requests] == ["first", correction_text("first", "first, best")]
    assert h.runtime.store.inbox() == []
    h.runtime.submit(_text(key, "first, final", 1, edited=True))
    assert h.drain(key)
    assert wait_until(lambda: len(model.requests) == 3, WAIT_S)
    assert last_user_text(model.requests[-1]) == correction_text("first, best", "first, final")



def test_the_header_a_turn_commits_does_not_grow_with_the_conversations_left(make: HarnessFactory) -> None:
    """Every durable turn writes the header: forty conversations left behind must not make it any longer."""
    h = make()
    key = key_of(1)
    store = h.runtime.store
    sizes = []
    for n in range(40):
        h.say(key, f"topic {n}")
        h.outbox.wait_finished(key, n + 1)
        h.command(key, "new")
        assert wait_until(lambda n=n: getattr(store.header(key), "generation", 0) == n + 2, WAIT_S)  # type: ignore[misc]
        sizes.append(len(encode(store.header(key))))  # type: ignore[arg-type]
    # Only counters widen (turns, tokens, the generation number): a few bytes, where a list of the
    # conversations left would add tens of bytes for each.
    assert max(sizes) - min(sizes) <= 8, sizes
    assert len(store.scan_conversations(key)[0]) == 40


def test_a_conversation_record_of_a_newer_vigil_is_named_and_not_resumed(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    store = h.runtime.store
    h.say(key, "apples")
    h.outbox.wait_finished(key, 1)
    h.command(key, "new")
    assert wait_until(lambda: len(store.scan_conversations(key)[0]) == 1, WAIT_S)
    newer = encode(Conversation(generation=7, turns=3, started_at=1.0, ended_at=2.0, schema=9))
    lmdb_store: Any = store
    lmdb_store.writer.write(lambda txn: txn.put(keys.conversation(key, 7), newer,
                                                db=lmdb_store.environment.dbs[b"conversations"]))
    h.command(key, "resume")
    assert wait_until(lambda: any("Earlier conversations" in t for t in h.outbox.sent(key)), WAIT_S)
    listing = next(t for t in h.outbox.sent(key) if "Earlier conversations" in t)
    assert "#1 «apples»" in listing and "1 earlier conversation(s) can't be read: #7 (written by a newer vigil)" \
        in listing, listing
    h.command(key, "resume", "7")
    assert wait_until(lambda: any("#7 can't be resumed" in t for t in h.outbox.sent(key)), WAIT_S)
    assert store.header(key).generation == 2  # type: ignore[union-attr]
