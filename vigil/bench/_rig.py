"""The bench's rig: a zero-latency model, a counting outbox, the runtime over a fresh store, and the turns.

Shared by every measurement module so that each measures the same runtime and the same records: the
model answers at once (every millisecond measured is vigil's) and the turns are built one way only.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from vigil.actors.core.protocol import Sender, UserText
from vigil.cancel import CancelToken
from vigil.config.settings import Settings, load_settings
from vigil.ports import FileDelivery, ModelRequest, ModelResponse, OutgoingFile, Reply, TokenUsage, UsageSink
from vigil.records.schema import Input, Message, SessionHeader, Target, Turn
from vigil.store.store import LmdbStore

REPLY = "Noted. Here is a short answer of about the length a chat reply has, give or take a few words."
# The cap on model calls in flight protects the real API, whose latency needs calls to overlap (the default
# is 16). A zero-latency model gains nothing from overlap and every extra concurrent call is one more
# thread contending for the GIL, so the bench runs with 8; it says so in its output.
BENCH_MAX_CONCURRENT_QUERIES = 8


class ZeroLatencyBenchModel:
    """A ModelPort that answers instantly (bench only: it measures vigil, not the model)."""

    def stream(self, request: ModelRequest, on_text: Callable[[str], None], cancel: CancelToken,
               on_usage: UsageSink | None = None, on_server_tool: object = None,
               on_thinking: object = None) -> ModelResponse:
        on_text(REPLY)
        return ModelResponse(content=({"type": "text", "text": REPLY},), stop_reason="end_turn",
                             usage=TokenUsage(input_tokens=120, output_tokens=25), model=request.model)


class _BenchStream:
    def __init__(self, outbox: BenchOutbox, key: str) -> None:
        self._outbox = outbox
        self._key = key

    def update(self, text: str, durable: bool = True) -> None:
        return None

    def needs_checkpoint(self, text: str) -> bool:
        return True

    def progress(self, line: str) -> None:
        return None

    def finish(self, text: str, note: str = "", thinking: str = "") -> None:
        self._outbox.delivered(self._key)


class BenchOutbox:
    """Counts deliveries and tells the bench driver when a chat's reply arrived."""

    def __init__(self) -> None:
        self.on_delivered: Callable[[str], None] = lambda key: None
        self.count = 0
        self._lock = threading.Lock()

    def update_interval(self, target: Target) -> float:
        return 1.0

    def send(self, key: str, target: Target, reply: Reply, ref: int | None = None) -> None:
        return None

    def stream(self, key: str, target: Target, ref: int | None = None) -> _BenchStream:
        return _BenchStream(self, key)

    def typing(self, target: Target) -> None:
        return None

    def send_file(self, key: str, target: Target, file: OutgoingFile, cancel: CancelToken) -> FileDelivery:
        return FileDelivery(delivered=True)

    def delivered(self, key: str) -> None:
        with self._lock:
            self.count += 1
        self.on_delivered(key)


def _bench_settings(data_dir: Path, **overrides: Any) -> Settings:
    work = data_dir.with_name(f"{data_dir.name}-work")  # beside the store: vigil refuses a store inside the root
    for path in (data_dir, work):
        path.mkdir(parents=True, exist_ok=True)
    base = load_settings({"VIGIL_DATA_DIR": str(data_dir), "VIGIL_WORKDIR_ROOT": str(work),
                          "VIGIL_LOG_LEVEL": "warning", "HOME": str(data_dir)})
    return msgspec.structs.replace(base, **{"max_concurrent_queries": BENCH_MAX_CONCURRENT_QUERIES, **overrides})


def _runtime(data_dir: Path, **overrides: Any) -> tuple[Any, BenchOutbox]:
    from vigil.runtime import Runtime

    outbox = BenchOutbox()
    settings = _bench_settings(data_dir, **overrides)
    runtime = Runtime(settings, {"bench": outbox}, ZeroLatencyBenchModel())
    runtime.start()
    return runtime, outbox


def _message(key: str, chat: int, text: str) -> UserText:
    return UserText(key=key, target=Target(channel="bench", chat_id=chat), sender=Sender(user_id=chat, name="b"),
                    text=text, at=time.time(), chat_type="private")


def _warm_up(runtime: Any, outbox: BenchOutbox, chats: int) -> None:
    """One turn per chat, so every actor is live before measuring (spawning is the 100k phase's part)."""
    warm = threading.Semaphore(0)
    outbox.on_delivered = lambda key: warm.release()
    for i in range(chats):
        runtime.submit(_message(f"bench:{i}", i, "hello"))
    for _ in range(chats):
        warm.acquire()


def each_once(runtime: Any, outbox: BenchOutbox, messages: Iterable[Any], in_flight: int) -> int:
    """Submit each message (one per chat), `in_flight` at most awaiting their replies; returns once all are in."""
    window = threading.Semaphore(in_flight)
    finished = threading.Semaphore(0)

    def delivered(key: str) -> None:
        window.release()
        finished.release()

    outbox.on_delivered = delivered
    sent = 0
    for message in messages:
        window.acquire()
        runtime.submit(message)
        sent += 1
    for _ in range(sent):
        if not finished.acquire(timeout=300):
            raise RuntimeError("a chat's turn did not finish")
    return sent


class OpenLoop:
    """Turns arriving at `rate` per second (Poisson), each in a chat not waiting for a reply; latencies in ms.

    `chats` maps each chat's key to the message it sends. The outbox's delivery callback is this loop's.
    """

    def __init__(self, runtime: Any, outbox: BenchOutbox, chats: dict[str, Callable[[], Any]], rate: float,
                 seed: int) -> None:
        self._runtime = runtime
        self._chats = chats
        self._rate = rate
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._sent: dict[str, float] = {}
        self._latencies: list[float] = []
        self._idle = list(chats)
        outbox.on_delivered = self._delivered

    def _delivered(self, key: str) -> None:
        now = time.perf_counter()
        with self._lock:
            started = self._sent.pop(key, None)
            if started is not None:
                self._latencies.append((now - started) * 1000)
                self._idle.append(key)

    def run(self, done: Callable[[], bool]) -> list[float]:
        """Send until `done()`, then wait (10 s at most) for the replies; their latencies."""
        with self._lock:
            self._latencies.clear()
        next_at = time.perf_counter()
        while not done():
            next_at += self._rng.expovariate(self._rate)
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            with self._lock:
                if not self._idle:
                    continue
                key = self._idle.pop(self._rng.randrange(len(self._idle)))
                self._sent[key] = time.perf_counter()
            self._runtime.submit(self._chats[key]())
        end = time.perf_counter() + 10
        while self._sent and time.perf_counter() < end:
            time.sleep(0.01)
        with self._lock:
            return list(self._latencies)


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


def _turn(seq: int, text: str) -> Turn:
    now = time.time()
    return Turn(seq=seq, status="done", started_at=now, ended_at=now,
                inputs=(Input(text=text, at=now, user_id=1),),
                messages=(Message(role="assistant", content=({"type": "text", "text": REPLY},)),), reply=REPLY)


def _session(store: LmdbStore, key: str, history: int) -> SessionHeader:
    header = SessionHeader(key=key, incarnation=1, created_at=time.time(), target=Target(channel="bench"),
                           cwd="/", model="claude-sonnet-5-5")
    store.commit(header, create=True).result()
    batch = 500
    for start in range(0, history, batch):
        futures = []
        for seq in range(start, min(history, start + batch)):
            header = msgspec.structs.replace(header, next_seq=seq + 1)
            futures.append(store.commit(header, _turn(seq, f"question {seq} " * 20)))
        futures[-1].result()
    return header
