"""The one LMDB environment of a data directory, and the gate that lets it grow.

LMDB may only change its map size while no transaction is open anywhere in the
process. Readers therefore hold a shared gate for the (microseconds-long) life
of their read transaction and the single writer takes it exclusively to grow
the map. Another process (`vigil sessions ...`) may have grown the map: then
beginning a transaction fails with MapResizedError and we adopt the new size.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import lmdb

from vigil.errors import StoreError as StoreError  # its old home: re-exported
from vigil.logs import get_logger
from vigil.store.engine import checkpoint, opening
from vigil.store.engine.journal import Journal

T = TypeVar("T")


class _Settled(Protocol):
    def settle(self) -> None:
        """Return once every batch handed to the apply thread (vigil.store.engine.behind) is in LMDB."""

DB_NAMES = (b"meta", b"sessions", b"turns", b"heartbeats", b"usage", b"members", b"recover",
            b"aliases", b"notes", b"inbox", b"summaries", b"updates", b"held", b"conversations", b"media")
MAX_DBS = 32  # 16 named now; room to add more without touching old stores (a per-process limit)
MAX_READERS = 4096


PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private(path: Path, mode: int) -> None:
    """Readable by the service user only: set explicitly, so neither the umask nor an older install decides.

    Conversations, notes and usage are in the store; a path owned by someone else is left as it is.
    """
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if path.stat().st_mode & 0o7777 != mode:
            os.chmod(path, mode)


class _ResizeGate:
    """Many readers or one resizer, never both."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._resizing = False

    # enter/leave rather than a context manager: every store read passes here.
    def enter(self) -> None:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._readers += 1

    def leave(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0 and self._resizing:
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class LmdbEnv:
    """An opened environment with its named databases."""

    def __init__(self, path: Path, map_size: int) -> None:
        """Open (and, after an unclean end, recover) the store at `path`; `map_size` is the least map.

        Raises StoreError, one sentence, if it cannot (vigil.store.engine.opening), having let go of every lock
        and descriptor it took: the same process may try again.
        """
        self.path = path
        self.gate = _ResizeGate()
        self.behind: _Settled | None = None  # the owner's apply thread, once the writer started it
        self._open_lock = -1
        self.journal: Journal  # set by _open, as is env
        self.env: lmdb.Environment
        try:
            self._open(path, map_size)
        except BaseException as exc:
            self._abandon()
            if not isinstance(exc, Exception):
                raise
            raise opening.open_failure(path, exc) from None

    def _open(self, path: Path, map_size: int) -> None:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        # Held shared for the process's life; exclusive only by a process that finds nobody else in the store,
        # which alone may put checkpointed meta pages back and replay the journal (vigil.store.engine.journal).
        self._open_lock = os.open(path / "open.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        try:
            fcntl.flock(self._open_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            restored = checkpoint.restore(path / "data.mdb", path / "checkpoint.meta")
            if restored == "unfinished":
                get_logger(__name__).warning("store.unfinished_set_aside", path=str(path),
                                             why="power was lost while the store was being made")
        except BlockingIOError:
            fcntl.flock(self._open_lock, fcntl.LOCK_SH)
            restored = ""
        self.journal = Journal(path)
        # mode: the directory 0700, data.mdb and lock.mdb 0600 (py-lmdb drops the x bits for files).
        # sync off: a commit is durable through the journal or a checkpoint (vigil.store.engine.journal).
        self.env = lmdb.open(
            str(path), map_size=opening.map_size_for(path, map_size), max_dbs=MAX_DBS, max_readers=MAX_READERS,
            subdir=True, sync=False, metasync=False, readahead=False, meminit=False, lock=True, mode=PRIVATE_DIR,
        )
        private(path, PRIVATE_DIR)
        for name in ("data.mdb", "lock.mdb", "journal.wal", "checkpoint.meta", "journal.lock", "want.lock"):
            private(path / name, PRIVATE_FILE)
        with self.env.begin(write=True) as txn:
            self.dbs: dict[bytes, Any] = {name: self.env.open_db(name, txn=txn) for name in DB_NAMES}
        self.journal.attach(self.env, self.dbs, replay=restored in ("same", "restored"), grow=self.grow)
        if restored:
            fcntl.flock(self._open_lock, fcntl.LOCK_SH)  # recovered: others may open it now

    def _abandon(self) -> None:
        """After a failed open: the journal's descriptors and locks, LMDB, open.lock, in that order."""
        journal: Journal | None = getattr(self, "journal", None)
        if journal is not None:
            with contextlib.suppress(Exception):
                journal.close(final=False)
        env: lmdb.Environment | None = getattr(self, "env", None)
        if env is not None:
            with contextlib.suppress(Exception):
                env.close()
        if self._open_lock >= 0:
            os.close(self._open_lock)
            self._open_lock = -1

    @contextmanager
    def alone(self) -> Iterator[bool]:
        """Whether no other process has the store open; while it says so, none can open it (the upgrade's need).

        A refused upgrade of a flock drops the shared lock (Linux removes it first): it is taken back."""
        try:
            fcntl.flock(self._open_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self._open_lock, fcntl.LOCK_SH)
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(self._open_lock, fcntl.LOCK_SH)

    def db(self, name: bytes) -> Any:
        return self.dbs[name]

    @property
    def map_size(self) -> int:
        """The map's size once every acknowledged write is in it (the apply thread may grow it)."""
        self.settle()
        return int(self.env.info()["map_size"])

    def settle(self) -> None:
        """Return once every acknowledged write is in LMDB (vigil.store.engine.behind): reads and copies see it."""
        behind = self.behind
        if behind is not None:
            behind.settle()

    def read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run `fn` in a read transaction (cheap; any thread) that sees every acknowledged write."""
        self.settle()  # before the gate: the apply thread may need it to grow the map
        gate = self.gate
        while True:
            gate.enter()
            try:
                try:
                    txn = self.env.begin(buffers=False)
                except lmdb.MapResizedError:
                    pass
                else:
                    try:
                        return fn(txn)
                    finally:
                        txn.abort()
            finally:
                gate.leave()
            self.adopt_new_size()

    def adopt_new_size(self) -> None:
        """Another process grew the map; take its size (needs no open transaction here)."""
        self._resize(grow=False)

    def grow(self) -> int:
        """Double the map; called by a write that found it full (the writer's, the apply thread's, the replay)."""
        return self._resize(grow=True)

    def _resize(self, grow: bool) -> int:
        # The commit lock's mutex first, as every writer takes it before the gate: a checkpoint (which holds
        # it) uses its pinned transaction outside the gate, and set_mapsize ends every transaction.
        with self.journal.lock.mutex, self.gate.exclusive():
            # Not `map_size` (it waits for the apply thread, which may be the caller): LMDB's own figure.
            self.env.set_mapsize(int(self.env.info()["map_size"]) * 2 if grow else 0)
            self.journal.lost_pin()
            return int(self.env.info()["map_size"])

    def begin_write(self) -> lmdb.Transaction:
        """A write transaction, begun only while this process's pin protects the last checkpoint, on the map's
        current size (another process may have grown it)."""
        while True:
            if self.journal.pin_lost:
                self.journal.checkpoint()
            self.gate.enter()
            try:
                if self.journal.pin_lost:
                    continue
                try:
                    return self.env.begin(write=True)
                except lmdb.MapResizedError:
                    pass
            finally:
                self.gate.leave()
            self.adopt_new_size()  # outside the gate: it needs the gate alone

    def close(self) -> None:
        try:
            fcntl.flock(self._open_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            last = True  # nobody else in the store: the final checkpoint may say so
        except BlockingIOError:
            last = False
        self.journal.close(last=last)
        self.env.close()
        os.close(self._open_lock)
