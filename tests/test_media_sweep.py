"""Media files go when no session references them, and never while a message naming one is on its way.

Real LMDB store, real media directory: references are read from stored turns, headers' pending inputs
and inbox entries; files are aged with os.utime where a test needs them older than the sweep's grace.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.media_samples import jpeg
from tests.test_inbox import hold_writer
from vigil.media.attachments import ingest
from vigil.media.files import MediaStore
from vigil.media.sweep import GRACE_S, MediaSweeper, sweep
from vigil.records.schema import Attachment, InboxEntry, Input, SessionHeader, Target, Turn
from vigil.store.store import LmdbStore

WAIT = 10.0


@pytest.fixture
def media(data_dir: Path) -> MediaStore:
    return MediaStore(data_dir / "media")


def header(key: str, **fields: Any) -> SessionHeader:
    return SessionHeader(key=key, incarnation=1, created_at=1_700_000_000.0,
                         target=Target(channel="tg", chat_id=int(key.split(":")[1])), cwd="/srv", model="m", **fields)


def with_photo(photo: Attachment, text: str = "look") -> Input:
    return Input(text=text, at=1.0, user_id=7, attachments=(photo,))


def age(media: MediaStore, *attachments: Attachment, seconds: float = GRACE_S + 60) -> None:
    """Make the files look written `seconds` ago (a photo sent an hour before the /forget)."""
    then = time.time() - seconds
    for attachment in attachments:
        os.utime(media.path(attachment.digest), (then, then))


def test_a_sweep_keeps_what_turns_pending_inputs_and_the_inbox_name(store: LmdbStore, media: MediaStore) -> None:
    in_turn, pending, inboxed, orphan = (ingest(media, jpeg(seed=i)) for i in range(4))
    turn = Turn(seq=0, started_at=1.0, status="done", inputs=(with_photo(in_turn),))
    store.commit(header("tg:1", next_seq=1), turn, create=True).result(WAIT)
    store.commit(header("tg:2", pending=(with_photo(pending),)), create=True).result(WAIT)
    entry = InboxEntry(key="tg:3", target=Target(channel="tg", chat_id=3), text="x", attachments=(inboxed,))
    store.receive(1, entry).result(WAIT)
    age(media, in_turn, pending, inboxed, orphan)

    assert store.media_references() >= {in_turn.digest, pending.digest, inboxed.digest}
    assert orphan.digest not in store.media_references()
    files, removed = sweep(store, media)
    assert (files, removed) == (1, orphan.size)
    assert sorted(media.digests()) == sorted([in_turn.digest, pending.digest, inboxed.digest])

    store.delete_session("tg:1").result(WAIT)
    store.delete_session("tg:3").result(WAIT)
    sweep(store, media)
    assert list(media.digests()) == [pending.digest]


def test_a_sweep_spares_files_written_within_its_grace(store: LmdbStore, media: MediaStore) -> None:
    young = ingest(media, jpeg(seed=1))
    old = ingest(media, jpeg(seed=2))
    age(media, old)
    sweep(store, media)
    assert list(media.digests()) == [young.digest]


def test_a_photo_arriving_while_a_forget_sweeps_is_kept(store: LmdbStore, media: MediaStore) -> None:
    """Chat 1 shared a photo long ago and is forgotten; chat 2 sends the same photo at that moment.

    The photo's file is already there (put finds it), and its inbox record cannot land before the
    sweep reads the references (the writer is held): only the file's refreshed time saves it."""
    photo = jpeg()
    shared = ingest(media, photo)
    store.commit(header("tg:1", next_seq=1), Turn(seq=0, started_at=1.0, status="done",
                                                   inputs=(with_photo(shared),)), create=True).result(WAIT)
    age(media, shared)
    store.delete_session("tg:1").result(WAIT)  # the /forget of chat 1

    blocker, release = hold_writer(store)
    try:
        again = ingest(media, photo)  # chat 2's photo arrives: the adapter stores it ...
        arriving = store.receive(2, InboxEntry(key="tg:2", target=Target(channel="tg", chat_id=2), text="same?",
                                               attachments=(again,)))  # ... and its inbox record waits
        assert again.digest == shared.digest
        assert shared.digest not in store.media_references()  # the sweep cannot see the message yet
        assert sweep(store, media) == (0, 0)
    finally:
        release.set()
    blocker.result(WAIT)
    arriving.result(WAIT)
    assert media.read(again.digest) == photo
    assert shared.digest in store.media_references()


def test_the_sweeper_runs_off_the_callers_thread_and_coalesces(store: LmdbStore, media: MediaStore) -> None:
    orphan = ingest(media, jpeg())
    young = ingest(media, jpeg(seed=5))  # spared: the second run has files to look at too
    age(media, orphan)
    entered, gate = threading.Event(), threading.Event()
    threads: list[str] = []

    class SlowStore:
        def media_suspects(self) -> dict[str, bytes]:
            return store.media_suspects()

        def media_named(self, digests: Any) -> tuple[set[str], list[bytes]]:
            threads.append(threading.current_thread().name)
            entered.set()
            gate.wait(WAIT)
            return store.media_named(digests)

        def media_settle(self, looked_at: dict[str, bytes], stale: list[bytes]) -> Any:
            return store.media_settle(looked_at, stale)

    sweeper = MediaSweeper(SlowStore(), media)  # type: ignore[arg-type]
    try:
        first = sweeper.request()
        assert entered.wait(WAIT)
        asks = [sweeper.request() for _ in range(5)]  # while the first runs: one more run serves them all
        gate.set()
        assert sweeper.wait(asks[-1], WAIT)
        assert first < asks[-1]
        assert threads == ["media-sweep", "media-sweep"]
        assert not media.has(orphan.digest)
        assert media.has(young.digest)
    finally:
        gate.set()
        sweeper.close()


def test_a_put_by_another_process_at_the_moment_of_deletion_keeps_its_file(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`vigil sessions delete` sweeps from its own process, whose lock the service's `put` does not take.

    The service stores the same bytes again just as the sweep deletes the old file (the worst moment):
    the file must be there afterwards, holding those bytes."""
    root = tmp_path / "media"
    sweeper, service = MediaStore(root), MediaStore(root)  # two instances: two processes' locks
    data = jpeg(64, 48)
    digest = sweeper.put(data)
    old = time.time() - 3600
    os.utime(sweeper.path(digest), (old, old))
    real_unlink = os.unlink
    raced: list[str] = []

    def unlink_after_a_put(path: Any, *args: Any, **kwargs: Any) -> None:
        if not raced and str(path).startswith(str(root)):
            raced.append(service.put(data))  # the other process, between the sweep's decision and the unlink
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink_after_a_put)
    sweeper.remove([digest], written_before=time.time() - 60)
    monkeypatch.undo()
    assert raced == [digest]
    assert service.has(digest) and service.path(digest).read_bytes() == data
    assert not [p for p in root.rglob("*") if p.name.endswith(".doomed")]
