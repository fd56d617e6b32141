"""The checkpoint side file: LMDB's two meta pages as of the last fully synced state, and putting them back.

Why it exists (the argument is in `vigil.store.engine.journal`): LMDB runs with sync off, so after a power
loss data.mdb's newest meta page may name pages that never reached the disk. A checkpoint is taken
only after `env.sync(True)` made every page of the state it names durable, and LMDB is kept from
reusing those pages (a pinned read transaction); so writing the saved meta pages back, before LMDB
opens the file, opens it at exactly that intact state.

The file holds two slots, written alternately, each whole and checksummed: a torn write of one slot
leaves the other, older one valid (one `fdatasync` per checkpoint, no rename and no directory sync).
A slot names the inode of the data.mdb it was taken from: a data.mdb put in place by `vigil restore`
(a new file) is never given another file's meta pages.

LMDB's layout (lmdb's mdb.c, `mdb_env_read_header`, `mdb_env_init_meta`): pages 0 and 1 of data.mdb
are the meta pages; each is a page header (16 bytes) followed by `MDB_meta`: magic 0xBEEFC0DE (u32),
version (u32), address, mapsize (u64 at offset 32: the map of the process that committed it, never less
than the meta before it had), two `MDB_db` of 48 bytes, `mm_last_pg` and `mm_txnid` (u64 each, at
offsets 136 and 144 of the page). LMDB opens the valid meta with the larger `mm_txnid`. The page size
is the OS page size when the file was created; it is recorded in the slot. lock.mdb holds only the
reader table and a copy of the last txn id, both rebuilt by the first process to open the environment,
which is the recovering process (it holds the store's exclusive open lock).
"""

from __future__ import annotations

import mmap
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"VGCKPT01"
_HEAD = struct.Struct("<8sQQIII")  # magic, generation, inode of data.mdb, page size, clean, length of the metas
SLOT_BYTES = 65536  # room for two meta pages of up to 16 KiB each, with the head and the crc
# What a store's making writes before its first checkpoint: two meta pages and a page or two.
UNFINISHED_BYTES = 64 * 1024
META_MAGIC = 0xBEEFC0DE
MAPSIZE_AT = 32
LAST_PG_AT = 136
TXNID_AT = 144


@dataclass(frozen=True)
class Slot:
    generation: int
    inode: int
    page_size: int
    clean: bool  # written by the last process to leave the store, after its final sync: nothing to recover
    metas: bytes


def meta_txnid(page: bytes) -> int | None:
    """The txn id a meta page names, or None if it is not an LMDB meta page."""
    if len(page) < TXNID_AT + 8 or struct.unpack_from("<I", page, 16)[0] != META_MAGIC:
        return None
    return int(struct.unpack_from("<Q", page, TXNID_AT)[0])


def recorded_map_size(data_mdb: Path) -> int:
    """The largest map a valid meta page of data.mdb records (0 if none): the size its last writer had grown
    the map to, as of the state those metas name (vigil.store.engine.opening)."""
    try:
        with open(data_mdb, "rb") as handle:
            head = handle.read(16 + 28)
            if len(head) < 16 + 28:
                return 0
            page_size = int(struct.unpack_from("<I", head, 16 + 24)[0])
            if not 512 <= page_size <= 65536:
                return 0
            handle.seek(0)
            metas = handle.read(2 * page_size)
    except OSError:
        return 0
    sizes = [int(struct.unpack_from("<Q", metas, at + MAPSIZE_AT)[0]) for at in (0, page_size)
             if meta_txnid(metas[at:at + page_size]) is not None]
    return max(sizes, default=0)


def page_size_of(data_mdb: Path) -> int:
    """data.mdb's page size, as recorded in its first meta (MDB_db of the free list, md_pad)."""
    with open(data_mdb, "rb") as handle:
        head = handle.read(16 + 28)
    return int(struct.unpack_from("<I", head, 16 + 24)[0])


def read_slots(fd: int) -> list[Slot]:
    slots = []
    for index in (0, 1):
        raw = os.pread(fd, SLOT_BYTES, index * SLOT_BYTES)
        if len(raw) < _HEAD.size + 4:
            continue
        magic, generation, inode, page_size, clean, length = _HEAD.unpack_from(raw)
        end = _HEAD.size + length
        if magic != MAGIC or end + 4 > len(raw):
            continue
        (crc,) = struct.unpack_from("<I", raw, end)
        if zlib.crc32(raw[:end]) != crc:
            continue  # torn: the other slot stands
        slots.append(Slot(generation, inode, page_size, bool(clean), raw[_HEAD.size:end]))
    return slots


def latest(fd: int) -> Slot | None:
    slots = read_slots(fd)
    return max(slots, key=lambda slot: slot.generation) if slots else None


def write_slot(fd: int, inode: int, page_size: int, metas: bytes, clean: bool = False) -> None:
    """Save `metas` as the newest checkpoint, durably (one fdatasync); the older slot is overwritten."""
    current = latest(fd)
    generation = 1 if current is None else current.generation + 1
    body = _HEAD.pack(MAGIC, generation, inode, page_size, int(clean), len(metas)) + metas
    record = body + struct.pack("<I", zlib.crc32(body))
    os.pwrite(fd, record, (generation % 2) * SLOT_BYTES)
    os.fdatasync(fd)


def _unfinished(data: int) -> bool:
    """data.mdb is no more than a store's making writes before its first checkpoint, and LMDB could not open
    it: its metas are not both whole meta pages, or one names pages the file does not reach (LMDB would
    read them through its map, and the process die of SIGBUS). An empty file is not unfinished: LMDB
    makes a store in it."""
    size = os.fstat(data).st_size
    if size == 0 or size > UNFINISHED_BYTES:
        return False
    head = os.pread(data, UNFINISHED_BYTES, 0)
    page = int(struct.unpack_from("<I", head, 16 + 24)[0]) if len(head) >= 16 + 28 else 0
    if page not in (4096, 8192, 16384, 65536) or meta_txnid(head[:page]) is None:
        page = mmap.PAGESIZE
    metas = (head[:page], head[page:2 * page])
    if any(meta_txnid(meta) is None for meta in metas):
        return True
    return any(int(struct.unpack_from("<Q", meta, LAST_PG_AT)[0]) >= size // page for meta in metas)


def restore(data_mdb: Path, side: Path) -> str:
    """Before LMDB opens: after an unclean end, put the last checkpoint's meta pages back into data.mdb.

    Only called by a process that holds the store's exclusive open lock: no other process has the
    environment open. Returns "restored" or "same" (an unclean end: the journal is to be replayed),
    "clean" (the last process left after its final sync; a write since, by a tool that syncs as LMDB
    does, stands), "foreign" (the side file is another data.mdb's), "unfinished" (see below) or "none".
    In every case but "restored"/"same"/"unfinished" the side file is first marked unclean with
    data.mdb's current (durable) metas, so that from here on a power loss finds a checkpoint to go back to.

    "unfinished": power was lost while the store was being made, before its first checkpoint (which
    comes before its first commit: nothing in it was ever acknowledged), and data.mdb's meta pages never
    reached the disk whole; LMDB would refuse it at every start. It is set aside
    (`data.mdb.unfinished-<ns>`) and the store is made anew.
    """
    if not data_mdb.exists():
        return "none"
    fd = os.open(side, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    data = os.open(data_mdb, os.O_RDWR | os.O_CLOEXEC)
    try:
        slot = latest(fd)
        if slot is None and _unfinished(data):
            os.rename(data_mdb, data_mdb.with_name(f"data.mdb.unfinished-{time.time_ns()}"))
            directory = os.open(data_mdb.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            return "unfinished"
        inode = os.fstat(data).st_ino
        if slot is not None and slot.inode == inode and not slot.clean:
            if os.pread(data, len(slot.metas), 0) == slot.metas:
                return "same"
            os.pwrite(data, slot.metas, 0)
            os.fsync(data)
            return "restored"
        page_size = page_size_of(data_mdb)
        write_slot(fd, inode, page_size, os.pread(data, 2 * page_size, 0))
        if slot is None:
            return "none"
        return "clean" if slot.inode == inode else "foreign"
    finally:
        os.close(data)
        os.close(fd)
