"""The single writer: every write goes through one thread that commits in groups.

Sessions submit small write operations and (when the write must be durable
before a reply is shown) wait on the returned future. The writer takes every
operation queued at that moment, runs each in its own nested transaction (one
failing operation cannot spoil its neighbours), and commits them with one
fsync. Under load, hundreds of turns share one commit; alone, a turn pays one.
It is also the only place that grows the map: on MapFullError the batch is
aborted, the map doubled, and the batch run again.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import lmdb

from vigil.logs import get_logger
from vigil.store.lmdb_env import LmdbEnv, StoreError

WriteOp = Callable[[lmdb.Transaction], Any]
_STOP = object()


class GroupCommitWriter:
    """Owns the write transactions of one environment."""

    def __init__(self, env: LmdbEnv, max_batch: int = 1024) -> None:
        self._env = env
        self._queue: queue.SimpleQueue[tuple[WriteOp, Future[Any]] | object] = queue.SimpleQueue()
        self._max_batch = max_batch
        self._log = get_logger("vigil.store.writer")
        self._closed = False
        self.commits = 0
        self.ops = 0
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def submit(self, op: WriteOp) -> Future[Any]:
        """Queue `op`; the future resolves (to op's result) once it is durably committed."""
        future: Future[Any] = Future()
        if self._closed:
            future.set_exception(StoreError("the store is closed"))
            return future
        self._queue.put((op, future))
        return future

    def write(self, op: WriteOp) -> Any:
        """Submit and wait: returns once the write is on disk."""
        return self.submit(op).result()

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
            batch: list[tuple[WriteOp, Future[Any]]] = [first]  # type: ignore[list-item]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            self._commit(batch)

    def _commit(self, batch: list[tuple[WriteOp, Future[Any]]]) -> None:
        while True:
            outcomes: list[tuple[bool, Any]] = []
            try:
                txn = self._env.env.begin(write=True)
            except lmdb.MapResizedError:
                self._env.adopt_new_size()
                continue
            try:
                for op, _ in batch:
                    outcomes.append(self._run_one(txn, op))
                txn.commit()
            except lmdb.MapFullError:
                _abort(txn)
                size = self._env.grow()
                self._log.info("store.map_grown", map_size=size)
                continue
            except lmdb.Error as exc:
                _abort(txn)
                error = StoreError(f"the store could not save ({exc})")
                self._log.error("store.commit_failed", error=str(exc), ops=len(batch))
                for _, future in batch:
                    future.set_exception(error)
                return
            self.commits += 1
            self.ops += len(batch)
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            return

    def _run_one(self, txn: lmdb.Transaction, op: WriteOp) -> tuple[bool, Any]:
        nested = self._env.env.begin(write=True, parent=txn)
        try:
            value = op(nested)
        except lmdb.MapFullError:
            nested.abort()
            raise
        except Exception as exc:
            nested.abort()
            return False, exc
        nested.commit()
        return True, value


def _abort(txn: lmdb.Transaction) -> None:
    # A commit that failed has already released the transaction; aborting it again is harmless.
    with contextlib.suppress(lmdb.Error):
        txn.abort()
