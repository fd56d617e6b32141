"""What a store's age must not cost: a turn's durable commit with 500 conversations left behind, and a media
sweep in a store of a million turns.

Both go through the store's real API: conversations are left with the same functions `/new` uses
(vigil/records/conversations.py) and committed with their records; the sweep is vigil/media/sweep.py's, after
`delete_session`, as `/forget` runs it. The million turns are written in bulk (vigil/bench/_year_store.py,
short texts), which is quick and the store's own format.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import msgspec

from vigil.bench._rig import _session, _turn
from vigil.bench._year_store import YearShape, build
from vigil.media.files import MediaStore
from vigil.media.sweep import sweep
from vigil.records import conversations
from vigil.records.schema import SessionHeader
from vigil.store.store import LmdbStore, open_store


def _leave(store: LmdbStore, header: SessionHeader, count: int) -> SessionHeader:
    """`count` conversations left with /new, each with one turn (an empty one is not kept)."""
    for n in range(count):
        seq = header.next_seq
        header = msgspec.structs.replace(header, next_seq=seq + 1)
        store.commit(header, _turn(seq, f"topic {n}")).result()
        header, move = conversations.start_new(header, time.time(), time.time(), header.generation, f"topic {n}")
        store.commit(header, move=move).result()
    return header


def measure_conversation_ratio(data_dir: Path, commits: int) -> tuple[float, float]:
    """Median microseconds of a durable turn commit in a session with 0 and with 500 past conversations.

    The two sessions commit in turns, one after the other, so that a slow stretch of a shared machine
    weighs on both alike."""
    data_dir.mkdir(parents=True)
    store = open_store(data_dir)
    try:
        fresh = _session(store, "shape:0", 10)
        old = _leave(store, _session(store, "shape:500", 10), 500)
        samples: dict[str, list[float]] = {"shape:0": [], "shape:500": []}
        headers = {"shape:0": fresh, "shape:500": old}
        for i in range(commits):
            for key in ("shape:0", "shape:500") if i % 2 else ("shape:500", "shape:0"):
                header = headers[key]
                seq = header.next_seq
                header = headers[key] = msgspec.structs.replace(header, next_seq=seq + 1)
                turn = _turn(seq, f"question {i} " * 20)
                started = time.perf_counter()
                store.commit(header, turn).result()
                samples[key].append(time.perf_counter() - started)
        medians = [sorted(samples[k])[len(samples[k]) // 2] * 1e6 for k in ("shape:0", "shape:500")]
    finally:
        store.close()
    return medians[0], medians[1]


def measure_sweep(data_dir: Path, turns: int) -> dict[str, float]:
    """A store of `turns` turns naming 20,000 media files (per million turns); one mid-sized session deleted,
    then the sweep `/forget` asks for, timed. Returns its milliseconds and the setting's figures."""
    data_dir.mkdir(parents=True)
    store = open_store(data_dir, 256)
    try:
        scale = turns / 1_000_000
        shape = YearShape(sessions=max(10, int(1000 * scale)), turns=turns, conversations=int(10_000 * scale),
                          media=max(20, int(20_000 * scale)), chat_texts=False, media_median_bytes=4000)
        built = build(store, shape)
        store.sync()
        with_media = [c for c in built.chats if len(c.times) > 100]
        doomed = sorted(with_media or built.chats, key=lambda c: len(c.times))[len(with_media or built.chats) // 2]
        media = MediaStore(data_dir / "media")
        started = time.perf_counter()
        removed_turns = int(store.delete_session(doomed.key).result())
        deleted_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        files, _ = sweep(store, media, grace_s=0)
        sweep_ms = (time.perf_counter() - started) * 1000
    finally:
        store.close()
    result = {"sweep_ms": sweep_ms, "sweep_deleted_files": files, "sweep_session_turns": removed_turns,
              "sweep_delete_ms": deleted_ms, "sweep_store_build_s": built.seconds,
              "sweep_store_media_files": built.media_files}
    shutil.rmtree(data_dir, ignore_errors=True)
    return result
