"""The LMDB environment, writer and applier that every part of `LmdbStore` works on, and their lifecycle.

`LmdbStore` is assembled from parts of one job each (session reads, scans,
the inbox, writes); they all derive from `StoreCore`, which owns opening and
closing, the store's meta record, and whether another process wrote meanwhile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vigil.records.schema import StoreMeta, decode_meta, encode
from vigil.store.engine.applier import SessionWriteApplier
from vigil.store.engine.cursors import get
from vigil.store.engine.lmdb_env import LmdbEnv
from vigil.store.engine.writer import GroupCommitWriter

# The recovery index's flags: written, never deleted, on the hot path; readers filter.
RECOVER_YES = b"1"
RECOVER_NO = b"0"
FOREIGN_GRACE_S = 5.0

_META_KEY = b"store"


class StoreCore:
    """Opens the environment and the writer; the store's parts reach LMDB through `_lmdb`, `_db` and `writer`."""

    def __init__(self, data_dir: Path, map_mb: int = 64) -> None:
        self.data_dir = data_dir
        self._lmdb = LmdbEnv(data_dir, map_mb * 1024 * 1024)
        self._db: dict[bytes, Any] = self._lmdb.dbs
        self._applier = SessionWriteApplier(self._db)
        try:
            self.writer = GroupCommitWriter(self._lmdb, self._applier)
        except BaseException:
            self._lmdb.close()
            raise
        self.closed = False
        try:
            self._check_meta()
        except BaseException:
            self.close()
            raise

    def _check_meta(self) -> None:
        raw = self._lmdb.read(lambda txn: get(txn, _META_KEY, self._db[b"meta"]))
        if raw is None:
            meta = StoreMeta(schema=StoreMeta.CURRENT, created_at=time.time(), created_by=f"vigil pid {os.getpid()}")
            self.writer.write(lambda txn: txn.put(_META_KEY, encode(meta), db=self._db[b"meta"],
                                                  overwrite=False))
        else:
            decode_meta(raw)  # refuses a store written by a newer vigil, with a clear message

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        self._lmdb.close()

    @property
    def writer_alive(self) -> bool:
        return self.writer.alive

    @property
    def map_size(self) -> int:
        return self._lmdb.map_size

    def used_bytes(self) -> int:
        """Bytes of the map in use, up to the last page written (LMDB's own figures: cheap, any thread)."""
        self._lmdb.settle()
        env = self._lmdb.env
        return (int(env.info()["last_pgno"]) + 1) * int(env.stat()["psize"])

    def observe_commits(self, seconds: Callable[[float], None] | None) -> None:
        """Have the writer tell `seconds` how long each transaction's commit (and its fsync) took."""
        self.writer.on_commit = seconds

    def observe_failures(self, failed: Callable[[BaseException], None] | None) -> None:
        """Have the writer tell `failed` of each write LMDB or the journal refused (a full disk among them)."""
        self.writer.on_failure = failed

    def read(self, fn: Any) -> Any:
        return self._lmdb.read(fn)

    @property
    def environment(self) -> LmdbEnv:
        """The LMDB environment itself, for whole-store work: `vigil sessions stats`, `vigil backup`."""
        return self._lmdb

    def changed_elsewhere(self) -> bool:
        """Whether another process may have written since this one last committed (cheap).

        A foreign write followed at once by one of ours (the inbox record of the very message a session
        is about to answer) hides behind our transaction id; so for a short while after the writer found
        one, every session is told to look again.
        """
        if time.monotonic() - self._applier.foreign_seen_at < FOREIGN_GRACE_S:
            return True
        return not self._applier.ours(int(self._lmdb.env.info()["last_txnid"]))

    def sync(self) -> None:
        """Wait until everything submitted so far is on disk."""
        self.writer.write(lambda txn: None)
