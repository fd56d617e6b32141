"""The store measurements against vigil's own history: cost per turn at 10 vs 1,000 turns, and JSON files.

Both commit durable turns straight to the LMDB store (no actors): what a turn costs to persist.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from vigil.bench._rig import _session, _turn
from vigil.store.store import open_store


def measure_persist_ratio(data_dir: Path, commits: int) -> tuple[float, float]:
    """Microseconds per durable turn commit with 10 and with 1,000 turns of history."""
    data_dir.mkdir(parents=True)
    store = open_store(data_dir)
    results = []
    for history in (10, 1000):
        header = _session(store, f"persist:{history}", history)
        samples = []
        for i in range(commits):
            seq = header.next_seq
            header = msgspec.structs.replace(header, next_seq=seq + 1)
            turn = _turn(seq, f"question {i} " * 20)
            started = time.perf_counter()
            store.commit(header, turn).result()
            samples.append(time.perf_counter() - started)
        samples.sort()
        results.append(samples[len(samples) // 2] * 1e6)
    store.close()
    return results[0], results[1]


def measure_json_speedup(data_dir: Path, chats: int, turns_each: int, history: int) -> tuple[float, float]:
    """(vigil seconds, json-files seconds) for the same turns from the same threads."""
    (data_dir / "lmdb").mkdir(parents=True)
    store = open_store(data_dir / "lmdb")
    headers = {i: _session(store, f"json:{i}", history) for i in range(chats)}
    json_dir = data_dir / "json"
    json_dir.mkdir()
    histories = {i: [msgspec.to_builtins(_turn(s, f"question {s} " * 20)) for s in range(history)]
                 for i in range(chats)}

    def vigil_chat(i: int) -> None:
        header = headers[i]
        for _ in range(turns_each):
            seq = header.next_seq
            header = msgspec.structs.replace(header, next_seq=seq + 1)
            store.commit(header, _turn(seq, f"question {seq} " * 20)).result()

    def json_chat(i: int) -> None:
        path = json_dir / f"chat-{i}.json"
        turns = histories[i]
        for _ in range(turns_each):
            turns.append(msgspec.to_builtins(_turn(len(turns), f"question {len(turns)} " * 20)))
            tmp = path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump({"key": f"json:{i}", "turns": turns}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)

    timings = []
    for work in (vigil_chat, json_chat):
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=chats) as pool:
            list(pool.map(work, range(chats)))
        timings.append(time.perf_counter() - started)
    store.close()
    return timings[0], timings[1]
