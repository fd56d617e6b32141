"""A full disk (issue 22, item 6): the disk fills at each write a commit makes; nothing acknowledged is lost, the
failing write is reported, and once there is room again the store goes on.

The store lives on a tmpfs of a few MB mounted in a mount namespace of the test's own (`unshare`: as root,
which CI is; nothing leaks onto the host). Before each attempt a filler file takes every free page but
`room` of them, for `room` = 0, 1, 2... up to what a commit needs: so the first write that needs a new
page fails at each place in turn. What can fail, and what then happens:
- the journal's record never does (the journal is preallocated: overwriting its blocks needs no space);
- the apply thread's LMDB commit does once data.mdb must grow: the commit was acknowledged (its record is
  durable), LMDB refuses it, and the store stops (reads and writes raise StoreError, "restart vigil to
  replay it"); after a restart with room again, the replay brings it back;
- a closure's commit (a note) fails in LMDB: the caller gets StoreError and the store goes on at once.
Opening a store on a full disk is one sentence that says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import errno, json, os, subprocess, sys
from pathlib import Path
import msgspec
mount = Path(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
from vigil.store.engine import journal
journal.JOURNAL_BYTES = 64 * journal.BLOCK
from vigil.bench._rig import _turn
from vigil.errors import StoreError
from vigil.records.schema import Note, SessionHeader, Target
from vigil.store.store import LmdbStore

data_dir, filler = mount / "store", mount / "filler"
PAGE = 4096

def fill(room):
    # Every free page but `room`: written until the file system refuses, then given back.
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (bytes(1 << 16), bytes(PAGE)):
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
        os.ftruncate(fd, max(0, os.fstat(fd).st_size // PAGE - room) * PAGE)
    finally:
        os.close(fd)

def report(**fields):
    print(json.dumps(fields), flush=True)

store = LmdbStore(data_dir, 1)
header = SessionHeader(key="tg:1", incarnation=1, created_at=1.0, target=Target(channel="t"), cwd="/", model="m")
store.commit(header, create=True).result()
rounds = int(sys.argv[2])

def note_text(number):
    return f"{number:05d}" + "n" * 12000  # three pages of overflow

# Closures (notes): LMDB is written, then a checkpoint makes it durable, then it is acknowledged.
notes_acked, notes_failed = [], []
for room in range(rounds):
    fill(room)
    number = len(notes_acked)
    try:
        store.add_note("tg:1", Note(text=note_text(number), at=float(number)), keep=10**6).result()
        notes_acked.append(number)
        outcome = "stored"
    except StoreError as exc:
        notes_failed.append(number)
        outcome = str(exc)
    alive = store.writer_alive
    os.unlink(filler)  # room again: the store goes on at once, no restart
    after = len(notes_acked)
    store.add_note("tg:1", Note(text=note_text(after), at=float(after)), keep=10**6).result()
    notes_acked.append(after)
    report(kind="note", room=room, outcome=outcome, alive=alive,
           stored=[n.text for n in store.notes("tg:1")] == [note_text(k) for k in notes_acked])

def turn_text(seq):
    return f"{seq:05d}" + "t" * 30000  # eight pages of overflow: LMDB must find (or grow by) a run of them

# Turns: journal first (acknowledged at the record's barrier), LMDB written beside it by the apply thread.
# The last round has room to spare: how many pages a commit needs depends on which pages LMDB frees and
# reuses meanwhile (a short write for want of the last page reads as EIO), so "room enough" is made certain.
acked, reopened = [], 0
for room in range(rounds):
    fill(room if room < rounds - 1 else 8 * rounds)
    seq = header.next_seq
    previous, header = header, msgspec.structs.replace(header, next_seq=seq + 1)
    still_full = ""
    try:
        store.commit(header, _turn(seq, turn_text(seq)), previous=previous).result()
        acked.append(seq)
        store.turns("tg:1", 1, seq, seq + 1)  # a read: waits until LMDB holds it, or says why it never will
        outcome = "stored"
    except StoreError as exc:
        outcome = str(exc)
    stopped = not store.writer_alive
    if stopped:  # what a restart while the disk is still full says
        store.close()
        try:
            LmdbStore(data_dir, 1).close()
        except StoreError as exc:
            still_full = str(exc)
    os.unlink(filler)  # room again
    if stopped:
        store = LmdbStore(data_dir, 1)  # the restart a stopped store needs (systemd's, in production)
        reopened += 1
    header = store.header("tg:1")
    turns = store.turns("tg:1", 1)
    report(kind="turn", room=room, outcome=outcome, stopped=stopped, still_full=still_full, acked=acked,
           stored=[t.seq for t in turns], header_next=header.next_seq,
           texts_ok=all(t.inputs[0].text == turn_text(t.seq) for t in turns if t.seq in acked))
    seq = header.next_seq  # and it goes on
    previous, header = header, msgspec.structs.replace(header, next_seq=seq + 1)
    store.commit(header, _turn(seq, turn_text(seq)), previous=previous).result()
    acked.append(seq)
store.close()
fill(0)
try:
    LmdbStore(mount / "fresh", 1)
    fresh = "opened"
except StoreError as exc:
    fresh = str(exc)
report(kind="end", fresh=fresh, reopened=reopened)
"""


def test_a_full_disk_at_each_write_of_a_commit_loses_nothing_acknowledged_and_the_store_goes_on(
        tmp_path: Path) -> None:
    assert shutil.which("unshare"), "the test needs unshare (util-linux) and root, as CI has"
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", CHILD,
                           str(mount), "14"], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    found = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"')]
    notes = [f for f in found if f["kind"] == "note"]
    turns = [f for f in found if f["kind"] == "turn"]
    end = found[-1]
    assert len(notes) == len(turns) == 14 and end["kind"] == "end"
    full = "the disk is full"
    for note in notes:  # refused in LMDB: reported, nothing stored, and the very next commit goes through
        assert note["outcome"] == "stored" or note["outcome"].startswith(f"the store could not save: {full}"), note
        assert note["alive"] and note["stored"], note
    for turn in turns:
        context = json.dumps(turn)[:800]
        assert set(turn["acked"]) <= set(turn["stored"]), f"an acknowledged turn is missing: {context}"
        assert turn["stored"] == list(range(turn["header_next"])) and turn["texts_ok"], context
        if turn["outcome"] != "stored":
            stopped = "the store stopped: a logged write could not be applied"
            assert turn["outcome"].startswith(f"{stopped}: {full}"), context
            assert turn["outcome"].endswith("free some space on that disk, then restart vigil to replay it"), context
            assert turn["stopped"], context
            # A restart on the full disk: refused in one sentence, or recovered in what the failed write freed.
            assert not turn["still_full"] or (turn["still_full"].startswith("cannot open the store at")
                                              and full in turn["still_full"]), context
    assert any(turn["still_full"] for turn in turns), "no restart found the disk full"
    # The disk filled at different writes: commits went through with room enough and failed without.
    assert notes[0]["outcome"] != "stored" and notes[-1]["outcome"] == "stored"
    assert turns[0]["outcome"] != "stored" and turns[-1]["outcome"] == "stored"
    assert end["reopened"] == sum(turn["stopped"] for turn in turns) >= 1
    assert end["fresh"].startswith("cannot open the store at") and full in end["fresh"], end
