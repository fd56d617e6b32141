"""What counts as old (vigil/policy/expiry.py), on a real LMDB store, and `vigil sessions cleanup` using that rule."""

from __future__ import annotations

import random
import time
from pathlib import Path

import lmdb
import pytest

from tests.procs import run_vigil, vigil_env
from vigil.policy.expiry import expired, old_generations
from vigil.ports.store import ConversationMove
from vigil.records.schema import Conversation, Input, SessionHeader, Target, Turn, encode
from vigil.store.engine import keys
from vigil.store.store import LmdbStore, open_store

DAY = 86400.0


def seed(store: LmdbStore, key: str, at: float, pinned: bool = False, generation: int = 1,
         past: tuple[Conversation, ...] = (), old_turns: dict[int, float] | None = None) -> SessionHeader:
    header = SessionHeader(key=key, incarnation=random.getrandbits(62), created_at=at, target=Target(channel="tg"),
                           cwd="/", model="m", generation=generation, last_activity=at, pinned=pinned)
    store.commit(header, create=True).result()
    listed = {record.generation for record in past}
    for gen, when in (old_turns or {}).items():  # left as /new leaves them: with a record
        if gen not in listed:
            past = (*past, Conversation(generation=gen, turns=1, started_at=when, ended_at=when, last_at=when))
    for record in past:
        store.commit(header, move=ConversationMove(left=record)).result()
    for gen, when in (old_turns or {}).items():  # turns of other generations, written as an older vigil left them
        turn = Turn(seq=0, status="done", started_at=when, ended_at=when, inputs=(Input(text=f"{key} {gen}", at=when),))
        raw_key, raw = keys.turn(key, gen, 0), encode(turn)

        def put(txn: lmdb.Transaction, raw_key: bytes = raw_key, raw: bytes = raw) -> None:
            txn.put(raw_key, raw, db=store._db[b"turns"])

        store.writer.submit(put).result()
    return header


def test_old_conversations_are_judged_from_their_records_and_pinned_sessions_are_never_old(store: LmdbStore) -> None:
    now = time.time()
    cutoff = now - 30 * DAY
    recorded = Conversation(generation=1, turns=1, started_at=now - 40 * DAY, ended_at=now - 31 * DAY,
                            last_at=now - 32 * DAY)
    recent = Conversation(generation=4, turns=1, started_at=now - 40 * DAY, ended_at=now - 31 * DAY,
                          last_at=now - 29 * DAY)
    going = Conversation(generation=5, turns=900, started_at=now, ended_at=now, last_at=now, deleting=True)
    a = seed(store, "tg:1", now, generation=3, past=(recorded, recent, going),
             old_turns={1: now - 20 * DAY, 2: now - 32 * DAY, 4: now - 50 * DAY})
    b = seed(store, "tg:2", now, generation=2, old_turns={1: now - 29 * DAY})
    c = seed(store, "tg:3", now - 40 * DAY, pinned=True, generation=2, old_turns={1: now - 50 * DAY})
    d = seed(store, "tg:4", now - 31 * DAY)
    # 1: its record says it was left 31 days ago (its turns are not read); 2: its record, from its turn, says
    # 32 days; 4: its last turn, as its record holds it, is 29 days old; 5: a deletion was begun.
    assert old_generations(store, a, cutoff) == [1, 2, 5]
    assert old_generations(store, b, cutoff) == [], "just newer than the cutoff"
    assert old_generations(store, c, cutoff) == []
    doomed, prune = expired(store, [a, b, c, d], cutoff)
    assert [h.key for h in doomed] == ["tg:4"] and prune == ["tg:1"]


@pytest.mark.e2e
def test_sessions_cleanup_from_the_shell_keeps_pinned_sessions(tmp_path: Path) -> None:
    env = vigil_env(tmp_path)
    store = open_store(Path(env["VIGIL_DATA_DIR"]))
    try:
        now = time.time()
        seed(store, "tg:10", now - 3 * DAY, pinned=True)
        seed(store, "tg:11", now - 3 * DAY)
        seed(store, "tg:12", now, generation=2, old_turns={1: now - 3 * DAY})
    finally:
        store.close()
    result = run_vigil(["sessions", "cleanup", "--older-than", "2d", "--yes"], env)
    assert result.returncode == 0, result.stderr
    assert "deleted 1 session(s) and 1 earlier conversation(s)" in result.stdout, result.stdout
    store = open_store(Path(env["VIGIL_DATA_DIR"]))
    try:
        assert store.has_session("tg:10") and not store.has_session("tg:11")
        assert store.generations("tg:12") == []
    finally:
        store.close()
    listing = run_vigil(["sessions", "list"], env).stdout
    assert "📌" in listing
