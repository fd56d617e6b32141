"""Making a store's sessions old, for retention tests: real sessions (made through `vigil run`), moved back in time.

Retention judges by the times stored in headers, turns and past-conversation records; a test cannot
wait 30 days, so while vigil is stopped it rewrites those times in the real LMDB store (the writer's
own transaction, the real encodings) and sets media files' times back past the sweep's grace.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lmdb
import msgspec

from tests.procs import run_vigil
from vigil.records.schema import Input, Turn, decode_conversation, decode_header, decode_turn, encode
from vigil.store.engine import keys
from vigil.store.store import LmdbStore

DAY = 86400.0


def age_session(store: LmdbStore, key: str, at: float, past: dict[int, float] | None = None,
                interrupted: frozenset[int] = frozenset(), filler_turns: int = 0) -> None:
    """Make `key`'s current conversation last active at `at`, and past conversation g at `past[g]`.

    Every turn of a generation gets that time, and so does its record; `interrupted` marks the records of
    these generations `deleting` (what a crash midway through deleting a large conversation leaves);
    `filler_turns` appends that many old 2 KB turns to the current conversation (to measure sizes).
    """
    db: dict[bytes, Any] = store._db  # a test rewriting history on purpose

    def op(txn: lmdb.Transaction) -> None:
        header_key = keys.session(key)
        raw = txn.get(header_key, db=db[b"sessions"])
        assert raw is not None, key
        header = decode_header(bytes(raw))
        times = {header.generation: at, **(past or {})}
        for generation, when in times.items():
            prefix = keys.turn_prefix(key, generation)
            cursor = txn.cursor(db=db[b"turns"])
            found = []
            if cursor.set_range(prefix):
                for raw_key, value in cursor:
                    if not bytes(raw_key).startswith(prefix):
                        break
                    found.append((bytes(raw_key), decode_turn(bytes(value))))
            for turn_key, turn in found:
                inputs = tuple(msgspec.structs.replace(i, at=when - 2) for i in turn.inputs)
                txn.put(turn_key, encode(msgspec.structs.replace(turn, started_at=when - 2, ended_at=when - 1,
                                                                 inputs=inputs)), db=db[b"turns"])
        next_seq = header.next_seq
        for n in range(filler_turns):
            filler = Turn(seq=next_seq, status="done", started_at=at - 2, ended_at=at - 1,
                          inputs=(Input(text=f"filler {n} " + "x" * 1000, at=at - 2),), reply="y" * 1000)
            txn.put(keys.turn(key, header.generation, next_seq), encode(filler), db=db[b"turns"])
            next_seq += 1
        for generation in past or {}:
            record_key = keys.conversation(key, generation)
            stored = txn.get(record_key, db=db[b"conversations"])
            assert stored is not None, (key, generation)
            when = times[generation]
            record = msgspec.structs.replace(decode_conversation(bytes(stored)), started_at=when - 10,
                                             ended_at=when, last_at=when - 1, deleting=generation in interrupted)
            txn.put(record_key, encode(record), db=db[b"conversations"])
        header = msgspec.structs.replace(
            header, created_at=min(times.values()) - 20, last_activity=at, last_turn_at=at,
            generation_started_at=at - 5, next_seq=next_seq, turns_total=header.turns_total + filler_turns)
        txn.put(header_key, encode(header), db=db[b"sessions"])

    store.writer.submit(op).result()


def age_media(media_dir: Path, seconds: float = 3600.0) -> None:
    """Every stored media file written `seconds` ago: past the sweep's grace (vigil/media/sweep.py)."""
    when = time.time() - seconds
    for path in media_dir.glob("*/*"):
        os.utime(path, (when, when))


def stats(env: dict[str, str]) -> dict[str, Any]:
    result = run_vigil(["sessions", "stats", "--json"], env, timeout=30)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def stored_keys(env: dict[str, str]) -> set[str]:
    result = run_vigil(["sessions", "list", "--json"], env, timeout=30)
    assert result.returncode == 0, result.stderr
    return {json.loads(line)["key"] for line in result.stdout.splitlines() if line.strip()}
