"""`RecallIndexer`: the recall index kept current from committed turns, on a thread of its own.

A session that committed a final turn durably calls `feed`: an append to a bounded queue under a
lock (about a microsecond), nothing else on its thread (the turn's words are read on the indexer's).
The indexer takes what queued up in one SQLite transaction (not fsynced: the index is derived): a
turn after a quiet spell is searchable within milliseconds; under load transactions come every
`COALESCE_S` and take in everything that came meanwhile. If the queue is full the turn is not waited
for: the index is marked behind and, once the queue is drained, catches up from the store
(vigil/recall/index.py), which is where every committed turn is anyway.

At start the index is checked against the store (`RecallIndex.plan`): caught up if it is behind,
rebuilt if it was made from another store (a restore) or by another version, made anew if its file
is damaged (here too at any later moment SQLite says so). That work runs in steps, with the queue
served between two, and searches meanwhile answer from what is indexed, saying so.

`forget` is the one call that waits: the passages' words must be read back from the store before
the store deletes them (the index holds no text), so the caller (/forget, a cleanup, retention)
calls it first and deletes after.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vigil.errors import AlreadyRunning
from vigil.logs import get_logger
from vigil.recall.db import IndexUnreadable, is_damage, remove
from vigil.recall.index import Fed, RecallIndex
from vigil.recall.search import DEFAULT_LIMIT, RecallResult, Searcher
from vigil.recall.source import TurnSource
from vigil.records.schema import Turn

QUEUE_SIZE = 50_000  # turns waiting to be indexed before the index counts itself behind
# At most one transaction this often while turns keep coming (the first turn after a quiet spell is
# taken at once): under load a transaction then takes in hundreds of turns, which share its commit
# and the pages it writes (measured on the bench's turns: 25 µs of the indexer's CPU per turn in
# transactions of 500, 14 µs in transactions of 5,000). Searchable within about this long.
COALESCE_S = 0.5
BATCH = 5000  # a transaction takes this many turns at most, and starts at once when they wait
CATCHING_UP = "recent turns may be missing: the search index is catching up with the store"


@dataclass(eq=False)
class _Job:
    kind: Literal["forget", "barrier", "rebuild", "stop"]
    key: str = ""
    generation: int | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: int = 0


class RecallIndexer:
    """The recall index of one data directory, fed from committed turns and searched from any thread."""

    def __init__(self, data_dir: Path, source: TurnSource, queue_size: int = QUEUE_SIZE,
                 coalesce_s: float = COALESCE_S) -> None:
        self._data_dir = data_dir
        self._source = source
        self._size = queue_size
        self._coalesce_s = coalesce_s
        self._cond = threading.Condition()
        self._feeds: deque[Fed] = deque()
        self._jobs: deque[_Job] = deque()
        self._next_commit = 0.0  # monotonic: when the next transaction may begin while turns keep coming
        self._behind = False
        self._suspect = False  # a search found the file damaged
        self._closed = False
        self._index: RecallIndex | None = None
        self._work: Iterator[int] | None = None
        self._waiting: list[_Job] = []  # barriers answered once no background work runs
        self._thread: threading.Thread | None = None
        self.searcher = Searcher(data_dir, source, on_damage=self._damaged)
        self.applied = 0  # turns taken in from the queue
        self.transactions = 0  # the transactions that took them in
        self.overflows = 0  # turns not queued because the queue was full (caught up from the store)
        self._log = get_logger(__name__)

    # ------------------------------------------------------------------ the callers' side

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recall-indexer", daemon=True)
        self._thread.start()

    def feed(self, key: str, incarnation: int, generation: int, turn: Turn) -> None:
        """A turn was committed durably: index it (never blocks; a full queue marks the index behind)."""
        with self._cond:
            if self._closed:
                return
            if len(self._feeds) >= self._size:
                self._behind = True
                self.overflows += 1
                return
            self._feeds.append((key, incarnation, generation, turn))
            if len(self._feeds) == 1 or len(self._feeds) == BATCH:
                self._cond.notify()

    def forget(self, key: str, generation: int | None = None, timeout: float = 300.0) -> int:
        """Take a chat's (or one conversation's) passages out of the index; the passages removed.

        Call it before the store deletes them, and wait: their words are read back from the store."""
        job = self._submit(_Job("forget", key, generation))
        if not job.done.wait(timeout):
            raise TimeoutError("the recall index did not take the chat out in time")
        return job.result

    def rebuild(self) -> None:
        """Build the index anew from the store, in the background (the live one answers meanwhile)."""
        self._submit(_Job("rebuild"))

    def wait_idle(self, timeout: float) -> bool:
        """Whether, within `timeout`, everything fed so far is searchable and no catch-up is running."""
        return self._submit(_Job("barrier")).done.wait(timeout)

    def search(self, key: str, text: str, limit: int = DEFAULT_LIMIT) -> RecallResult:
        return self.searcher.search(key, text, limit)

    def close(self, timeout: float = 10.0) -> None:
        """Index what was fed, then stop (the store must outlive this call)."""
        with self._cond:
            if self._closed:
                return
            self._jobs.append(_Job("stop"))
            self._closed = True
            self._cond.notify()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self.searcher.close()

    def _submit(self, job: _Job) -> _Job:
        with self._cond:
            if self._closed:
                job.done.set()
            else:
                self._jobs.append(job)
                self._cond.notify()
        return job

    def _damaged(self, why: str) -> None:
        """A search found the file damaged: the indexer checks it and, if so, makes it anew."""
        self._log.error("recall.search_failed", error=why)
        self._suspect = True
        self._submit(_Job("barrier"))  # wakes the indexer if it waits

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            self._open()
        except Exception as exc:
            self._log.error("recall.unavailable", error=repr(exc))
            self._unavailable()
            return
        while True:
            fed, jobs = self._take(block=self._work is None and not self._behind and not self._suspect)
            try:
                if not self._handle(fed, jobs):
                    return
                self._background()
            except (sqlite3.DatabaseError, IndexUnreadable) as exc:
                if isinstance(exc, sqlite3.DatabaseError) and not is_damage(exc):
                    # Busy, locked, full: nothing to repair; look again at the next round.
                    self._log.warning("recall.write_failed", error=repr(exc))
                    self._behind = True
                    continue
                try:
                    self._start_afresh(str(exc))
                except Exception as again:
                    self._log.error("recall.unavailable", error=repr(again))
                    self._unavailable()
                    return
            except Exception as exc:  # a bug must not stop recall for good: log it, look at everything again
                self._log.error("recall.indexer_failed", exc_info=exc)
                self._behind = True
            finally:
                for job in jobs:
                    if job.kind in ("forget", "rebuild"):
                        job.done.set()
            if self._work is None:
                for job in self._waiting:
                    job.done.set()
                self._waiting = []

    def _open(self) -> None:
        try:
            self._index = RecallIndex(self._data_dir, self._source)
        except IndexUnreadable:
            remove(self._data_dir)
            self._index = RecallIndex(self._data_dir, self._source)
        plan, why = self._index.plan()
        if plan != "ok":
            self._log.info("recall.catching_up", plan=plan, why=why)
            self._begin(plan)

    def _begin(self, plan: Literal["scan", "rebuild"]) -> None:
        assert self._index is not None
        if self._work is not None and plan == "scan":
            return  # a running scan or rebuild ends with a scan anyway
        self._work = self._index.rebuild() if plan == "rebuild" else self._index.scan()
        self.searcher.busy_note = CATCHING_UP

    def _take(self, block: bool) -> tuple[list[Fed], list[_Job]]:
        """What waits: the turns fed (all of them, up to BATCH) and the jobs. While turns keep coming, a
        transaction begins at most every `coalesce_s`, unless a job or a full batch waits."""
        with self._cond:
            if block:  # (with a catch-up running, its next step is what waits instead)
                self._cond.wait_for(lambda: bool(self._feeds or self._jobs))
                pause = self._next_commit - time.monotonic()
                if pause > 0 and not self._jobs and len(self._feeds) < BATCH:
                    self._cond.wait_for(lambda: bool(self._jobs) or len(self._feeds) >= BATCH, pause)
            count = min(len(self._feeds), BATCH)
            fed = [self._feeds.popleft() for _ in range(count)]
            jobs = list(self._jobs)
            self._jobs.clear()
        if fed:
            self._next_commit = time.monotonic() + self._coalesce_s
        return fed, jobs

    def _handle(self, fed: list[Fed], jobs: list[_Job]) -> bool:
        """Take the turns in, then do the jobs in order; False once told to stop."""
        index = self._index
        assert index is not None
        if fed:
            self.applied += index.apply(fed)
            self.transactions += 1
        for job in jobs:
            if job.kind == "forget":
                job.result = index.forget(job.key, job.generation)
            elif job.kind == "rebuild" and not index.rebuilding:
                self._work = None
                self._begin("rebuild")
            elif job.kind == "barrier":
                self._waiting.append(job)
            elif job.kind == "stop":
                index.close()
                for waiting in (*self._waiting, *jobs):
                    waiting.done.set()
                return False
        return True

    def _background(self) -> None:
        """One step of the scan or rebuild running, or start one if the index fell behind."""
        index = self._index
        assert index is not None
        if self._suspect:
            self._suspect = False
            index.check()  # raises the damage it finds: the thread then starts afresh
        if index.moved_elsewhere():  # another process swapped in a rebuilt index: catch it up
            self._behind = True
        if self._behind and self._work is None:
            self._behind = False
            plan = index.plan()[0]
            self._begin("scan" if plan == "ok" else plan)
        if self._work is None:
            return
        try:
            next(self._work)
        except StopIteration:
            self._work = None
            self.searcher.busy_note = ""
            self._log.info("recall.caught_up")
        except AlreadyRunning as busy:  # another process rebuilds: its swap will be seen and caught up
            self._work = None
            self.searcher.busy_note = ""
            self._log.info("recall.rebuild_elsewhere", detail=str(busy))

    def _start_afresh(self, why: str) -> None:
        """SQLite found the file damaged: replace it by an empty index and read the store in again."""
        self._log.error("recall.index_damaged", error=why)
        self._work = None
        if self._index is not None:
            self._index.close()
        remove(self._data_dir)
        self._index = None
        self._open()

    def _unavailable(self) -> None:
        """No index: turns fed are dropped and waiting callers released, until told to stop."""
        self.searcher.busy_note = "the search index could not be opened; see the service's log"
        while True:
            for job in self._take(block=True)[1]:
                job.done.set()
                if job.kind == "stop":
                    return
