"""Deleting sessions and conversations: logged in the journal like turns, in bounded chunks, and whole after a crash.

A deletion used to be a closure, made durable by a checkpoint (a sync of the whole store) while every
session's next commit waited; and a large session went in one transaction however many turns it held.
Now each deletion transaction is logged (one barrier) and takes at most `CHUNK` turns. Real LMDB; the
crash is a real SIGKILL of a child process between two chunks.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vigil.media.files import MediaStore
from vigil.media.sweep import sweep
from vigil.policy.expiry import old_generations
from vigil.ports.store import ConversationMove
from vigil.records.schema import Attachment, Conversation, Input, SessionHeader, Target, Turn
from vigil.store import deletes
from vigil.store.store import LmdbStore

REPO = Path(__file__).resolve().parents[1]
WAIT = 20.0


def header(key: str = "tg:1", **fields: Any) -> SessionHeader:
    return SessionHeader(key=key, incarnation=5, created_at=1.0, target=Target(channel="tg", chat_id=1), cwd="/w",
                         model="m", **fields)


def fill(store: LmdbStore, key: str, generation: int, count: int, photo: Attachment | None = None) -> SessionHeader:
    """A conversation of `count` turns (the first naming `photo`), current in the returned header."""
    head = header(key, generation=generation)
    store.commit(head, create=store.header(key) is None).result(WAIT)
    for seq in range(count):
        head = header(key, generation=generation, next_seq=seq + 1)
        photos = (photo,) if photo is not None and seq == 0 else ()
        store.commit(head, Turn(seq=seq, status="done", started_at=1.0 + seq,
                                inputs=(Input(text=f"turn {seq}", at=1.0, attachments=photos),))).result(WAIT)
    return head


@pytest.fixture
def checkpoints(store: LmdbStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every checkpoint the store makes inline, while a commit waits (each a sync of the whole store)."""
    made: list[str] = []
    journal = store.environment.journal
    real = journal._checkpoint_locked

    def counted(clean: bool = False) -> None:
        made.append("checkpoint")
        real(clean)

    monkeypatch.setattr(journal, "_checkpoint_locked", counted)
    return made


def test_a_large_session_goes_in_chunks_each_logged_not_synced(store: LmdbStore, checkpoints: list[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deletes, "CHUNK", 10)
    fill(store, "tg:1", 1, 25)
    head = fill(store, "tg:1", 2, 12)
    store.commit(head, move=ConversationMove(left=Conversation(generation=1, turns=25, started_at=1, ended_at=2))
                 ).result(WAIT)
    fill(store, "tg:2", 1, 3)
    transactions = store.writer.commits
    checkpoints.clear()
    assert store.delete_session("tg:1").result(WAIT) == 37
    assert store.writer.commits - transactions == 4, "three chunks of ten turns, then the rest with the header"
    assert checkpoints == [], "a deletion is logged in the journal, as turns are"
    assert store.header("tg:1") is None and store.generations("tg:1") == [] and store.scan_conversations("tg:1") == (
        [], [])
    assert [t.seq for t in store.turns("tg:2", 1)] == [0, 1, 2]


def test_a_large_conversation_goes_in_chunks_its_record_first(store: LmdbStore, checkpoints: list[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deletes, "CHUNK", 10)
    fill(store, "tg:1", 1, 25)
    head = fill(store, "tg:1", 2, 1)
    store.commit(head, move=ConversationMove(left=Conversation(generation=1, turns=25, started_at=1, ended_at=2))
                 ).result(WAIT)
    checkpoints.clear()
    transactions = store.writer.commits
    assert store.drop_generation("tg:1", 1).result(WAIT) == 25
    assert store.writer.commits - transactions == 3 and checkpoints == []
    assert store.generations("tg:1") == [2] and store.scan_conversations("tg:1") == ([], [])
    assert store.drop_generation("tg:1", 2).result(WAIT) is None, "the current conversation is never dropped"
    assert store.generations("tg:1") == [2]


_CHILD = """
import sys, time
from pathlib import Path
from vigil.store import deletes
from vigil.store.store import LmdbStore

deletes.CHUNK = 10
store = LmdbStore(Path(sys.argv[1]))
real = store.writer.submit_record
count = [0]
def counting(record, urgent=True):
    count[0] += 1
    if count[0] == 3:  # two chunks are durable; the third is never submitted
        print("two chunks", flush=True)
        time.sleep(60)
    return real(record, urgent)
store.writer.submit_record = counting
store.__getattribute__(sys.argv[2])(*sys.argv[3:4], *map(int, sys.argv[4:5]))
"""


def _kill_midway(data: Path, *call: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(data), *call], cwd=REPO, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None
    while (line := child.stdout.readline()) and line.strip() != "two chunks":
        pass
    assert line.strip() == "two chunks"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=WAIT)


def test_a_kill_9_midway_through_a_large_deletion_leaves_a_store_the_next_one_finishes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    media = MediaStore(data / "media")
    store = LmdbStore(data)
    photo = Attachment(kind="image", digest=media.put(b"the photo of the first turn"), media_type="image/jpeg")
    fill(store, "tg:1", 1, 45, photo)
    store.close()

    _kill_midway(data, "delete_session", "tg:1")
    store = LmdbStore(data)
    try:
        assert [t.seq for t in store.turns("tg:1", 1)] == list(range(20, 45)), "the oldest twenty went"
        assert store.header("tg:1") is not None
        assert store.delete_session("tg:1").result(WAIT) == 25
        assert store.header("tg:1") is None and store.generations("tg:1") == []
    finally:
        store.close()


def test_a_kill_9_midway_through_dropping_a_conversation_leaves_it_marked_for_the_next_pass(tmp_path: Path) -> None:
    data = tmp_path / "data"
    media = MediaStore(data / "media")
    store = LmdbStore(data)
    photo = Attachment(kind="image", digest=media.put(b"a photo of the old conversation"), media_type="image/jpeg")
    fill(store, "tg:1", 1, 45, photo)
    head = fill(store, "tg:1", 2, 1)
    store.commit(head, move=ConversationMove(left=Conversation(generation=1, turns=45, started_at=1, ended_at=2))
                 ).result(WAIT)
    store.close()

    _kill_midway(data, "drop_generation", "tg:1", "1")
    store = LmdbStore(data)
    try:
        [record], _ = store.scan_conversations("tg:1")
        assert record.deleting, "marked first: /resume no longer offers it"
        with pytest.raises(LookupError):
            store.commit(header("tg:1", generation=1, next_seq=45), move=ConversationMove(resumed=1)).result(WAIT)
        assert [t.seq for t in store.turns("tg:1", 1)] == list(range(20, 45))
        assert photo.digest in store.media_references(), "its turns still name the photo: the file stays"
        stored = store.header("tg:1")
        assert stored is not None and old_generations(store, stored, before=0.0) == [1], "old, whatever its times"
        assert store.drop_generation("tg:1", 1).result(WAIT) == 25
        assert store.scan_conversations("tg:1") == ([], [])
        assert store.generations("tg:1") == [2]
        store.sync()
        assert sweep(store, media, grace_s=0) == (1, 31)
    finally:
        store.close()


def test_a_resume_racing_the_deletion_of_its_conversation_is_refused_or_keeps_it(store: LmdbStore) -> None:
    head = fill(store, "tg:1", 1, 2)
    left = Conversation(generation=1, turns=2, started_at=1, ended_at=2)
    head = header("tg:1", generation=2)
    store.commit(head, move=ConversationMove(left=left)).result(WAIT)
    # The resume read the record a moment before a cleanup deleted it: its commit is refused, nothing changes.
    assert store.drop_generation("tg:1", 1).result(WAIT) == 2
    back = header("tg:1", generation=1, next_seq=2)
    with pytest.raises(LookupError, match="deleted meanwhile"):
        store.commit(back, move=ConversationMove(left=None, resumed=1)).result(WAIT)
    assert store.header("tg:1") == head
    # The other way round: the resume lands first, and the deletion keeps what is current now.
    fill(store, "tg:2", 1, 2)
    store.commit(header("tg:2", generation=2), move=ConversationMove(left=left)).result(WAIT)
    store.commit(header("tg:2", generation=1, next_seq=2), move=ConversationMove(resumed=1)).result(WAIT)
    assert store.drop_generation("tg:2", 1).result(WAIT) is None
    assert [t.seq for t in store.turns("tg:2", 1)] == [0, 1]


def test_small_old_conversations_go_together_and_a_large_one_alone(store: LmdbStore, checkpoints: list[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deletes, "CHUNK", 10)
    sizes = {1: 3, 2: 4, 3: 25, 4: 2, 5: 6}
    for generation, count in sizes.items():
        head = fill(store, "tg:1", generation, count)
        left = Conversation(generation=generation, turns=count, started_at=1, ended_at=2)
        store.commit(header("tg:1", generation=generation + 1), move=ConversationMove(left=left)).result(WAIT)
    fill(store, "tg:1", 6, 1)
    transactions = store.writer.commits
    assert store.prune_generations("tg:1", before=10.0).result(WAIT) == 5
    # 1 and 2 (7 turns) together; 3 alone in three chunks; 4 and 5 (8 turns) together.
    assert store.writer.commits - transactions == 5 and checkpoints == []
    assert store.generations("tg:1") == [6] and store.scan_conversations("tg:1") == ([], [])
    assert head.generation == 5
