"""The journal's records as they lie in journal.wal: their layout, their checksum, and reading the whole ones.

A record is a head (payload length, crc32, sequence: `REC`) and its payload (the msgpack of a batch's
puts and deletes), padded to whole blocks so that each can be written straight to the disk from a
block-aligned buffer (O_DIRECT). A torn record fails its checksum; a leftover of an earlier round of the
journal breaks the sequence; reading stops at either (vigil.store.engine.journal says why that is enough).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator

import msgspec

from vigil.store.engine.applier import Change

BLOCK = 4096
REC = struct.Struct("<IIQ")  # payload length, crc32 of (data.mdb's inode + sequence + payload), sequence
_CHANGES = msgspec.msgpack.Encoder()
_READ_CHANGES = msgspec.msgpack.Decoder(list[tuple[bytes, bytes, bytes | None]])


def crc(inode: int, seq: int, payload: bytes) -> int:
    # The inode of data.mdb is in the checksum: a journal left beside a data.mdb that `vigil restore` put in
    # place (a new file) never replays into it, whatever its sequence numbers.
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QQ", inode, seq)))


def encode_changes(changes: list[Change]) -> bytes:
    return _CHANGES.encode(changes)


def decode_changes(payload: bytes) -> list[Change]:
    return _READ_CHANGES.decode(payload)


def span(length: int) -> int:
    """The bytes a record with a payload of `length` takes in the journal: whole blocks."""
    return -(-(REC.size + length) // BLOCK) * BLOCK


def read_records(fd: int, size: int, inode: int) -> Iterator[tuple[int, bytes]]:
    """The journal's whole records in order: stops at a torn one or a break in the sequence."""
    offset = 0
    previous: int | None = None
    while offset + REC.size <= size:
        length, checksum, seq = REC.unpack(os.pread(fd, REC.size, offset))
        if length == 0 or offset + REC.size + length > size:
            return
        payload = os.pread(fd, length, offset + REC.size)
        if crc(inode, seq, payload) != checksum or (previous is not None and seq != previous + 1):
            return
        yield seq, payload
        previous = seq
        offset += span(length)
