"""Applying behind the journal (vigil.store.engine.behind): an acknowledged commit is in the journal; LMDB catches up.

Attacks on what that design could get wrong, each run against real LMDB, a real journal and real processes:
- a read right after an acknowledgement while LMDB is held far behind (it must still see the write);
- kill -9 while LMDB lags hundreds of commits behind the journal (the replay must bring every one back),
  checked by opening data.mdb raw first, to prove the lag was real;
- another process committing while this one commits without pause (it must get its turn, and this
  process must notice its write);
- LMDB refusing a logged batch (the store must stop rather than serve reads that miss it, and the next
  start must replay it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import pytest

from vigil.bench._rig import _turn
from vigil.errors import SessionGone, StoreError
from vigil.records.schema import SessionHeader, Target
from vigil.store.engine import applier, behind, checkpoint
from vigil.store.store import LmdbStore, open_store


def new_header(key: str = "tg:1") -> SessionHeader:
    return SessionHeader(key=key, incarnation=1, created_at=1.0, target=Target(channel="t"), cwd="/", model="m")


@pytest.fixture
def lagging(monkeypatch: pytest.MonkeyPatch) -> None:
    """The apply thread looks for work once an hour and only a full batch wakes it: LMDB lags behind."""
    monkeypatch.setattr(behind, "GATHER_S", 3600.0)
    monkeypatch.setattr(behind, "LINGER_S", 7200.0)
    monkeypatch.setattr(behind, "GATHER_MAX", 10**9)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbStore]:
    s = open_store(tmp_path / "store")
    yield s
    s.close()


WAIT = 30.0


def store_header(store: LmdbStore) -> SessionHeader:
    """tg:1, made in `store`."""
    header = new_header()
    store.commit(header, create=True).result()
    return header


def commit_turns(store: LmdbStore, header: SessionHeader, count: int) -> SessionHeader:
    for _ in range(count):
        previous, seq = header, header.next_seq
        header = msgspec.structs.replace(header, next_seq=seq + 1)
        store.commit(header, _turn(seq, f"turn {seq}"), previous=previous).result()
    return header


def raw_turn_count(data_dir: Path) -> int:
    """Turns in data.mdb as LMDB itself has them (no vigil, no replay)."""
    env = lmdb.open(str(data_dir), readonly=True, lock=False, max_dbs=16, subdir=True)
    try:
        turns = env.open_db(b"turns", create=False)
        with env.begin() as txn:
            return int(txn.stat(turns)["entries"])
    finally:
        env.close()


def test_a_read_sees_every_acknowledged_write_while_lmdb_lags(lagging: None, store: LmdbStore) -> None:
    header = new_header()
    store.commit(header, create=True).result()
    header = commit_turns(store, header, 30)
    apply = store._lmdb.behind
    assert isinstance(apply, behind.ApplyBehind)
    assert apply.applied < apply.handed, "LMDB was meant to lag behind the journal"
    # From another thread, as a session's reader would: the read waits for LMDB, it does not miss the writes.
    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.extend(t.seq for t in store.turns("tg:1", 1, 0, 100)))
    reader.start()
    reader.join(timeout=30)
    assert seen == list(range(30))
    assert apply.applied == apply.handed


CHILD = r"""
import sys
import msgspec
import vigil.store.engine.behind as behind
import vigil.store.engine.journal as journal
behind.GATHER_S = 3600.0  # LMDB is written only when the queue is full: it lags far behind the journal
behind.LINGER_S = 7200.0
behind.GATHER_MAX = 10**9
journal.CHECKPOINT_S = 3600
journal.GROW_PAGES = 10**9
if int(sys.argv[3]):
    journal.JOURNAL_BYTES = int(sys.argv[3]) * journal.BLOCK
from pathlib import Path
from vigil.bench._rig import _turn
from vigil.records.schema import SessionHeader, Target
from vigil.store.store import open_store
store = open_store(Path(sys.argv[1]))
if sys.argv[2] == "write":
    header = SessionHeader(key="tg:1", incarnation=1, created_at=1.0, target=Target(channel="t"), cwd="/", model="m")
    store.commit(header, create=True).result()
    store.turns("tg:1", 1, 0, 1)  # a read: the session is in LMDB before the kill
    print("ready", flush=True)
    seq = 0
    while True:
        previous = header
        header = msgspec.structs.replace(header, next_seq=seq + 1)
        store.commit(header, _turn(seq, f"turn {seq} " * 30), previous=previous).result()
        print(seq, store._lmdb.journal.checkpoints, flush=True)
        seq += 1
else:
    print(" ".join(str(t.seq) for t in store.turns("tg:1", 1, 0, 10**6)), flush=True)
    store.close()
"""


def commit_until_killed(data_dir: Path, acks: int, journal_blocks: int = 0) -> tuple[int, int]:
    """CHILD commits until `acks` commits are acknowledged, then kill -9: (the last acknowledged seq, how many
    checkpoints it had taken). `journal_blocks`: a journal that small (0: the usual one)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir), "write", str(journal_blocks)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    last = checkpoints = -1
    deadline = time.monotonic() + 120
    while last < acks - 1 and time.monotonic() < deadline:
        fields = child.stdout.readline().split()
        if len(fields) == 2 and all(f.isdigit() for f in fields):  # the store logs to stdout too
            last, checkpoints = int(fields[0]), int(fields[1])
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert last >= acks - 1
    return last, checkpoints


def test_kill_9_while_lmdb_lags_far_behind_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    last, _ = commit_until_killed(data_dir, acks=200)
    assert raw_turn_count(data_dir) < 100, "LMDB was meant to lag behind the journal"
    store = LmdbStore(data_dir.resolve())
    try:
        assert {t.seq for t in store.turns("tg:1", 1, 0, last + 10)} >= set(range(last + 1))
    finally:
        store.close()


OTHER = r"""
import sys
from pathlib import Path
from vigil.store.store import open_store
store = open_store(Path(sys.argv[1]))
store.delete_session("tg:1").result()
print("deleted", flush=True)
store.close()
"""


def test_another_process_commits_while_this_one_never_pauses(store: LmdbStore, tmp_path: Path) -> None:
    header = new_header()
    store.commit(header, create=True).result()
    refused: list[BaseException] = []
    committed = 0
    stop = threading.Event()

    def talk() -> None:
        nonlocal header, committed
        while not stop.is_set():
            previous, seq = header, header.next_seq
            header = msgspec.structs.replace(header, next_seq=seq + 1)
            try:
                store.commit(header, _turn(seq, "x"), previous=previous).result()
                committed += 1
            except SessionGone as exc:
                refused.append(exc)
                return

    talker = threading.Thread(target=talk)
    talker.start()
    try:
        deadline = time.monotonic() + 30
        while committed < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        other = subprocess.run([sys.executable, "-c", OTHER, str(tmp_path / "store")], capture_output=True,
                               text=True, timeout=60)
        assert other.returncode == 0, other.stderr
        assert "deleted" in other.stdout
        talker.join(timeout=30)
        assert refused, "the session deleted by the other process must refuse this one's next commit"
    finally:
        stop.set()
        talker.join(timeout=30)
    assert store.header("tg:1") is None


def test_lmdb_refusing_a_logged_batch_stops_the_store_and_the_next_start_replays_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = (tmp_path / "store").resolve()
    store = LmdbStore(data_dir)
    header = new_header()
    store.commit(header, create=True).result()
    header = commit_turns(store, header, 3)
    assert [t.seq for t in store.turns("tg:1", 1, 0, 10)] == [0, 1, 2]

    def refuse(*args: Any) -> None:
        raise lmdb.DiskError("simulated: the disk refused the pages")

    monkeypatch.setattr("vigil.store.engine.behind.write", refuse)
    header = commit_turns(store, header, 1)  # acknowledged: it is in the journal
    with pytest.raises(StoreError, match="restart vigil"):
        store.turns("tg:1", 1, 0, 10)
    with pytest.raises(StoreError):
        commit_turns(store, header, 1)
    assert not store.writer_alive  # the watchdog stops being fed: systemd restarts vigil, which replays
    store.close()
    monkeypatch.undo()
    reopened = LmdbStore(data_dir)
    try:
        assert [t.seq for t in reopened.turns("tg:1", 1, 0, 10)] == [0, 1, 2, 3]
    finally:
        reopened.close()


def test_a_full_journal_starts_over_and_kill_9_still_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    # 24 blocks: full every dozen records or so; it must start over, never lose one.
    last, checkpoints = commit_until_killed(data_dir, acks=100, journal_blocks=24)
    assert checkpoints >= 5, "the journal was meant to fill, and start over, several times"
    read = subprocess.run([sys.executable, "-c", CHILD, str(data_dir), "read", "24"], capture_output=True, text=True,
                          timeout=60)
    assert read.returncode == 0, read.stderr
    assert {int(seq) for seq in read.stdout.splitlines()[-1].split()} >= set(range(last + 1))


def test_a_checkpoint_never_reads_the_meta_pages_while_the_apply_thread_commits(
        store: LmdbStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A buffered read racing LMDB's write of a meta page can return half of each (vigil.store.engine.journal,
    "Reading the meta pages"); saved and put back, such a meta opens a state that never existed. So a
    checkpoint that starts while the apply thread is inside a transaction waits for its commit, and what
    it saves is the state that commit made."""
    header = commit_turns(store, store_header(store), 3)
    store._lmdb.settle()  # the apply thread is idle: the transaction held below is the next commit's
    inside, release = threading.Event(), threading.Event()
    held_txn: list[int] = []
    real = applier.write

    def held(txn: Any, dbs: Any, changes: Any) -> None:
        real(txn, dbs, changes)
        if not inside.is_set():
            held_txn.append(txn.id())
            inside.set()
        assert release.wait(WAIT)

    monkeypatch.setattr(behind, "write", held)
    header = commit_turns(store, header, 1)  # acknowledged: the apply thread is now held in its transaction
    assert inside.wait(WAIT)
    journal = store._lmdb.journal
    before = journal.checkpoints
    taker = threading.Thread(target=journal.checkpoint)
    taker.start()
    taker.join(timeout=1.0)  # long enough for a checkpoint that does not wait to have finished
    finished_while_held = not taker.is_alive()
    release.set()
    taker.join(timeout=WAIT)
    assert not taker.is_alive() and journal.checkpoints > before
    assert not finished_while_held, "the checkpoint read the meta pages while the apply thread was committing"
    side = os.open(store.data_dir / "checkpoint.meta", os.O_RDONLY)
    try:
        slot = checkpoint.latest(side)
    finally:
        os.close(side)
    assert slot is not None
    page = len(slot.metas) // 2
    saved = max(checkpoint.meta_txnid(slot.metas[:page]) or 0, checkpoint.meta_txnid(slot.metas[page:]) or 0)
    assert saved >= held_txn[0], "the checkpoint saved a state from before the commit it should have waited for"
