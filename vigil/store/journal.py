"""The redo journal: a durable commit costs one write barrier, not LMDB's two, and survives power loss.

Why. A durable LMDB commit pays two barriers: the data pages are synced, then the meta page is
written O_DSYNC (the meta must never reach the disk before the pages it names). A write-ahead log pays
one: a checksummed record needs no ordering barrier, since recovery can tell a torn record from a whole
one. Measured on the development machine: LMDB ~205 us per durable commit, SQLite WAL FULL ~155 us, one
pwrite + fdatasync ~66 us. So vigil makes a checksummed log its durable point and LMDB its fast index.

How (option 1 of issue 15.5, chosen because it keeps LMDB's reads, readers in other processes and
backups exactly as they are, and pays one barrier per commit):
- LMDB runs with sync off: a commit is a memory write into the page cache (every process, and a
  backup's copy, sees it at once: the page cache is shared).
- A group commit of records (the per-turn session commits and the inbox) is applied to LMDB, which in
  the same transaction stores the commit's sequence number (`meta/journal_seq`); then its puts and
  deletes are appended to a preallocated journal file as one record (length, crc32, sequence, payload)
  with ONE fdatasync; only then is the commit acknowledged. A batch with closures (rare writes whose
  changes are not captured) is made durable by a checkpoint instead (two barriers, as before).
- A checkpoint (in the background after CHECKPOINT_EVERY logged commits or CHECKPOINT_S; inline when
  the journal is full or a batch holds a closure; at close) pins a read transaction, reads the meta
  pages, syncs data.mdb, saves those meta pages in the side file (`vigil.store.checkpoint`, one
  fdatasync), then drops the older pin and starts the journal over.

Why it survives power loss. With sync off, LMDB writes data and meta pages in any order as far as the
disk is concerned: after a power loss the newest meta may name pages never written. (a) Every writer
holds a read transaction pinned at or before the last checkpoint, so LMDB (in any process: the reader
table is shared) never reuses a page of the checkpointed tree; (b) the checkpoint's meta pages are
saved only after the sync made that whole tree durable; (c) the first process to open the store after
everyone stopped (it holds the exclusive open lock) writes the saved meta pages back into data.mdb
BEFORE LMDB opens it, so LMDB opens at exactly the checkpoint, whose pages are intact, and then
replays the journal records whose sequence is above the one stored in that state, in order, stopping
at the first record that is torn (bad length or crc) or out of sequence (a leftover of an earlier round:
sequences only grow). The replay is checkpointed before anything new is written. Every acknowledged
commit is either in the checkpointed state or in a whole journal record after it. A kill -9 loses
nothing either way (the page cache survives): recovery then takes the same path, harmlessly.

Other processes (`vigil sessions ...`, `vigil backup`) open the store the same way but do not own the
journal (one process does: the first to take its lock): each of their commits is followed by a
checkpoint, under the checkpoint lock, so it is durable before it is acknowledged; owners' commits take
the same lock, so a checkpoint never reads a meta page being written. Reads need nothing: they see
LMDB's state, which holds every applied commit. A backup (LMDB's copy of a read transaction) is a
consistent, complete store by itself and needs no journal. When the map is resized, py-lmdb aborts
every transaction, the pin too: the next write transaction begins only after a fresh checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import msgspec

from vigil.logs import get_logger
from vigil.store import checkpoint

JOURNAL_BYTES = 16 * 1024 * 1024
CHECKPOINT_S = 0.5
# Also after this many logged commits: while the pin holds the checkpointed tree, LMDB cannot reuse the pages
# later commits free (about 7 a commit), so data.mdb grows by what is written between checkpoints.
CHECKPOINT_EVERY = 8
SEQ_KEY = b"journal_seq"
_REC = struct.Struct("<IIQ")  # payload length, crc32 of (sequence + payload), sequence
_CHANGES = msgspec.msgpack.Encoder()
_READ_CHANGES = msgspec.msgpack.Decoder(list[tuple[bytes, bytes, bytes | None]])

Change = tuple[bytes, bytes, bytes | None]  # (database name, key, value; None deletes)


def _crc(inode: int, seq: int, payload: bytes) -> int:
    # The inode of data.mdb is in the checksum: a journal left beside a data.mdb that `vigil restore` put in
    # place (a new file) never replays into it, whatever its sequence numbers.
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QQ", inode, seq)))


def read_records(fd: int, size: int, inode: int) -> Iterator[tuple[int, bytes]]:
    """The journal's whole records in order: stops at a torn one or a break in the sequence."""
    offset = 0
    previous: int | None = None
    while offset + _REC.size <= size:
        length, crc, seq = _REC.unpack(os.pread(fd, _REC.size, offset))
        if length == 0 or offset + _REC.size + length > size:
            return
        payload = os.pread(fd, length, offset + _REC.size)
        if _crc(inode, seq, payload) != crc or (previous is not None and seq != previous + 1):
            return
        yield seq, payload
        previous = seq
        offset += _REC.size + length


class Journal:
    """The durable point of one process's commits (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._log = get_logger(__name__)
        self._lock = threading.RLock()  # this process's commits, appends and checkpoints
        self._side = os.open(path / "checkpoint.meta", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._journal_fd = os.open(path / "journal.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._journal_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.owner = True
        except BlockingIOError:
            self.owner = False
        self._fd = -1
        if self.owner:
            self._fd = os.open(path / "journal.wal", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if os.fstat(self._fd).st_size < JOURNAL_BYTES:
                self._preallocate()
        self._env: Any = None
        self._dbs: dict[bytes, Any] = {}
        self._pin: Any = None
        self.pin_lost = True
        self._seq = 0
        self._offset = 0
        self._appended = 0  # records since the last checkpoint
        self._closed = threading.Event()
        self._due = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    def _preallocate(self) -> None:
        # Written, not fallocated: overwriting written blocks changes no metadata, so fdatasync is one flush.
        zeros = bytes(1024 * 1024)
        for offset in range(0, JOURNAL_BYTES, len(zeros)):
            os.pwrite(self._fd, zeros, offset)
        os.fsync(self._fd)

    # ------------------------------------------------------------------ opening

    def attach(self, env: Any, dbs: dict[bytes, Any], replay: bool) -> None:
        """LMDB is open: replay the journal (`replay`: this process alone has the store open and the side
        file is this data.mdb's), then checkpoint before anything new is written."""
        self._env = env
        self._dbs = dbs
        self._data = os.open(self.path / "data.mdb", os.O_RDONLY | os.O_CLOEXEC)
        self._inode = os.fstat(self._data).st_ino
        self._page_size = int(env.stat()["psize"])
        with env.begin() as txn:
            raw = txn.get(SEQ_KEY, db=dbs[b"meta"])
        self._seq = 0 if raw is None else int(raw)
        if self.owner and replay:
            self._replay()
        self.checkpoint()
        if self.owner:
            self._thread = threading.Thread(target=self._background, name="store-checkpoint", daemon=True)
            self._thread.start()

    def _replay(self) -> None:
        applied = self._seq
        changes: list[Change] = []
        last = applied
        for seq, payload in read_records(self._fd, JOURNAL_BYTES, self._inode):
            last = max(last, seq)
            if seq > applied:
                changes.extend(_READ_CHANGES.decode(payload))
        self._seq = last
        if last == applied:
            return
        with self._env.begin(write=True) as txn:
            for name, key, value in changes:
                if value is None:
                    txn.delete(key, db=self._dbs[name])
                else:
                    txn.put(key, value, db=self._dbs[name])
            txn.put(SEQ_KEY, str(last).encode(), db=self._dbs[b"meta"])
        self._log.warning("store.journal_replayed", records=last - applied, changes=len(changes))

    # ------------------------------------------------------------------ committing

    @contextlib.contextmanager
    def committing(self) -> Iterator[None]:
        """Held around a transaction's commit and what makes it durable (no meta page read mid-write)."""
        with self._lock:
            fcntl.flock(self._side, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._side, fcntl.LOCK_UN)

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
        payload = _CHANGES.encode(changes)
        record = _REC.pack(len(payload), _crc(self._inode, seq, payload), seq) + payload
        if len(record) > JOURNAL_BYTES // 2:
            self._checkpoint_locked()  # too big to log: the checkpoint makes it durable
            return
        if self._offset + len(record) > JOURNAL_BYTES:
            self._checkpoint_locked()
        os.pwrite(self._fd, record, self._offset)
        os.fdatasync(self._fd)
        self._offset += len(record)
        self._appended += 1
        if self._appended >= CHECKPOINT_EVERY:
            self._due.set()

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, clean: bool = False) -> None:
        with self.committing():
            self._checkpoint_locked(clean)

    def _checkpoint_locked(self, clean: bool = False) -> None:
        pin = self._env.begin(buffers=False)  # at or before the state whose metas are read next
        metas = os.pread(self._data, 2 * self._page_size, 0)
        self._env.sync(True)
        checkpoint.write_slot(self._side, self._inode, self._page_size, metas, clean)
        old, self._pin = self._pin, pin
        self.pin_lost = False
        if old is not None:
            with contextlib.suppress(lmdb.Error):
                old.abort()
        self._offset = 0  # everything logged is in the checkpointed state: the journal starts over
        self._appended = 0
        self.checkpoints += 1

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
            pin = self._env.begin(buffers=False)
            metas = os.pread(self._data, 2 * self._page_size, 0)
            seq, count = self._seq, self.checkpoints
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
                if self._seq == seq:
                    self._offset = 0
                    self._appended = 0
                else:
                    self._appended = self._seq - seq
                self.checkpoints += 1
        finally:
            if pin is not None:
                with contextlib.suppress(lmdb.Error):
                    pin.abort()

    def lost_pin(self) -> None:
        """The map was resized: py-lmdb aborted every transaction, the pin too."""
        with self._lock:
            self.pin_lost = True
            self._pin = None

    def _background(self) -> None:
        while not self._closed.is_set():
            self._due.wait(CHECKPOINT_S)
            self._due.clear()
            if self._closed.is_set():
                return
            if self._appended:
                try:
                    self._checkpoint_aside()
                except Exception as exc:  # a failed checkpoint leaves the journal as the durable point
                    self._log.error("store.checkpoint_failed", error=repr(exc))

    def close(self, last: bool = False) -> None:
        """The final checkpoint; `last`: no other process has the store open (it is marked clean)."""
        self._closed.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join()
        if self._env is not None:
            with contextlib.suppress(lmdb.Error):
                self.checkpoint(clean=last)
            if self._pin is not None:
                with contextlib.suppress(lmdb.Error):
                    self._pin.abort()
            os.close(self._data)
        for fd in (self._fd, self._side, self._journal_fd):
            if fd >= 0:
                os.close(fd)
