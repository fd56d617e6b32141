"""The workload whose file operations tests/test_crash_consistency.py records under strace, and what it must leave.

`python -m tests.crash_workload DIR MARKS STEPS_A STEPS_B [broken]` runs two processes one after the other,
as a service would across a crash: the first opens a fresh store (a 1 MB map setting, a journal of
JOURNAL_BLOCKS blocks so that it fills and starts over many times), commits STEPS_A steps and kills
itself with SIGKILL; the second reopens it (recovery: the checkpoint's meta pages put back, the journal
replayed), commits STEPS_B more steps and closes the store. A step is a turn committed to one of two
sessions (journal-first: one record, one barrier) or, every NOTE_EVERY steps, a note (a closure: made
durable by a checkpoint). Background checkpoints come as data.mdb grows (GROW_PAGES), not on a timer,
so the trace is much the same from run to run.

Before each step the process appends `try KIND KEY N` to MARKS and, once the store acknowledged it,
`ack KIND KEY N`, each in one write(2): in the trace they sit exactly where they happened among the
store's own writes and barriers. `broken` breaks the journal's barrier (no O_DIRECT|O_DSYNC, no
fdatasync after the record): the check must then find acknowledged commits lost.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec

JOURNAL_BLOCKS = 48
GROW_PAGES = 48
NOTE_EVERY = 16
KEYS = ("tg:1", "tg:2")
# Turn texts of these lengths in turn: a few bytes to well past a page (LMDB's overflow pages).
SIZES = (120, 900, 4200, 9000, 300, 6000, 1500)
MAP_MB = 1


def turn_text(key: str, seq: int) -> str:
    """The text of turn `seq` of `key`: its own bytes throughout, so no turn can pass for another."""
    seed = hashlib.sha256(f"{key}/{seq}".encode()).hexdigest()
    size = SIZES[seq % len(SIZES)]
    return f"{key}/{seq}:" + (seed * (size // len(seed) + 1))[:size]


def note_text(number: int) -> str:
    return f"note {number}: " + hashlib.sha256(str(number).encode()).hexdigest()


def step_of(index: int) -> tuple[str, str]:
    """Step `index` of the workload: ("note", "tg:1") or ("turn", key)."""
    if index % NOTE_EVERY == NOTE_EVERY - 1:
        return "note", KEYS[0]
    return "turn", KEYS[index % 2]


def configure(broken: bool) -> None:
    """Shrink the journal, checkpoint by growth only; `broken`: the journal's record is not made durable."""
    from vigil.store.engine import journal, records

    journal.JOURNAL_BYTES = JOURNAL_BLOCKS * journal.BLOCK
    journal.CHECKPOINT_S = 3600.0
    journal.GROW_PAGES = GROW_PAGES
    if broken:
        def write_without_barrier(self: journal.Journal, record: bytes, written: object = None) -> None:
            if callable(written):
                written()
            os.pwrite(self._fd, record, self._offset)  # no fdatasync: acknowledged from the page cache
            self._offset += journal.span(len(record) - records.REC.size)

        journal._open_direct = lambda path: -1
        journal.Journal._write = write_without_barrier  # type: ignore[method-assign]


def phase(data_dir: Path, marks: Path, first: int, count: int, broken: bool, crash: bool) -> None:
    configure(broken)
    from vigil.bench._rig import _turn
    from vigil.records.schema import Note, SessionHeader, Target
    from vigil.store.store import LmdbStore

    mark = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    store = LmdbStore(data_dir, MAP_MB)
    headers = {key: store.header(key) for key in KEYS}
    notes = len(store.notes(KEYS[0]))
    for index in range(first, first + count):
        kind, key = step_of(index)
        header = headers[key]
        number = notes if kind == "note" else (0 if header is None else header.next_seq)
        os.write(mark, f"try {kind} {key} {number}\n".encode())
        if kind == "note":
            store.add_note(key, Note(text=note_text(number), at=float(number)), keep=10**6).result()
            notes += 1
        elif header is None:
            header = SessionHeader(key=key, incarnation=1, created_at=1.0, target=Target(channel="t"), cwd="/",
                                   model="m", next_seq=1)
            store.commit(header, _turn(0, turn_text(key, 0)), create=True).result()
        else:
            previous, header = header, msgspec.structs.replace(header, next_seq=number + 1)
            store.commit(header, _turn(number, turn_text(key, number)), previous=previous).result()
        headers[key] = header
        os.write(mark, f"ack {kind} {key} {number}\n".encode())
    if crash:
        os.kill(os.getpid(), signal.SIGKILL)
    store.close()
    os.close(mark)


def main(argv: list[str]) -> None:
    data_dir, marks, steps_a, steps_b = Path(argv[1]), Path(argv[2]), int(argv[3]), int(argv[4])
    broken = argv[5:] == ["broken"]
    if argv[5:6] == ["phase"]:
        first, count, crash = int(argv[6]), int(argv[7]), argv[8] == "crash"
        phase(data_dir, marks, first, count, argv[9] == "broken", crash)
        return
    mode = "broken" if broken else "kept"
    for first, count, end in ((0, steps_a, "crash"), (steps_a, steps_b, "close")):
        done = subprocess.run([sys.executable, "-m", "tests.crash_workload", str(data_dir), str(marks), "0", "0",
                               "phase", str(first), str(count), end, mode], check=False)
        if done.returncode not in (0, -signal.SIGKILL):
            raise SystemExit(f"the workload's phase from step {first} failed ({done.returncode})")


if __name__ == "__main__":
    main(sys.argv)
