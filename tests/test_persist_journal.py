"""The redo journal: every acknowledged commit survives kill -9 and (simulated) power loss.

A child process commits turns in a loop, printing each sequence number once its commit is acknowledged,
and is killed with SIGKILL. A kill leaves the page cache (and so LMDB) intact; a power loss would not.
That is simulated after the kill: data.mdb's meta pages are overwritten with plausible newer ones
(a larger txn id, a last page far past the file) or the newer meta is wiped (LMDB falls back to the
older one), and every page written after the last checkpoint is scribbled over. Reopening must restore
the checkpoint, replay the journal, and find every acknowledged turn; a torn last record stops the
replay cleanly at it.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from vigil.records.schema import decode_turn
from vigil.store.engine import checkpoint
from vigil.store.engine.journal import JOURNAL_BYTES
from vigil.store.engine.records import read_records, span
from vigil.store.store import LmdbStore

CHILD = r"""
import sys, time
import msgspec
import vigil.store.engine.journal as journal
journal.CHECKPOINT_S = 3600  # no background checkpoint: the kill finds the journal holding every turn
journal.GROW_PAGES = 10**9
from pathlib import Path
from vigil.bench._rig import _turn
from vigil.records.schema import SessionHeader, Target
from vigil.store.store import open_store
store = open_store(Path(sys.argv[1]))
header = SessionHeader(key="tg:1", incarnation=1, created_at=1.0, target=Target(channel="t"), cwd="/", model="m")
store.commit(header, create=True).result()
print("ready", flush=True)
seq = 0
while True:
    header = msgspec.structs.replace(header, next_seq=seq + 1)
    store.commit(header, _turn(seq, f"turn {seq} " * 30)).result()
    print(seq, flush=True)
    seq += 1
"""


def run_and_kill(data_dir: Path, acks: int) -> int:
    """Commit in a child until `acks` commits were acknowledged, then kill -9; the last acknowledged seq."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    last = -1
    deadline = time.monotonic() + 120
    assert child.stdout.readline().strip() == "ready"
    while last < acks - 1 and time.monotonic() < deadline:
        last = int(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert last >= acks - 1
    return last


def stored_turns(data_dir: Path) -> set[int]:
    store = LmdbStore(data_dir.resolve())
    try:
        header = store.header("tg:1")
        assert header is not None
        return {turn.seq for turn in store.turns("tg:1", header.generation, 0, header.next_seq + 5)}
    finally:
        store.close()


def checkpoint_metas(data_dir: Path) -> bytes:
    fd = os.open(data_dir / "checkpoint.meta", os.O_RDONLY)
    try:
        slot = checkpoint.latest(fd)
    finally:
        os.close(fd)
    assert slot is not None and not slot.clean
    return slot.metas


def newest_meta_at(metas: bytes, page_size: int) -> int:
    """The offset (0 or one page) of the meta LMDB would open: the larger txn id."""
    first, second = checkpoint.meta_txnid(metas[:page_size]), checkpoint.meta_txnid(metas[page_size:])
    assert first is not None and second is not None
    return 0 if first > second else page_size


def lose_power(data_dir: Path, how: str) -> None:
    """What a power loss may leave: pages after the checkpoint garbage, and a newer meta naming anything."""
    data = data_dir / "data.mdb"
    page_size = checkpoint.page_size_of(data)
    saved = checkpoint_metas(data_dir)
    at = newest_meta_at(saved, page_size)
    (last_pg,) = struct.unpack_from("<Q", saved, at + checkpoint.LAST_PG_AT)
    with open(data, "r+b") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek((last_pg + 1) * page_size)  # every page the checkpointed tree does not use and never did
        handle.write(os.urandom(max(0, size - (last_pg + 1) * page_size)))
        handle.seek(0)
        current = bytearray(handle.read(2 * page_size))
        newest = newest_meta_at(bytes(current), page_size)
        if how == "newer":  # plausible: LMDB's magic, a larger txn id, pages past the end of the file
            txnid = checkpoint.meta_txnid(bytes(current[newest:newest + page_size]))
            assert txnid is not None
            struct.pack_into("<Q", current, newest + checkpoint.TXNID_AT, txnid + 1000)
            struct.pack_into("<Q", current, newest + checkpoint.LAST_PG_AT, size // page_size + 5000)
        else:  # the newest meta torn to nothing: LMDB would open the previous one
            current[newest:newest + page_size] = bytes(page_size)
        handle.seek(0)
        handle.write(current)


def test_every_acknowledged_commit_survives_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    for round_ in range(3):
        last = run_and_kill(data_dir, acks=40 * (round_ + 1))
        assert set(range(last + 1)) <= stored_turns(data_dir)


@pytest.mark.parametrize("how", ["newer", "previous"])
def test_after_a_power_loss_recovery_restores_the_checkpoint_and_replays_every_acknowledged_commit(
        tmp_path: Path, how: str) -> None:
    data_dir = tmp_path / "store"
    last = run_and_kill(data_dir, acks=60)
    fd = os.open(data_dir / "journal.wal", os.O_RDONLY)
    try:
        inode = (data_dir / "data.mdb").stat().st_ino
        logged = [seq for seq, _ in read_records(fd, JOURNAL_BYTES, inode)]
    finally:
        os.close(fd)
    assert len(logged) >= 60  # the turns are in the journal, not in a checkpoint: the replay is what is tested
    lose_power(data_dir, how)
    assert set(range(last + 1)) <= stored_turns(data_dir)
    # Recovered, checkpointed and closed cleanly: it opens again as it is, and the store still takes turns.
    assert set(range(last + 1)) <= stored_turns(data_dir)
    last_again = run_and_kill(data_dir, acks=10)
    assert last_again >= 9


def test_a_torn_last_record_stops_the_replay_cleanly_at_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    run_and_kill(data_dir, acks=30)
    inode = (data_dir / "data.mdb").stat().st_ino
    fd = os.open(data_dir / "journal.wal", os.O_RDWR)
    try:
        offset = 0
        records = []
        for _seq, payload in read_records(fd, JOURNAL_BYTES, inode):
            records.append((offset, payload))
            offset += span(len(payload))
        torn_at, payload = records[-1]
        os.pwrite(fd, b"\x00" * 64, torn_at + 16 + 10)  # the last record half written
    finally:
        os.close(fd)
    changes = msgspec.msgpack.decode(payload, type=list[tuple[bytes, bytes, bytes | None]])
    torn_turn = next(decode_turn(value).seq for name, _key, value in changes if name == b"turns" and value)
    lose_power(data_dir, "newer")
    turns = stored_turns(data_dir)
    assert turns == set(range(torn_turn))  # every record before the torn one, and nothing of it
