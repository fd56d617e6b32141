"""The plain Session (actors/core/state.py) over a real LMDB store, without actors: what reaches disk and when.

Each test builds a `Session` directly (no pykka, no Runtime) on a store in tmp_path, drives it the way
the actor's parts do, and checks the store: the header written with the inbox messages it holds, a
deleted or unreadable record handled, /forget and pruning, the notes cache.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.fakes import CHANNEL, RecordingOutbox, ScriptedModel, make_settings
from vigil.actors.core.protocol import Sender, UserText
from vigil.actors.core.registry import Registry, SessionControl
from vigil.actors.core.state import Session, SessionDeps
from vigil.actors.engine.runner import TurnRunner
from vigil.actors.engine.slots import QuerySlots
from vigil.actors.tools.notes import save_note
from vigil.actors.turns import user as user_turn
from vigil.intake.inbox import Inbox
from vigil.policy.budget import Allowance
from vigil.ports.store import ConversationMove
from vigil.records.schema import Conversation, Target
from vigil.store.store import CorruptRecord, LmdbStore, open_store
from vigil.tools.toolbox import Toolbox

KEY = f"{CHANNEL}:7"
TARGET = Target(channel=CHANNEL, chat_id=7)
WAIT = 10.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbStore]:
    opened = open_store(tmp_path / "data")
    yield opened
    opened.close()


@pytest.fixture
def outbox() -> RecordingOutbox:
    return RecordingOutbox()


@pytest.fixture
def session(tmp_path: Path, store: LmdbStore, outbox: RecordingOutbox) -> Session:
    settings = make_settings(tmp_path)
    deps = SessionDeps(settings=settings, store=store, outboxes={CHANNEL: outbox},
                       runner=TurnRunner(ScriptedModel(), QuerySlots(1), settings.max_tool_rounds),
                       toolbox=Toolbox(settings.workdir_root, enable_bash=False), registry=Registry(),
                       allowance=Allowance(settings, store.user_cost_micros))
    return Session(KEY, deps, SessionControl(KEY))


def received(store: LmdbStore, text: str) -> UserText:
    """A user message as the adapter hands it on: written to the durable inbox first."""
    told: list[UserText] = []
    message = UserText(key=KEY, target=TARGET, sender=Sender(user_id=42, name="Tess"), text=text, at=time.time())
    Inbox(store).accept(message, lambda stamped: told.append(stamped)).result(WAIT)  # type: ignore[arg-type]
    return told[0]


def test_a_new_header_is_written_and_then_clean(session: Session, store: LmdbStore) -> None:
    header = session.ensure_header(TARGET, "Team", "group")
    assert store.header(KEY) is None and session.committed is None
    assert session.commit(wait=True)
    assert store.header(KEY) == header == session.committed
    assert not session.dirty and not session.unsynced
    assert session.control.status.header == header


def test_pending_messages_leave_the_inbox_in_the_commit_that_holds_them(session: Session, store: LmdbStore) -> None:
    message = received(store, "hello")
    user_turn.accept(session, message)
    assert session.dirty and session.unconsumed == [message.inbox_id]
    assert [arrival for arrival, _ in store.inbox()] == [message.inbox_id]  # only in memory so far
    assert session.control.status.queued == 1
    assert session.commit(wait=True)
    stored = store.header(KEY)
    assert stored is not None and [item.text for item in stored.pending] == ["hello"]
    assert stored.participants == (42,)
    assert store.inbox() == [] and session.unconsumed == []


def test_a_commit_not_waited_for_keeps_its_messages_in_flight(session: Session, store: LmdbStore) -> None:
    message = received(store, "hi")
    user_turn.accept(session, message)
    assert session.commit()
    assert session.unsynced and session.in_flight == [message.inbox_id] and session.unconsumed == []
    assert session.commit(wait=True)
    assert session.in_flight == [] and store.inbox() == []


def test_a_session_deleted_elsewhere_is_seen_and_recreated_not_resurrected(session: Session,
                                                                            store: LmdbStore) -> None:
    session.ensure_header(TARGET)
    assert session.commit(wait=True)
    first = session.header
    assert first is not None
    store.delete_session(KEY).result(WAIT)
    assert session.commit(wait=True)  # the store says the session is gone: carry on as a fresh one
    stored = store.header(KEY)
    assert stored is not None and session.header is not None
    assert stored.incarnation == session.header.incarnation != first.incarnation


def test_a_broken_session_writes_nothing_and_says_why_until_readable_again(
        session: Session, store: LmdbStore, outbox: RecordingOutbox) -> None:
    user_turn.accept(session, received(store, "hi"))
    session.break_(CorruptRecord(KEY, "a newer vigil wrote it"))
    assert session.broken and session.header is not None and session.header.pending == ()
    assert not session.commit(wait=True) and store.header(KEY) is None
    assert session.control.status.header is None
    assert any("can't be used" in text for text in outbox.sent(KEY))
    assert session.readable_again()  # nothing unreadable is stored: the session starts over
    assert not session.broken and session.header is None and session.committed is None


def test_forget_deletes_everything_and_starts_afresh(session: Session, store: LmdbStore) -> None:
    session.ensure_header(TARGET)
    assert session.commit(wait=True)
    assert save_note(session, {"text": "remember"}).content == "saved"
    session.forget()
    assert store.header(KEY) is None and store.notes(KEY) == []
    assert session.header is None and session.committed is None and not session.dirty


def test_prune_drops_only_generations_that_ended_before(session: Session, store: LmdbStore) -> None:
    header = session.ensure_header(TARGET)
    old, recent = (Conversation(generation=1, turns=0, started_at=0.0, ended_at=10.0),
                   Conversation(generation=2, turns=0, started_at=10.0, ended_at=100.0))
    session.header = msgspec.structs.replace(header, generation=3)
    assert session.commit(wait=True, move=ConversationMove(left=old))
    assert session.commit(wait=True, move=ConversationMove(left=recent))
    assert store.prune_generations(KEY, before=50.0).result() == 1
    assert store.scan_conversations(KEY) == ([recent], [])
    assert session.commit(wait=True), "the session goes on: nothing of a past conversation was in its memory"


def test_notes_are_read_once_and_read_again_after_a_note_is_saved(session: Session, store: LmdbStore) -> None:
    session.ensure_header(TARGET)
    assert session.commit(wait=True)
    assert session.notes() == [] and session.notes_cache == []
    assert save_note(session, {"text": "the deploy is on Friday"}).content == "saved"
    assert session.notes_cache is None
    assert [note.text for note in session.notes()] == ["the deploy is on Friday"]
    assert save_note(session, {"text": " "}).is_error
