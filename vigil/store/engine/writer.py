"""The single writer role: one owner of LMDB's write transactions at a time, committing in groups.

Writes enter one FIFO queue. Whoever holds the writer role takes everything
queued and commits it in one transaction with one fsync: under load, hundreds
of turns share a commit; alone, a turn pays one. When a thread needs its write
on disk now and nobody holds the role, it commits the queue itself (sparing two
thread hand-offs); if a commit is under way, it just waits on its own write,
and whoever finishes a commit hands what is left to the background thread,
which also commits the writes nobody waits on. Waiters never wake each other.

Two kinds of write: records (the per-turn session commits) are handed to a
`BatchApplier` in bulk, because py-lmdb releases the GIL around every call and
a writer making one call per put waits for the GIL behind every session
thread; generic operations (deletes, notes, aliases) are closures run in order.
A closure that raises is rolled back and the batch run again without it, so one
failing write never spoils its neighbours; should the applier itself raise (a
bug, or a record it cannot handle), the batch is run again one record per call
to find the culprit, and that write alone fails. Nothing a write does may end
the writer: every session's next commit would then wait forever. Only the role's holder grows the
map: on MapFullError the batch is aborted, the map doubled, the batch rerun.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import lmdb

from vigil.logs import get_logger
from vigil.store.engine import opening
from vigil.store.engine.applier import SessionWriteApplier
from vigil.store.engine.behind import ApplyBehind
from vigil.store.engine.future import WriteFuture as WriteFuture
from vigil.store.engine.lmdb_env import LmdbEnv, StoreError

WriteOp = Callable[[lmdb.Transaction], Any]


class BatchApplier(Protocol):
    """Applies many records in one transaction with few LMDB calls."""

    def begin(self, txn: lmdb.Transaction) -> None:
        """A write transaction (batch) starts: whatever it runs, records or closures."""
        ...

    def apply(self, txn: lmdb.Transaction, records: list[Any]) -> list[BaseException | None]:
        """Write the records; per record, None or the exception that refused it (nothing written for it)."""
        ...

    def committed(self, txn_id: int) -> None:
        """The transaction that applied the last batch is durable."""
        ...

    def aborted(self) -> None:
        """The last batch was rolled back; forget anything learned from it."""
        ...


# How long a record nobody waits for (a received message) may sit in the queue for a caller who waits
# to take it along: a few milliseconds, far below what a user or Telegram would notice.
LAZY_S = 0.003


class _Record:
    __slots__ = ("future", "record")

    def __init__(self, record: Any, future: WriteFuture) -> None:
        self.record = record
        self.future = future


class _Op:
    __slots__ = ("future", "op")

    def __init__(self, op: WriteOp, future: WriteFuture) -> None:
        self.op = op
        self.future = future


class GroupCommitWriter:
    """Owns the write transactions of one environment."""

    def __init__(self, env: LmdbEnv, applier: BatchApplier | None = None) -> None:
        self._env = env
        self._applier = applier
        self._queue: deque[_Record | _Op] = deque()
        self._mutex = threading.Lock()  # guards the queue and the flags below
        self._work = threading.Condition(self._mutex)  # the background thread waits here for queued writes
        self._idle = threading.Condition(self._mutex)  # notified when the role is given up (for close)
        self._leading = False  # the writer role: taken and given up under the mutex
        self._only_lazy = False  # every queued item is a record nobody waits for (a received message)
        self._closed = False
        self._log = get_logger(__name__)
        self.commits = 0
        self.ops = 0
        self.on_commit: Callable[[float], None] | None = None  # told each commit's seconds (the metrics)
        # Told what refused a write (vigil.telemetry.disk).
        self.on_failure: Callable[[BaseException], None] | None = None
        self._behind: ApplyBehind | None = None
        if env.journal.owner and isinstance(applier, SessionWriteApplier):
            self._behind = ApplyBehind(env, applier)
            self._behind.on_failure = self._failed
            env.behind = env.journal.lock.behind = self._behind
        self._thread = threading.Thread(target=self._background, name="store-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """False once the writer is gone or LMDB refused a logged batch (the watchdog then lets systemd
        restart vigil, which replays it)."""
        return self._thread.is_alive() and not self._closed and (self._behind is None or self._behind.failed is None)

    # ------------------------------------------------------------------ submitting

    def submit(self, op: WriteOp) -> WriteFuture:
        """Queue a closure; the future resolves (to its result) once it is durably committed."""
        future = WriteFuture(self)
        self._enqueue(_Op(op, future), wake=True, future=future)
        return future

    def submit_record(self, record: Any, urgent: bool = True) -> WriteFuture:
        """Queue a record for the batch applier; the future resolves to None once durable.

        `urgent` says the caller will wait for it now: its `result()` then commits the queue itself
        (or waits for the commit under way). Otherwise the background thread commits it within
        LAZY_S, unless a caller who waits commits it sooner, along with its own write.
        """
        future = WriteFuture(self)
        self._enqueue(_Record(record, future), wake=False, future=future, lazy=not urgent)
        return future

    def write(self, op: WriteOp) -> Any:
        """Submit and wait: returns once the write is on disk."""
        return self.submit(op).result()

    def _enqueue(self, item: _Record | _Op, wake: bool, future: WriteFuture, lazy: bool = False) -> bool:
        with self._mutex:
            if self._closed:
                future.set_exception(StoreError("the store is closed"))
                return False
            first = not self._queue
            self._queue.append(item)
            self._only_lazy = lazy and (first or self._only_lazy)
            # A lazy record into an empty queue starts the background thread's short wait; into a
            # non-empty one it joins whatever commits that queue. Waking it per message would cost
            # every message a thread switch, and often a transaction of its own.
            if wake or (lazy and first):
                self._work.notify()
        return True

    def close(self) -> None:
        """Commit what is queued, then stop the background thread."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._work.notify()
        self._thread.join()
        if self._behind is not None:
            self._behind.close()

    # ------------------------------------------------------------------ the role

    def lead(self, future: WriteFuture) -> None:
        """Commit the queue now if nobody is committing; else the current leader's successor will."""
        with self._mutex:
            if future.done() or self._leading:
                return
            batch = self._take_role()
        self._cycle(batch)

    def _take_role(self) -> list[_Record | _Op]:
        """With the mutex held and the role free: take the role and the queue."""
        self._leading = True
        batch = list(self._queue)
        self._queue.clear()
        return batch

    def _cycle(self, batch: list[_Record | _Op]) -> None:
        """With the role held: commit the batch, then give the role up."""
        try:
            if batch:
                self._commit(batch)
        except Exception as exc:  # the last line of defence: fail these writes, keep the writer
            self._log.error("store.commit_crashed", error=repr(exc), ops=len(batch))
            self._failed(exc)  # e.g. a full map that could not grow
            error = StoreError(f"the store could not save ({exc})")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
        finally:
            with self._mutex:
                self._leading = False
                if self._closed:  # only close waits for the role to be given up
                    self._idle.notify_all()
                if self._queue:
                    self._work.notify()

    def _background(self) -> None:
        while True:
            with self._mutex:
                deadline: float | None = None
                while not self._closed:
                    if not self._queue or self._leading:
                        deadline = None
                        self._work.wait()
                        continue
                    if not self._only_lazy:
                        break
                    # Only records nobody waits for: a session committing within this moment takes them
                    # into its own transaction (a message answered at once is then never written alone,
                    # nor at all); else they go in a transaction of their own when the moment is over.
                    now = time.monotonic()
                    deadline = now + LAZY_S if deadline is None else deadline
                    if now >= deadline:
                        break
                    self._work.wait(deadline - now)
                if self._closed:
                    while self._leading:
                        self._idle.wait()
                    if not self._queue:
                        return
                batch = self._take_role()
            self._cycle(batch)

    # ------------------------------------------------------------------ one transaction

    def _commit(self, batch: list[_Record | _Op]) -> None:
        if self._behind is not None:
            if self._commit_behind(self._behind, batch):
                return
            self._behind.settle()  # the old way reads and writes LMDB: it must hold every logged change
        lock = self._env.journal.lock
        lock.hold()  # before LMDB's writer lock, as every process takes them (vigil.store.engine.commit_lock)
        try:
            self._commit_in_transaction(batch)
        finally:
            lock.unhold()

    def _commit_in_transaction(self, batch: list[_Record | _Op]) -> None:
        singly = False  # records go to the applier one per call: set once a bulk call raised
        while batch:
            txn = self._env.begin_write()
            if self._applier is not None:
                self._applier.begin(txn)
            try:
                try:
                    results, failed = self._apply(txn, batch, singly)
                except _ApplierFailed as split:
                    _abort(txn)
                    if self._applier is not None:
                        self._applier.aborted()
                    self._log.error("store.applier_failed", error=repr(split.error), records=split.count)
                    singly = True
                    continue
                if failed is not None:
                    _abort(txn)
                    if self._applier is not None:
                        self._applier.aborted()
                    index, exc = failed
                    batch[index].future.set_exception(exc)
                    batch = batch[:index] + batch[index + 1:]
                    continue
                txn_id = txn.id()
                # Only batches of records are logged: their changes are known (the applier's); a closure's
                # are not, so a batch with one is made durable by a checkpoint (vigil.store.engine.journal).
                changes = getattr(self._applier, "changes", None)
                journal = self._env.journal
                with journal.committing():
                    seq = journal.stamp(txn) if changes is not None and all(
                        type(item) is _Record for item in batch) else None
                    began = time.perf_counter()
                    txn.commit()
                    journal.durable(seq, changes or [])
                    took = time.perf_counter() - began  # the commit and its one barrier (the journal's, or LMDB's)
            except lmdb.MapFullError:
                _abort(txn)
                if self._applier is not None:
                    self._applier.aborted()
                size = self._env.grow()
                self._log.info("store.map_grown", map_size=size)
                continue
            except lmdb.Error as exc:
                _abort(txn)
                if self._applier is not None:
                    self._applier.aborted()
                why, fix = opening.describe(self._env.path, exc)
                error = StoreError(f"the store could not save: {why}" + (f"; {fix}" if fix else ""))
                self._log.error("store.commit_failed", error=str(exc), ops=len(batch))
                self._failed(exc)
                for item in batch:
                    item.future.set_exception(error)
                return
            if self._applier is not None:
                self._applier.committed(txn_id)
            self._resolve(batch, results, took)
            return

    def _commit_behind(self, behind: ApplyBehind, batch: list[_Record | _Op]) -> bool:
        """Journal first (vigil.store.engine.behind); False, with nothing done, if the batch needs the old way."""
        records = []
        for item in batch:
            if type(item) is not _Record:
                return False
            records.append(item.record)
        done = behind.commit(records)
        if done is None:
            return False
        self._resolve(batch, *done)
        return True

    def _failed(self, error: BaseException) -> None:
        observer = self.on_failure
        if observer is not None:
            with contextlib.suppress(Exception):
                observer(error)

    def _resolve(self, batch: list[_Record | _Op], results: list[Any], took: float) -> None:
        """The batch is durable: each waiter gets its result (or the exception that refused its write)."""
        self.commits += 1
        self.ops += len(batch)
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
        if self.on_commit is not None and took:  # after the waiters were woken: they don't wait for the metrics
            with contextlib.suppress(Exception):
                self.on_commit(took)

    def _apply(self, txn: lmdb.Transaction, batch: list[_Record | _Op], singly: bool = False
               ) -> tuple[list[Any], tuple[int, Exception] | None]:
        """Run the batch in order: runs of records go to the applier together, closures one by one."""
        results: list[Any] = []
        index = 0
        while index < len(batch):
            item = batch[index]
            if isinstance(item, _Record):
                end = index + 1
                while not singly and end < len(batch) and isinstance(batch[end], _Record):
                    end += 1
                assert self._applier is not None
                try:
                    results.extend(self._applier.apply(txn, [r.record for r in batch[index:end]]))  # type: ignore[union-attr]
                except (lmdb.MapFullError, lmdb.MapResizedError):
                    raise
                except Exception as exc:
                    if end - index > 1:
                        raise _ApplierFailed(exc, end - index) from exc
                    return results, (index, StoreError(f"the store could not save this write ({exc})"))
                index = end
                continue
            try:
                results.append(item.op(txn))
            except (lmdb.MapFullError, lmdb.MapResizedError):
                raise
            except lmdb.Error as exc:
                return results, (index, StoreError(f"the store refused a write ({exc})"))
            except Exception as exc:
                return results, (index, exc)
            index += 1
        return results, None


class _ApplierFailed(Exception):
    """The applier raised on a run of records: which one is at fault is found by applying them singly."""

    def __init__(self, error: Exception, count: int) -> None:
        super().__init__(repr(error))
        self.error = error
        self.count = count


def _abort(txn: lmdb.Transaction) -> None:
    # A commit that failed has already released the transaction; aborting it again is harmless.
    with contextlib.suppress(lmdb.Error):
        txn.abort()
