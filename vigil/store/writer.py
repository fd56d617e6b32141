"""The single writer: every write goes through one thread that commits in groups.

Sessions submit writes and (when the write must be durable before a reply is
shown) wait on the returned future. The writer takes everything queued at that
moment and commits it in one transaction with one fsync: under load, hundreds
of turns share a commit; alone, a turn pays one.

Two kinds of write: records (the per-turn session commits) are handed to a
`BatchApplier` in bulk, because py-lmdb releases the GIL around every call and
a writer making one call per put would wait for the GIL behind every session
thread; generic operations (deletes, notes, aliases) are closures run in order.
A closure that raises is rolled back and the batch run again without it, so one
failing write never spoils its neighbours. This thread is also the only place
that grows the map: on MapFullError the batch is aborted, the map doubled, and
the batch run again.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

import lmdb

from vigil.logs import get_logger
from vigil.store.lmdb_env import LmdbEnv, StoreError

WriteOp = Callable[[lmdb.Transaction], Any]
_STOP = object()


class WriteFuture:
    """The outcome of a write, available once it is durable.

    A lock used as a latch: far cheaper than concurrent.futures.Future (which builds
    a Condition per instance), and there are two of these per turn.
    """

    __slots__ = ("_error", "_latch", "_value")

    def __init__(self) -> None:
        self._latch = threading.Lock()
        self._latch.acquire()
        self._value: Any = None
        self._error: BaseException | None = None

    def set_result(self, value: Any) -> None:
        self._value = value
        self._latch.release()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._latch.release()

    def done(self) -> bool:
        if self._latch.acquire(blocking=False):
            self._latch.release()
            return True
        return False

    def result(self, timeout: float | None = None) -> Any:
        """Wait until durable; raises what the write raised (or TimeoutError)."""
        if not self._latch.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("the store did not confirm the write in time")
        self._latch.release()
        if self._error is not None:
            raise self._error
        return self._value


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


class _Record:
    __slots__ = ("future", "record")

    def __init__(self, record: Any, future: WriteFuture) -> None:
        self.record = record
        self.future = future


class GroupCommitWriter:
    """Owns the write transactions of one environment."""

    def __init__(self, env: LmdbEnv, applier: BatchApplier | None = None, max_batch: int = 2048) -> None:
        self._env = env
        self._applier = applier
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._max_batch = max_batch
        self._log = get_logger("vigil.store.writer")
        self._closed = False
        self.commits = 0
        self.ops = 0
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def submit(self, op: WriteOp) -> WriteFuture:
        """Queue a closure; the future resolves (to its result) once it is durably committed."""
        return self._put(op)

    def submit_record(self, record: Any) -> WriteFuture:
        """Queue a record for the batch applier; the future resolves to None once durable."""
        future = WriteFuture()
        return self._put(_Record(record, future), future)

    def write(self, op: WriteOp) -> Any:
        """Submit and wait: returns once the write is on disk."""
        return self.submit(op).result()

    def _put(self, item: Any, future: WriteFuture | None = None) -> WriteFuture:
        if future is None:
            future = WriteFuture()
            item = (item, future)
        if self._closed:
            future.set_exception(StoreError("the store is closed"))
            return future
        self._queue.put(item)
        return future

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[Any] = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[Any]) -> None:
        while batch:
            try:
                txn = self._env.env.begin(write=True)
            except lmdb.MapResizedError:
                self._env.adopt_new_size()
                continue
            if self._applier is not None:
                self._applier.begin(txn)
            try:
                results, failed = self._apply(txn, batch)
                if failed is not None:
                    _abort(txn)
                    if self._applier is not None:
                        self._applier.aborted()
                    index, exc = failed
                    _future(batch[index]).set_exception(exc)
                    batch = batch[:index] + batch[index + 1:]
                    continue
                txn_id = txn.id()
                txn.commit()
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
                error = StoreError(f"the store could not save ({exc})")
                self._log.error("store.commit_failed", error=str(exc), ops=len(batch))
                for item in batch:
                    _future(item).set_exception(error)
                return
            if self._applier is not None:
                self._applier.committed(txn_id)
            self.commits += 1
            self.ops += len(batch)
            for item, result in zip(batch, results, strict=True):
                future = _future(item)
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            return

    def _apply(self, txn: lmdb.Transaction, batch: list[Any]) -> tuple[list[Any], tuple[int, Exception] | None]:
        """Run the batch in order: runs of records go to the applier together, closures one by one."""
        results: list[Any] = []
        index = 0
        while index < len(batch):
            item = batch[index]
            if isinstance(item, _Record):
                end = index
                while end < len(batch) and isinstance(batch[end], _Record):
                    end += 1
                assert self._applier is not None
                results.extend(self._applier.apply(txn, [r.record for r in batch[index:end]]))
                index = end
                continue
            op, _ = item
            try:
                results.append(op(txn))
            except (lmdb.MapFullError, lmdb.MapResizedError):
                raise
            except lmdb.Error as exc:
                return results, (index, StoreError(f"the store refused a write ({exc})"))
            except Exception as exc:
                return results, (index, exc)
            index += 1
        return results, None


def _future(item: Any) -> WriteFuture:
    return item.future if isinstance(item, _Record) else item[1]


def _abort(txn: lmdb.Transaction) -> None:
    # A commit that failed has already released the transaction; aborting it again is harmless.
    with contextlib.suppress(lmdb.Error):
        txn.abort()
