"""`RecallIndex`: the writer's side of the recall index, used from one thread at a time.

The service uses it from its indexer thread (vigil/recall/indexer.py); `vigil sessions ...` use it
directly, from their own process (SQLite serializes the two writers). It knows what to do on opening
(`plan`), how to take in committed turns (`apply`), how to catch up with the store (`scan`) and how to
build the index anew beside the live one (`rebuild`), and how to take a chat out (`forget`).

Long work (`scan`, `rebuild`) are generators that commit and yield every few hundred turns, so the
indexer thread can take in new turns and deletions between two steps, and searches see progress.

Catching up is driven by counts (vigil/recall/source.py): the index keeps, per generation, how many of
the store's turn records it has read (`seen`); their sum equal to LMDB's entry count of the turns
database (O(1) to read) and no open turn waiting means nothing was missed, which is what a clean
restart finds. Otherwise `scan` compares generation by generation and reads what is missing; what the
index has and the store no longer does (deleted behind its back) is detached, and a rebuild purges it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from vigil.lock import ProcessLock
from vigil.logs import get_logger
from vigil.recall.db import (
    LIVE,
    NEXT,
    IndexUnreadable,
    Tables,
    create_set,
    drop_set,
    get_meta,
    open_index,
    set_meta,
    swap_in,
)
from vigil.recall.passages import PASSAGES_VERSION
from vigil.recall.source import CHUNK, TurnSource
from vigil.recall.writes import SetWriter
from vigil.records.schema import Turn

REBUILD_LOCK = "recall.rebuild.lock"
Plan = Literal["ok", "scan", "rebuild"]
Fed = tuple[str, int | None, int, Turn]
"""(session key, its incarnation, generation, turn): a turn as the service committed it."""


class RecallIndex:
    """The recall index's writer: one per process that writes it."""

    def __init__(self, data_dir: Path, source: TurnSource) -> None:
        self.data_dir = data_dir
        self.source = source
        self.db, self.replaced = open_index(data_dir)
        self.epoch = get_meta(self.db, "epoch")
        self.rebuilding = False
        self._forgotten: set[str | tuple[str, int]] = set()  # since the running scan or rebuild began
        self._log = get_logger(__name__)
        if self.replaced:
            self._log.warning("recall.index_replaced", reason=self.replaced)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ what to do

    def plan(self) -> tuple[Plan, str]:
        """Whether the index matches the store: ("ok" | "scan" | "rebuild", why)."""
        db = self.db
        if get_meta(db, "purge") == "1":
            return "rebuild", "passages deleted without their words wait to be purged"
        if get_meta(db, "passages") != str(PASSAGES_VERSION):
            return "rebuild", "the index was made by another version"
        identity, recorded = self.source.identity(), get_meta(db, "store")
        if recorded and recorded != identity:
            return "rebuild", "the store is not the one the index was made from (restored or made anew)"
        seen, holes = db.execute(f"SELECT coalesce(sum(seen), 0), coalesce(sum(holes != ''), 0) "
                                 f"FROM {LIVE.cursors}").fetchone()
        if not recorded:
            return "scan", "a new index"
        if int(seen) != self.source.turn_count():
            return "scan", "the store holds turns the index has not read"
        if int(holes):
            return "scan", "turns that were open when read may have ended since"
        return "ok", ""

    def check(self) -> None:
        """Read every page of the file (SQLite's and FTS5's own checks); raise IndexUnreadable on damage."""
        try:
            problems = [str(r[0]) for r in self.db.execute("PRAGMA quick_check").fetchall()]
            if problems == ["ok"]:
                self.db.execute(f"INSERT INTO {LIVE.fts} ({LIVE.fts}, rank) VALUES ('integrity-check', 0)")
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            raise IndexUnreadable("; ".join(problems[:3]))

    def moved_elsewhere(self) -> bool:
        """Whether another process swapped a rebuilt index in since this one last looked."""
        epoch = get_meta(self.db, "epoch")
        if epoch == self.epoch:
            return False
        self.epoch = epoch
        return True

    # ------------------------------------------------------------------ turns in

    def apply(self, fed: Sequence[Fed]) -> int:
        """Take in committed turns, in one transaction; a generation with turns missing before one is
        caught up from the store first. Returns the number of turns taken."""
        writer = SetWriter(self.db, LIVE)
        with self._transaction():
            writer.preload((key, generation) for key, _, generation, _ in fed)
            for key, incarnation, generation, turn in fed:
                if writer.apply(key, incarnation, generation, turn) == "gap":
                    while writer.catch_up(self.source, key, incarnation, generation) >= CHUNK:
                        pass
            writer.flag_purge()
        return len(fed)

    def scan(self) -> Iterator[int]:
        """Catch the live set up with the store; yields (turns read) after each committed step."""
        identity = self.source.identity()
        self._forgotten.clear()
        yield from self._reconcile(LIVE)
        with self._transaction():
            if not get_meta(self.db, "store"):
                set_meta(self.db, "store", identity)

    def rebuild(self) -> Iterator[int]:
        """Build a new set from the store beside the live one, swap it in, then catch up what came meanwhile.

        One rebuild at a time per data directory, whichever process runs it (the service's indexer,
        `vigil sessions reindex`): a second raises AlreadyRunning when it begins."""
        lock = ProcessLock(self.data_dir / REBUILD_LOCK, "a rebuild of the recall index").acquire()
        identity = self.source.identity()
        self._forgotten.clear()
        self.rebuilding = True
        try:
            with self._transaction():
                drop_set(self.db, NEXT)
                create_set(self.db, NEXT)
            yield from self._reconcile(NEXT)
            with self._transaction():  # one segment: smaller, and searched faster than the many an index grows
                self.db.execute(f"INSERT INTO {NEXT.fts} ({NEXT.fts}) VALUES ('optimize')")
            swap_in(self.db, identity)
            self.epoch = get_meta(self.db, "epoch")
        finally:
            self.rebuilding = False
            lock.release()
        self._log.info("recall.rebuilt")
        self._forgotten.clear()
        yield from self._reconcile(LIVE)

    def _reconcile(self, tables: Tables) -> Iterator[int]:
        """Compare each generation's count of turn records with the store's and read what is missing."""
        writer = SetWriter(self.db, tables)
        stored = self.source.positions()
        indexed: dict[tuple[str, int], tuple[int, int, bool]] = {}
        for key, sid, generation, seen, holes in self.db.execute(
                f"SELECT c.key, c.sid, u.generation, u.seen, u.holes FROM {tables.cursors} u "
                f"JOIN {tables.chats} c ON c.sid = u.sid"):
            indexed[str(key), int(generation)] = (int(sid), int(seen), bool(holes))
        with self._transaction():
            for (key, generation), (sid, _, _) in indexed.items():
                if (key, generation) not in stored:  # deleted from the store without the index being told
                    writer.detach(sid, generation)
            writer.flag_purge()
        incarnations: dict[str, int | None] = {}
        for (key, generation), count in sorted(stored.items()):
            known = indexed.get((key, generation))
            if known is not None and known[1] == count and not known[2]:
                continue
            if key not in incarnations:
                header = self.source.header(key)
                incarnations[key] = header.incarnation if header is not None else None
            if known is not None and known[1] > count:  # the store lost turns the index has: read anew
                with self._transaction():
                    writer.detach(known[0], generation)
                    writer.flag_purge()
            while not self._was_forgotten(key, generation):
                # The store is read outside the transaction: another process's writer never waits on it.
                start = writer.resume_at(key, generation)
                chunk = self.source.chunk(key, generation, start)
                with self._transaction():
                    read = writer.catch_up(self.source, key, incarnations[key], generation, (start, chunk))
                    writer.flag_purge()
                yield read  # between transactions: the indexer takes in turns and deletions here
                if read < CHUNK:
                    break

    def _was_forgotten(self, key: str, generation: int) -> bool:
        # Forgotten since this scan began: the store is about to delete it; reading it in again would
        # leave passages whose words are gone by the time anyone wants them out.
        return key in self._forgotten or (key, generation) in self._forgotten

    # ------------------------------------------------------------------ chats out

    def forget(self, key: str, generation: int | None = None) -> int:
        """Take a chat's (or one conversation's) passages out; call it before the store deletes them.

        Their words are read back from the store to take them out of the full-text index. Returns the
        passages removed; if the store deletion then fails, the next catch-up reads them in again."""
        self._forgotten.add(key if generation is None else (key, generation))
        removed = 0
        with self._transaction():
            for tables in (LIVE, NEXT) if self.rebuilding else (LIVE,):
                writer = SetWriter(self.db, tables)
                removed += writer.forget(self.source, key, generation)
                writer.flag_purge()
        return removed

    # ------------------------------------------------------------------ helpers

    class _Txn:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, kind: object, value: object, tb: object) -> None:
            if kind is None:
                self.db.execute("COMMIT")
            elif self.db.in_transaction:
                self.db.execute("ROLLBACK")

    def _transaction(self) -> RecallIndex._Txn:
        return RecallIndex._Txn(self.db)


def reindex(data_dir: Path, source: TurnSource) -> int:
    """Build the recall index anew from the store (`vigil sessions reindex`); the turns read.

    Safe while the service runs: the new index is built beside the live one and swapped in, and the
    service's indexer, seeing the swap, catches up what it took in meanwhile. Raises AlreadyRunning
    if a rebuild is under way already."""
    index = RecallIndex(data_dir, source)
    try:
        return sum(index.rebuild())
    finally:
        index.close()
