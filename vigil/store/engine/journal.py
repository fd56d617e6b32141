"""The redo journal: a durable commit costs one write barrier, not LMDB's two, and survives power loss.

Why. A durable LMDB commit pays two barriers: the data pages are synced, then the meta page is
written O_DSYNC (the meta must never reach the disk before the pages it names). A write-ahead log pays
one: a checksummed record needs no ordering barrier, since recovery can tell a torn record from a whole
one. So vigil makes a checksummed log its durable point and LMDB its fast index.

How (option 1 of issue 15.5, chosen because it keeps LMDB's reads, readers in other processes and
backups as they are, and pays one barrier per commit):
- LMDB runs with sync off: a commit is a memory write into the page cache (every process, and a
  backup's copy, sees it at once: the page cache is shared).
- A group commit of records (the per-turn session commits and the inbox) is planned from the writer's
  caches into puts and deletes, appended to a preallocated journal file as one record (length, crc32,
  sequence, payload, padded to whole blocks) written O_DIRECT | O_DSYNC (the write is the barrier; a
  plain write and fdatasync where the file system refuses that), and then acknowledged. LMDB gets the
  same changes from the apply thread beside it, with the sequence (`meta/journal_seq`) in the same
  transaction (`vigil.store.engine.behind`, which says why and what keeps it exact). A batch that needs a read
  is applied to LMDB first and then logged the same way; one with closures (rare writes whose changes
  are not captured) is made durable by a checkpoint instead (two barriers, as before).
- A checkpoint (in the background once data.mdb grew by GROW_PAGES, or after CHECKPOINT_S; inline when
  the journal is full or a batch holds a closure; at close) pins a read transaction, reads the meta
  pages, syncs data.mdb, saves those meta pages in the side file (`vigil.store.engine.checkpoint`, one
  fdatasync), then drops the older pin, and starts the journal over if the pinned state holds every
  logged commit (else the records it lacks stay, and a later checkpoint starts it over).

Why it survives power loss. With sync off, LMDB writes data and meta pages in any order as far as the disk
is concerned: after a power loss the newest meta may name pages never written. (a) Every writer holds a read
transaction pinned at or before the last checkpoint, so LMDB (in any process: the reader table is shared)
never reuses a page of the checkpointed tree; (b) the checkpoint's meta pages are saved only after the sync
made that whole tree durable; (c) the first process to open the store after everyone stopped (it holds the
exclusive open lock) writes the saved meta pages back into data.mdb BEFORE LMDB opens it, so LMDB opens at
exactly the checkpoint, whose pages are intact, and then replays the journal records whose sequence is above
the one stored in that state, in order, stopping at the first record that is torn (bad length or crc) or out
of sequence (a leftover of an earlier round: sequences only grow). The replay grows the map when it does not
fit, like every other write (the state it starts from may use fewer pages than the last process had:
vigil.store.engine.opening), and is checkpointed before anything new is written. Every acknowledged commit is
either in the checkpointed state or in a whole journal record after it. A kill -9 loses nothing either way
(the page cache survives, and the journal holds what LMDB had not yet been given): recovery then takes the
same path, harmlessly.

Reading the meta pages (issue 22). A checkpoint preads data.mdb's meta pages while LMDB may be committing,
and a commit pwrites its meta page (120 bytes, `mm_mapsize` to `mm_txnid`). Linux does not make a buffered
read atomic against a concurrent write: both copy bytes upwards, so a read that the write overtakes returns
the new `mm_txnid` with older roots, e.g. txn N naming N-2's free-page tree (26,000 preads a second against
54,000 commits a second saw it 5-7 times in ten seconds here). Put back, such a meta opens a state that
never existed, whose free list names live pages. So no commit of this process may write the metas while a
checkpoint reads them: the writer's commits hold the commit lock's mutex and other processes' its flock, as
checkpoints do; the apply thread (vigil.store.engine.behind) commits without the mutex on purpose (the committer
holds it through the barrier the apply overlaps), so its transactions and the checkpoint's pin-and-read take
`writing`, a lock of their own. The pin is begun under it, before the pages are read: the metas name exactly
the pinned state.

Other processes (`vigil sessions ...`, `vigil backup`) open the store the same way but do not own the
journal (one process does: the first to take its lock): each of their commits is followed by a
checkpoint, under the cross-process commit lock, so it is durable before it is acknowledged. Everyone
takes that lock before LMDB's writer lock; the owner keeps it while its apply thread has work, and
gives way to a process waiting in `want.lock` (`committing`). Reads in the owner wait until LMDB holds
every acknowledged commit; another process sees them a moment later (GATHER_S). A backup (LMDB's copy
of a read transaction) is a consistent, complete store by itself and needs no journal. When the map is
resized, py-lmdb aborts every transaction, the pin too: the next write transaction begins only after a
fresh checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb

from vigil.logs import get_logger
from vigil.store.engine import checkpoint
from vigil.store.engine.applier import Change, write
from vigil.store.engine.commit_lock import CommitLock
from vigil.store.engine.records import BLOCK as BLOCK
from vigil.store.engine.records import REC, crc, decode_changes, read_records
from vigil.store.engine.records import encode_changes as encode_changes
from vigil.store.engine.records import span as span

JOURNAL_BYTES = 16 * 1024 * 1024
CHECKPOINT_S = 0.5
# Also once data.mdb has grown by this many pages since the last checkpoint. While the pin holds the
# checkpointed tree, LMDB cannot reuse the pages later transactions free (about 7 each), so a store that
# is written grows until a checkpoint moves the pin; once the pages freed before it are there to reuse,
# it stops growing, and checkpoints come only every CHECKPOINT_S, each a sync of data.mdb that would
# otherwise compete with the journal's barrier.
GROW_PAGES = 8
SEQ_KEY = b"journal_seq"


def _open_direct(path: Path) -> int:
    """journal.wal for writes that bypass the page cache and are durable when they return; -1 where the file
    system refuses O_DIRECT (tmpfs): then a plain write and fdatasync do the same, a little slower."""
    try:
        return os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC | os.O_CLOEXEC)
    except OSError:
        return -1


def _applied(txn: lmdb.Transaction, dbs: dict[bytes, Any]) -> int:
    """The sequence of the newest logged commit in the state `txn` sees."""
    raw = txn.get(SEQ_KEY, db=dbs[b"meta"])
    return 0 if raw is None else int(raw)




class Journal:
    """The durable point of one process's commits (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._log = get_logger(__name__)
        self._fd = -1
        self._direct = -1  # journal.wal opened O_DIRECT | O_DSYNC, where the file system allows it
        self._data = -1  # data.mdb, read-only: the checkpoints read its meta pages
        self._side = self._journal_fd = self._want = -1
        self._buffer = mmap.mmap(-1, BLOCK * 16)  # page-aligned, as O_DIRECT wants
        self._pin: Any = None
        try:
            self._side = os.open(path / "checkpoint.meta", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._want = os.open(path / "want.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._journal_fd = os.open(path / "journal.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(self._journal_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.owner = True
            except BlockingIOError:
                self.owner = False
            if self.owner:
                self._fd = os.open(path / "journal.wal", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                if os.fstat(self._fd).st_size < JOURNAL_BYTES:
                    self._preallocate()
                self._direct = _open_direct(path / "journal.wal")
        except BaseException:
            self._release()
            raise
        self.lock = CommitLock(self._side, self._want, self.owner)  # this process's commits and checkpoints
        # Held by a write transaction that runs outside the commit lock's mutex (the apply thread's), and by a
        # checkpoint while it pins and reads the meta pages: see "Reading the meta pages" above.
        self.writing = threading.Lock()
        self._env: Any = None
        self._dbs: dict[bytes, Any] = {}
        self.pin_lost = True
        self._seq = 0
        self._offset = 0
        self._txns = 0  # LMDB transactions since the last checkpoint: the pin keeps the pages they freed
        self._checkpointed = 0  # the newest logged commit the last checkpoint's state holds
        self._grown_from = 0  # data.mdb's last page then
        self._closed = threading.Event()
        self._due = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    def _preallocate(self) -> None:
        # Written, not fallocated: overwriting written blocks changes no metadata, so fdatasync is one flush.
        # Only past what is there: a shorter journal (its making cut short) may still hold records to replay.
        zeros = bytes(1024 * 1024)
        for offset in range(os.fstat(self._fd).st_size // BLOCK * BLOCK, JOURNAL_BYTES, len(zeros)):
            os.pwrite(self._fd, zeros[:JOURNAL_BYTES - offset], offset)
        os.fsync(self._fd)

    # ------------------------------------------------------------------ opening

    def attach(self, env: Any, dbs: dict[bytes, Any], replay: bool, grow: Callable[[], int]) -> None:
        """LMDB is open: replay the journal (`replay`: this process alone has the store open and the side
        file is this data.mdb's), then checkpoint before anything new is written. `grow` doubles the map
        (the replay's transaction may not fit in it, like any other)."""
        self._env = env
        self._dbs = dbs
        self._data = os.open(self.path / "data.mdb", os.O_RDONLY | os.O_CLOEXEC)
        self._inode = os.fstat(self._data).st_ino
        self._page_size = int(env.stat()["psize"])
        with env.begin() as txn:
            self._seq = _applied(txn, dbs)
        if self.owner and replay:
            self._replay(grow)
        self.checkpoint()
        if self.owner:
            self._thread = threading.Thread(target=self._background, name="store-checkpoint", daemon=True)
            self._thread.start()

    def _replay(self, grow: Callable[[], int]) -> None:
        applied = self._seq
        changes: list[Change] = []
        last = applied
        for seq, payload in read_records(self._fd, JOURNAL_BYTES, self._inode):
            last = max(last, seq)
            if seq > applied:
                changes.extend(decode_changes(payload))
        if last == applied:
            return
        while True:
            txn = self._env.begin(write=True)
            try:
                write(txn, self._dbs, changes)
                txn.put(SEQ_KEY, str(last).encode(), db=self._dbs[b"meta"])
                txn.commit()
                break
            except lmdb.MapFullError:
                txn.abort()
                self._log.info("store.map_grown", map_size=grow(), why="replay")
            except BaseException:
                with contextlib.suppress(lmdb.Error):
                    txn.abort()
                raise
        self._seq = last
        self._log.warning("store.journal_replayed", records=last - applied, changes=len(changes))

    # ------------------------------------------------------------------ committing

    def committing(self) -> contextlib.AbstractContextManager[None]:
        """Held around a whole write transaction (`CommitLock.committing`)."""
        return self.lock.committing()

    def stamp(self, txn: lmdb.Transaction) -> int | None:
        """For a journaled commit (inside `committing`): its sequence, stored in the same transaction."""
        if not self.owner:
            return None
        seq = self._seq + 1
        txn.put(SEQ_KEY, str(seq).encode(), db=self._dbs[b"meta"])
        return seq

    def durable(self, seq: int | None, changes: list[Change]) -> None:
        """After the LMDB commit (inside `committing`): one record and one fdatasync, or a checkpoint."""
        if seq is None:
            self._checkpoint_locked()
            return
        self._seq = seq
        self.transaction()
        record = self.record(seq, encode_changes(changes))
        size = span(len(record) - REC.size)
        if size > JOURNAL_BYTES // 2:
            self._checkpoint_locked()  # too big to log: the checkpoint makes it durable
            return
        if self._offset + size > JOURNAL_BYTES:
            self._checkpoint_locked()
        self._write(record)

    def record(self, seq: int, payload: bytes) -> bytes:
        return REC.pack(len(payload), crc(self._inode, seq, payload), seq) + payload

    def fits(self, size: int) -> bool:
        """Whether a record of `size` bytes can be logged without a checkpoint first (inside `committing`)."""
        size = span(size - REC.size)
        return self.owner and size <= JOURNAL_BYTES // 2 and self._offset + size <= JOURNAL_BYTES

    def next_seq(self) -> int:
        return self._seq + 1

    def log(self, seq: int, record: bytes, hand: Callable[[int, list[Change]], None], changes: list[Change]
            ) -> None:
        """A journal-first commit (inside `committing`, after `fits`): its record and one barrier.

        `hand(seq, changes)` is called just before the barrier: the apply thread, woken then, runs while
        this one waits on the disk, not while it still needs the GIL.
        """
        self._seq = seq
        self._write(record, lambda: hand(seq, changes))

    def _write(self, record: bytes, written: Callable[[], None] | None = None) -> None:
        """The record at the journal's end, on stable storage when this returns; `written` is called first."""
        size = span(len(record) - REC.size)
        if written is not None:
            written()
        if self._direct < 0 or not self._write_direct(record, size):
            os.pwrite(self._fd, record, self._offset)
            os.fdatasync(self._fd)
        self._offset += size

    def transaction(self) -> None:
        """A write transaction was committed to LMDB (the apply thread's, or a logged one's)."""
        self._txns += 1
        if int(self._env.info()["last_pgno"]) - self._grown_from >= GROW_PAGES:
            self._due.set()

    def _write_direct(self, record: bytes, size: int) -> bool:
        """One syscall is the write and its barrier: straight to the disk, forced to stable storage (FUA or a
        flush) before it returns; the blocks were written when the file was made, so no metadata changes with
        it. False if the file system took O_DIRECT at open but refuses the write (its block is larger):
        buffered from then on."""
        if size > len(self._buffer):
            self._buffer.close()
            self._buffer = mmap.mmap(-1, size)
        self._buffer[:len(record)] = record  # the rest of its last block is never read (see `span`)
        try:
            os.pwritev(self._direct, [memoryview(self._buffer)[:size]], self._offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._log.warning("store.journal_direct_refused", error=str(exc))
            os.close(self._direct)
            self._direct = -1
            return False
        return True

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, clean: bool = False) -> None:
        with self.committing():
            self._checkpoint_locked(clean)

    def _pin_and_metas(self) -> tuple[Any, bytes]:
        """A read transaction pinning the state the meta pages name, and those pages, read whole: no write
        transaction of this process is open meanwhile (`writing`; the commit lock's mutex, which the caller
        holds, keeps out the writer's; its flock, other processes')."""
        with self.writing:
            pin = self._env.begin(buffers=False)
            return pin, os.pread(self._data, 2 * self._page_size, 0)

    def _checkpoint_locked(self, clean: bool = False) -> None:
        pin, metas = self._pin_and_metas()
        applied = _applied(pin, self._dbs)
        self._env.sync(True)
        # Clean only if the state holds every logged commit: else (an apply that failed) the next start replays.
        checkpoint.write_slot(self._side, self._inode, self._page_size, metas, clean and applied == self._seq)
        old, self._pin = self._pin, pin
        self.pin_lost = False
        if old is not None:
            with contextlib.suppress(lmdb.Error):
                old.abort()
        self._started_over(applied)
        self.checkpoints += 1

    def _started_over(self, applied: int) -> None:
        """A checkpoint of the state holding every commit up to `applied` is saved: forget what it holds.

        The journal starts over only if it holds nothing newer: a record logged but not yet in LMDB (the
        apply thread's, vigil.store.engine.behind) or logged after the meta pages were read must stay replayable.
        """
        self._checkpointed = applied
        self._txns = 0
        self._grown_from = int(self._env.info()["last_pgno"])
        if self._seq == applied:
            self._offset = 0

    def _checkpoint_aside(self) -> None:
        """A checkpoint that lets commits go on while data.mdb is synced (the background's).

        The pin and the meta pages are taken under the commit lock, the sync runs without it, the slot is
        written under it again, and only if no other checkpoint came in between (an older state must never
        be saved over a newer one). The journal starts over only if nothing was logged meanwhile: a record
        logged after the meta pages were read is not in the checkpointed state and must stay replayable.
        """
        with self.committing():
            if self.pin_lost:
                return  # the writer re-checkpoints before its next transaction
            pin, metas = self._pin_and_metas()
            applied, count = _applied(pin, self._dbs), self.checkpoints
        try:
            self._env.sync(True)
            with self.committing():
                if self.checkpoints != count or self.pin_lost:
                    return
                checkpoint.write_slot(self._side, self._inode, self._page_size, metas)
                old, self._pin, pin = self._pin, pin, None
                if old is not None:
                    with contextlib.suppress(lmdb.Error):
                        old.abort()
                self._started_over(applied)
                self.checkpoints += 1
        finally:
            if pin is not None:
                with contextlib.suppress(lmdb.Error):
                    pin.abort()

    def lost_pin(self) -> None:
        """The map was resized: py-lmdb aborted every transaction, the pin too."""
        with self.lock.mutex:
            self.pin_lost = True
            self._pin = None

    def _background(self) -> None:
        while not self._closed.is_set():
            self._due.wait(CHECKPOINT_S)
            self._due.clear()
            if self._closed.is_set():
                return
            if self._txns or self._seq != self._checkpointed:
                try:
                    self._checkpoint_aside()
                except Exception as exc:  # a failed checkpoint leaves the journal as the durable point
                    self._log.error("store.checkpoint_failed", error=repr(exc))

    def close(self, last: bool = False, final: bool = True) -> None:
        """The final checkpoint (`last`: no other process has the store open: it is marked clean), then every
        descriptor and lock let go. `final=False` after a failed open: no checkpoint, the files stay as they
        were and the next open recovers from them."""
        self._closed.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join()
        if final and self._env is not None:
            with contextlib.suppress(lmdb.Error):
                self.checkpoint(clean=last)
        self._release()

    def _release(self) -> None:
        """Every descriptor and lock this journal holds (the flocks go with their descriptors)."""
        if self._pin is not None:
            with contextlib.suppress(lmdb.Error):
                self._pin.abort()
            self._pin = None
        if not self._buffer.closed:
            self._buffer.close()
        for name in ("_data", "_fd", "_direct", "_side", "_want", "_journal_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)
