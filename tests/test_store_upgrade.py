"""A store written by the previous release (schema 1) is upgraded in place, once, durably, and alone.

The store under test is `tests/fixtures/v1_store`, written by the code of main at 1222806 (see its README):
headers listing their past conversations, one generation no header listed, turns and summaries, pending
inputs and inbox entries naming media files, one media file nothing names. Each test copies it first.
Crashes are real: a child process opening the copy is killed with SIGKILL inside the upgrade's
transaction, and after it committed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import msgspec
import pytest

from tests.procs import run_vigil, vigil_env
from tests.standins.messages_api import MessagesAPI
from vigil.media.files import MediaStore
from vigil.media.sweep import sweep
from vigil.records.schema import Conversation, StoreMeta, decode_meta, encode
from vigil.store.engine import keys, media_refs
from vigil.store.engine.lmdb_env import DB_NAMES, MAX_DBS, StoreError
from vigil.store.store import LmdbStore

FIXTURE = Path(__file__).parent / "fixtures" / "v1_store"
REPO = Path(__file__).resolve().parents[1]
T0 = 1_750_000_000.0
DAY = 86400.0
WAIT = 30.0
PHOTO_A, PHOTO_B, PHOTO_C, PHOTO_D, ORPHAN = (  # jpeg(48, 32, seed=1..5) of tests/media_samples.py
    "33f7622bfdc09887c9a65db21969043a429877ed042a71ae94956421f237affb",
    "2a5f4f5e587e2f7d4e6ca78cc044a3584546963f934f2ae839a51c85d9439212",
    "a01216be408f908d152ced9d507cf6c0459cbe08206ab5903784e4bca4310034",
    "0d542cbf722de43338f2896bdd2ee763725cf7e40589c0bb33f4758a28e95bc3",
    "9eac56050abf642f1542143159b02ca7574d79f0207d5ad3cd2e796de8c4025c",
)


def copy_fixture(target: Path) -> Path:
    shutil.copytree(FIXTURE, target)
    for path in target.rglob("*"):  # the media files as old as the fixture: past any sweep's grace
        os.utime(path, (T0, T0))
    return target


def raw_state(data_dir: Path) -> dict[str, dict[bytes, bytes]]:
    """Every record of every database, read with LMDB itself (nothing of vigil's opening path)."""
    env = lmdb.open(str(data_dir), readonly=True, lock=False, max_dbs=MAX_DBS)
    try:
        out: dict[str, dict[bytes, bytes]] = {}
        with env.begin() as txn:
            for name in DB_NAMES:
                try:
                    db = env.open_db(name, txn=txn, create=False)
                except lmdb.NotFoundError:
                    continue
                out[name.decode()] = {bytes(k): bytes(v) for k, v in txn.cursor(db=db)}
        return out
    finally:
        env.close()


def open_state(store: LmdbStore) -> dict[str, dict[bytes, bytes]]:
    """`raw_state` of a store this process has open (LMDB opens an environment once per process)."""
    dbs = store.environment.dbs
    state: dict[str, dict[bytes, bytes]] = store.read(
        lambda txn: {name.decode(): {bytes(k): bytes(v) for k, v in txn.cursor(db=db)} for name, db in dbs.items()})
    return state


def schema_of(state: dict[str, dict[bytes, bytes]]) -> int:
    return decode_meta(state["meta"][b"store"]).schema


def assert_old_form(state: dict[str, dict[bytes, bytes]]) -> None:
    assert schema_of(state) == 1
    assert b"past_generations" in state["sessions"][b"console:default"]
    assert not state.get("conversations") and not state.get("media")


def assert_upgraded(store: LmdbStore) -> None:
    """What the fixture holds, in the new form."""
    state = open_state(store)
    assert schema_of(state) == StoreMeta.CURRENT
    assert not any(b"past_generations" in v for v in state["sessions"].values())
    console, _ = store.scan_conversations("console:default")
    assert [(c.generation, c.turns, c.title, c.window_start, c.started_at, c.ended_at, c.last_at)
            for c in console] == [
        (1, 3, "Quinces", 0, T0, T0 + DAY, T0 + 3),
        (2, 2, "Garden", 1, T0 + DAY, T0 + 2 * DAY, T0 + DAY + 20),
        # Listed before /resume kept a last turn's time: its last turn's end stands in.
        (3, 1, "", 0, T0 + 2 * DAY, T0 + 3 * DAY, T0 + 2 * DAY + 11)]
    header = store.header("console:default")
    assert header is not None and (header.generation, header.next_seq, header.conversation_title) == (4, 2, "Now")
    # The generation no header listed gets a record from its turns.
    group, _ = store.scan_conversations("tg:-200")
    assert [(c.generation, c.turns, c.title, c.started_at, c.ended_at) for c in group] == [
        (1, 1, "First", T0, T0 + 7 * DAY), (2, 2, "unlisted one", T0 + 7 * DAY + 10, T0 + 8 * DAY + 1)]
    assert [c.generation for c in store.scan_conversations("tg:100")[0]] == [1]
    assert [c.title for c in store.scan_conversations("tg:400")[0]] == ["Kept"]
    # Nothing else moved: turns, summaries, notes, pending inputs, the inbox.
    assert {k: store.generations(k) for k in ("console:default", "tg:100", "tg:-200", "tg:400")} == {
        "console:default": [1, 2, 3, 4], "tg:100": [1, 2], "tg:-200": [1, 2, 3], "tg:400": [1, 2]}
    assert [t.inputs[0].text for t in store.turns("console:default", 1)] == [
        "my favourite fruit is the quince", "and I grow them", "in pots"]
    assert [s.text for s in store.summaries("console:default", 2)] == ["They talked about garden beds."]
    assert [n.text for n in store.notes("console:default")] == ["likes quinces"]
    tg100 = store.header("tg:100")
    assert tg100 is not None and [a.digest for i in tg100.pending for a in i.attachments] == [PHOTO_C]
    assert [e.key for _, e in store.inbox()] == ["tg:300"]
    # The media index knows exactly what the records name.
    referenced = store.read(lambda txn: media_refs.scan(txn, store.environment.dbs))
    assert store.media_references() == referenced == {PHOTO_A, PHOTO_B, PHOTO_C, PHOTO_D}


def test_a_store_of_the_previous_release_is_upgraded_in_place_once(tmp_path: Path) -> None:
    data = copy_fixture(tmp_path / "data")
    assert_old_form(raw_state(data))
    store = LmdbStore(data)
    try:
        assert_upgraded(store)
        # Every file was marked for the first sweep: the one nothing names goes, the others stay.
        media = MediaStore(data / "media")
        assert sweep(store, media) == (1, 1599)
        assert sorted(media.digests()) == sorted([PHOTO_A, PHOTO_B, PHOTO_C, PHOTO_D])
        store.sync()
        assert sweep(store, media) == (0, 0) and store.media_suspects() == {}
    finally:
        store.close()
    before = raw_state(data)
    again = LmdbStore(data)
    again.close()
    assert raw_state(data) == before, "a second open wrote something"


def test_an_upgraded_console_session_lists_and_resumes_its_conversations(tmp_path: Path,
                                                                           messages_api: MessagesAPI) -> None:
    env = vigil_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=messages_api.base_url)
    copy_fixture(Path(env["VIGIL_DATA_DIR"]))
    done = run_vigil(["chat"], env, stdin="/resume\n/resume 2\nwhat were we on about?\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Now: #4 «Now», 2 turns." in out, out
    listing = out[out.index("Earlier conversations"):]
    # Most recent first: #3 (its last turn, day 2), #2 (day 1), #1 (day 0).
    assert listing.index("#3 (untitled) — 1 turns") < listing.index("#2 «Garden» — 2 turns") < \
        listing.index("#1 «Quinces» — 3 turns"), listing
    assert "Back to conversation #2 «Garden» (2 turns)" in out, out
    said = msgspec.json.encode(messages_api.requests[-1].body["messages"]).decode()
    # Its window starts at seq 1, after its summary: the summary, "raised ones", and the question.
    assert "They talked about garden beds." in said and "raised ones" in said, said
    for elsewhere in ("the garden beds", "now this", "quince"):
        assert elsewhere not in said, said
    exported = run_vigil(["sessions", "export", "console:default"], env)
    document = msgspec.json.decode(exported.stdout)
    assert [(c["generation"], c["title"]) for c in document["conversations"]] == [
        (1, "Quinces"), (3, ""), (4, "Now")]
    assert document["session"]["generation"] == 2


_CHILD = """
import sys, time
from pathlib import Path
from vigil.store import upgrade
from vigil.store.store import LmdbStore

where = sys.argv[2]
if where == "inside":
    real = upgrade.media_refs.build
    def build(txn, dbs):
        count = real(txn, dbs)
        print("inside", flush=True)  # every record moved, the index built: the transaction not committed
        time.sleep(60)
        return count
    upgrade.media_refs.build = build
store = LmdbStore(Path(sys.argv[1]))
print("upgraded", flush=True)
time.sleep(60)
"""


def _kill_child_at(data: Path, where: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(data), where], cwd=REPO, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None
    seen = []
    while (line := child.stdout.readline()) and line.strip() != where:  # log lines come first
        seen.append(line)
    assert line.strip() == where, seen
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=WAIT)


@pytest.mark.parametrize("where", ["inside", "upgraded"])
def test_a_kill_9_during_or_after_the_upgrade_leaves_one_form_or_the_other(tmp_path: Path, where: str) -> None:
    data = copy_fixture(tmp_path / "data")
    _kill_child_at(data, where)
    state = raw_state(data)
    if where == "inside":
        assert_old_form(state)
    else:
        assert schema_of(state) == StoreMeta.CURRENT
    store = LmdbStore(data)
    try:
        assert_upgraded(store)
    finally:
        store.close()


@pytest.mark.e2e
def test_an_upgrade_waits_for_no_one_and_says_what_to_do(tmp_path: Path) -> None:
    """Another process has the store open (as an older vigil would): the upgrade refuses, touching nothing."""
    data = copy_fixture(tmp_path / "data")
    holder = os.open(data / "open.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_SH)  # what every open vigil holds for its life
        with pytest.raises(StoreError, match="needs the store to itself: another process has it open"):
            LmdbStore(data)
        env = vigil_env(tmp_path)
        env["VIGIL_DATA_DIR"] = str(data)
        refused = run_vigil(["sessions", "list"], env)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert "Stop it, then start this vigil again" in refused.stderr, refused.stderr
    finally:
        os.close(holder)
    assert_old_form(raw_state(data))
    store = LmdbStore(data)  # alone now
    try:
        assert_upgraded(store)
    finally:
        store.close()


def test_a_record_the_upgrade_cannot_decode_still_keeps_its_files(tmp_path: Path) -> None:
    """A turn of schema 99 (a newer vigil's, say) names the orphan file: the index is built from bytes."""
    data = copy_fixture(tmp_path / "data")
    photo = {"type": "attachment", "kind": "image", "digest": ORPHAN, "media_type": "image/jpeg"}
    newer = msgspec.msgpack.encode({"type": "turn", "schema": 99, "seq": 1, "started_at": T0,
                                    "inputs": [{"type": "input", "text": "x", "at": T0, "attachments": [photo]}]})
    env = lmdb.open(str(data), max_dbs=MAX_DBS)
    with env.begin(write=True) as txn:
        txn.put(keys.turn("tg:400", 2, 1), newer, db=env.open_db(b"turns", txn=txn))
    env.close()
    store = LmdbStore(data)
    try:
        assert ORPHAN in store.media_references()
        assert sweep(store, MediaStore(data / "media")) == (0, 0)
        assert MediaStore(data / "media").has(ORPHAN)
    finally:
        store.close()


def test_a_conversation_record_of_a_newer_schema_is_named_not_judged(tmp_path: Path) -> None:
    data = copy_fixture(tmp_path / "data")
    store = LmdbStore(data)
    try:
        newer = encode(Conversation(generation=9, turns=1, started_at=T0, ended_at=T0, schema=2))
        store.writer.write(lambda txn: txn.put(keys.conversation("tg:400", 9), newer,
                                               db=store.environment.dbs[b"conversations"]))
        found, unreadable = store.scan_conversations("tg:400")
        assert [c.generation for c in found] == [1]
        assert unreadable == [(9, "written by a newer vigil")]
        header = store.header("tg:400")
        assert header is not None
        store.writer.write(lambda txn: txn.put(b"tg:400", encode(msgspec.structs.replace(header, pinned=False)),
                                               db=store.environment.dbs[b"sessions"]))
        assert store.prune_generations("tg:400", before=time.time()).result(WAIT) == 1  # its readable one only
        assert store.scan_conversations("tg:400") == ([], [(9, "written by a newer vigil")])
    finally:
        store.close()
