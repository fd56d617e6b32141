"""Power loss, tested (issue 22, item 6): every disk state a power cut could leave recovers every acknowledged
commit exactly, and nothing else.

`tests/crash_workload.py` commits turns and notes across checkpoints, a journal that starts over again and
again, a kill -9 and the recovery after it, growing the store past its 1 MB map setting; strace records
what it did to the store's files (`tests/crash_states.py` has the model of the disk). At every barrier
the states a power cut could leave there are built (what was made durable, plus subsets of the blocks
that were not: none, all, all of some files only, and random prefixes per block, deterministically
seeded), deduplicated, and each is opened with vigil's normal open path (restore, replay, checkpoint)
with the same 1 MB setting. Each must hold every commit acknowledged before the crash point, exactly as
written, and nothing that was not attempted; each must take a new commit.

The negative test breaks the journal's barrier (the record written to the page cache, no O_DSYNC, no
fdatasync) and requires the check to find acknowledged commits lost: the check can fail.

VIGIL_CRASH_STATES=N draws N random states per barrier instead of the default's one (exhaustive runs).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import crash_states
from tests.crash_workload import JOURNAL_BLOCKS, KEYS, MAP_MB, note_text, turn_text
from vigil.bench._rig import _turn
from vigil.store.engine import journal
from vigil.store.store import LmdbStore

pytestmark = pytest.mark.e2e  # runs vigil's own code as a subprocess

REPO = Path(__file__).resolve().parents[1]
STEPS = (260, 120)  # the workload's steps before the kill, and after it
RANDOM_PER_POINT = int(os.environ.get("VIGIL_CRASH_STATES", "1"))
SEED = 22


@dataclass(frozen=True)
class Recovered:
    """What an opened crash state holds (counts of the prefix of the workload's commits), or why it failed."""

    turns: tuple[int, ...] = ()
    notes: int = 0
    error: str = ""


@dataclass
class Outcome:
    points: int = 0
    states: int = 0  # distinct disk images opened
    checked: int = 0  # (crash point, image) pairs checked against what was acknowledged there
    grown: int = 0  # states whose data.mdb was past the 1 MB setting
    failures: list[str] | None = None


def record(tmp: Path, broken: bool) -> tuple[list[crash_states.CrashPoint], Path]:
    """Run the workload under strace: the crash points, and the store it left."""
    store, marks, trace = tmp / "store", tmp / "marks", tmp / "trace.txt"
    command = [*crash_states.strace_command(store, marks, trace), sys.executable, "-m", "tests.crash_workload",
               str(store), str(marks), str(STEPS[0]), str(STEPS[1]), *(["broken"] if broken else [])]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    points = crash_states.crash_points(crash_states.read_trace(trace, store, marks))
    return points, store


def bounds(marks: list[str]) -> dict[tuple[str, str], tuple[int, int]]:
    """Per (kind, key): how many commits were acknowledged, and how many were attempted."""
    found: dict[tuple[str, str], tuple[int, int]] = {}
    for line in marks:
        what, kind, key, number = line.split()
        acked, tried = found.get((kind, key), (0, 0))
        if what == "ack":
            acked = max(acked, int(number) + 1)
        tried = max(tried, int(number) + 1)
        found[(kind, key)] = (acked, tried)
    return found


def recover(files: dict[str, bytes], inode: int, where: Path) -> Recovered:
    """Open a crash state (of the workload's data.mdb, inode `inode`) as vigil would, read everything in it,
    and commit one more turn."""
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    if files["data.mdb"]:
        (where / "data.mdb").write_bytes(files["data.mdb"])
        files = crash_states.rekey(files, inode, (where / "data.mdb").stat().st_ino)
    for name, data in files.items():
        if data and name != "data.mdb":
            (where / name).write_bytes(data)
    try:
        store = LmdbStore(where, MAP_MB)
    except Exception as exc:
        return Recovered(error=f"the open failed: {exc!r}")
    try:
        return _read_all(store)
    except Exception as exc:
        return Recovered(error=f"{type(exc).__name__}: {exc}")
    finally:
        store.close()


def _read_all(store: LmdbStore) -> Recovered:
    counts = []
    for key in KEYS:
        header = store.header(key)
        count = 0 if header is None else header.next_seq
        turns = [] if header is None else store.turns(key, header.generation)
        if [t.seq for t in turns] != list(range(count)):
            raise AssertionError(f"{key}: the header says {count} turns, the store holds {[t.seq for t in turns]}")
        for turn in turns:
            if turn.inputs[0].text != turn_text(key, turn.seq):
                raise AssertionError(f"{key}: turn {turn.seq} holds other bytes than were committed")
        counts.append(count)
    notes = [note.text for note in store.notes(KEYS[0])]
    if notes != [note_text(number) for number in range(len(notes))]:
        raise AssertionError(f"the notes are not the ones added, in order: {notes[:3]}...")
    entries = store.read(lambda txn: {name: txn.stat(store._db[name])["entries"] for name in (b"turns", b"notes",
                                                                                            b"sessions")})
    expected = {b"turns": sum(counts), b"notes": len(notes), b"sessions": sum(1 for count in counts if count)}
    if entries != expected:
        raise AssertionError(f"records nobody committed: {entries} where {expected} were written")
    for name in store._db:  # every page of every database is readable (a wrong root or free list shows here)
        store.read(lambda txn, name=name: sum(1 for _ in txn.cursor(db=store._db[name])))
    header = store.header(KEYS[0])
    if header is not None:  # and it takes a new commit
        import msgspec

        seq = header.next_seq
        store.commit(msgspec.structs.replace(header, next_seq=seq + 1), _turn(seq, "after"), previous=header).result()
        if store.turn(KEYS[0], header.generation, seq) is None:
            raise AssertionError("a commit after recovery is not there")
    return Recovered(tuple(counts), len(notes))


def check(points: list[crash_states.CrashPoint], store: Path, scratch: Path) -> Outcome:
    outcome = Outcome(points=len(points), failures=[])
    assert outcome.failures is not None
    rng = random.Random(SEED)
    opened: dict[str, Recovered] = {}
    inode = (store / "data.mdb").stat().st_ino
    for point in points:
        limits = bounds(point.marks)
        for choice in crash_states.choices(point, RANDOM_PER_POINT, rng):
            files = crash_states.image(point, choice)
            digest = crash_states.digest(files)
            if digest not in opened:
                opened[digest] = recover(files, inode, scratch / "state")
                outcome.grown += len(files["data.mdb"]) > MAP_MB * 1024 * 1024
            found = opened[digest]
            outcome.checked += 1
            problem = found.error or _against(found, limits)
            if problem:
                outcome.failures.append(f"crash at trace line {point.at} ({len(point.marks)} marks, "
                                        f"{sum(choice.values())} pending writes kept): {problem}")
    outcome.states = len(opened)
    return outcome


def _against(found: Recovered, limits: dict[tuple[str, str], tuple[int, int]]) -> str:
    have = {("turn", key): count for key, count in zip(KEYS, found.turns, strict=True)}
    have[("note", KEYS[0])] = found.notes
    for what, count in have.items():
        acked, tried = limits.get(what, (0, 0))
        if count < acked:
            return f"{what[0]}s of {what[1]}: {acked} acknowledged, {count} recovered"
        if count > tried:
            return f"{what[0]}s of {what[1]}: {tried} attempted, {count} recovered"
    return ""


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where crash states are opened: memory, where one is (their fsyncs cost nothing there), else tmp_path.
    The journal is the workload's size."""
    monkeypatch.setattr(journal, "JOURNAL_BYTES", JOURNAL_BLOCKS * journal.BLOCK)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        for stale in shm.glob("vigil-crash-*"):  # left by a run that was killed: it holds memory
            owner = stale.name.split("-")[2]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                shutil.rmtree(stale, ignore_errors=True)
        where = Path(os.path.realpath(shm)) / f"vigil-crash-{os.getpid()}-{tmp_path.name}"
        try:
            yield where
        finally:
            shutil.rmtree(where, ignore_errors=True)
    else:
        yield tmp_path / "states"


def test_every_crash_state_recovers_every_acknowledged_commit_and_nothing_else(tmp_path: Path, scratch: Path) -> None:
    began = time.monotonic()
    points, store = record(tmp_path, broken=False)
    assert os.path.getsize(store / "data.mdb") > MAP_MB * 1024 * 1024, "the store was meant to grow past 1 MB"
    outcome = check(points, store, scratch)
    print(f"crash consistency: {outcome.points} barriers, {outcome.states} distinct states opened "
          f"({outcome.grown} of them past the 1 MB map setting), {outcome.checked} checked, "
          f"{time.monotonic() - began:.1f} s")
    assert outcome.states >= 300 and outcome.grown >= 50
    assert outcome.failures == [], f"{len(outcome.failures or [])} states failed:\n" + "\n".join(
        (outcome.failures or [])[:20])


def test_the_check_finds_the_loss_when_the_journals_barrier_is_broken(tmp_path: Path, scratch: Path) -> None:
    points, store = record(tmp_path, broken=True)
    outcome = check(points, store, scratch)
    lost = [failure for failure in outcome.failures or [] if "acknowledged" in failure]
    print(f"broken barrier: {len(lost)} of {outcome.checked} checked states lost acknowledged commits")
    assert lost, "without the journal's barrier, acknowledged commits must be lost in some crash state"
