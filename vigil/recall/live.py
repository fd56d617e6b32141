"""Recall as the running service sees it: one indexer per process, or none, behind one small port.

Sessions feed it what they commit, delete through it before the store deletes, and search it; the
runtime makes it (`recall_for`), starts it once the sessions run and closes it after they stopped,
before the store closes. A store that is not the LMDB one (a test's) has no index: `NoRecall` keeps
every caller's code the same, and says so when searched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from vigil.recall.indexer import RecallIndexer
from vigil.recall.search import DEFAULT_LIMIT, RecallResult
from vigil.recall.source import StoreView
from vigil.records.schema import Turn
from vigil.store.store import LmdbStore


class RecallPort(Protocol):
    """What sessions, commands and tools use of the recall index (`RecallIndexer` is one)."""

    def feed(self, key: str, incarnation: int, generation: int, turn: Turn) -> None:
        """A final turn was committed durably: index it, without waiting."""
        ...

    def forget(self, key: str, generation: int | None = None, timeout: float = 300.0) -> int:
        """Take a chat (or one conversation) out of the index: call before the store deletes it."""
        ...

    def search(self, key: str, text: str, limit: int = DEFAULT_LIMIT) -> RecallResult:
        """The chat's passages best matching `text`; never another chat's."""
        ...

    def start(self) -> None: ...

    def close(self, timeout: float = 10.0) -> None: ...


class NoRecall:
    """No index (a store other than LMDB): nothing is fed, nothing found, and a search says why."""

    def feed(self, key: str, incarnation: int, generation: int, turn: Turn) -> None:
        return None

    def forget(self, key: str, generation: int | None = None, timeout: float = 300.0) -> int:
        return 0

    def search(self, key: str, text: str, limit: int = DEFAULT_LIMIT) -> RecallResult:
        return RecallResult(note="searching past conversations is not available here")

    def start(self) -> None:
        return None

    def close(self, timeout: float = 10.0) -> None:
        return None


NO_RECALL = NoRecall()


def recall_for(data_dir: Path, store: object) -> RecallPort:
    """The process's recall index over its store: an indexer (not started) for the LMDB store, else none."""
    if isinstance(store, LmdbStore):
        return RecallIndexer(data_dir, StoreView(store))
    return NO_RECALL
