"""`vigil bench`: vigil's own cost, measured in-process on the real actors and the real LMDB store.

The model is `ZeroLatencyBenchModel` (defined here, for the bench only): it
answers at once, so every millisecond measured is vigil's. Persistence is
durable (fsync on every commit) throughout.

Metrics:
- turns_per_s: closed-loop turns through Supervisor -> SessionActor -> store -> outbox over 1,000 chats
  (median of three rounds on one warmed-up runtime).
- p99_overhead_ms: submit-to-delivered latency at half that rate (open loop, Poisson arrivals; median of
  three rounds' p99).
- persist_us_per_turn_ratio_1000_vs_10: one durable turn commit at 1,000 turns of history over at 10.
- persist_speedup_vs_json_files: the same turns persisted as one JSON file per chat, rewritten and
  fsynced per turn (how many bots do it), over vigil's time; same threads, same turns.
- rss_mb_after_100k_chats: resident memory after 100,000 distinct chats had a turn (max 1,000 live).
- cold_start_s_100k_sessions: a fresh process, from exec to ready, over a store of 100,000 sessions.
- persist_speedup_vs_sqlite: one chat, SQLite's (WAL, synchronous=FULL) median time per durable turn over
  vigil's, on the same turns in the same run.
- store_speedup_vs_sqlite_1000: 1,000 chats committing at once, one thread each: vigil's durable turns per
  second over SQLite's (see `_sqlite` for the SQLite store and why one shared connection).
- metrics_overhead_pct: throughput lost with Prometheus metrics on, one runtime whose rounds alternate.
- recall_p95_ms_100k_turns, index_bytes_per_turn, recall_feed_overhead_pct: the recall index (`_recall`):
  a search over a chat of 100,000 turns, the index's size per text turn, indexing's share of a turn's CPU.
- persist_ratio_500_vs_0_conversations: a durable turn commit in a session that left 500 conversations
  behind (/new) over one that left none (median of each, committed alternately).
- sweep_ms_1m_turns: the media sweep a /forget asks for, in a store of a million turns naming 20,000 files.

`vigil bench --year` builds the store of a busy year and measures what using it costs (`_year`).

The measurements live beside this face: `_rig` (model, outbox, runtime, turns), `_throughput`,
`_persist`, `_sqlite`, `_metrics`, `_recall`; `python -m vigil.bench --cold-start-probe` is `__main__`.

May import the runtime, the store, the control views and the operations: it builds the whole service in-process.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vigil.bench._persist import measure_json_speedup, measure_persist_ratio
    from vigil.bench._rig import BENCH_MAX_CONCURRENT_QUERIES, REPLY, BenchOutbox, ZeroLatencyBenchModel
    from vigil.bench._sqlite import SqliteStore, measure_lone, measure_many
    from vigil.bench._throughput import measure_cold_start, measure_latency, measure_many_chats, measure_throughput
    from vigil.bench._year import YEAR_GOALS, run_year

# Imported when first asked for: the cold-start probe (`python -m vigil.bench`) imports this package, and
# must time vigil's start-up, not the compiling of the SQLite, recall and year measurements it never runs.
_LAZY = {
    "BENCH_MAX_CONCURRENT_QUERIES": "_rig", "REPLY": "_rig", "BenchOutbox": "_rig", "ZeroLatencyBenchModel": "_rig",
    "SqliteStore": "_sqlite", "measure_lone": "_sqlite", "measure_many": "_sqlite",
    "measure_cold_start": "_throughput", "measure_latency": "_throughput", "measure_many_chats": "_throughput",
    "measure_throughput": "_throughput", "YEAR_GOALS": "_year", "run_year": "_year",
    "measure_json_speedup": "_persist", "measure_persist_ratio": "_persist",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


GOALS = {
    "turns_per_s": (">=", 2000.0),
    "p99_overhead_ms": ("<=", 10.0),
    "persist_us_per_turn_ratio_1000_vs_10": ("<=", 1.5),
    "persist_speedup_vs_json_files": (">=", 3.0),
    "rss_mb_after_100k_chats": ("<=", 400.0),
    "cold_start_s_100k_sessions": ("<=", 2.0),
    "persist_speedup_vs_sqlite": (">=", 1.0),
    "store_speedup_vs_sqlite_1000": (">=", 2.0),
    "metrics_overhead_pct": ("<=", 2.0),
    "recall_p95_ms_100k_turns": ("<=", 50.0),
    "index_bytes_per_turn": ("<=", 1024.0),
    "recall_feed_overhead_pct": ("<=", 5.0),
    "persist_ratio_500_vs_0_conversations": ("<=", 1.2),
    "sweep_ms_1m_turns": ("<=", 50.0),
}


def run_bench(as_json: bool = False, quick: bool = False, scale: int | None = None) -> int:
    """`scale` divides every size (`quick`: 10); a smoke test runs tiny sizes through every measurement."""
    from vigil.bench._metrics import measure_metrics_overhead
    from vigil.bench._persist import measure_json_speedup, measure_persist_ratio
    from vigil.bench._recall import measure_feed_overhead, measure_recall
    from vigil.bench._rig import BENCH_MAX_CONCURRENT_QUERIES
    from vigil.bench._shape import measure_conversation_ratio, measure_sweep
    from vigil.bench._sqlite import measure_lone, measure_many
    from vigil.bench._throughput import measure_cold_start, measure_latency, measure_many_chats, measure_throughput
    scale = max(1, scale if scale is not None else 10 if quick else 1)
    quick = scale > 1

    def sized(full: int, least: int) -> int:
        return max(least, full // scale)

    root = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    results: dict[str, float] = {}
    details: dict[str, Any] = {"chats": sized(1000, 10), "scale": scale, "machine_cores": os.cpu_count(),
                               "max_concurrent_queries": BENCH_MAX_CONCURRENT_QUERIES}
    try:
        started = time.perf_counter()
        # Three rounds each, the median reported: one slow stretch of a shared host must not decide it.
        rates = measure_throughput(root / "throughput", chats=sized(1000, 10), turns_each=12)
        results["turns_per_s"] = statistics.median(rates)
        details["turns_per_s_rounds"] = [round(r) for r in rates]
        p99s = measure_latency(root / "latency", chats=sized(1000, 10), rate=results["turns_per_s"] / 2,
                               seconds=6 / scale)
        results["p99_overhead_ms"] = statistics.median(p99s)
        details["p99_overhead_ms_rounds"] = [round(p, 2) for p in p99s]
        at10, at1000 = measure_persist_ratio(root / "persist", commits=sized(400, 10))
        details["persist_us_per_turn_at_10"] = round(at10, 1)
        details["persist_us_per_turn_at_1000"] = round(at1000, 1)
        results["persist_us_per_turn_ratio_1000_vs_10"] = at1000 / at10
        vigil_s, json_s = measure_json_speedup(root / "json", chats=50, turns_each=sized(20, 2), history=200)
        details["persist_vigil_s"] = round(vigil_s, 3)
        details["persist_json_files_s"] = round(json_s, 3)
        results["persist_speedup_vs_json_files"] = json_s / vigil_s
        many = sized(100_000, 100)  # a tenth of them live at most (1,000 at full size): the rest are evicted
        results["rss_mb_after_100k_chats"] = measure_many_chats(root / "many", chats=many, live=min(1000, many // 10))
        results["cold_start_s_100k_sessions"] = measure_cold_start(root / "many")
        lone_vigil, lone_sqlite = measure_lone(root / "sqlite-lone", commits=sized(400, 10))
        details["persist_us_per_turn_vigil_lone"] = round(lone_vigil, 1)
        details["persist_us_per_turn_sqlite_lone"] = round(lone_sqlite, 1)
        results["persist_speedup_vs_sqlite"] = lone_sqlite / lone_vigil
        at0, at500 = measure_conversation_ratio(root / "conversations", commits=sized(400, 10))
        details["persist_us_per_turn_0_conversations"] = round(at0, 1)
        details["persist_us_per_turn_500_conversations"] = round(at500, 1)
        results["persist_ratio_500_vs_0_conversations"] = at500 / at0
        swept = measure_sweep(root / "sweep", turns=sized(1_000_000, 1000))
        results["sweep_ms_1m_turns"] = swept.pop("sweep_ms")
        details.update({k: round(v, 1) for k, v in swept.items()})
        many_vigil, many_sqlite = measure_many(root / "sqlite-many", chats=sized(1000, 10), turns_each=10)
        details["store_turns_per_s_vigil_1000"] = round(many_vigil)
        details["store_turns_per_s_sqlite_1000"] = round(many_sqlite)
        details["sqlite_concurrency"] = "one connection shared by all threads behind a lock"
        results["store_speedup_vs_sqlite_1000"] = many_vigil / many_sqlite
        results["recall_p95_ms_100k_turns"], results["index_bytes_per_turn"], more = measure_recall(
            root / "recall", turns=sized(100_000, 1000))
        details.update(more)
        results["recall_feed_overhead_pct"], more = measure_feed_overhead(
            root / "recall-feed", chats=sized(1000, 10), turns_each=20 if quick else 3, samples=4 if quick else 6)
        details.update(more)
        # Last: its two runtimes' actors must not weigh on the memory figure above.
        results["metrics_overhead_pct"], more = measure_metrics_overhead(
            root / "metrics", chats=sized(1000, 10), turns_each=20 if quick else 3, samples=8 if quick else 12)
        details.update(more)
        details["bench_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if as_json:
        print(json.dumps({**{k: round(v, 3) for k, v in results.items()}, "details": details}))
    else:
        print(f"{'metric':<40} {'value':>12}  goal")
        for name, value in results.items():
            op, goal = GOALS[name]
            met = value >= goal if op == ">=" else value <= goal
            print(f"{name:<40} {value:>12.3f}  {op} {goal:g} {'ok' if met else 'MISSED'}")
        for name, value in details.items():
            print(f"  {name}: {value}")
    return 0


__all__ = [
    "BENCH_MAX_CONCURRENT_QUERIES",
    "GOALS",
    "REPLY",
    "YEAR_GOALS",
    "BenchOutbox",
    "SqliteStore",
    "ZeroLatencyBenchModel",
    "measure_cold_start",
    "measure_json_speedup",
    "measure_latency",
    "measure_lone",
    "measure_many",
    "measure_many_chats",
    "measure_persist_ratio",
    "measure_throughput",
    "run_bench",
    "run_year",
]
