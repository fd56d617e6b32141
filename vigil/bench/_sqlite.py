"""vigil's store against what a bot author would pick instead: SQLite, measured in the same run on the same turns.

The SQLite store is the one bots in this field keep: stdlib `sqlite3`, `journal_mode=WAL`,
`synchronous=FULL` (so a committed turn survives power loss, as vigil's does), one transaction per
turn that inserts the turn row and updates the session row, a table per record kind with a proper
primary key, and the very bytes vigil stores (`vigil.records.schema.encode` of the same records, encoded
inside the timed section on both sides).

For many chats at once it is one connection shared by all threads behind a lock (`check_same_thread=
False`). That is what a competent author does with SQLite's single writer: a connection per thread
with `busy_timeout` serialises the writers just the same, but a writer that finds the lock taken
sleeps in SQLite's busy handler (1, 2, 5, 10 ms ...) instead of being woken, which only makes SQLite
slower. Neither form shares an fsync between turns: that is vigil's group commit.

- `measure_lone`: one chat, turns committed one after another on each store, interleaved in blocks
  so that a slow stretch of a shared host hits both; the medians per turn.
- `measure_many`: `chats` threads (one per chat, as vigil's runtime has one actor per chat) each
  committing `turns_each` turns; durable turns per second on each store.
"""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time
from pathlib import Path

import msgspec

from vigil.bench._rig import _session, _turn
from vigil.records.schema import SessionHeader, Turn, encode
from vigil.store.store import open_store

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, header BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS turns (key TEXT NOT NULL, generation INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " turn BLOB NOT NULL, PRIMARY KEY (key, generation, seq)) WITHOUT ROWID",
)


class SqliteStore:
    """Sessions and turns in SQLite, durable per turn (WAL, synchronous=FULL), one connection behind a lock."""

    def __init__(self, path: Path) -> None:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT), one per turn.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        for statement in SCHEMA:
            self._db.execute(statement)

    def create(self, header: SessionHeader) -> None:
        with self._lock:
            self._db.execute("INSERT INTO sessions (key, header) VALUES (?, ?)", (header.key, encode(header)))

    def commit(self, header: SessionHeader, turn: Turn) -> None:
        """The turn row inserted and the session row updated, in one durable transaction."""
        header_bytes, turn_bytes = encode(header), encode(turn)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT INTO turns (key, generation, seq, turn) VALUES (?, ?, ?, ?)",
                                 (header.key, header.generation, turn.seq, turn_bytes))
                self._db.execute("UPDATE sessions SET header = ? WHERE key = ?", (header_bytes, header.key))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._db.close()


def _next(header: SessionHeader, i: int) -> tuple[SessionHeader, Turn]:
    seq = header.next_seq
    return msgspec.structs.replace(header, next_seq=seq + 1), _turn(seq, f"question {i} " * 20)


def measure_lone(data_dir: Path, commits: int, blocks: int = 5) -> tuple[float, float]:
    """(vigil, SQLite) median microseconds per durable turn of one chat, on the same turns."""
    data_dir.mkdir(parents=True)
    store = open_store(data_dir / "lmdb")
    sqlite = SqliteStore(data_dir / "bench.sqlite")
    header = _session(store, "lone:1", 10)
    sqlite.create(header)
    samples: dict[str, list[float]] = {"vigil": [], "sqlite": []}
    per_block = max(1, commits // blocks)
    for block in range(blocks):
        turns = []
        for i in range(per_block):
            previous = header
            header, turn = _next(header, block * per_block + i)
            turns.append((header, turn, previous))
        for name in ("vigil", "sqlite") if block % 2 == 0 else ("sqlite", "vigil"):
            for head, turn, previous in turns:
                started = time.perf_counter()
                if name == "vigil":
                    # `previous`, as the runtime passes it: the index flags are written only when they change.
                    store.commit(head, turn, previous=previous).result()
                else:
                    sqlite.commit(head, turn)
                samples[name].append(time.perf_counter() - started)
    store.close()
    sqlite.close()
    return statistics.median(samples["vigil"]) * 1e6, statistics.median(samples["sqlite"]) * 1e6


def measure_many(data_dir: Path, chats: int, turns_each: int) -> tuple[float, float]:
    """(vigil, SQLite) durable turns per second with `chats` threads committing at once, on the same turns."""
    data_dir.mkdir(parents=True)
    store = open_store(data_dir / "lmdb")
    sqlite = SqliteStore(data_dir / "bench.sqlite")
    first = {i: _session(store, f"many:{i}", 0) for i in range(chats)}
    for header in first.values():
        sqlite.create(header)
    work: dict[int, list[tuple[SessionHeader, Turn, SessionHeader]]] = {}
    for i, header in first.items():
        work[i] = []
        for n in range(turns_each):
            previous = header
            header, turn = _next(header, n)
            work[i].append((header, turn, previous))

    def vigil_chat(i: int) -> None:
        for header, turn, previous in work[i]:
            store.commit(header, turn, previous=previous).result()

    def sqlite_chat(i: int) -> None:
        for header, turn, _ in work[i]:
            sqlite.commit(header, turn)

    rates = []
    for chat in (vigil_chat, sqlite_chat):
        go = threading.Event()
        threads = [threading.Thread(target=lambda i=i, chat=chat, go=go: (go.wait(), chat(i))) for i in range(chats)]
        for thread in threads:  # every thread is started and waiting before the clock starts
            thread.start()
        started = time.perf_counter()
        go.set()
        for thread in threads:
            thread.join()
        rates.append(chats * turns_each / (time.perf_counter() - started))
    store.close()
    sqlite.close()
    return rates[0], rates[1]
