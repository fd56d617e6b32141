"""Reads of compaction summaries: the newest of a conversation (what a window carries), or all of them.

Summaries live in their own database, keyed like turns (`vigil.store.engine.keys.summary`), so that a
generation's turns and summaries share one key prefix and are deleted together (`delete_session`,
`drop_generation`, `prune_generations`). They are written only with a session commit (`commit(...,
summary=...)`), in the transaction that moves the session's window past what they cover.
"""

from __future__ import annotations

import lmdb

from vigil.records.schema import Summary, decode_summary
from vigil.store.core import StoreCore
from vigil.store.engine import keys


class SummaryReads(StoreCore):
    """What a session (and /export) reads back of its summaries."""

    def summaries(self, key: str, generation: int, newest: int | None = None) -> list[Summary]:
        """The generation's summaries (only the `newest` ones, if given), oldest first: read backwards."""
        prefix = keys.turn_prefix(key, generation)
        end = keys.summary(key, generation, 2**64 - 1)

        def scan(txn: lmdb.Transaction) -> list[bytes]:
            out: list[bytes] = []
            cursor = txn.cursor(db=self._db[b"summaries"])
            if not cursor.set_range(end):
                if not cursor.last():
                    return out
            elif bytes(cursor.key()) != end and not cursor.prev():
                return out
            while (newest is None or len(out) < newest) and bytes(cursor.key()).startswith(prefix):
                out.append(bytes(cursor.value()))
                if not cursor.prev():
                    break
            return out

        return [decode_summary(raw) for raw in reversed(self._lmdb.read(scan))]
