"""The recall index's figures: search latency over a 100,000-turn chat, its size per turn, what feeding it costs.

- `recall_p95_ms_100k_turns`: one chat of 100,000 turns (plus 10,000 in 50 other chats, so scope is
  real), written into a real store, indexed the way the service does it (the indexer catching up in
  its 500-turn transactions, so the full-text index has the many segments a live one grows, not the
  one a rebuild optimizes into), then 300 searches through `RecallIndexer.search`, the whole path: the
  ranked query, each hit's turn read back from LMDB, its snippet cut. Wall clock; p50 and the p95 of
  the searching thread's CPU time are reported beside it (a shared host's load is not vigil's cost).
  The searches are one to four words of the chat's own vocabulary, 60% of them among its most common
  words (rank 50 to 300): the slow case, many matches to rank.
- `index_bytes_per_turn`: the index file (checkpointed) over the turns that have text, all 110,000.
  The turns are ~1 kB of English each (sentences of Python's own documentation, pydoc_data, with one
  word in twelve replaced by a rare made-up one, so the vocabulary grows as a real chat's does).
- `recall_feed_overhead_pct`: what indexing adds to a turn, as a share of the CPU a turn costs: the
  committing thread's `feed` (a queue put) plus the indexer's CPU per bench turn, over the CPU per turn
  of the throughput rounds. Beside it, the A/B: one runtime whose sessions feed an indexer or not, rounds
  alternating (off, on, off, ...), each round on against the two off around it, the indexer caught up
  after every round on (never a turn dropped from its queue).
"""

from __future__ import annotations

import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from vigil.recall import RecallIndex, RecallIndexer, RecallResult, StoreView
from vigil.recall.db import paths
from vigil.records.schema import Input, SessionHeader, Target, Turn
from vigil.store.store import LmdbStore, open_store

_SYLLABLES = ("ka", "lo", "mi", "ra", "zen", "tor", "vel", "quo", "pri", "sa", "nu", "dex", "mar", "lin", "bo", "fe")


def _sentences() -> list[str]:
    try:
        from pydoc_data.topics import topics

        text = " ".join(topics.values())
    except ImportError:  # a Python without its docs: a plainer corpus, same shape
        text = " ".join(f"Sentence {n} tells of item {n % 97} and of the {n % 13}th thing." for n in range(4000))
    found = [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+", text)]
    return [s for s in found if 20 < len(s) < 400]


class Corpus:
    """Deterministic chat turns: a user message of 1-3 sentences and a reply of 3-9."""

    def __init__(self, seed: int) -> None:
        self._sentences = _sentences()
        self._rng = random.Random(seed)

    def _rare(self) -> str:
        pick = random.Random(int(self._rng.paretovariate(1.0)) % 200_000)
        return "".join(pick.choice(_SYLLABLES) for _ in range(pick.randint(2, 4)))

    def _sentence(self) -> str:
        return " ".join(self._rare() if self._rng.random() < 0.08 else w for w in
                        self._rng.choice(self._sentences).split())

    def turn(self) -> tuple[str, str]:
        user = " ".join(self._sentence() for _ in range(self._rng.randint(1, 3)))
        return user, " ".join(self._sentence() for _ in range(self._rng.randint(3, 9)))


def _write_chat(store: LmdbStore, key: str, corpus: Corpus, turns: int) -> list[str]:
    """Commit `turns` text turns to a new session; a sample of its texts (for the queries)."""
    header = SessionHeader(key=key, incarnation=1, created_at=time.time(), target=Target(channel="bench"),
                           cwd="/", model="claude-sonnet-5-5", conversation_title="bench")
    store.commit(header, create=True).result()
    sample: list[str] = []
    base = time.time() - turns * 60
    for start in range(0, turns, 1000):
        future = None
        for seq in range(start, min(turns, start + 1000)):
            user, reply = corpus.turn()
            if len(sample) < 2000:
                sample.append(user + " " + reply)
            at = base + seq * 60
            turn = Turn(seq=seq, status="done", started_at=at, ended_at=at + 5, reply=reply,
                        inputs=(Input(text=user, at=at, user_id=1, user_name="Bench"),))
            header = msgspec.structs.replace(header, next_seq=seq + 1)
            future = store.commit(header, turn, urgent=False)
        assert future is not None
        future.result()
    return sample


def _queries(sample: Sequence[str], count: int) -> list[str]:
    words = Counter(w.lower() for text in sample for w in re.findall(r"\w+", text))
    common = [w for w, _ in words.most_common(300)[50:]]
    rare = [w for w, n in words.items() if n <= 2 and len(w) > 4]
    rng = random.Random(5)
    return [" ".join(rng.choice(common) if rng.random() < 0.6 else rng.choice(rare)
                     for _ in range(rng.randint(1, 4))) for _ in range(count)]


def measure_recall(data_dir: Path, turns: int, others: int = 50, other_turns: int = 200,
                   searches: int = 300) -> tuple[float, float, dict[str, Any]]:
    """(p95 ms of a search over the big chat, index bytes per text turn, details)."""
    store = open_store(data_dir, 256)
    try:
        corpus = Corpus(1)
        started = time.perf_counter()
        sample = _write_chat(store, "bench:big", corpus, turns)
        for n in range(others):
            _write_chat(store, f"bench:other{n}", corpus, other_turns)
        written_s = time.perf_counter() - started
        indexer = RecallIndexer(data_dir, StoreView(store))
        started, cpu = time.perf_counter(), time.process_time()
        indexer.start()
        if not indexer.wait_idle(3600):
            raise RuntimeError("the recall indexer did not catch up with the bench's store")
        index_s, index_cpu_s = time.perf_counter() - started, time.process_time() - cpu
        wall: list[float] = []
        cpu_ms: list[float] = []
        hits = 0
        queries = _queries(sample, searches + 20)
        for n, query in enumerate(queries):
            began, began_cpu = time.perf_counter(), time.thread_time()
            result = indexer.search("bench:big", query)
            if n >= 20:  # the first ones warm the page caches up
                wall.append((time.perf_counter() - began) * 1000)
                cpu_ms.append((time.thread_time() - began_cpu) * 1000)
                hits += len(result.hits)
        indexer.close()
    finally:
        store.close()
    index = paths(data_dir)[0]
    size = index.stat().st_size + sum(p.stat().st_size for p in paths(data_dir)[1:] if p.exists())
    total = turns + others * other_turns
    wall.sort()
    cpu_ms.sort()
    p95 = wall[int(len(wall) * 0.95)]
    details = {"recall_turns_indexed": total, "recall_store_write_s": round(written_s, 1),
               "recall_index_turns_per_s": round(total / index_s), "recall_index_cpu_us_per_turn":
               round(index_cpu_s / total * 1e6, 1), "recall_p50_ms": round(wall[len(wall) // 2], 2),
               "recall_p95_cpu_ms": round(cpu_ms[int(len(cpu_ms) * 0.95)], 2),
               "recall_hits_per_search": round(hits / len(wall), 2), "recall_index_mb": round(size / 2**20, 1)}
    return p95, size / total, details


class _Switched:
    """The runtime's recall port (vigil/recall/live.py) as the sessions drive it, its feed switched per round."""

    def __init__(self, indexer: RecallIndexer) -> None:
        self.indexer = indexer
        self.on = False

    def feed(self, key: str, incarnation: int, generation: int, turn: Turn) -> None:
        if self.on:
            self.indexer.feed(key, incarnation, generation, turn)

    def forget(self, key: str, generation: int | None = None, timeout: float = 300.0) -> int:
        return self.indexer.forget(key, generation, timeout)

    def search(self, key: str, text: str, limit: int = 5) -> RecallResult:
        return self.indexer.search(key, text, limit)

    def start(self) -> None:
        return None  # started and closed by the bench itself

    def close(self, timeout: float = 10.0) -> None:
        return None


def _bench_turns(count: int) -> Iterator[tuple[str, int, int, Turn]]:
    from vigil.bench._rig import _turn

    for seq in range(count):
        yield f"bench:{seq % 1000}", 1, 1, _turn(seq // 1000, f"message {seq % 12}")


def measure_feed_overhead(data_dir: Path, chats: int, turns_each: int, samples: int) -> tuple[float, dict[str, Any]]:
    """(indexing's share of a turn's CPU in percent, details) on the bench's own turns."""
    from vigil.bench._rig import BenchOutbox, ZeroLatencyBenchModel, _bench_settings, _warm_up
    from vigil.bench._throughput import closed_loop_round
    from vigil.runtime import Runtime

    settings = _bench_settings(data_dir, max_live_sessions=max(1000, chats))
    store = open_store(settings.data_dir, settings.store_map_mb)
    indexer = RecallIndexer(settings.data_dir, StoreView(store))
    indexer.start()
    feeding = _Switched(indexer)  # fed by Session.commit, as in the service
    outbox = BenchOutbox()
    runtime = Runtime(settings, {"bench": outbox}, ZeroLatencyBenchModel(), store=store, recall=feeding)
    runtime.start()
    off: list[float] = []
    on: list[float] = []
    lag: list[float] = []
    try:
        _warm_up(runtime, outbox, chats)
        closed_loop_round(runtime, outbox, chats, turns_each)
        for index in range(2 * samples + 1):  # off, on, off, ..., on, off
            feeding.on = index % 2 == 1
            (on if feeding.on else off).append(closed_loop_round(runtime, outbox, chats, turns_each)[1])
            if feeding.on:
                began = time.perf_counter()
                if not indexer.wait_idle(60):
                    raise RuntimeError("the recall indexer fell behind the bench's turns")
                lag.append((time.perf_counter() - began) * 1000)
        feeding.on = False
        overflows, applied, batch = indexer.overflows, indexer.applied, indexer.applied / indexer.transactions
    finally:
        runtime.shutdown(grace_s=1)
        indexer.close()
    # The indexer's CPU per turn in transactions of the size it took them in during the rounds.
    feed_us, index_us = _micro_us_per_turn(data_dir.with_name(data_dir.name + "-micro"), batch=round(batch))
    lost = [(1 - rate * 2 / (off[i] + off[i + 1])) * 100 for i, rate in enumerate(on)]
    cpu_us_per_turn = 1e6 / statistics.median(off)
    details = {"recall_feed_us_per_turn": round(feed_us, 2), "recall_index_us_per_bench_turn": round(index_us, 1),
               "recall_feed_overhead_pct_ab": round(statistics.median(lost), 2),
               "recall_feed_overhead_pct_samples": [round(p, 2) for p in lost],
               "recall_caught_up_ms_after_round": round(max(lag), 1), "recall_fed_turns": applied,
               "recall_turns_per_transaction": round(batch),
               "recall_queue_overflows": overflows}
    return (feed_us + index_us) / cpu_us_per_turn * 100, details


def _micro_us_per_turn(data_dir: Path, batch: int, turns: int = 20_000) -> tuple[float, float]:
    """(µs of `feed` on the committing thread, µs of the indexer's work) per bench turn, CPU time."""
    store = open_store(data_dir)
    try:
        index = RecallIndex(data_dir, StoreView(store))
        fed = list(_bench_turns(turns + 1000))
        index.apply(fed[:1000])  # every chat known: what is measured is a running index, not a new one
        fed = fed[1000:]
        started = time.thread_time()
        for at in range(0, turns, batch):
            index.apply(fed[at:at + batch])
        index_us = (time.thread_time() - started) / turns * 1e6
        index.close()
        indexer = RecallIndexer(data_dir, StoreView(store), queue_size=turns + 1)  # not started: puts only
        started = time.thread_time()
        for key, incarnation, generation, turn in fed:
            indexer.feed(key, incarnation, generation, turn)
        feed_us = (time.thread_time() - started) / turns * 1e6
        indexer.close()
    finally:
        store.close()
    return feed_us, index_us
