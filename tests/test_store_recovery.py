"""Recovery never needs a hand (issue 22, item 1): a grown store reopens, whatever VIGIL_STORE_MAP_MB says.

The mechanism reported: LMDB maps max(the configured size, the pages the restored checkpoint uses); the
journal's replay then writes what came after the checkpoint, found no room, raised MapFullError, and every
start did the same until someone raised the setting by hand. Each test here runs real LMDB; the kills are
real SIGKILLs of a child process that commits and prints what was acknowledged.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import run_vigil, vigil_env
from vigil.errors import StoreError
from vigil.store.engine import opening
from vigil.store.engine.journal import Journal
from vigil.store.store import LmdbStore

MIB = 1024 * 1024
WAIT = 60.0

# Commits turns of `size` characters to tg:1 (the session made if new), printing each acknowledged seq. No
# background checkpoint: the store at the kill is the checkpoint taken when it was opened, and everything
# since lies in the journal, to be replayed into a map of the given (small) size.
CHILD = r"""
import sys
import msgspec
import vigil.store.engine.journal as journal
journal.CHECKPOINT_S = 3600
journal.GROW_PAGES = 10**9
from pathlib import Path
from vigil.bench._rig import _turn
from vigil.records.schema import SessionHeader, Target
from vigil.store.store import open_store
store = open_store(Path(sys.argv[1]), map_mb=int(sys.argv[2]))
size = int(sys.argv[3])
header = store.header("tg:1")
if header is None:
    header = SessionHeader(key="tg:1", incarnation=1, created_at=1.0, target=Target(channel="t"), cwd="/", model="m")
    store.commit(header, create=True).result()
print("ready", header.next_seq, flush=True)
while True:
    previous, seq = header, header.next_seq
    header = msgspec.structs.replace(header, next_seq=seq + 1)
    store.commit(header, _turn(seq, f"{seq:06d}" + "x" * size), previous=previous).result()
    print(seq, flush=True)
"""


def commit_then_kill(data_dir: Path, map_mb: int, size: int, acks: int) -> int:
    """Commit in a child until `acks` more commits were acknowledged, then SIGKILL it: the last acknowledged seq."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir), str(map_mb), str(size)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        first = child.stdout.readline().split()
        assert first[:1] == ["ready"], child.communicate(timeout=WAIT)[1][-3000:]
        last, deadline = int(first[1]) - 1, time.monotonic() + WAIT
        target = last + acks
        while last < target and time.monotonic() < deadline:
            line = child.stdout.readline()
            if line.strip().isdigit():
                last = int(line)
        assert last >= target, "the child stopped acknowledging"
        child.send_signal(signal.SIGKILL)
        # What it acknowledged between our last read and the kill is acknowledged too.
        acked = [int(line) for line in child.stdout.read().split() if line.isdigit()]
        return max([last, *acked])
    finally:
        child.kill()
        child.wait(timeout=WAIT)


def stored_turns(data_dir: Path, map_mb: int) -> int:
    """How many turns tg:1 holds, having checked they are 0, 1, 2... each with its own text, as the header says."""
    store = LmdbStore(data_dir.resolve(), map_mb)
    try:
        header = store.header("tg:1")
        assert header is not None
        turns = store.turns("tg:1", header.generation, 0, header.next_seq + 5)
        assert [t.seq for t in turns] == list(range(len(turns)))
        assert all(t.inputs[0].text.startswith(f"{t.seq:06d}") for t in turns), "a turn holds another's text"
        assert header.next_seq == len(turns), "the header and the turns disagree"
        return len(turns)
    finally:
        store.close()


def test_a_grown_store_killed_with_journal_records_reopens_with_a_1_mb_map_every_time(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    for _round in range(3):  # each: about 1.6 MB more, all of it in the journal at the kill
        last = commit_then_kill(data_dir, map_mb=1, size=8000, acks=200)
        assert os.path.getsize(data_dir / "data.mdb") > MIB, "the store was meant to grow past the setting"
        # Every acknowledged commit; perhaps the one under way at the kill (durable, not yet acknowledged).
        assert stored_turns(data_dir, map_mb=1) in (last + 1, last + 2)


def test_the_replay_grows_the_map_when_the_opened_one_has_no_room(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Even opened exactly as before the fix (the setting, or the pages the restored state uses), the replay
    finds room: it grows the map on MapFullError like every other write."""
    data_dir = tmp_path / "store"
    last = commit_then_kill(data_dir, map_mb=1, size=8000, acks=200)
    monkeypatch.setattr(opening, "map_size_for", lambda path, configured: configured)
    store = LmdbStore(data_dir.resolve(), 1)
    try:
        assert store.map_size > 2 * MIB, "the replay had to grow the map"
        header = store.header("tg:1")
        assert header is not None and header.next_seq in (last + 1, last + 2)
    finally:
        store.close()


def test_a_store_opens_with_room_beyond_its_data_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    commit_then_kill(data_dir, map_mb=1, size=8000, acks=300)
    size = os.path.getsize(data_dir / "data.mdb")
    store = LmdbStore(data_dir.resolve(), 1)
    try:
        assert store.map_size >= size + MIB
    finally:
        store.close()


def open_descriptors() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:
            continue
    return found


@pytest.fixture
def killed_store(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A store left by a kill -9, with journal records to replay: (its directory, the last acknowledged seq)."""
    data_dir = (tmp_path / "store").resolve()
    yield data_dir, commit_then_kill(data_dir, map_mb=1, size=2000, acks=30)


def test_an_open_that_fails_lets_go_of_every_lock_and_descriptor(killed_store: tuple[Path, int],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, last = killed_store
    before = {path for path in open_descriptors() if str(data_dir) in path}

    def refuse(self: Journal, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(Journal, "attach", refuse)
        with pytest.raises(StoreError) as caught:
            LmdbStore(data_dir, 1)
    message = str(caught.value)
    assert message.startswith(f"cannot open the store at {data_dir}: the disk is full")
    assert "free some space" in message and "\n" not in message
    assert {path for path in open_descriptors() if str(data_dir) in path} == before, "descriptors were kept"
    # The same process opens it again (before the fix it blocked forever on open.lock), and recovers it.
    opened: list[LmdbStore] = []
    again = threading.Thread(target=lambda: opened.append(LmdbStore(data_dir, 1)), daemon=True)
    again.start()
    again.join(timeout=WAIT)
    assert opened, "the second open in the same process never returned"
    try:
        header = opened[0].header("tg:1")
        assert header is not None and header.next_seq in (last + 1, last + 2)
    finally:
        opened[0].close()
    assert {path for path in open_descriptors() if str(data_dir) in path} == before


def damage(data_dir: Path) -> None:
    """A store that was in use, whose data.mdb then lost its meta pages (a disk fault, a stray write)."""
    LmdbStore(data_dir, 1).close()
    with open(data_dir / "data.mdb", "r+b") as handle:
        handle.write(b"\x5a" * 2 * 4096)


def test_a_damaged_store_is_refused_in_one_sentence_that_says_what_to_do(tmp_path: Path) -> None:
    data_dir = (tmp_path / "store").resolve()
    damage(data_dir)
    for attempt in range(2):  # and again: nothing was left locked by the first refusal
        with pytest.raises(StoreError) as caught:
            LmdbStore(data_dir, 1)
        message = str(caught.value)
        assert message.startswith(f"cannot open the store at {data_dir}: data.mdb is damaged"), (attempt, message)
        assert "vigil restore" in message


@pytest.mark.e2e
@pytest.mark.parametrize("command", [("sessions", "list"), ("run",)])
def test_the_command_line_says_why_a_store_cannot_be_opened_in_one_line(tmp_path: Path,
                                                                       command: tuple[str, ...]) -> None:
    env = vigil_env(tmp_path, TELEGRAM_BOT_TOKEN="123456:test-token", ANTHROPIC_API_KEY="sk-test",
                    HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    data_dir = Path(env["VIGIL_DATA_DIR"]).resolve()
    damage(data_dir)
    done = run_vigil(list(command), env, timeout=WAIT)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr  # not restarted by systemd
    assert done.stderr.splitlines() == [
        f"vigil: cannot open the store at {data_dir}: data.mdb is damaged or not a vigil store (MDB_INVALID: File "
        "is not an LMDB file); put a backup back with `vigil restore PATH`, or move the directory away to start "
        "afresh, then start vigil again"]


@pytest.mark.e2e
def test_the_service_is_not_restarted_when_its_store_needs_someone(tmp_path: Path) -> None:
    done = run_vigil(["systemd-unit"], vigil_env(tmp_path), timeout=WAIT)
    assert "RestartPreventExitStatus=3" in done.stdout.splitlines()


@pytest.mark.e2e
def test_the_command_line_reads_a_grown_store_killed_with_journal_records_with_a_1_mb_map(tmp_path: Path) -> None:
    env = vigil_env(tmp_path, VIGIL_STORE_MAP_MB="1")
    last = commit_then_kill(Path(env["VIGIL_DATA_DIR"]), map_mb=1, size=8000, acks=200)
    done = run_vigil(["sessions", "show", "tg:1"], env, timeout=WAIT)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "store.journal_replayed" in done.stderr  # it was this command that recovered the store
    assert f"{last + 1} turn" in done.stdout or f"{last + 2} turn" in done.stdout, done.stdout[:2000]


OPEN_AND_COUNT = r"""
import sys
from pathlib import Path
from vigil.store.store import LmdbStore
store = LmdbStore(Path(sys.argv[1]), 1)
print("sessions", store.session_count(), flush=True)
store.close()
"""


@pytest.mark.parametrize("cut", ["metas only", "first meta torn"])
def test_a_store_whose_making_a_power_cut_interrupted_is_made_anew(tmp_path: Path, cut: str) -> None:
    """Power lost before the store's first checkpoint (nothing in it was acknowledged yet): what reached the
    disk may be the meta pages without the pages they name, or one meta page and not the other. LMDB would
    die of SIGBUS or refuse the file at every start; vigil sets it aside and makes the store anew."""
    made = (tmp_path / "made").resolve()
    LmdbStore(made, 1).close()
    metas = (made / "data.mdb").read_bytes()[:8192]
    data_dir = (tmp_path / "cut").resolve()
    data_dir.mkdir()
    (data_dir / "data.mdb").write_bytes(metas if cut == "metas only" else bytes(4096) + metas[4096:])
    done = subprocess.run([sys.executable, "-c", OPEN_AND_COUNT, str(data_dir)], capture_output=True, text=True,
                          timeout=WAIT)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "sessions 0" in done.stdout
    assert "store.unfinished_set_aside" in done.stdout + done.stderr
    assert [p.name.startswith("data.mdb.unfinished-") for p in data_dir.iterdir()].count(True) == 1
