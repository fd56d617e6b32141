"""LmdbStore: sessions, turns, notes, usage and the indexes, on one LMDB environment.

The face of the store: `LmdbStore` is assembled here from parts of one job each,
and today's public names are re-exported so that `from vigil.store.store import
LmdbStore, open_store, SessionGone, ...` keeps working.

- `core`: the environment, the group-commit writer, lifecycle, foreign writes;
- `reads`: one session's header, turns, generations, notes; the start-up indexes;
- `scans`: every header and usage row, naming the records that can't be read;
- `inbox`: received messages waiting for the session commit that takes them up;
- `summaries`: what compaction made of a conversation's oldest turns;
- `media_index`: which files the records still name, for sweeps and backups (`media_refs` keeps the index);
- `upgrade`: a store of an earlier schema brought to this one when it is opened, once;
- `writes`: the per-turn commit and the rarer session writes;
- `deletes`: sessions and past conversations deleted in bounded, journaled chunks;
- `applier`: the bulk records (`SessionWrite`, `InboxWrite`) and how a batch of them is planned and applied;
- `cursors`: the cursor helpers they share.

Beneath them: `writer` (the group commit) and `future`; `journal` (the durable point) and `records` (its
records on disk), `behind` (LMDB written beside the committer), `commit_lock` (who may write, across
processes), `checkpoint`; `opening` (the map an open starts with, and the sentence when it fails).

Reads run in the caller's thread (LMDB read transactions are cheap and never
block the writer; they wait only until LMDB holds every acknowledged write). Writes go to the
group-commit writer; each returns a future that resolves once the write is durable. The recovery and
heartbeat indexes hold a flag per session (written, never deleted, on the hot path); readers filter.
"""

from __future__ import annotations

import threading
from pathlib import Path

from vigil.errors import CorruptRecord, SessionGone
from vigil.ports import Unreadable, UsageEntry, UsageRow
from vigil.store.core import FOREIGN_GRACE_S, RECOVER_NO, RECOVER_YES
from vigil.store.deletes import SessionDeletes
from vigil.store.engine.applier import INCARNATION_CACHE_LIMIT, InboxWrite, SessionWrite, SessionWriteApplier
from vigil.store.engine.lmdb_env import StoreError
from vigil.store.inbox import StoreInbox
from vigil.store.media_index import MediaIndex
from vigil.store.reads import SessionReads
from vigil.store.scans import Scans, unreadable_line, utc_day
from vigil.store.summaries import SummaryReads
from vigil.store.upgrade import upgrade
from vigil.store.writes import HEARTBEAT_OFF, SessionWrites


class LmdbStore(SessionReads, Scans, StoreInbox, SessionWrites, SessionDeletes, SummaryReads, MediaIndex):
    """The real store port."""

    def __init__(self, data_dir: Path, map_mb: int = 64) -> None:
        super().__init__(data_dir, map_mb)
        try:
            upgrade(self)
        except BaseException:
            self.close()
            raise


_OPEN: dict[Path, LmdbStore] = {}
_OPEN_LOCK = threading.Lock()


def open_store(data_dir: Path, map_mb: int = 64) -> LmdbStore:
    """The process's one store for `data_dir` (LMDB wants one Environment per process)."""
    path = data_dir.resolve()
    with _OPEN_LOCK:
        store = _OPEN.get(path)
        if store is None or store.closed:
            store = LmdbStore(path, map_mb)
            _OPEN[path] = store
        return store


__all__ = ["FOREIGN_GRACE_S", "HEARTBEAT_OFF", "INCARNATION_CACHE_LIMIT", "RECOVER_NO", "RECOVER_YES",
           "CorruptRecord", "InboxWrite", "LmdbStore", "SessionGone", "SessionWrite", "SessionWriteApplier",
           "StoreError", "Unreadable", "UsageEntry", "UsageRow", "open_store", "unreadable_line", "utc_day"]
