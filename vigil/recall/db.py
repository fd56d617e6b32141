"""The recall index's SQLite file: opening it (or starting it afresh), its tables, its meta values.

One file, `<data dir>/recall.sqlite3`, in WAL mode: one writer (the indexer thread of the service, or
`vigil sessions ...` from another process, serialized by SQLite's own locks) and readers beside it
that never wait for the writer. `synchronous=NORMAL`: a commit is not fsynced (the index is derived:
what a power cut takes is caught up from the store at the next start) but the file never tears.

Tables (a "table set"; a rebuild fills a second set, suffixed `_next`, and swaps it in by renaming):
- `fts`: FTS5, contentless (`content=''`): the terms and positions of each passage, no text; rowid =
  `sid << 32 | n`, so one chat's passages are one rowid range and a query names its range;
- `rows`: rowid -> (generation, seq, part, checksum) of the passage;
- `chats`: session key -> sid (and the incarnation the rows belong to, and the next n);
- `cursors`: per (sid, generation) how far the store's turns were read (`next_seq`), how many turn
  records that accounts for (`seen`: summed, it is compared with the store's count at start-up) and
  the seqs of turns that were still open when read (`holes`: indexed once final).
Outside the sets, `meta` holds the index format, the passages version, the store's identity, the
epoch (bumped by every swap, so another process's writer notices) and whether a purge is due.

A file that is not a readable index of this format (damaged, not SQLite, another format) is removed
and made anew: it is derived data, never worth a crash.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from vigil.recall.passages import PASSAGES_VERSION

FILE_NAME = "recall.sqlite3"
FORMAT = 1
BUSY_TIMEOUT_S = 10.0
# Porter stems English words ("decided" finds "decide"); unicode61 folds case and, with 2, diacritics of
# every script. Words of scripts without spaces (Chinese, Japanese) index as whole runs: see the README.
TOKENIZER = "porter unicode61 remove_diacritics 2"


@dataclass(frozen=True)
class Tables:
    """The names of one table set."""

    fts: str
    rows: str
    chats: str
    cursors: str

    @classmethod
    def named(cls, suffix: str = "") -> Tables:
        return cls(f"fts{suffix}", f"rows{suffix}", f"chats{suffix}", f"cursors{suffix}")


LIVE = Tables.named()
NEXT = Tables.named("_next")


class IndexUnreadable(Exception):
    """The file is not a usable index (damaged, not SQLite, another format)."""


_CORRUPT, _NOTADB = 11, 26


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file is damaged (not merely busy, locked or full): then it is made anew."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (_CORRUPT, _NOTADB)


def paths(data_dir: Path) -> tuple[Path, Path, Path]:
    base = data_dir / FILE_NAME
    return base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm")


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from one thread at a time."""
    if not path.exists():
        # Made private before SQLite opens it: its -wal and -shm files take the same mode.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA temp_store=MEMORY")
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def create_set(db: sqlite3.Connection, tables: Tables) -> None:
    db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {tables.fts} USING fts5(body, content='', "
               f"tokenize='{TOKENIZER}')")
    db.execute(f"CREATE TABLE IF NOT EXISTS {tables.rows} (id INTEGER PRIMARY KEY, generation INTEGER NOT NULL, "
               "seq INTEGER NOT NULL, part INTEGER NOT NULL, crc INTEGER NOT NULL)")
    db.execute(f"CREATE TABLE IF NOT EXISTS {tables.chats} (sid INTEGER PRIMARY KEY AUTOINCREMENT, "
               "key TEXT NOT NULL UNIQUE, "
               "incarnation INTEGER NOT NULL, next_row INTEGER NOT NULL DEFAULT 0)")
    db.execute(f"CREATE TABLE IF NOT EXISTS {tables.cursors} (sid INTEGER NOT NULL, generation INTEGER NOT NULL, "
               "next_seq INTEGER NOT NULL, seen INTEGER NOT NULL, holes TEXT NOT NULL DEFAULT '', "
               "PRIMARY KEY (sid, generation)) WITHOUT ROWID")


def drop_set(db: sqlite3.Connection, tables: Tables) -> None:
    for name in (tables.fts, tables.rows, tables.chats, tables.cursors):
        db.execute(f"DROP TABLE IF EXISTS {name}")


def _initialise(db: sqlite3.Connection) -> None:
    # auto_vacuum must be chosen before the first table: pages a rebuild frees go back to the system.
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone() is None:
            db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID")
            db.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("format", str(FORMAT)), ("passages", str(PASSAGES_VERSION)), ("store", ""), ("epoch", "0"),
                ("purge", "0")])
            create_set(db, LIVE)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _check(db: sqlite3.Connection) -> None:
    """Raise IndexUnreadable unless `db` is an index of this format whose live tables answer."""
    try:
        fmt = get_meta(db, "format")
        if fmt != str(FORMAT):
            raise IndexUnreadable(f"the index has format {fmt!r}, this vigil writes {FORMAT}")
        for name in (LIVE.rows, LIVE.chats, LIVE.cursors):
            db.execute(f"SELECT 1 FROM {name} LIMIT 1").fetchall()
        db.execute(f"SELECT rowid FROM {LIVE.fts} WHERE {LIVE.fts} MATCH 'x' LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise IndexUnreadable(str(exc)) from None


def remove(data_dir: Path) -> None:
    for path in paths(data_dir):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def open_index(data_dir: Path) -> tuple[sqlite3.Connection, str]:
    """The writer's connection, and "" or why the file found there was replaced by an empty index."""
    path = paths(data_dir)[0]
    replaced = ""
    for _ in range(2):
        db: sqlite3.Connection | None = None
        try:
            db = connect(path)
            _initialise(db)
            _check(db)
            return db, replaced
        except (sqlite3.DatabaseError, IndexUnreadable) as exc:
            if db is not None:
                db.close()
            replaced = str(exc) or type(exc).__name__
            remove(data_dir)
    raise IndexUnreadable(f"the recall index at {path} could not be made: {replaced}")


def get_meta(db: sqlite3.Connection, key: str) -> str:
    row = db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
    return "" if row is None else str(row[0])


def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v", (key, value))


def swap_in(db: sqlite3.Connection, store_identity: str) -> None:
    """Make the `_next` set live in one transaction (readers see the old set or the new, never a mix)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        drop_set(db, LIVE)
        for old, new in zip((NEXT.fts, NEXT.rows, NEXT.chats, NEXT.cursors),
                            (LIVE.fts, LIVE.rows, LIVE.chats, LIVE.cursors), strict=True):
            db.execute(f"ALTER TABLE {old} RENAME TO {new}")
        set_meta(db, "epoch", str(int(get_meta(db, "epoch") or 0) + 1))
        set_meta(db, "store", store_identity)
        set_meta(db, "passages", str(PASSAGES_VERSION))
        set_meta(db, "purge", "0")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("PRAGMA incremental_vacuum")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
