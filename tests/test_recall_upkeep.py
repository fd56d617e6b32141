"""Keeping the recall index right: catching up when behind, rebuilding after a restore, a damaged file
made anew, a chat recreated elsewhere, a full queue, and searches running beside the indexer.

Real files throughout: the LMDB store, the SQLite index, the indexer's own thread; the restore is
`vigil restore`'s own code on a backup `vigil backup`'s code took.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.recall_chats import Chat
from vigil.config.settings import load_settings
from vigil.errors import AlreadyRunning
from vigil.ops.backup import take_backup
from vigil.ops.restore import restore_backup
from vigil.recall import RecallIndex, RecallIndexer, StoreView, reindex
from vigil.recall.db import paths
from vigil.recall.source import CHUNK
from vigil.records.schema import Turn
from vigil.store.store import LmdbStore, open_store


def plan_of(data_dir: Path, store: LmdbStore) -> str:
    index = RecallIndex(data_dir, StoreView(store))
    try:
        return index.plan()[0]
    finally:
        index.close()


def started(data_dir: Path, store: LmdbStore, **kwargs: int) -> RecallIndexer:
    indexer = RecallIndexer(data_dir, StoreView(store), **kwargs)
    indexer.start()
    assert indexer.wait_idle(30)
    return indexer


def test_behind_is_told_cheaply_and_caught_up_at_start(store: LmdbStore, data_dir: Path) -> None:
    chat = Chat(store, "tg:1")
    indexer = started(data_dir, store)
    chat.say("the first words", "first reply", indexer=indexer)
    assert indexer.wait_idle(10)
    indexer.close()
    assert plan_of(data_dir, store) == "ok"  # every turn read: nothing to do at the next start
    # Committed but never fed (the service died between the commit and the indexer's transaction).
    chat.say("the missed words about otters", "otters hold hands")
    chat.new_conversation("two")
    chat.say("more missed words", "otters again")
    assert plan_of(data_dir, store) == "scan"
    indexer = started(data_dir, store)
    try:
        assert len(indexer.search(chat.key, "otters").hits) == 3
        assert indexer.search(chat.key, "first").hits
    finally:
        indexer.close()
    assert plan_of(data_dir, store) == "ok"


def test_a_restored_store_gets_an_index_of_its_own(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (tmp_path / "work").mkdir()
    settings = load_settings({"VIGIL_DATA_DIR": str(data_dir), "VIGIL_WORKDIR_ROOT": str(tmp_path / "work"),
                              "HOME": str(tmp_path)})
    store = open_store(data_dir)
    chat = Chat(store, "tg:1")
    indexer = started(data_dir, store)
    chat.say("before the backup: walrus", "walrus noted", indexer=indexer)
    assert indexer.wait_idle(10)
    indexer.close()
    store.close()
    take_backup(settings, tmp_path / "backup")
    store = open_store(data_dir)
    chat.store = store
    indexer = started(data_dir, store)
    chat.say("after the backup: narwhal", "narwhal noted", indexer=indexer)
    assert indexer.wait_idle(10) and indexer.search(chat.key, "narwhal").hits
    indexer.close()
    store.close()
    restore_backup(settings, tmp_path / "backup")
    store = open_store(data_dir)
    try:
        assert plan_of(data_dir, store) == "rebuild"
        indexer = started(data_dir, store)
        try:
            assert not indexer.search(chat.key, "narwhal").hits  # not in the restored store
            assert len(indexer.search(chat.key, "walrus").hits) == 2
        finally:
            indexer.close()
        db = sqlite3.connect(paths(data_dir)[0])
        try:  # rebuilt, not merely hidden: the words the restored store lacks are not in the file
            assert db.execute("SELECT count(*) FROM fts WHERE fts MATCH 'narwhal'").fetchone()[0] == 0
        finally:
            db.close()
    finally:
        store.close()


@pytest.mark.parametrize("damage", ["header", "pages"])
def test_a_damaged_index_is_made_anew_never_a_crash(store: LmdbStore, data_dir: Path, damage: str) -> None:
    chat = Chat(store, "tg:1")
    for n in range(300):
        chat.say(f"line {n} about pelicans and word{n}", f"reply {n} with more words than one", name="Cy")
    indexer = started(data_dir, store)
    assert indexer.search(chat.key, "word299").hits
    path = paths(data_dir)[0]
    if damage == "header":
        indexer.close()
        path.write_bytes(b"this is not a database at all " * 200)
        indexer = started(data_dir, store)
    else:
        # Scribble over the full-text index's pages while the indexer runs: a search trips on them.
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # every page in the main file
        pages = [row[0] for row in db.execute("SELECT pageno FROM dbstat WHERE name = 'fts_data'")]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        db.close()
        noise = random.Random(3)
        with open(path, "r+b") as handle:
            for page in pages:
                handle.seek((page - 1) * size)
                handle.write(noise.randbytes(size))
        broken = indexer.search(chat.key, "pelicans")
        assert not broken.hits and "rebuilt" in broken.note
    try:
        deadline = threading.Event()
        for _ in range(300):
            if indexer.wait_idle(10) and indexer.search(chat.key, "word123").hits:
                break
            deadline.wait(0.05)
        hits = indexer.search(chat.key, "word123").hits
        assert [h.seq for h in hits] == [123]
        assert len(indexer.search(chat.key, "pelicans", limit=20).hits) == 20
    finally:
        indexer.close()


def test_a_chat_recreated_elsewhere_loses_its_old_words(store: LmdbStore, data_dir: Path) -> None:
    indexer = started(data_dir, store)
    old = Chat(store, "tg:1", incarnation=1)
    old.say("the old secret is flamingo", "flamingo kept", indexer=indexer)
    assert indexer.wait_idle(10)
    # Another process deleted the session without telling the index; the chat went on as a new one.
    store.delete_session(old.key).result()
    new = Chat(store, "tg:1", incarnation=2)
    new.say("a fresh start with toucans", "toucans it is", indexer=indexer)
    assert indexer.wait_idle(10)
    assert not indexer.search(new.key, "flamingo").hits  # unfindable at once
    assert indexer.search(new.key, "toucans").hits
    other = Chat(store, "tg:2")  # a chat made after it gets rows of its own, never the orphaned ones
    other.say("hello", "no birds here", indexer=indexer)
    assert indexer.wait_idle(10)
    assert not indexer.search(other.key, "flamingo").hits
    indexer.close()
    assert plan_of(data_dir, store) == "rebuild"  # its words are still in the file: purged by a rebuild
    indexer = started(data_dir, store)
    indexer.close()
    db = sqlite3.connect(paths(data_dir)[0])
    try:
        assert db.execute("SELECT count(*) FROM fts WHERE fts MATCH 'flamingo'").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM fts WHERE fts MATCH 'toucans'").fetchone()[0] == 2
    finally:
        db.close()
    assert plan_of(data_dir, store) == "ok"


class GatedView(StoreView):
    """The real store, with the indexer's reads held at a gate (to fill its queue meanwhile)."""

    def __init__(self, store: LmdbStore) -> None:
        super().__init__(store)
        self.gate = threading.Event()
        self.held = threading.Event()

    def chunk(self, key: str, generation: int, start: int) -> list[tuple[int, Turn | None]]:
        self.held.set()
        assert self.gate.wait(30)
        return super().chunk(key, generation, start)


def test_a_full_queue_never_blocks_a_turn_and_is_caught_up(store: LmdbStore, data_dir: Path) -> None:
    indexer = started(data_dir, store)
    indexer.close()
    view = GatedView(store)
    indexer = RecallIndexer(data_dir, view, queue_size=4)
    indexer.start()
    chat = Chat(store, "tg:1")
    try:
        chat.store.commit(chat.header).result()
        chat.say("seq zero, fed out of order", "zero")
        turn = chat.say("seq one", "one")
        indexer.feed(chat.key, chat.header.incarnation, 1, turn)  # a gap: the indexer reads the store, held
        assert view.held.wait(10)
        for n in range(20):  # the queue holds 4: the rest are dropped, never waited for
            chat.say(f"while held {n} gannets", f"gannet {n}", indexer=indexer)
        assert indexer.overflows >= 15
        view.gate.set()
        assert indexer.wait_idle(30)
        assert len(indexer.search(chat.key, "gannets", limit=20).hits) == 20
        assert indexer.search(chat.key, "zero").hits
    finally:
        view.gate.set()
        indexer.close()


def test_searches_beside_the_indexer_see_their_chat_only(store: LmdbStore, data_dir: Path) -> None:
    indexer = started(data_dir, store)
    chats = [Chat(store, f"tg:{n}") for n in range(3)]
    problems: list[str] = []
    stop = threading.Event()

    def search(chat: Chat) -> None:
        while not stop.is_set():
            for hit in indexer.search(chat.key, "shared words", limit=20).hits:
                if hit.key != chat.key or f"from {chat.key}" not in hit.text:
                    problems.append(f"{chat.key} found {hit.key}: {hit.text}")

    readers = [threading.Thread(target=search, args=(c,)) for c in chats]
    for reader in readers:
        reader.start()
    try:
        for n in range(CHUNK // 2):
            chat = chats[n % 3]
            chat.say(f"shared words from {chat.key} number {n}", f"shared words from {chat.key} reply {n}",
                     indexer=indexer)
        assert indexer.wait_idle(30)
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
        indexer.close()
    assert not problems, problems[:3]
    indexer = started(data_dir, store)
    try:
        for chat in chats:
            assert indexer.search(chat.key, f"number {len(chats) * 80 + chats.index(chat)}").hits
    finally:
        indexer.close()


def test_reindex_beside_a_running_indexer_loses_nothing(store: LmdbStore, data_dir: Path) -> None:
    indexer = started(data_dir, store)
    chat = Chat(store, "tg:1")
    try:
        chat.say("the puffin nests here", "puffins indeed", indexer=indexer)
        assert indexer.wait_idle(10)
        view = GatedView(store)
        done: list[int] = []
        rebuilding = threading.Thread(target=lambda: done.append(reindex(data_dir, view)))
        rebuilding.start()  # as `vigil sessions reindex` from another shell
        assert view.held.wait(10)  # the rebuild is reading the store...
        chat.say("meanwhile a grebe", "grebes too", indexer=indexer)  # ...while the service takes a turn in
        assert indexer.wait_idle(10)
        with pytest.raises(AlreadyRunning):  # one rebuild at a time
            reindex(data_dir, StoreView(store))
        view.gate.set()
        rebuilding.join(30)
        assert done and done[0] >= 1
        chat.say("after it a heron", "herons", indexer=indexer)
        assert indexer.wait_idle(10)
        for word in ("puffin", "grebe", "heron"):
            assert len(indexer.search(chat.key, word).hits) == 2, word
    finally:
        indexer.close()
    db = sqlite3.connect(paths(data_dir)[0])
    try:
        assert db.execute("SELECT v FROM meta WHERE k = 'epoch'").fetchone()[0] == "1"
        assert db.execute("SELECT count(*) FROM rows").fetchone()[0] == 6
    finally:
        db.close()
    assert plan_of(data_dir, store) == "ok"


def test_an_index_of_another_format_is_made_anew(store: LmdbStore, data_dir: Path) -> None:
    chat = Chat(store, "tg:1")
    chat.say("a word: cormorant", "cormorants dive")
    started(data_dir, store).close()
    db = sqlite3.connect(paths(data_dir)[0])
    db.execute("UPDATE meta SET v = '99' WHERE k = 'format'")  # as a newer vigil would have left it
    db.commit()
    db.close()
    indexer = started(data_dir, store)
    try:
        assert len(indexer.search(chat.key, "cormorant").hits) == 2
    finally:
        indexer.close()
    db = sqlite3.connect(paths(data_dir)[0])
    try:
        assert db.execute("SELECT v FROM meta WHERE k = 'format'").fetchone()[0] == "1"
    finally:
        db.close()
