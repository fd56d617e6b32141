"""The media reference index (vigil/store/engine/media_refs.py): kept in the transactions that add and drop references,
so that a sweep looks at what was deleted and at new files only, and still never deletes a file a record names.

Real LMDB store and media directory. "Only what was deleted" is checked by making the whole-store reads
impossible during a sweep (listing the media directory, reading every record) and by recording which
files the sweep asked the index about.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.procs import run_vigil, vigil_env
from vigil.media.files import MediaStore
from vigil.media.sweep import GRACE_S, sweep
from vigil.ports.store import ConversationMove
from vigil.records.schema import Attachment, Conversation, InboxEntry, Input, SessionHeader, Target, Turn
from vigil.store.engine import media_refs
from vigil.store.media_index import MediaIndex
from vigil.store.store import LmdbStore

WAIT = 20.0


@pytest.fixture
def media(data_dir: Path) -> MediaStore:
    return MediaStore(data_dir / "media")


def photo(media: MediaStore, n: int) -> Attachment:
    """A stored file (bytes of its own), written an hour ago: past the sweep's grace."""
    digest = media.put(f"photo number {n}".encode() * 10)
    old = time.time() - GRACE_S - 3600
    os.utime(media.path(digest), (old, old))
    return Attachment(kind="image", digest=digest, media_type="image/jpeg", size=140)


def header(key: str, **fields: Any) -> SessionHeader:
    return SessionHeader(key=key, incarnation=1, created_at=1.0, target=Target(channel="tg", chat_id=1), cwd="/w",
                         model="m", **fields)


def said(text: str, *photos: Attachment) -> Input:
    return Input(text=text, at=1.0, user_id=7, attachments=photos)


def turn(seq: int, *photos: Attachment) -> Turn:
    return Turn(seq=seq, status="done", started_at=1.0 + seq, inputs=(said(f"turn {seq}", *photos),))


_SCAN = media_refs.scan


def full_scan(store: LmdbStore) -> set[str]:
    """What the records name, reading every one of them (the sweep's old way; the test's, never a sweep's)."""
    return set(store.read(lambda txn: _SCAN(txn, store.environment.dbs)))


@pytest.fixture
def no_whole_store_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[set[str]]]:
    """During the test, a sweep may neither list the media directory nor read every record; yields what it asked."""
    asked: list[set[str]] = []
    real = MediaIndex.media_named

    def listing(self: MediaStore) -> Iterator[str]:
        raise AssertionError("a sweep listed the whole media directory")

    def scanning(*args: Any) -> set[str]:
        raise AssertionError("a sweep read every record")

    def named(self: MediaIndex, digests: Any) -> tuple[set[str], list[bytes]]:
        wanted = set(digests)
        asked.append(wanted)
        return real(self, wanted)

    monkeypatch.setattr(MediaStore, "digests", listing)
    monkeypatch.setattr(media_refs, "scan", scanning)
    monkeypatch.setattr(MediaIndex, "media_named", named)
    yield asked


def test_a_sweep_after_a_forget_asks_about_that_sessions_files_only(store: LmdbStore, media: MediaStore,
                                                                      no_whole_store_reads: list[set[str]]) -> None:
    shared, own, other = photo(media, 1), photo(media, 2), photo(media, 3)
    store.commit(header("tg:1", next_seq=2), turn(0, shared), create=True).result(WAIT)
    store.commit(header("tg:1", next_seq=2), turn(1, own)).result(WAIT)
    store.commit(header("tg:2", next_seq=1), turn(0, shared, other), create=True).result(WAIT)
    for n in range(3, 40):  # a store with more in it than the sweep may look at
        store.commit(header(f"tg:{n}", next_seq=1), turn(0, photo(media, 100 + n)), create=True).result(WAIT)
    sweep(store, media)  # the new files, each named: settled
    no_whole_store_reads.clear()

    store.delete_session("tg:1").result(WAIT)
    assert sweep(store, media) == (1, 140)
    assert no_whole_store_reads == [{shared.digest, own.digest}]
    assert media.has(shared.digest) and not media.has(own.digest) and media.has(other.digest)
    store.sync()
    assert sweep(store, media) == (0, 0)
    assert len(no_whole_store_reads) == 1, "a settled sweep leaves nothing to look at"


def test_a_file_whose_message_never_arrived_goes_once_its_grace_is_over(store: LmdbStore, media: MediaStore,
                                                                          no_whole_store_reads: list[set[str]]) -> None:
    """The adapter stored a photo, then vigil died before the inbox record (or the upload was refused)."""
    digest = media.put(b"a photo nobody's message names")
    assert sweep(store, media) == (0, 0) and media.has(digest), "spared within the grace: its record may be coming"
    old = time.time() - GRACE_S - 60
    os.utime(media.path(digest), (old, old))
    assert sweep(store, media) == (1, 30) and not media.has(digest)
    assert media.marked() == []


def test_messages_queued_behind_a_forget_keep_their_files(store: LmdbStore, media: MediaStore) -> None:
    kept = photo(media, 1)
    store.commit(header("tg:1", next_seq=1), turn(0, kept), create=True).result(WAIT)
    for arrival in (2, 9):  # 2 was received before the /forget, 9 after it
        store.receive(arrival, InboxEntry(key="tg:1", target=Target(channel="tg", chat_id=1), text="again",
                                          attachments=(kept,))).result(WAIT)
    store.delete_session("tg:1", inbox_upto=5).result(WAIT)
    assert sweep(store, media) == (0, 0) and media.has(kept.digest)
    assert full_scan(store) == {kept.digest} == store.media_references()


def test_an_answered_pending_input_does_not_keep_its_file_after_its_conversation_went(
        store: LmdbStore, media: MediaStore) -> None:
    picture = photo(media, 1)
    waiting = header("tg:1", pending=(said("look", picture),))
    store.commit(waiting, create=True).result(WAIT)
    answered = msgspec.structs.replace(waiting, pending=(), next_seq=1)
    store.commit(answered, turn(0, picture)).result(WAIT)
    left = Conversation(generation=1, turns=1, started_at=1.0, ended_at=2.0)
    store.commit(msgspec.structs.replace(answered, generation=2, next_seq=0), move=ConversationMove(left=left)
                 ).result(WAIT)
    sweep(store, media)
    assert media.has(picture.digest)
    store.drop_generation("tg:1", 1).result(WAIT)
    assert sweep(store, media) == (1, 140), "the header's pair stood for a pending input answered long ago"
    store.sync()
    assert full_scan(store) == set() == store.media_references()


def test_a_record_this_vigil_cannot_read_keeps_its_files(store: LmdbStore, media: MediaStore) -> None:
    """A header of a newer schema names the photo in its pending input: the index took it from its bytes."""
    picture = photo(media, 1)
    store.commit(header("tg:1", schema=7, pending=(said("look", picture),)), create=True).result(WAIT)
    store.commit(header("tg:2", next_seq=1), turn(0, picture), create=True).result(WAIT)
    store.delete_session("tg:2").result(WAIT)
    assert sweep(store, media) == (0, 0) and media.has(picture.digest)
    store.delete_session("tg:1").result(WAIT)
    assert sweep(store, media) == (1, 140)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_index_never_misses_what_the_records_name(store: LmdbStore, media: MediaStore, seed: int,
                                                      no_whole_store_reads: list[set[str]]) -> None:
    """Random messages (into the inbox, then pending, then a turn, as a session takes them up), switches,
    prunes, deletions with messages queued behind them, and sweeps, over a few sessions: after every step the
    index holds all a full read of the records finds; no sweep deletes a file a record names; and at the end
    a sweep has kept exactly those files."""
    rng = random.Random(seed)
    photos = [photo(media, n) for n in range(12)]
    heads: dict[str, SessionHeader] = {}
    waiting: dict[str, list[tuple[int, Input]]] = {}
    arrival = 0
    for _ in range(200):
        key = f"tg:{rng.randrange(4)}"
        head = heads.get(key)
        action = rng.randrange(8)
        if head is None:
            head = heads[key] = header(key)
            store.commit(head, create=True).result(WAIT)
        elif action in (0, 1):  # a message arrives: its files stored again first, as the adapter does
            arrival += 1
            picked = tuple(photo(media, photos.index(p)) for p in rng.sample(photos, rng.randrange(3)))
            store.receive(arrival, InboxEntry(key=key, target=head.target, text="m", attachments=picked)).result(WAIT)
            waiting.setdefault(key, []).append((arrival, said("m", *picked)))
        elif action == 2 and waiting.get(key):  # the session takes its messages up while a turn runs
            taken = waiting.pop(key)
            head = heads[key] = msgspec.structs.replace(head, pending=(*head.pending, *(i for _, i in taken)))
            store.commit(head, consumed=tuple(a for a, _ in taken)).result(WAIT)
        elif action == 3:  # a turn answers what was pending and waiting
            taken = waiting.pop(key, [])
            inputs = (*head.pending, *(i for _, i in taken)) or (said("hi"),)
            head = heads[key] = msgspec.structs.replace(head, pending=(), next_seq=head.next_seq + 1)
            done = Turn(seq=head.next_seq - 1, status="done", started_at=1.0, inputs=inputs)
            store.commit(head, done, consumed=tuple(a for a, _ in taken)).result(WAIT)
        elif action == 4 and head.next_seq:
            left = Conversation(generation=head.generation, turns=head.next_seq, started_at=1.0, ended_at=2.0)
            head = heads[key] = msgspec.structs.replace(head, generation=store.newest_generation(key) + 1, next_seq=0)
            store.commit(head, move=ConversationMove(left=left)).result(WAIT)
        elif action == 5:
            past = store.scan_conversations(key)[0]
            if past:
                store.drop_generation(key, rng.choice(past).generation).result(WAIT)
        elif action == 6:  # a /forget: messages received after it stay in the inbox
            upto = max(0, arrival - rng.randrange(2))
            store.delete_session(key, inbox_upto=upto).result(WAIT)
            del heads[key]
            waiting[key] = [(a, i) for a, i in waiting.get(key, []) if a > upto]
        else:
            sweep(store, media)
            store.sync()
            named = full_scan(store)
            assert {d for d in named if not media.has(d)} == set(), "a sweep deleted a file a record names"
        assert full_scan(store) <= store.media_references()
    sweep(store, media)
    named = full_scan(store)
    assert {p.digest for p in photos if media.has(p.digest)} == named


@pytest.mark.e2e
def test_after_a_restore_the_first_sweep_removes_what_the_restored_store_does_not_name(
        tmp_path: Path, no_whole_store_reads: list[set[str]]) -> None:
    """The backup's files join those already there (content-addressed); the restore marks them all, so the first
    sweep over the restored store deletes the files it does not name, without listing the directory."""
    first = vigil_env(tmp_path / "first")
    store = LmdbStore(Path(first["VIGIL_DATA_DIR"]))
    named = photo(MediaStore(store.data_dir / "media"), 1)
    store.commit(header("tg:1", next_seq=1), turn(0, named), create=True).result(WAIT)
    store.close()
    assert run_vigil(["backup", str(tmp_path / "backup")], first).returncode == 0

    second = vigil_env(tmp_path / "second")
    data = Path(second["VIGIL_DATA_DIR"])
    media = MediaStore(data / "media")
    stray = photo(media, 2)  # a file of the store being replaced, named by nothing the backup holds
    restored = run_vigil(["restore", str(tmp_path / "backup")], second)
    assert restored.returncode == 0, restored.stderr
    store = LmdbStore(data)
    try:
        assert sweep(store, media, grace_s=0) == (1, 140)
        assert media.has(named.digest) and not media.has(stray.digest)
        assert no_whole_store_reads[-1] == {named.digest, stray.digest}
    finally:
        store.close()
