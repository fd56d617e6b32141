"""What the recall index reads from the store: turns, titles, and what tells it whether it is behind.

The store stays the truth: the index holds no text, so a search reads each hit's turn back (and its
conversation's title) here, and catching up or rebuilding reads the turns it missed. Besides
`LmdbStore`'s own reads, the index needs three cheap figures the Store port has no use for, read here
from the environment directly:
- `identity`: the inode of data.mdb and the store's creation time: a store put back by `vigil restore`
  (a new file) or made afresh reads differently, and the index is then rebuilt;
- `turn_count`: LMDB's entry count of the turns database, O(1): equal to the index's count of turn
  records it accounted for means nothing was missed (vigil/recall/catchup.py);
- `positions`: every (key, generation) and how many turn records it holds, by walking the keys only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

import lmdb

from vigil.errors import UnreadableRecord
from vigil.logs import get_logger
from vigil.records.schema import SessionHeader, Turn, decode_meta, decode_turn
from vigil.store.engine import keys
from vigil.store.store import LmdbStore

CHUNK = 500  # turns read per read transaction while catching up or rebuilding
_TURN_TAIL = 1 + 12  # SEP + generation (u32) + seq (u64) after the session key


class TurnSource(Protocol):
    """The store as the recall index sees it (`StoreView` over the real store)."""

    def identity(self) -> str: ...

    def turn_count(self) -> int: ...

    def positions(self, key: str | None = None) -> dict[tuple[str, int], int]: ...

    def header(self, key: str) -> SessionHeader | None: ...

    def turn(self, key: str, generation: int, seq: int) -> Turn | None: ...

    def title(self, key: str, generation: int) -> str: ...

    def chunk(self, key: str, generation: int, start: int) -> list[tuple[int, Turn | None]]: ...

    def turns_from(self, key: str, generation: int, start: int) -> Iterator[list[tuple[int, Turn | None]]]: ...


class StoreView:
    """`TurnSource` on an open `LmdbStore` (the process's one)."""

    def __init__(self, store: LmdbStore) -> None:
        self.store = store
        self._db = store.environment.dbs
        self._log = get_logger(__name__)

    def identity(self) -> str:
        raw = self.store.read(lambda txn: txn.get(b"store", db=self._db[b"meta"]))
        created = decode_meta(bytes(raw)).created_at if raw is not None else 0.0
        try:
            inode = os.stat(self.store.data_dir / "data.mdb").st_ino
        except OSError:
            inode = 0
        return f"{inode}:{created!r}"

    def turn_count(self) -> int:
        return int(self.store.read(lambda txn: txn.stat(self._db[b"turns"])["entries"]))

    def positions(self, key: str | None = None) -> dict[tuple[str, int], int]:
        """How many turn records each (key, generation) holds: all sessions', or `key`'s."""
        prefix = keys.turn_prefix(key) if key is not None else b""

        def walk(txn: lmdb.Transaction) -> dict[tuple[str, int], int]:
            counts: dict[tuple[bytes, int], int] = {}
            cursor = txn.cursor(db=self._db[b"turns"])
            if not cursor.set_range(prefix):
                return {}
            for raw in cursor.iternext(keys=True, values=False):
                raw = bytes(raw)
                if not raw.startswith(prefix):
                    break
                name = raw[:-_TURN_TAIL]
                generation = keys.turn_position(raw)[0]
                counts[name, generation] = counts.get((name, generation), 0) + 1
            return {(name.decode(errors="replace"), generation): n for (name, generation), n in counts.items()}

        found: dict[tuple[str, int], int] = self.store.read(walk)
        return found

    def header(self, key: str) -> SessionHeader | None:
        try:
            return self.store.header(key)
        except UnreadableRecord:
            return None

    def turn(self, key: str, generation: int, seq: int) -> Turn | None:
        try:
            return self.store.turn(key, generation, seq)
        except UnreadableRecord:
            return None

    def title(self, key: str, generation: int) -> str:
        """A past conversation's title, from its own record ("" if it has none, or none can be read)."""
        try:
            past = self.store.conversation(key, generation)
        except UnreadableRecord:
            return ""
        return past.title if past is not None else ""

    def chunk(self, key: str, generation: int, start: int) -> list[tuple[int, Turn | None]]:
        """(seq, turn) of up to CHUNK turns of a generation from seq `start` on, in one read; None: unreadable."""
        first = keys.turn(key, generation, start)
        prefix = keys.turn_prefix(key, generation)

        def scan(txn: lmdb.Transaction) -> list[tuple[bytes, bytes]]:
            out: list[tuple[bytes, bytes]] = []
            cursor = txn.cursor(db=self._db[b"turns"])
            if not cursor.set_range(first):
                return out
            for raw_key, value in cursor.iternext():
                if not bytes(raw_key).startswith(prefix) or len(out) >= CHUNK:
                    break
                out.append((bytes(raw_key), bytes(value)))
            return out

        chunk: list[tuple[int, Turn | None]] = []
        for raw_key, value in self.store.read(scan):
            seq = keys.turn_position(raw_key)[1]
            try:
                chunk.append((seq, decode_turn(value)))
            except UnreadableRecord as exc:  # counted as read, never indexed: its words can't be known
                self._log.warning("recall.turn_unreadable", session=key, generation=generation, seq=seq,
                                  error=str(exc))
                chunk.append((seq, None))
        return chunk

    def turns_from(self, key: str, generation: int, start: int) -> Iterator[list[tuple[int, Turn | None]]]:
        """`chunk` after `chunk` from seq `start` to the generation's end."""
        while True:
            chunk = self.chunk(key, generation, start)
            if chunk:
                yield chunk
            if len(chunk) < CHUNK:
                return
            start = chunk[-1][0] + 1
