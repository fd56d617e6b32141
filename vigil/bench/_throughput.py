"""The runtime measurements: closed-loop throughput, open-loop p99, memory after 100k chats, cold start.

Each drives the real Supervisor -> SessionActor -> store -> outbox path in-process (the rig's runtime);
cold start times a fresh process (`python -m vigil.bench --cold-start-probe`) over the 100k store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from vigil.bench._rig import OpenLoop, _message, _runtime, _warm_up, each_once, percentile


def closed_loop_round(runtime: Any, outbox: Any, chats: int, turns_each: int) -> tuple[float, float]:
    """One closed-loop round (each chat sends its next message when its reply arrived): turns per second of
    the wall clock, and per second of the process's CPU time."""
    remaining = {f"bench:{i}": turns_each for i in range(chats)}
    done = threading.Event()
    lock = threading.Lock()
    outstanding = [chats]

    def next_turn(key: str) -> None:
        with lock:
            remaining[key] -= 1
            left = remaining[key]
            if left == 0:
                outstanding[0] -= 1
                if outstanding[0] == 0:
                    done.set()
                return
        runtime.submit(_message(key, int(key.split(":")[1]), f"message {left}"))

    outbox.on_delivered = next_turn
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(chats):
        runtime.submit(_message(f"bench:{i}", i, "go"))
    done.wait()
    turns = chats * turns_each
    return turns / (time.perf_counter() - started), turns / (time.process_time() - cpu)


def measure_throughput(data_dir: Path, chats: int, turns_each: int, rounds: int = 3) -> list[float]:
    """Closed loop: each chat sends its next message when its previous reply is delivered; turns/s per round."""
    runtime, outbox = _runtime(data_dir, max_live_sessions=max(1000, chats))
    _warm_up(runtime, outbox, chats)
    rates = []
    for _ in range(rounds):
        rates.append(closed_loop_round(runtime, outbox, chats, turns_each)[0])
    runtime.shutdown(grace_s=1)
    return rates


def measure_latency(data_dir: Path, chats: int, rate: float, seconds: float, rounds: int = 3) -> list[float]:
    """Open loop at `rate` turns/s spread over idle chats; p99 of submit-to-delivered per round, in ms."""
    runtime, outbox = _runtime(data_dir, max_live_sessions=max(1000, chats))
    _warm_up(runtime, outbox, chats)
    loop = OpenLoop(runtime, outbox, {f"bench:{i}": partial(_message, f"bench:{i}", i, "ping") for i in range(chats)},
                    rate, seed=7)
    p99s = []
    for _ in range(rounds):
        deadline = time.perf_counter() + seconds
        p99s.append(percentile(loop.run(partial(_past, deadline)), 0.99))
    runtime.shutdown(grace_s=1)
    return p99s


def _past(deadline: float) -> bool:
    return time.perf_counter() >= deadline


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_many_chats(data_dir: Path, chats: int, live: int, in_flight: int = 2000) -> float:
    """Every one of `chats` distinct chats has a turn; returns RSS in MiB afterwards."""
    runtime, outbox = _runtime(data_dir, max_live_sessions=live)
    each_once(runtime, outbox, (_message(f"bench:{i}", i, "hello") for i in range(chats)), in_flight)
    rss = _rss_mb()
    runtime.shutdown(grace_s=1)
    return rss


def measure_cold_start(data_dir: Path) -> float:
    """Seconds from exec of a fresh `vigil` process to its runtime being ready over this store."""
    env = dict(os.environ, VIGIL_DATA_DIR=str(data_dir), VIGIL_WORKDIR_ROOT=str(data_dir), HOME=str(data_dir),
               VIGIL_LOG_LEVEL="warning")
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "vigil.bench", "--cold-start-probe"], env=env,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    elapsed = time.perf_counter() - started
    process.wait(timeout=30)
    if not line.startswith("ready"):
        raise RuntimeError(f"cold-start probe failed: {line!r}")
    return elapsed


def _cold_start_probe() -> int:
    """Run by measure_cold_start in a fresh process: open the store, start the runtime, say ready."""
    from vigil.logs import configure_logging

    configure_logging("warning", "json")
    data_dir = Path(os.environ["VIGIL_DATA_DIR"])
    runtime, _ = _runtime(data_dir)
    print(f"ready {runtime.store.session_count()}", flush=True)
    runtime.shutdown(grace_s=0)
    return 0
