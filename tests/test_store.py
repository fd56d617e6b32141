"""The LMDB store (`vigil/store/`): records, indexes, the group-commit writer, map growth, other processes.

Every test runs on real LMDB in a temporary data directory; other processes are real subprocesses
opening the same directory. Waits are on futures and pipes, each with a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import pytest

from vigil.records.schema import (
    Heartbeat,
    InboxEntry,
    Input,
    Message,
    NewerSchemaError,
    Note,
    SessionHeader,
    StoreMeta,
    Target,
    Turn,
    Usage,
    UsageDay,
    decode_header,
    decode_inbox,
    decode_meta,
    decode_note,
    decode_turn,
    decode_usage_day,
    encode,
)
from vigil.store.engine import keys
from vigil.store.engine.lmdb_env import StoreError
from vigil.store.engine.writer import WriteFuture
from vigil.store.store import LmdbStore, SessionGone, UsageEntry, open_store

REPO = Path(__file__).resolve().parents[1]
WAIT = 20.0  # seconds any single write or subprocess step may take before the test fails


def header(key: str = "tg:1", incarnation: int = 7, **fields: Any) -> SessionHeader:
    chat = int(key.split(":")[1]) if key.startswith("tg:") else 0
    base: dict[str, Any] = {"key": key, "incarnation": incarnation, "created_at": 1_700_000_000.0,
                            "target": Target(channel="telegram", chat_id=chat), "cwd": "/srv/vigil",
                            "model": "claude-sonnet-5-5"}
    return SessionHeader(**{**base, **fields})


def turn(seq: int, **fields: Any) -> Turn:
    base: dict[str, Any] = {"seq": seq, "status": "done", "started_at": 1_700_000_000.0 + seq,
                            "inputs": (Input(text=f"message {seq}", at=1_700_000_000.0 + seq, user_id=42),),
                            "reply": f"reply {seq}"}
    return Turn(**{**base, **fields})


def done(future: WriteFuture) -> Any:
    return future.result(timeout=WAIT)


def entries(store: LmdbStore, db: bytes) -> int:
    return int(store.read(lambda txn: txn.stat(store._lmdb.db(db))["entries"]))


def raw_items(store: LmdbStore, db: bytes) -> dict[bytes, bytes]:
    def scan(txn: lmdb.Transaction) -> dict[bytes, bytes]:
        return {bytes(k): bytes(v) for k, v in txn.cursor(db=store._lmdb.db(db)).iternext()}

    return dict(store.read(scan))


def hold_writer(store: LmdbStore) -> tuple[WriteFuture, threading.Event]:
    """Occupy the writer thread until the returned event is set, so later writes queue up as one batch."""
    started, release = threading.Event(), threading.Event()

    def hold(txn: lmdb.Transaction) -> None:
        started.set()
        release.wait(WAIT)

    blocker = store.writer.submit(hold)
    assert started.wait(WAIT), "the writer took the holding write"
    return blocker, release


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    """Another process running `code` against this checkout of vigil, talking over pipes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)


# ----------------------------------------------------------------------------- layout and records


def test_data_file_lives_directly_in_the_data_dir(store: LmdbStore, data_dir: Path) -> None:
    assert (data_dir / "data.mdb").is_file()
    assert (data_dir / "lock.mdb").is_file()
    assert store.data_dir == data_dir.resolve()


def test_open_store_is_one_store_per_directory(store: LmdbStore, data_dir: Path) -> None:
    assert open_store(data_dir) is store
    assert open_store(data_dir / ".." / data_dir.name) is store


def test_header_round_trip(store: LmdbStore) -> None:
    h = header(title="Plans 🗓", participants=(42,), chat_type="private",
               heartbeat=Heartbeat(enabled=True, interval_s=3600.0, tz="Europe/Berlin", next_due=5.0))
    assert store.header("tg:1") is None
    done(store.commit(h, create=True))
    assert store.header("tg:1") == h
    assert store.session_count() == 1
    changed = msgspec.structs.replace(h, title="Renamed", next_seq=4)
    done(store.commit(changed, previous=h))
    assert store.header("tg:1") == changed
    assert store.session_count() == 1


def test_turn_round_trip_with_blocks_and_unicode(store: LmdbStore) -> None:
    h = header()
    t = turn(0, inputs=(Input(text="Grüße 👋 — 日本語", at=1.5, user_id=42, user_name="Zoë", message_id=7),),
             messages=(
                 Message(role="assistant", content=(
                     {"type": "text", "text": "Looking…"},
                     {"type": "tool_use", "id": "toolu_01", "name": "bash",
                      "input": {"command": "ls -la", "nested": {"list": [1, 2.5, None, True]}}},
                 )),
                 Message(role="user", content=(
                     {"type": "tool_result", "tool_use_id": "toolu_01", "content": "a.txt\nb.txt"},
                 )),
                 Message(role="assistant", content=({"type": "text", "text": "Two files: a.txt, b.txt ✅"},)),
             ),
             reply="Two files: a.txt, b.txt ✅", model="claude-sonnet-5-5",
             usage=Usage(calls=2, input_tokens=1000, output_tokens=50, cost_micros=3150))
    done(store.commit(msgspec.structs.replace(h, next_seq=1), turn=t, create=True))
    assert store.turn("tg:1", 1, 0) == t
    assert store.turns("tg:1", 1) == [t]
    assert store.turn("tg:1", 1, 1) is None
    assert store.turn("tg:1", 2, 0) is None


def test_turn_ranges_last_turns_and_neighbouring_keys(store: LmdbStore) -> None:
    # "tg:1" must not see the turns of "tg:10" or "tg:1:5", which share its leading characters.
    for key in ("tg:1", "tg:10", "tg:1:5"):
        h = header(key)
        done(store.commit(h, create=True))
        futures = [store.commit(h, turn=turn(seq, reply=f"{key} {seq}")) for seq in range(12)]
        for future in futures:
            done(future)
    assert [t.seq for t in store.turns("tg:1", 1)] == list(range(12))
    assert [t.seq for t in store.turns("tg:1", 1, 3, 7)] == [3, 4, 5, 6]
    assert [t.seq for t in store.turns("tg:1", 1, 10)] == [10, 11]
    assert store.turns("tg:1", 1, 12) == []
    assert [t.seq for t in store.last_turns("tg:1", 1, 4)] == [8, 9, 10, 11]
    assert [t.seq for t in store.last_turns("tg:1", 1, 100)] == list(range(12))
    assert {t.reply.split()[0] for t in store.last_turns("tg:1", 1, 100)} == {"tg:1"}
    assert {t.reply.split()[0] for t in store.turns("tg:1:5", 1)} == {"tg:1:5"}
    assert store.last_turns("tg:2", 1, 5) == []
    assert store.last_turns("tg:1", 2, 5) == []


def test_generations_and_drop_generation(store: LmdbStore) -> None:
    h = header()
    done(store.commit(h, turn=turn(0), create=True))
    done(store.commit(h, turn=turn(1)))
    g2 = msgspec.structs.replace(h, generation=2)
    done(store.commit(g2, turn=turn(0, reply="second generation")))
    g5 = msgspec.structs.replace(h, generation=5)
    done(store.commit(g5, turn=turn(0)))
    assert store.generations("tg:1") == [1, 2, 5]
    assert [t.seq for t in store.last_turns("tg:1", 1, 10)] == [0, 1]
    assert [t.reply for t in store.last_turns("tg:1", 2, 10)] == ["second generation"]
    assert done(store.drop_generation("tg:1", 1)) == 2
    assert store.generations("tg:1") == [2, 5]
    assert store.turns("tg:1", 1) == []
    assert store.header("tg:1") == g5


def test_notes_keep_bound_order_and_clear(store: LmdbStore) -> None:
    for i in (3, 1, 2, 5, 4):
        done(store.add_note("tg:1", Note(text=f"note {i}", at=float(i)), keep=3))
    done(store.add_note("tg:10", Note(text="other chat", at=1.0), keep=3))
    assert [n.text for n in store.notes("tg:1")] == ["note 3", "note 4", "note 5"]
    assert [n.text for n in store.notes("tg:10")] == ["other chat"]
    done(store.clear_notes("tg:1"))
    assert store.notes("tg:1") == []
    assert [n.text for n in store.notes("tg:10")] == ["other chat"]


def test_usage_rows_add_up(store: LmdbStore) -> None:
    h = header()
    one = Usage(calls=1, input_tokens=100, output_tokens=10, cost_micros=1500)
    done(store.commit(h, usage=[UsageEntry(42, "2026-01-01", "tg:1", "turn", one)], create=True))
    done(store.commit(h, usage=[UsageEntry(42, "2026-01-01", "tg:1", "turn", one),
                                UsageEntry(42, "2026-01-01", "tg:1", "heartbeat", one),
                                UsageEntry(42, "2026-01-02", "tg:1", "turn", one),
                                UsageEntry(7, "2026-01-01", "tg:1", "turn", one)]))
    rows = {(r.user_id, r.day, r.key, r.kind): r.usage for r in store.usage_rows(42)}
    assert rows == {
        (42, "2026-01-01", "tg:1", "turn"): one + one,
        (42, "2026-01-01", "tg:1", "heartbeat"): one,
        (42, "2026-01-02", "tg:1", "turn"): one,
    }
    assert [r.day for r in store.usage_rows(42, since_day="2026-01-02")] == ["2026-01-02"]
    assert len(store.usage_rows()) == 4
    assert store.user_cost_micros(42, "2026-01-01") == 4500
    assert store.user_cost_micros(42, "2026-01-02") == 1500
    assert store.user_cost_micros(7, "2026-01-01") == 1500
    assert store.user_cost_micros(4, "2026-01-01") == 0


def test_usage_of_a_refused_commit_is_not_counted(store: LmdbStore) -> None:
    done(store.commit(header(), create=True))
    entry = UsageEntry(42, "2026-01-01", "tg:1", "turn", Usage(calls=1, cost_micros=99))
    with pytest.raises(SessionGone):
        done(store.commit(header(incarnation=8), usage=[entry]))
    assert store.usage_rows(42) == []


def test_members_list_a_users_sessions(store: LmdbStore) -> None:
    done(store.commit(header("tg:1", participants=(42, 43)), new_members=[42, 43], create=True))
    done(store.commit(header("tg:2", participants=(42,)), new_members=[42], create=True))
    done(store.commit(header("tg:3"), create=True))
    assert sorted(h.key for h in store.headers(42)) == ["tg:1", "tg:2"]
    assert [h.key for h in store.headers(43)] == ["tg:1"]
    assert store.headers(4) == []
    assert store.headers(4242) == []
    assert sorted(h.key for h in store.headers()) == ["tg:1", "tg:2", "tg:3"]


def test_aliases(store: LmdbStore) -> None:
    assert store.canonical("tg:-100") == "tg:-100"
    done(store.set_alias("tg:-100", "tg:-1001"))
    assert store.canonical("tg:-100") == "tg:-1001"
    assert store.canonical("tg:-1001") == "tg:-1001"


def test_delete_session_removes_everything_but_usage(store: LmdbStore) -> None:
    h = header("tg:1", participants=(42,), pending=(Input(text="hi", at=1.0),),
               heartbeat=Heartbeat(enabled=True, next_due=100.0))
    usage = [UsageEntry(42, "2026-01-01", "tg:1", "turn", Usage(calls=1, cost_micros=10))]
    done(store.commit(h, turn=turn(0), usage=usage, new_members=[42], create=True))
    done(store.commit(h, turn=turn(1)))
    done(store.commit(msgspec.structs.replace(h, generation=2), turn=turn(0)))
    done(store.add_note("tg:1", Note(text="remember", at=1.0), keep=10))
    done(store.set_alias("tg:-5", "tg:1"))
    neighbour = header("tg:10", participants=(42,), pending=(Input(text="hi", at=1.0),))
    done(store.commit(neighbour, turn=turn(0), new_members=[42], create=True))
    done(store.add_note("tg:10", Note(text="keep me", at=1.0), keep=10))

    assert done(store.delete_session("tg:1")) == 3
    assert store.header("tg:1") is None
    assert store.generations("tg:1") == []
    assert store.notes("tg:1") == []
    assert store.canonical("tg:-5") == "tg:-5"
    assert store.recovery_keys() == ["tg:10"]
    assert store.heartbeat_schedule() == []
    assert [x.key for x in store.headers(42)] == ["tg:10"]
    assert keys.member(42, "tg:1") not in raw_items(store, b"members")
    assert [r.usage.cost_micros for r in store.usage_rows(42)] == [10]
    # The neighbour whose key starts the same is untouched.
    assert store.header("tg:10") == neighbour
    assert len(store.turns("tg:10", 1)) == 1
    assert [n.text for n in store.notes("tg:10")] == ["keep me"]
    assert done(store.delete_session("tg:1")) == 0


def test_recovery_index(store: LmdbStore) -> None:
    waiting = header("tg:1", pending=(Input(text="are you there?", at=1.0),))
    cut_short = header("tg:2", open_turn=3)
    idle = header("tg:3")
    for h in (waiting, cut_short, idle):
        done(store.commit(h, create=True))
    assert sorted(store.recovery_keys()) == ["tg:1", "tg:2"]
    flags = raw_items(store, b"recover")
    assert flags == {b"tg:1": b"1", b"tg:2": b"1", b"tg:3": b"0"}
    answered = msgspec.structs.replace(waiting, pending=())
    done(store.commit(answered, previous=waiting))
    assert store.recovery_keys() == ["tg:2"]
    assert raw_items(store, b"recover")[b"tg:1"] == b"0"
    # With `previous` unchanged in that respect, the flag is not rewritten (and stays right).
    done(store.commit(msgspec.structs.replace(answered, title="x"), previous=answered))
    assert store.recovery_keys() == ["tg:2"]


def test_heartbeat_schedule(store: LmdbStore) -> None:
    on = header("tg:1", heartbeat=Heartbeat(enabled=True, next_due=1_700_000_500.25))
    off = header("tg:2", heartbeat=Heartbeat(enabled=False, next_due=1_700_000_100.0))
    done(store.commit(on, create=True))
    done(store.commit(off, create=True))
    assert store.heartbeat_schedule() == [("tg:1", 1_700_000_500.25)]
    moved = msgspec.structs.replace(on, heartbeat=Heartbeat(enabled=True, next_due=1_700_009_000.0))
    done(store.commit(moved, previous=on))
    assert store.heartbeat_schedule() == [("tg:1", 1_700_009_000.0)]
    stopped = msgspec.structs.replace(moved, heartbeat=Heartbeat(enabled=False, next_due=1_700_009_000.0))
    done(store.commit(stopped, previous=moved))
    assert store.heartbeat_schedule() == []
    turned_on = msgspec.structs.replace(off, heartbeat=Heartbeat(enabled=True, next_due=5.0))
    done(store.commit(turned_on, previous=off))
    assert store.heartbeat_schedule() == [("tg:2", 5.0)]


# ----------------------------------------------------------------------------- golden bytes

HEADER = SessionHeader(
    key="tg:42", incarnation=123456789, created_at=1700000000.5,
    target=Target(channel="telegram", chat_id=42, thread_id=7), cwd="/srv/vigil/tg-42",
    model="claude-sonnet-5-5", title="Plans", generation=2, next_seq=3, participants=(42, 43),
    usage=Usage(calls=1, input_tokens=10, output_tokens=5, cost_micros=1234),
    heartbeat=Heartbeat(enabled=True, interval_s=3600.0, next_due=1700003600.0),
    pending=(Input(text="hi", at=1700000001.0, user_id=42, user_name="Ann", message_id=9),), open_turn=2)
TURN = Turn(
    seq=2, status="done", started_at=1700000002.0, ended_at=1700000003.25,
    inputs=(Input(text="Grüße 👋", at=1700000002.0, user_id=42),),
    messages=(Message(role="assistant", content=({"type": "text", "text": "Hallo"},
                                                 {"type": "tool_use", "id": "toolu_1", "name": "bash",
                                                  "input": {"command": "ls"}})),
              Message(role="user", content=({"type": "tool_result", "tool_use_id": "toolu_1",
                                             "content": "a.txt"},))),
    reply="Hallo", model="claude-sonnet-5-5",
    usage=Usage(calls=2, input_tokens=100, output_tokens=20, cache_read_tokens=50, cost_micros=999))
NOTE = Note(text="likes tea", at=1700000004.0)
USAGE_DAY = UsageDay(usage=Usage(calls=3, input_tokens=7, output_tokens=8, cache_write_tokens=9, cost_micros=42))
META = StoreMeta(created_at=1700000000.0, created_by="vigil pid 1")
INBOX_TEXT = InboxEntry(key="tg:42:7", target=Target(channel="telegram", chat_id=42, thread_id=7),
                        at=1700000005.5, user_id=42, user_name="Ann Lee", username="ann", text="Grüße, still there?",
                        message_id=11, chat_title="Plans", chat_type="supergroup")
INBOX_COMMAND = InboxEntry(kind="command", key="tg:42", target=Target(channel="telegram", chat_id=42), user_id=42,
                           text="Plans B", command="new")

GOLDEN_HEADER = (
    b'\xde\x00\x0f\xa4type\xa7session\xa3key\xa5tg:'
    b'42\xabincarnation\xce\x07[\xcd\x15\xaacrea'
    b'ted_at\xcbA\xd9T\xfc@ \x00\x00\xa6target\x84\xa4'
    b'type\xa6target\xa7channel\xa8tele'
    b'gram\xa7chat_id*\xa9thread_id\x07'
    b'\xa3cwd\xb0/srv/vigil/tg-42\xa5mo'
    b'del\xb1claude-sonnet-5-5\xa5ti'
    b'tle\xa5Plans\xaageneration\x02\xa8ne'
    b'xt_seq\x03\xacparticipants\x92*+\xa5'
    b'usage\x85\xa4type\xa5usage\xa5calls\x01'
    b'\xacinput_tokens\n\xadoutput_to'
    b'kens\x05\xabcost_micros\xcd\x04\xd2\xa9hea'
    b'rtbeat\x84\xa4type\xa9heartbeat\xa7e'
    b'nabled\xc3\xaainterval_s\xcb@\xac \x00\x00'
    b'\x00\x00\x00\xa8next_due\xcbA\xd9T\xff\xc4\x00\x00\x00\xa7pe'
    b'nding\x91\x86\xa4type\xa5input\xa4text\xa2'
    b'hi\xa2at\xcbA\xd9T\xfc@@\x00\x00\xa7user_id*\xa9'
    b'user_name\xa3Ann\xaamessage_id'
    b'\t\xa9open_turn\x02'
)
GOLDEN_TURN = (
    b'\xde\x00\n\xa4type\xa4turn\xa3seq\x02\xa6statu'
    b's\xa4done\xaastarted_at\xcbA\xd9T\xfc@\x80'
    b'\x00\x00\xa8ended_at\xcbA\xd9T\xfc@\xd0\x00\x00\xa6inp'
    b'uts\x91\x84\xa4type\xa5input\xa4text\xacGr'
    b'\xc3\xbc\xc3\x9fe \xf0\x9f\x91\x8b\xa2at\xcbA\xd9T\xfc@\x80\x00\x00\xa7u'
    b'ser_id*\xa8messages\x92\x83\xa4type\xa7'
    b'message\xa4role\xa9assistant\xa7c'
    b'ontent\x92\x82\xa4type\xa4text\xa4text\xa5'
    b'Hallo\x84\xa4type\xa8tool_use\xa2id\xa7'
    b'toolu_1\xa4name\xa4bash\xa5input\x81'
    b'\xa7command\xa2ls\x83\xa4type\xa7messag'
    b'e\xa4role\xa4user\xa7content\x91\x83\xa4ty'
    b'pe\xabtool_result\xabtool_use_'
    b'id\xa7toolu_1\xa7content\xa5a.txt'
    b'\xa5reply\xa5Hallo\xa5model\xb1claud'
    b'e-sonnet-5-5\xa5usage\x86\xa4type'
    b'\xa5usage\xa5calls\x02\xacinput_toke'
    b'nsd\xadoutput_tokens\x14\xb1cache'
    b'_read_tokens2\xabcost_micro'
    b's\xcd\x03\xe7'
)
GOLDEN_NOTE = (
    b'\x83\xa4type\xa4note\xa4text\xa9likes t'
    b'ea\xa2at\xcbA\xd9T\xfcA\x00\x00\x00'
)
GOLDEN_USAGE_DAY = (
    b'\x82\xa4type\xa9usage_day\xa5usage\x86\xa4'
    b'type\xa5usage\xa5calls\x03\xacinput_'
    b'tokens\x07\xadoutput_tokens\x08\xb2c'
    b'ache_write_tokens\t\xabcost_'
    b'micros*'
)
GOLDEN_META = (
    b'\x83\xa4type\xa5store\xaacreated_at\xcb'
    b'A\xd9T\xfc@\x00\x00\x00\xaacreated_by\xabvigi'
    b'l pid 1'
)
GOLDEN_INBOX_TEXT = (
    b'\x8b\xa4type\xa5inbox\xa3key\xa7tg:42:7\xa6target\x84\xa4type\xa6ta'
    b'rget\xa7channel\xa8telegram\xa7chat_id*\xa9thread_id'
    b'\x07\xa2at\xcbA\xd9T\xfcA`\x00\x00\xa7user_id*\xa9user_name\xa7Ann Lee'
    b'\xa8username\xa3ann\xa4text\xb5Gr\xc3\xbc\xc3\x9fe, still there?'
    b'\xaamessage_id\x0b\xaachat_title\xa5Plans\xa9chat_type\xaa'
    b'supergroup'
)
GOLDEN_INBOX_COMMAND = (
    b'\x87\xa4type\xa5inbox\xa4kind\xa7command\xa3key\xa5tg:42\xa6targ'
    b'et\x83\xa4type\xa6target\xa7channel\xa8telegram\xa7chat_id'
    b'*\xa7user_id*\xa4text\xa7Plans B\xa7command\xa3new'
)
GOLDEN = [
    pytest.param(HEADER, GOLDEN_HEADER, decode_header, id="SessionHeader"),
    pytest.param(TURN, GOLDEN_TURN, decode_turn, id="Turn"),
    pytest.param(NOTE, GOLDEN_NOTE, decode_note, id="Note"),
    pytest.param(USAGE_DAY, GOLDEN_USAGE_DAY, decode_usage_day, id="UsageDay"),
    pytest.param(META, GOLDEN_META, decode_meta, id="StoreMeta"),
    pytest.param(INBOX_TEXT, GOLDEN_INBOX_TEXT, decode_inbox, id="InboxEntry-text"),
    pytest.param(INBOX_COMMAND, GOLDEN_INBOX_COMMAND, decode_inbox, id="InboxEntry-command"),
]


@pytest.mark.parametrize(("record", "golden", "decode"), GOLDEN)
def test_golden_bytes_of_v1_records(record: Any, golden: bytes, decode: Any) -> None:
    assert encode(record) == golden
    assert decode(golden) == record


@pytest.mark.parametrize(("record", "golden", "decode"), GOLDEN)
def test_an_added_field_still_decodes(record: Any, golden: bytes, decode: Any) -> None:
    raw = msgspec.msgpack.decode(golden)
    raw["added_in_a_later_version"] = {"anything": [1, 2, 3]}
    assert decode(msgspec.msgpack.encode(raw)) == record


@pytest.mark.parametrize(("record", "golden", "decode"), GOLDEN)
def test_a_newer_schema_is_refused(record: Any, golden: bytes, decode: Any) -> None:
    schema = type(record).CURRENT + 1
    newer = encode(msgspec.structs.replace(record, schema=schema))
    with pytest.raises(NewerSchemaError) as caught:
        decode(newer)
    message = str(caught.value)
    assert f"schema {schema}" in message
    assert "written by a newer vigil" in message
    assert type(record).__name__ in message


def test_a_record_of_an_unknown_type_is_refused_clearly() -> None:
    raw = msgspec.msgpack.decode(GOLDEN_NOTE)
    raw["type"] = "note_v9"
    with pytest.raises(NewerSchemaError, match="newer vigil"):
        decode_note(msgspec.msgpack.encode(raw))


# ----------------------------------------------------------------------------- incarnations


def test_commit_of_another_incarnation_is_refused(store: LmdbStore) -> None:
    done(store.commit(header(incarnation=1), create=True))
    with pytest.raises(SessionGone):
        done(store.commit(header(incarnation=2, title="imposter"), turn=turn(0)))
    with pytest.raises(SessionGone):
        done(store.commit(header(incarnation=2, title="imposter"), create=True))
    assert store.header("tg:1") == header(incarnation=1)
    assert store.turns("tg:1", 1) == []
    done(store.commit(header(incarnation=1, title="rightful")))
    assert store.header("tg:1") == header(incarnation=1, title="rightful")


def test_commit_without_create_of_an_unknown_session_is_refused(store: LmdbStore) -> None:
    with pytest.raises(SessionGone):
        done(store.commit(header()))
    assert store.header("tg:1") is None


def test_commit_after_delete_is_refused_until_recreated(store: LmdbStore) -> None:
    done(store.commit(header(incarnation=1), turn=turn(0), create=True))
    done(store.delete_session("tg:1"))
    with pytest.raises(SessionGone):
        done(store.commit(header(incarnation=1), turn=turn(1)))
    assert store.header("tg:1") is None
    assert store.turns("tg:1", 1) == []
    done(store.commit(header(incarnation=2), turn=turn(0), create=True))
    assert store.header("tg:1") == header(incarnation=2)


def test_delete_and_commit_in_one_batch(store: LmdbStore, monkeypatch: pytest.MonkeyPatch) -> None:
    done(store.commit(header(incarnation=1), create=True))
    # A deletion is a transaction of its own that delete_session waits for (vigil/store/deletes.py), after a pass
    # over a long session's turns, CHUNK at a time (none here: skipped). The deletion is queued from a thread
    # while the writer is held, and the stale commit behind it: released, they are planned together.
    monkeypatch.setattr(store, "_turn_chunks", lambda prefix: 0)
    queued = threading.Event()
    submit = store.writer.submit_record

    def noted(record: Any, urgent: bool = True) -> WriteFuture:
        future = submit(record, urgent)
        queued.set()
        return future

    monkeypatch.setattr(store.writer, "submit_record", noted)
    blocker, release = hold_writer(store)
    with ThreadPoolExecutor(1) as deleter:
        deleting = deleter.submit(store.delete_session, "tg:1")
        assert queued.wait(WAIT), "the deletion was queued behind the held writer"
        stale = store.commit(header(incarnation=1, title="stale"))
        release.set()
        done(blocker)
        done(deleting.result(WAIT))
    with pytest.raises(SessionGone):
        done(stale)
    assert store.header("tg:1") is None


DELETER = r"""
import sys
from pathlib import Path
from vigil.store.store import open_store
store = open_store(Path(sys.argv[1]))
print(store.delete_session(sys.argv[2]).result(timeout=20))
store.close()
"""


def two_turns_then_deleted_elsewhere(store: LmdbStore, data_dir: Path) -> SessionHeader:
    """Session tg:1 with two committed turns, deleted by a second process; its stale header."""
    h = header(incarnation=1)
    done(store.commit(h, turn=turn(0), create=True))
    done(store.commit(h, turn=turn(1)))
    deleter = run_python(DELETER, str(data_dir), "tg:1")
    out, err = deleter.communicate(timeout=WAIT)
    assert (deleter.returncode, out.strip()) == (0, "2"), err
    return h


def test_delete_by_another_process_is_seen(store: LmdbStore, data_dir: Path) -> None:
    h = two_turns_then_deleted_elsewhere(store, data_dir)
    with pytest.raises(SessionGone):
        done(store.commit(h, turn=turn(2)))
    assert store.header("tg:1") is None


def test_delete_by_another_process_is_seen_after_an_unrelated_write(store: LmdbStore, data_dir: Path) -> None:
    h = two_turns_then_deleted_elsewhere(store, data_dir)
    # Any write that is not a session commit (a note, an alias, /forget) before the session's next commit:
    done(store.add_note("tg:2", Note(text="unrelated", at=1.0), keep=5))
    with pytest.raises(SessionGone):
        done(store.commit(h, turn=turn(2)))
    assert store.header("tg:1") is None  # actually: the deleted session is back, with its old counters


# ----------------------------------------------------------------------------- the writer


def test_group_commit_batches_concurrent_durable_writes(store: LmdbStore) -> None:
    count = 200
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def session(i: int) -> None:
        h = header(f"tg:{1000 + i}", incarnation=i)
        barrier.wait(timeout=WAIT)
        try:
            done(store.commit(h, turn=turn(0), create=True))
        except BaseException as exc:
            errors.append(exc)

    before = store.writer.commits
    threads = [threading.Thread(target=session, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert store.session_count() == count
    assert entries(store, b"turns") == count
    commits = store.writer.commits - before
    assert 1 <= commits < count // 4, f"{commits} commits for {count} concurrent writes"


def test_a_failing_closure_fails_alone(store: LmdbStore) -> None:
    blocker, release = hold_writer(store)
    before = store.writer.commits
    aliases = store._lmdb.db(b"aliases")

    def bad(txn: lmdb.Transaction) -> None:
        txn.put(b"tg:poison", b"tg:1", db=aliases)
        raise ValueError("this write is refused")

    good = [store.commit(header("tg:1"), turn=turn(0), create=True)]
    failing = store.writer.submit(bad)
    good += [store.commit(header("tg:2"), create=True), store.set_alias("tg:-1", "tg:2")]
    release.set()
    done(blocker)
    for future in good:
        done(future)
    with pytest.raises(ValueError, match="this write is refused"):
        done(failing)
    assert store.writer.commits - before == 2, "the good writes shared one commit after the blocker's"
    assert store.header("tg:1") is not None
    assert store.header("tg:2") is not None
    assert store.canonical("tg:-1") == "tg:2"
    assert store.canonical("tg:poison") == "tg:poison", "the failing write was rolled back"


def test_a_closure_failing_in_lmdb_fails_alone(store: LmdbStore) -> None:
    blocker, release = hold_writer(store)
    good = store.commit(header("tg:1"), turn=turn(0), create=True)
    failing = store.set_alias("x" * 600, "tg:1")  # longer than LMDB's 511-byte key limit
    later = store.commit(header("tg:2"), create=True)
    release.set()
    done(blocker)
    with pytest.raises(Exception):  # noqa: B017 - any error is fine for the bad write itself
        done(failing)
    done(good)
    done(later)


def test_closed_store_refuses_writes(data_dir: Path) -> None:
    store = open_store(data_dir)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        done(store.commit(header(), create=True))
    reopened = open_store(data_dir)
    try:
        assert reopened is not store
        assert reopened.header("tg:1") is None
    finally:
        reopened.close()


def test_committing_a_turn_writes_one_turn_record(store: LmdbStore) -> None:
    h = header()
    done(store.commit(h, create=True))
    futures = [store.commit(h, turn=turn(seq)) for seq in range(1000)]
    for future in futures:
        done(future)
    history = raw_items(store, b"turns")
    assert len(history) == 1000
    done(store.commit(msgspec.structs.replace(h, next_seq=1001), turn=turn(1000),
                      previous=h))
    after = raw_items(store, b"turns")
    assert entries(store, b"turns") == 1001
    assert set(after) - set(history) == {keys.turn("tg:1", 1, 1000)}
    assert all(after[k] == v for k, v in history.items()), "history is never rewritten"
    assert entries(store, b"sessions") == 1


# ----------------------------------------------------------------------------- map growth


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[LmdbStore]:
    opened = open_store(tmp_path / "small", map_mb=1)
    try:
        yield opened
    finally:
        opened.close()


def test_the_map_grows_instead_of_failing(small_store: LmdbStore) -> None:
    store = small_store
    assert store.map_size == 1024 * 1024
    h = header()
    done(store.commit(h, create=True))
    stop = threading.Event()
    reads: list[int] = []
    failures: list[BaseException] = []

    def reader() -> None:  # reads keep working while the writer grows the map
        while not stop.is_set():
            try:
                reads.append(len(store.last_turns("tg:1", 1, 3)))
            except BaseException as exc:
                failures.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    payload = "é" * 10_000  # 20 KB of UTF-8
    try:
        futures = [store.commit(h, turn=turn(seq, reply=f"{seq}:{payload}")) for seq in range(256)]
        for future in futures:
            done(future)
    finally:
        stop.set()
        thread.join(timeout=WAIT)
    assert failures == []
    assert reads
    assert store.map_size > 4 * 1024 * 1024, "5 MB of turns cannot fit in less"
    turns = store.turns("tg:1", 1)
    assert [t.seq for t in turns] == list(range(256))
    assert all(t.reply == f"{t.seq}:{payload}" for t in turns)


# ----------------------------------------------------------------------------- other processes

READ_LOOP = r"""
import sys, time
from pathlib import Path
from vigil.store.store import open_store
store = open_store(Path(sys.argv[1]))
want = int(sys.argv[2])
print("ready", flush=True)
seen = []
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    count = len(store.headers())
    if not seen or seen[-1] != count:
        seen.append(count)
    if count >= want:
        break
print(" ".join(map(str, seen)), flush=True)
store.close()
"""


def test_a_reader_in_another_process_sees_commits_as_they_happen(store: LmdbStore, data_dir: Path) -> None:
    want = 60
    reader = run_python(READ_LOOP, str(data_dir), str(want))
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "ready"
    for i in range(want):
        done(store.commit(header(f"tg:{i + 1}"), turn=turn(0), create=True))
    out, err = reader.communicate(timeout=WAIT)
    assert reader.returncode == 0, err
    seen = [int(n) for n in out.split()]
    assert seen[-1] == want
    assert seen == sorted(seen), "a reader never sees a commit undone"


READ_AFTER_GROWTH = r"""
import sys
from pathlib import Path
from vigil.store.store import open_store
store = open_store(Path(sys.argv[1]), map_mb=1)
print("ready", store.map_size, flush=True)
sys.stdin.readline()
turns = store.turns("tg:1", 1)
print(len(turns), sum(len(t.reply) for t in turns), store.map_size, flush=True)
store.close()
"""


def test_a_reader_in_another_process_adopts_a_grown_map(small_store: LmdbStore) -> None:
    h = header()
    done(small_store.commit(h, create=True))
    reader = run_python(READ_AFTER_GROWTH, str(small_store.data_dir))
    assert reader.stdout is not None and reader.stdin is not None
    ready, reader_map = reader.stdout.readline().split()
    assert ready == "ready" and int(reader_map) <= 2 * 1024 * 1024  # data.mdb's few pages and the 1 MB setting
    futures = [small_store.commit(h, turn=turn(seq, reply="x" * 20_000)) for seq in range(150)]
    for future in futures:
        done(future)
    assert small_store.used_bytes() > int(reader_map), "the data now lies beyond the reader's map"
    reader.stdin.write("go\n")
    reader.stdin.flush()
    out, err = reader.communicate(timeout=WAIT)
    assert reader.returncode == 0, err
    count, chars, map_size = (int(n) for n in out.split())
    assert (count, chars) == (150, 150 * 20_000)
    assert map_size >= small_store.map_size


# ----------------------------------------------------------------------------- a newer store


def write_newer_meta(data_dir: Path) -> None:
    """Mark the store as written by a newer vigil, with a raw LMDB put."""
    env = lmdb.open(str(data_dir), max_dbs=16)
    try:
        with env.begin(write=True) as txn:
            meta = env.open_db(b"meta", txn=txn)
            newer = StoreMeta(created_at=1.0, created_by="vigil 9", schema=StoreMeta.CURRENT + 1)
            txn.put(b"store", encode(newer), db=meta)
    finally:
        env.close()


def test_a_store_written_by_a_newer_vigil_is_refused(data_dir: Path) -> None:
    open_store(data_dir).close()
    write_newer_meta(data_dir)
    with pytest.raises(NewerSchemaError) as caught:
        LmdbStore(data_dir.resolve())
    message = str(caught.value)
    assert f"schema {StoreMeta.CURRENT + 1}" in message
    assert "written by a newer vigil" in message
    assert "Upgrade vigil" in message


def test_a_refused_open_releases_what_it_opened(data_dir: Path) -> None:
    open_store(data_dir).close()
    write_newer_meta(data_dir)
    before = {t for t in threading.enumerate() if t.name == "store-writer"}
    with pytest.raises(NewerSchemaError):
        LmdbStore(data_dir.resolve())
    after = {t for t in threading.enumerate() if t.name == "store-writer" and t.is_alive()}
    assert after <= before


def test_spend_of_the_day_is_known_without_a_scan_and_matches_one(store: LmdbStore, tmp_path: Path) -> None:
    """The budget's per-call question is answered from the writer's running totals; they equal a scan."""
    one = Usage(calls=1, cost_micros=1500)
    done(store.commit(header(), create=True))
    done(store.commit(header("tg:2"), create=True))
    assert store._applier.spent(42, "2026-01-01") is None  # nothing written for it yet: the store scans
    done(store.commit(header(), usage=[UsageEntry(42, "2026-01-01", "tg:1", "chat", one)]))
    done(store.commit(header("tg:2"), usage=[UsageEntry(42, "2026-01-01", "tg:2", "heartbeat", one),
                                             UsageEntry(42, "2026-01-02", "tg:2", "chat", one)]))
    with pytest.raises(SessionGone):  # refused: its spend is not counted
        done(store.commit(header(incarnation=8), usage=[UsageEntry(42, "2026-01-01", "tg:1", "chat", one)]))
    assert store._applier.spent(42, "2026-01-01") == 3000
    scanned = sum(r.usage.cost_micros for r in store.usage_rows(42) if r.day == "2026-01-01")
    assert store.user_cost_micros(42, "2026-01-01") == scanned == 3000
    assert store.user_cost_micros(42, "2026-01-02") == 1500
    store.close()
    # A new process seeds its totals from what is stored, inside its first write.
    again = open_store(store.data_dir)
    try:
        done(again.commit(header(), usage=[UsageEntry(42, "2026-01-01", "tg:1", "chat", one)]))
        assert again._applier.spent(42, "2026-01-01") == 4500 == again.user_cost_micros(42, "2026-01-01")
    finally:
        again.close()
