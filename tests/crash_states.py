"""The disk states a power cut could leave, built from an strace of a workload (ALICE, Pillai et al., OSDI 2014;
CrashMonkey, Mohan et al., OSDI 2018).

The trace (`strace -f -y -e write=all`, see `STRACE`) is read into the store files' writes, with their
bytes, and their barriers, in the order they completed. The model of the disk, block by block (4 KiB):
- a buffered write reaches the page cache; it is on stable storage only once an fsync/fdatasync of its
  file that began after the write had returned has returned;
- a write through a descriptor opened O_DSYNC (vigil's journal, O_DIRECT | O_DSYNC) is on stable
  storage when it returns, and so is whatever else the page cache held for the blocks it wrote;
- until then a block may hold its last stable content or what any later write left in it: the disk
  writes the page cache's blocks back in any order, each whole, and a block written again and again
  holds one of its versions in order (a prefix of its pending writes); a 4 KiB block is not torn;
- a file is as long as its stable content, or longer if a block written past that end reached the disk.
A crash point is every barrier (with its own write still pending: a crash while it runs) and the end.

Anything else done to the store's files (rename, truncate, fallocate, msync...) is refused loudly rather
than modelled wrongly: vigil does none of it, and a change that starts to would have to extend the model.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vigil.store.engine import checkpoint, records

BLOCK = 4096
EVERY_BELOW = 32  # a crash point with at most this many possible disk states has every one of them built
FILES = ("data.mdb", "journal.wal", "checkpoint.meta")
SYSCALLS = ("openat,close,write,pwrite64,writev,pwritev,pwritev2,lseek,fsync,fdatasync,sync_file_range,ftruncate,"
            "fallocate,rename,renameat,renameat2,unlink,unlinkat,msync,copy_file_range,sendfile,splice")


def strace_command(store: Path, marks: Path, out: Path) -> list[str]:
    """strace for the workload: every thread and child, descriptors with their paths, the written bytes in full,
    only the syscalls that touch the store's files or the marks file."""
    watched = [arg for name in FILES for arg in ("-P", str(store / name))]
    return ["strace", "-f", "-qq", "-y", "-s", "0", "--seccomp-bpf", "-e", f"trace={SYSCALLS}", "-e", "write=all",
            *watched, "-P", str(marks), "-o", str(out)]


@dataclass(frozen=True)
class Write:
    file: str
    offset: int
    data: bytes
    stable: bool  # through an O_DSYNC descriptor: on stable storage when it returned


@dataclass(frozen=True)
class Sync:
    file: str
    began: int  # the trace line it was entered at: it covers the writes that returned before


@dataclass(frozen=True)
class Mark:
    text: str


Op = tuple[int, Write | Sync | Mark]  # (the trace line the call returned at, what it did)

_LINE = re.compile(r"^(\d+) +(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
_DUMP = re.compile(r"^ \| [0-9a-f]{5,}  ")
_FD = re.compile(r"(-?\d+)<([^>]*)>")
_RESULT = re.compile(r"\)\s+= (-?\d+)(?:<[^>]*>)?(?: .*)?$")


def _split_args(text: str) -> list[str]:
    return [part.strip() for part in text.split(", ")]


def read_trace(path: Path, store: Path, marks: Path) -> list[Op]:
    """The store files' writes and barriers and the marks, in the order they returned."""
    watched = {str(store / name): name for name in FILES}
    entries: dict[int, tuple[str, str, int]] = {}  # tid -> (syscall, the arguments so far, line)
    flags: dict[tuple[int, str], str] = {}  # (fd, path) -> the flags it was opened with
    position: dict[tuple[int, str], int] = {}
    ops: list[Op] = []
    lines = path.read_text(errors="replace").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        match = _LINE.match(line)
        if match is None:
            continue
        tid, resumed, name, rest = int(match.group(1)), match.group(2), match.group(3), match.group(4)
        if resumed is not None:
            name, head, began = entries.pop(tid)
            rest = head + rest
        else:
            began = index - 1
        if rest.endswith("<unfinished ...>"):
            entries[tid] = (name, rest[: -len("<unfinished ...>")].rstrip(), began)
            continue
        data = bytearray()
        while index < len(lines) and (lines[index].startswith(" | ") or lines[index].startswith(" * ")):
            dump = lines[index]
            index += 1
            found = _DUMP.match(dump)
            if found is not None:
                data += bytes.fromhex(dump[found.end():found.end() + 49])
        result = _RESULT.search(rest)
        if result is None or int(result.group(1)) < 0:
            continue  # failed, or ended by the kill before it returned
        ret = int(result.group(1))
        args_text = rest[: result.start()]
        fd_match = _FD.match(args_text) if name != "openat" else None
        path_of = fd_match.group(2) if fd_match else ""
        fd = int(fd_match.group(1)) if fd_match else -1
        done = index - 1
        if name == "openat":
            opened = _FD.search(rest[result.start():])
            if opened and opened.group(2) in watched:
                flags[(int(opened.group(1)), opened.group(2))] = _split_args(args_text)[2]
                position[(int(opened.group(1)), opened.group(2))] = 0
            continue
        if path_of == str(marks):
            if name == "write":
                ops.append((done, Mark(bytes(data).decode())))
            continue
        file = watched.get(path_of)
        if file is None:
            continue
        key = (fd, path_of)
        args = _split_args(args_text)
        if name in ("close", "lseek"):
            if name == "lseek":
                position[key] = ret
            continue
        if name in ("fsync", "fdatasync"):
            ops.append((done, Sync(file, began)))
            continue
        if name in ("write", "writev"):
            offset = position.get(key, 0)
            position[key] = offset + ret
        elif name == "pwrite64" or name in ("pwritev", "pwritev2"):
            offset = int(args[3])
        else:
            raise NotImplementedError(f"the crash model does not cover {name} on {file}: {line}")
        assert len(data) >= ret, f"the trace lacks the bytes of {line}"
        stable = "O_DSYNC" in flags.get(key, "") or "O_SYNC" in flags.get(key, "")
        ops.append((done, Write(file, offset, bytes(data[:ret]), stable)))
    return ops


@dataclass
class CrashPoint:
    """What is on stable storage at a barrier, what may or may not be, and what the workload had said by then."""

    at: int
    stable: dict[str, bytes]
    pending: dict[tuple[str, int], list[tuple[int, bytes]]]  # (file, block) -> [(offset in block, bytes)]
    marks: list[str]


@dataclass
class _Disk:
    stable: dict[str, bytearray] = field(default_factory=lambda: {name: bytearray() for name in FILES})
    cache: dict[str, bytearray] = field(default_factory=lambda: {name: bytearray() for name in FILES})
    # (file, block) -> [(returned at, offset in block, bytes)], oldest first
    pending: dict[tuple[str, int], list[tuple[int, int, bytes]]] = field(default_factory=dict)

    def write(self, done: int, write: Write) -> None:
        _put(self.cache[write.file], write.offset, write.data)
        for block, at, piece in _pieces(write.offset, write.data):
            if write.stable:  # the block as the cache holds it is on the disk now, whatever was pending for it
                self.pending.pop((write.file, block), None)
                start = block * BLOCK
                _put(self.stable[write.file], start, bytes(self.cache[write.file][start:start + BLOCK]))
            else:
                self.pending.setdefault((write.file, block), []).append((done, at, piece))

    def sync(self, sync: Sync) -> None:
        for (file, block), pieces in list(self.pending.items()):
            if file != sync.file:
                continue
            covered = [piece for piece in pieces if piece[0] < sync.began]
            for _, at, piece in covered:
                _put(self.stable[file], block * BLOCK + at, piece)
            left = pieces[len(covered):]
            if left:
                self.pending[(file, block)] = left
            else:
                del self.pending[(file, block)]

    def point(self, at: int, marks: list[str]) -> CrashPoint:
        pending = {key: [(offset, piece) for _, offset, piece in pieces] for key, pieces in self.pending.items()}
        return CrashPoint(at, {name: bytes(data) for name, data in self.stable.items()}, pending, list(marks))


def _put(image: bytearray, offset: int, data: bytes) -> None:
    if len(image) < offset:
        image.extend(bytes(offset - len(image)))
    image[offset:offset + len(data)] = data


def _pieces(offset: int, data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """`data` at `offset` cut at block boundaries: (block, offset in it, bytes)."""
    done = 0
    while done < len(data):
        block, at = divmod(offset + done, BLOCK)
        size = min(BLOCK - at, len(data) - done)
        yield block, at, data[done:done + size]
        done += size


def crash_points(ops: list[Op]) -> list[CrashPoint]:
    """A crash point at every barrier (before it returned) and at the end of the trace."""
    disk = _Disk()
    marks: list[str] = []
    points = []
    for done, op in ops:
        if isinstance(op, Mark):
            marks.append(op.text)
        elif isinstance(op, Sync):
            points.append(disk.point(done, marks))
            disk.sync(op)
        else:
            if op.stable:  # a crash while it ran may have left any of its blocks on the disk, or none
                point = disk.point(done, marks)
                for block, at, piece in _pieces(op.offset, op.data):
                    point.pending.setdefault((op.file, block), []).append((at, piece))
                points.append(point)
            disk.write(done, op)
    points.append(disk.point(ops[-1][0] + 1 if ops else 0, marks))
    return points


def image(point: CrashPoint, choice: dict[tuple[str, int], int]) -> dict[str, bytes]:
    """The files after a crash at `point`, each block holding the first `choice[block]` of its pending writes."""
    files = {name: bytearray(data) for name, data in point.stable.items()}
    for (file, block), pieces in point.pending.items():
        for at, piece in pieces[:choice.get((file, block), 0)]:
            _put(files[file], block * BLOCK + at, piece)
    return {name: bytes(data) for name, data in files.items()}


def choices(point: CrashPoint, randomised: int, rng: random.Random) -> Iterator[dict[tuple[str, int], int]]:
    """Which pending writes reach the disk: every combination when there are at most EVERY_BELOW; else none;
    all; all of some files and none of the others (one order of the files' write-backs against another's);
    then `randomised` draws of a prefix for every block."""
    keys = sorted(point.pending)
    everything = {key: len(point.pending[key]) for key in keys}
    if math.prod(count + 1 for count in everything.values()) <= EVERY_BELOW:
        for counts in itertools.product(*(range(everything[key] + 1) for key in keys)):
            yield dict(zip(keys, counts, strict=True))
        return
    yield {}
    yield everything
    touched = sorted({file for file, _ in keys})
    for mask in range(1, 2 ** len(touched) - 1):
        chosen = {file for bit, file in enumerate(touched) if mask >> bit & 1}
        yield {key: count for key, count in everything.items() if key[0] in chosen}
    for _ in range(randomised):
        yield {key: rng.randint(0, count) for key, count in everything.items()}


def rekey(files: dict[str, bytes], old: int, new: int) -> dict[str, bytes]:
    """The same state for a data.mdb with inode `new` instead of `old`.

    vigil binds the side file's slots and the journal's records to data.mdb's inode (a data.mdb put in place
    by `vigil restore` is a new file, and must not be given another file's meta pages or records); a crash
    state is opened from a copy, a new file. So every slot and record that is whole for `old` is made whole
    for `new`, and nothing else is touched: what was torn stays torn, the replay stops where it would have.
    """
    side = bytearray(files["checkpoint.meta"])
    head = checkpoint._HEAD
    for start in (0, checkpoint.SLOT_BYTES):
        if len(side) < start + head.size + 4:
            continue
        magic, generation, inode, page_size, clean, length = head.unpack_from(side, start)
        end = start + head.size + length
        if magic != checkpoint.MAGIC or inode != old or end + 4 > len(side):
            continue
        if zlib.crc32(side[start:end]) != struct.unpack_from("<I", side, end)[0]:
            continue
        head.pack_into(side, start, magic, generation, new, page_size, clean, length)
        struct.pack_into("<I", side, end, zlib.crc32(side[start:end]))
    log = bytearray(files["journal.wal"])
    offset, previous = 0, None
    rec = records.REC
    while offset + rec.size <= len(log):
        length, crc, seq = rec.unpack_from(log, offset)
        payload = bytes(log[offset + rec.size:offset + rec.size + length])
        if length == 0 or offset + rec.size + length > len(log) or records.crc(old, seq, payload) != crc or (
                previous is not None and seq != previous + 1):
            break
        rec.pack_into(log, offset, length, records.crc(new, seq, payload), seq)
        previous = seq
        offset += records.span(length)
    return {**files, "checkpoint.meta": bytes(side), "journal.wal": bytes(log)}


def digest(files: dict[str, bytes]) -> str:
    hashed = hashlib.sha256()
    for name in FILES:
        hashed.update(name.encode() + len(files[name]).to_bytes(8, "little") + files[name])
    return hashed.hexdigest()
