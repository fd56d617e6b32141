"""Applying behind the journal: a logged commit is acknowledged at its one barrier, LMDB catches up beside it.

Why. A lone chat's durable turn is one write barrier plus the CPU around it. With LMDB applied first,
that CPU held a whole write transaction (begin, puts, commit, page writes) in front of the barrier:
about twice what SQLite spends on the same turn. The journal's record is the commit (recovery replays
it), so LMDB need not be written before the acknowledgement, only before anyone reads: the writer plans a
batch from its caches, hands its changes here, logs them with one write barrier and acknowledges; this
thread writes them into LMDB meanwhile, on the other core, during the barrier.

The rules that keep it exact:
- Reads wait until every handed change is in LMDB (`settle`), so a read sees every acknowledged write.
  They wait before entering the resize gate: this thread may need the gate to grow the map.
- Only batches the caches can plan alone come here (no read needed, nothing but records). Anything else
  (closures, a cold session, the journal full) first settles, then commits the old way, in a transaction.
- While anything handed is not yet applied, this process holds the journal's cross-process lock, so
  another process (`vigil sessions ...`) never writes in between: the caches that planned the batch stay
  true. The lock is given up once idle for LINGER_S; whoever takes it afresh checks for foreign writes.
- The checkpoint keeps every record whose changes the checkpointed state lacks (vigil.store.engine.journal).
- Should LMDB refuse a logged batch (disk full, an I/O error), the store stops: every later write and
  read raises StoreError, and the next start replays the journal, which holds everything acknowledged.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable

import lmdb

from vigil.errors import StoreError
from vigil.logs import get_logger
from vigil.store.engine import opening
from vigil.store.engine.applier import Change, InboxWrite, NeedsRead, SessionWrite, SessionWriteApplier, write
from vigil.store.engine.journal import SEQ_KEY, encode_changes
from vigil.store.engine.lmdb_env import LmdbEnv

# How long the cross-process lock is kept after the last apply: a chat talking keeps it (one syscall less a
# turn), and another process waits at most this long beyond the apply itself.
LINGER_S = 0.02
# While commits come, the thread looks for work this often, applying what gathered in one transaction (fewer
# pages, fewer GIL hand-offs with the committer); a reader waiting cuts it short.
GATHER_S = 0.002
GATHER_MAX = 256


class ApplyBehind:
    """The thread that writes logged batches into LMDB, and what readers wait on."""

    def __init__(self, env: LmdbEnv, applier: SessionWriteApplier) -> None:
        self._env = env
        self._journal = env.journal
        self._applier = applier
        self._log = get_logger(__name__)
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[tuple[int, list[Change]]] = []
        self.handed = 0  # the newest sequence handed here
        self.applied = 0  # the newest sequence in LMDB
        self.failed: BaseException | None = None
        self.on_failure: Callable[[BaseException], None] | None = None  # the writer's: told when the store stops
        self._closed = False
        self.batches = 0
        self._urgent = False  # a reader waits: apply now
        self._sleeping = False  # waiting without a timeout: a hand-off must wake it
        self._poked = False
        self._thread = threading.Thread(target=self._run, name="store-apply", daemon=True)
        self._thread.start()

    def hand(self, seq: int, changes: list[Change]) -> None:
        """A planned batch, about to be logged as `seq` (it may land in LMDB before its record is durable,
        as an LMDB-first commit always did: LMDB is synced only by a checkpoint).

        No wake-up while the thread polls (a chat is talking): a futex call less on every turn's path.
        """
        with self._cond:
            self._queue.append((seq, changes))
            self.handed = seq
            if self._sleeping or len(self._queue) >= GATHER_MAX:
                self._cond.notify()

    def poke(self) -> None:
        """The journal's cross-process lock was taken for something else: give it up once quiet (a thread
        about to sleep, or asleep, polls again)."""
        with self._cond:
            self._poked = True
            self._cond.notify()

    def commit(self, records: list[SessionWrite | InboxWrite]) -> tuple[list[BaseException | None], float] | None:
        """Plan from the caches, log with one barrier (handing the changes here just before it), publish.

        Per record None or the exception refusing it, and the barrier's seconds; None, with nothing done,
        if the batch needs the old way (a read, no room in the journal, this thread stopped).
        """
        if self.failed is not None:
            return None
        applier, journal, lock = self._applier, self._journal, self._journal.lock
        seq = -1
        lock.hold()
        try:
            if lock.unchecked:  # nobody else could write while we held the lock; since then they could have
                applier.check_foreign(int(self._env.env.info()["last_txnid"]))
                lock.unchecked = False
            applier.changes = []
            try:
                results = applier.plan(None, records)
            except NeedsRead:
                applier.aborted()
                return None
            changes = applier.changes
            took = 0.0
            if changes:
                seq = journal.next_seq()
                record = journal.record(seq, encode_changes(changes))
                if not journal.fits(len(record)):
                    applier.aborted()
                    return None
                try:
                    began = time.perf_counter()
                    journal.log(seq, record, self.hand, changes)
                    took = time.perf_counter() - began
                except OSError as exc:
                    # The journal may now hold a torn record at the place the next one would go: nothing
                    # more is logged; the restart replays what is whole.
                    self._stop(exc)
                    raise
                finally:
                    if self.handed == seq:
                        applier.committed(None)  # LMDB will hold it, whatever the barrier said
                    else:
                        applier.aborted()
        finally:
            lock.unhold(handed=self.handed == seq)
        return results, took

    @property
    def idle(self) -> bool:
        """Everything handed is in LMDB."""
        return self.applied == self.handed

    def settle(self) -> None:
        """Return once every handed change is in LMDB (raise StoreError if it never will be)."""
        if self.applied == self.handed and self.failed is None:
            return
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            while self.applied != self.handed and self.failed is None:
                self._cond.wait()
        if self.failed is not None:
            why, fix = opening.describe(self._env.path, self.failed)
            raise StoreError(f"the store stopped: a logged write could not be applied: {why}; "
                             f"{fix + ', then ' if fix else ''}restart vigil to replay it")

    def close(self) -> None:
        with contextlib.suppress(StoreError):
            self.settle()
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        """Poll every GATHER_S while commits come, applying what gathered; after LINGER_S of quiet, give the
        cross-process lock up and sleep until handed something (or poked, or closed)."""
        quiet_since = time.monotonic()
        ticked = False
        while True:
            with self._cond:
                queue = self._queue
                if queue and (ticked or self._urgent or self._closed or len(queue) >= GATHER_MAX):
                    batch, self._queue, self._urgent = queue, [], False
                elif self._closed:
                    return
                elif queue or time.monotonic() - quiet_since < LINGER_S:
                    self._cond.wait(GATHER_S)
                    ticked = True
                    continue
                else:
                    batch = []
            ticked = False
            if self._journal.lock.wanted():
                # Another process waits to commit: ours stop, what was handed goes in, then it goes first.
                self._journal.lock.give_way(functools.partial(self._drain, batch))
                if self.failed is not None:
                    return  # give_way let the lock go
                quiet_since = time.monotonic()
                continue
            if not batch:
                # Outside the condition: a committer holds the journal's lock while it hands a batch here.
                self._journal.lock.release(lambda: self.idle)
                with self._cond:
                    self._sleeping = True
                    self._cond.wait_for(lambda: self._queue or self._closed or self._urgent or self._poked)
                    self._sleeping = self._poked = False
                quiet_since = time.monotonic()
                continue
            if not self._applied(batch):
                self._journal.lock.release(lambda: True)  # stopped: no process waits on this one's lock forever
                return
            quiet_since = time.monotonic()

    def _stop(self, error: BaseException) -> None:
        """The store stops: LMDB refused a logged batch, or the journal a record."""
        self._log.critical("store.stopped", error=repr(error))
        with self._cond:
            self.failed = error
            self._cond.notify_all()
        if self.on_failure is not None:
            self.on_failure(error)

    def _drain(self, taken: list[tuple[int, list[Change]]]) -> None:
        """Apply `taken` and everything handed since (with the journal's lock held: nothing more comes)."""
        with self._cond:
            batch, self._queue = taken + self._queue, []
        if batch:
            self._applied(batch)

    def _applied(self, batch: list[tuple[int, list[Change]]]) -> bool:
        """Apply a batch and tell the readers; False (and the store stopped) if LMDB refused it."""
        try:
            self._apply(batch)
        except Exception as exc:
            self._stop(exc)
            return False
        with self._cond:
            self.applied = batch[-1][0]
            self.batches += 1
            self._cond.notify_all()
        return True

    def _apply(self, batch: list[tuple[int, list[Change]]]) -> None:
        env, dbs, writing = self._env, self._env.dbs, self._journal.writing
        while True:
            txn = env.begin_write()
            try:
                # Not the commit lock's mutex (the committer holds it through its barrier, which this overlaps):
                # `writing`, so that no checkpoint reads a meta page this commit is writing
                # (vigil.store.engine.journal).
                with writing:
                    for _, changes in batch:
                        write(txn, dbs, changes)
                    txn.put(SEQ_KEY, str(batch[-1][0]).encode(), db=dbs[b"meta"])
                    txn_id = txn.id()
                    self._applier.applying(txn_id)
                    txn.commit()
            except lmdb.MapFullError:
                txn.abort()
                self._log.info("store.map_grown", map_size=env.grow())
                continue
            except BaseException:
                with contextlib.suppress(lmdb.Error):
                    txn.abort()
                raise
            self._applier.landed(txn_id)
            self._journal.transaction()
            return
