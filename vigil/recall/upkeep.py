"""The recall index from the command line: `vigil sessions reindex`, and deletions by `vigil sessions ...`.

Another process than the service's: SQLite lets both write the index (one at a time), and the service's
indexer, seeing a rebuilt index swapped in, catches up what it took in meanwhile (vigil/recall/index.py).
A deletion takes the passages out first, reading their words back from the store before it deletes them
(the index holds no text). If the index cannot be opened the deletion goes on: the words are gone from
the store, so no search can show them, and the next catch-up drops what the index still holds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from vigil.errors import AlreadyRunning
from vigil.recall.index import RecallIndex, reindex
from vigil.recall.source import StoreView
from vigil.store.store import LmdbStore


def unindex(store: LmdbStore, doomed: Sequence[tuple[str, int | None]]) -> None:
    """Take these chats (generation None) and conversations out of the recall index, before the store deletes them."""
    if not doomed:
        return
    try:
        index = RecallIndex(store.data_dir, StoreView(store))
    except Exception as exc:
        print(f"vigil: the recall index could not be opened ({exc}); what is deleted can't be found by a search "
              "all the same, and `vigil sessions reindex` rebuilds the index", file=sys.stderr)
        return
    try:
        for key, generation in doomed:
            index.forget(key, generation)
    finally:
        index.close()


def reindex_command(store: LmdbStore, args: argparse.Namespace) -> int:
    """`vigil sessions reindex`: the index built anew beside the live one, then swapped in."""
    started = time.monotonic()
    try:
        turns = reindex(store.data_dir, StoreView(store))
    except AlreadyRunning as busy:
        holder = str(busy).partition("(pid ")[2].partition(")")[0] or "?"
        print(f"vigil: the recall index is being rebuilt already (pid {holder}); try again once that is done.",
              file=sys.stderr)
        return 1
    print(f"rebuilt the recall index from {turns} turn(s) in {time.monotonic() - started:.1f}s")
    return 0
