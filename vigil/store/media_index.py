"""The store's side of a media sweep: which of the files to look at are still named, read from the index.

The index itself (vigil/store/engine/media_refs.py) is kept by the writes that add and drop references; this
part answers the sweep (vigil/media/sweep.py): the files marked since the last one, whether each is still
named, and, once the files are dealt with, the marks and stale pairs to drop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import lmdb

from vigil.store.core import StoreCore
from vigil.store.engine import keys, media_refs
from vigil.store.engine.applier import ReadWrite
from vigil.store.engine.writer import WriteFuture


class MediaIndex(StoreCore):
    """The media reference index, for sweeps and backups."""

    def media_suspects(self) -> dict[str, bytes]:
        """The files a deletion dropped a reference to since the last sweep (digest -> its mark)."""
        return dict(self._lmdb.read(lambda txn: media_refs.suspects(txn, self._db[b"media"])))

    def media_named(self, digests: Iterable[str]) -> tuple[set[str], list[bytes]]:
        """Of `digests`, those a record names now (one read transaction); and the index's stale pairs met."""
        wanted = list(digests)
        return self._lmdb.read(lambda txn: media_refs.referenced(txn, self._db, wanted))

    def media_settle(self, looked_at: dict[str, bytes], stale: list[bytes]) -> WriteFuture:
        """A sweep dealt with these marked files: drop their marks (unless marked again since) and the stale pairs."""
        return self.writer.submit_record(ReadWrite(lambda txn: (media_refs.settle(txn, self._db, looked_at, stale),
                                                                None)))

    def suspect_media(self, digests: Iterable[str]) -> WriteFuture:
        """Mark files for the next sweep to look at (a restore put files beside a store that may not name them)."""
        marks = [(keys.suspect(bytes.fromhex(d)), keys.time_value(time.time())) for d in digests]

        def op(txn: lmdb.Transaction) -> None:
            if marks:
                txn.cursor(db=self._db[b"media"]).putmulti(marks)

        return self.writer.submit(op)

    def media_references(self) -> set[str]:
        """Every file some record names, from the index (a backup copies these)."""
        return set(self._lmdb.read(lambda txn: media_refs.indexed(txn, self._db)))
