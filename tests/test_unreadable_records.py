"""One record that can't be read harms one session: the store's writer and listings go on without it.

Records are damaged the way it happens in life: raw py-lmdb puts into the store's sub-databases
(garbage bytes, a header of a type tag this vigil does not know, a schema number from the future),
written while the store is closed so nothing of this process has them cached. All on real LMDB.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import pytest

from tests.test_store import WAIT, header, hold_writer, raw_items, turn
from vigil.records.schema import Usage, UsageDay, encode
from vigil.store.engine import keys
from vigil.store.engine.lmdb_env import StoreError
from vigil.store.store import (
    CorruptRecord,
    InboxWrite,
    LmdbStore,
    SessionWrite,
    Unreadable,
    UsageEntry,
    open_store,
    unreadable_line,
)

GARBAGE = b"\xc1\xc1 not a record at all \xff"


def future_header(key: str) -> bytes:
    """A session header as a later vigil might write it: a type tag this one does not know."""
    raw = msgspec.msgpack.decode(encode(header(key)))
    raw["type"] = "session_v2"
    return msgspec.msgpack.encode(raw)


def newer_schema_header(key: str) -> bytes:
    return encode(header(key, schema=2))


def raw_put(data_dir: Path, db: bytes, key: bytes, value: bytes) -> None:
    """Write bytes straight into a sub-database, as another program (or a disk fault) would."""
    env = lmdb.open(str(data_dir), max_dbs=16)
    try:
        with env.begin(write=True) as txn:
            txn.put(key, value, db=env.open_db(db, txn=txn))
    finally:
        env.close()


@pytest.fixture
def three(data_dir: Path) -> Iterator[tuple[Path, list[str]]]:
    """Sessions tg:1, tg:2, tg:3 (user 42 in each), stored and closed: the test damages and reopens."""
    store = open_store(data_dir)
    names = ["tg:1", "tg:2", "tg:3"]
    for name in names:
        store.commit(header(name, participants=(42,)), turn(0), new_members=(42,), create=True).result(WAIT)
    store.close()
    yield data_dir, names


def reopen(data_dir: Path) -> LmdbStore:
    return open_store(data_dir)


def commit_all(store: LmdbStore, headers: list[Any]) -> list[BaseException | None]:
    """Commit each header (a next turn) in one batch; per header, None or the exception it got."""
    blocker, release = hold_writer(store)
    futures = [store.commit(h, turn(1), urgent=False) for h in headers]
    release.set()
    blocker.result(WAIT)
    outcomes: list[BaseException | None] = []
    for future in futures:
        try:
            future.result(WAIT)
            outcomes.append(None)
        except BaseException as exc:
            outcomes.append(exc)
    return outcomes


@pytest.mark.parametrize("damage", [GARBAGE, future_header("tg:2"), newer_schema_header("tg:2")],
                         ids=["garbage", "unknown-tag", "newer-schema"])
def test_an_unreadable_header_fails_only_its_own_write_in_a_batch(three: tuple[Path, list[str]],
                                                                   damage: bytes) -> None:
    data_dir, names = three
    raw_put(data_dir, b"sessions", b"tg:2", damage)
    store = reopen(data_dir)
    try:
        outcomes = commit_all(store, [header(n, participants=(42,)) for n in names])
        assert outcomes[0] is None and outcomes[2] is None, outcomes
        assert isinstance(outcomes[1], CorruptRecord) and isinstance(outcomes[1], StoreError), outcomes
        assert outcomes[1].key == "tg:2"
        assert "vigil sessions delete tg:2" in str(outcomes[1])
        assert store.writer_alive
        # The writer goes on committing, and never overwrote what it could not read.
        store.commit(header("tg:1", participants=(42,)), turn(2)).result(WAIT)
        assert raw_items(store, b"sessions")[b"tg:2"] == damage
        with pytest.raises(CorruptRecord):
            store.commit(header("tg:2"), turn(1), create=True).result(WAIT)
    finally:
        store.close()


def test_listings_skip_and_name_an_unreadable_header(three: tuple[Path, list[str]]) -> None:
    data_dir, _ = three
    raw_put(data_dir, b"sessions", b"tg:2", GARBAGE)
    raw_put(data_dir, b"sessions", b"tg:3", future_header("tg:3"))
    store = reopen(data_dir)
    try:
        for user in (None, 42):
            found, skipped = store.scan_headers(user)
            assert [h.key for h in found] == ["tg:1"]
            assert skipped == [Unreadable("tg:2", "damaged"), Unreadable("tg:3", "written by a newer vigil")]
            assert [h.key for h in store.headers(user)] == ["tg:1"]
        assert unreadable_line(skipped) == ("2 sessions could not be read: tg:2 (damaged), "
                                            "tg:3 (written by a newer vigil)")
        assert store.has_session("tg:2") and not store.has_session("tg:9")
    finally:
        store.close()


def test_delete_removes_an_unreadable_header_without_reading_it(three: tuple[Path, list[str]]) -> None:
    data_dir, _ = three
    raw_put(data_dir, b"sessions", b"tg:2", GARBAGE)
    store = reopen(data_dir)
    try:
        assert store.delete_session("tg:2").result(WAIT) == 1
        assert not store.has_session("tg:2")
        assert keys.member(42, "tg:2") not in raw_items(store, b"members")
        assert keys.member(42, "tg:1") in raw_items(store, b"members")
        assert store.scan_headers() == (store.headers(), [])
        # Gone, the key may start afresh.
        store.commit(header("tg:2", incarnation=99), turn(0), create=True).result(WAIT)
        assert [h.key for h in store.headers()] == ["tg:1", "tg:2", "tg:3"]
    finally:
        store.close()


def test_an_unreadable_usage_row_fails_only_the_write_that_adds_to_it(three: tuple[Path, list[str]]) -> None:
    data_dir, _ = three
    bad_row = keys.usage(42, "2026-01-01", "tg:2", "chat")
    raw_put(data_dir, b"usage", bad_row, GARBAGE)
    raw_put(data_dir, b"usage", keys.usage(42, "2026-01-01", "tg:1", "chat"), encode(UsageDay(usage=Usage(calls=1))))
    store = reopen(data_dir)
    try:
        spend = Usage(calls=1, cost_micros=5)
        blocker, release = hold_writer(store)
        futures = [store.commit(header(n, participants=(42,)), turn(1), urgent=False,
                                usage=(UsageEntry(42, "2026-01-01", n, "chat", spend),)) for n in ("tg:1", "tg:2")]
        release.set()
        blocker.result(WAIT)
        futures[0].result(WAIT)
        with pytest.raises(CorruptRecord, match="usage record"):
            futures[1].result(WAIT)
        rows, skipped = store.scan_usage(42)
        assert [(r.key, r.usage.calls) for r in rows] == [("tg:1", 2)]
        assert skipped == [Unreadable("tg:2", "usage of 2026-01-01 damaged")]
        assert store.user_cost_micros(42, "2026-01-01") == 5
    finally:
        store.close()


def test_a_damaged_heartbeat_index_entry_does_not_stop_the_schedule(three: tuple[Path, list[str]]) -> None:
    data_dir, _ = three
    raw_put(data_dir, b"heartbeats", b"tg:1", keys.time_value(1234.5))
    raw_put(data_dir, b"heartbeats", b"tg:2", b"\x01\x02")
    store = reopen(data_dir)
    try:
        assert store.heartbeat_schedule() == [("tg:1", 1234.5)]
    finally:
        store.close()


def test_an_applier_that_raises_fails_only_the_culprit(store: LmdbStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the batch applier must not end the writer thread or leave anyone waiting forever."""
    real = store._applier.apply

    def apply(txn: lmdb.Transaction, records: list[SessionWrite | InboxWrite]) -> list[BaseException | None]:
        if any(r.key == b"tg:2" for r in records):
            raise KeyError("a bug met tg:2")
        return real(txn, records)

    monkeypatch.setattr(store._applier, "apply", apply)
    outcomes = commit_all(store, [header("tg:1"), header("tg:2"), header("tg:3")])
    # Not created (no create=True): tg:1 and tg:3 are refused as gone, tg:2 by the bug; all resolve.
    assert isinstance(outcomes[1], StoreError) and "a bug met tg:2" in str(outcomes[1]), outcomes
    blocker, release = hold_writer(store)
    futures = [store.commit(header(n), turn(0), create=True, urgent=False) for n in ("tg:1", "tg:2", "tg:3")]
    release.set()
    blocker.result(WAIT)
    futures[0].result(WAIT)
    futures[2].result(WAIT)
    with pytest.raises(StoreError):
        futures[1].result(WAIT)
    assert store.writer_alive
    assert sorted(h.key for h in store.headers()) == ["tg:1", "tg:3"]


def test_a_leader_that_meets_a_crashing_write_keeps_the_writer(store: LmdbStore,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Even an error outside the applier fails its batch's writes instead of killing the role's holder."""
    calls = threading.Event()

    def broken_committed(txn_id: int) -> None:
        calls.set()
        raise RuntimeError("committed() is broken")

    monkeypatch.setattr(store._applier, "committed", broken_committed)
    with pytest.raises(StoreError, match="committed"):
        store.commit(header("tg:1"), turn(0), create=True).result(WAIT)
    assert calls.is_set()
    monkeypatch.undo()
    store.commit(header("tg:4"), turn(0), create=True).result(WAIT)
    assert store.writer_alive
