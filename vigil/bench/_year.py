"""`vigil bench --year`: what a store of a busy year costs: its size, start-up, memory, listings, retention, backup.

The store is built in a temporary directory (vigil/bench/_year_store.py: about 2,000 chats, a million turns,
20,000 conversations left behind, 20,000 messages with a file). Then, through the code paths a user's
command takes:

- year_bytes_per_turn: data.mdb's size over the turns it holds (everything else included: headers,
  records, indexes, usage rows), as the service left it;
- year_cold_start_s: a fresh process, from exec to its runtime being ready over that store;
- year_backup_s / year_restore_s: `vigil backup PATH` and `vigil restore PATH` as processes of their own
  (the size of the backup is reported beside);
- in one more process, the service's runtime (the zero-latency model, vigil/bench/_rig.py):
  year_rss_mb, its own resident memory (anonymous and shared) once every chat had a turn (at most
  VIGIL_MAX_LIVE_SESSIONS live). Not the store's pages it read: LMDB maps the store, and the kernel counts
  every page of it a process touched in its RSS (clean page cache, shared, dropped under pressure); a
  retention pass touches most of a year's store, so that figure follows the store's size, not vigil's
  memory. VmRSS and that file part are in the details (vmrss_mb, rssfile_mb);
  year_sessions_p95_ms, `/sessions` as an admin sees it (every session); year_resume_p95_ms, `/resume`
  (listing a chat's earlier conversations) from the command's submission to its answer, in the chats that
  have some; and a retention pass (`VIGIL_RETENTION` of 240 days: the chats and conversations of the
  year's first four months go) while turns arrive in other chats at a steady rate:
  its time (retention_s in the details), and year_retention_added_p99_ms, the p99 of those turns' submit-to-reply
  latency over the same load's p99 without it (the lower of just before and just after the pass: the
  pass's own cost to a user; the p99s themselves are in the details).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from vigil.bench._rig import BenchOutbox, OpenLoop, ZeroLatencyBenchModel, _bench_settings, each_once, percentile
from vigil.bench._throughput import _rss_mb, measure_cold_start
from vigil.bench._year_store import DAY, YearShape, build
from vigil.ports import Reply
from vigil.records.schema import SessionHeader, Target
from vigil.store.store import LmdbStore

YEAR_GOALS: dict[str, tuple[str, float] | None] = {
    "year_bytes_per_turn": None,  # reported
    "year_cold_start_s": ("<=", 2.0),
    "year_rss_mb": ("<=", 400.0),
    "year_resume_p95_ms": ("<=", 20.0),
    "year_sessions_p95_ms": ("<=", 20.0),
    "year_retention_added_p99_ms": ("<=", 10.0),
    "year_backup_s": ("<=", 60.0),
    "year_restore_s": ("<=", 60.0),
}
RETENTION_DAYS = 240.0
QUICK = YearShape(sessions=40, turns=6000, conversations=300, media=120, media_median_bytes=4000)


def run_year(as_json: bool = False, quick: bool = False) -> int:
    shape = QUICK if quick else YearShape()
    root = Path(tempfile.mkdtemp(prefix="vigil-year-"))
    results: dict[str, float] = {}
    details: dict[str, Any] = {"sessions": shape.sessions, "turns": shape.turns,
                               "conversations": shape.conversations, "media_refs": shape.media}
    started = time.perf_counter()
    try:
        data = root / "data"
        store = LmdbStore(data)
        built = build(store, shape, progress=lambda line: _say(as_json, f"building: {line}"))
        store.close()
        details.update(build_s=round(built.seconds, 1), media_files=built.media_files,
                       media_mb=round(built.media_bytes / 1e6, 1), past_conversations=built.conversations)
        size = (data / "data.mdb").stat().st_size
        details["store_mb"] = round(size / 1e6, 1)
        results["year_bytes_per_turn"] = size / shape.turns
        _say(as_json, "cold start")
        results["year_cold_start_s"] = measure_cold_start(data)
        _say(as_json, "backup")
        env = _cli_env(data)
        results["year_backup_s"] = _timed(["backup", str(root / "backup")], env)
        details["backup_mb"] = round(sum(p.stat().st_size for p in (root / "backup").rglob("*") if p.is_file()) / 1e6,
                                     1)
        _say(as_json, "restore")
        results["year_restore_s"] = _timed(["restore", str(root / "backup")], _cli_env(root / "restored"))
        shutil.rmtree(root / "restored", ignore_errors=True)
        shutil.rmtree(root / "backup", ignore_errors=True)
        _say(as_json, "the service: every chat, /sessions, /resume, a retention pass")
        probe = _probe(data, RETENTION_DAYS, 1.0 if quick else 8.0)
        results["year_rss_mb"] = probe["rssanon_mb"] + probe["rssshmem_mb"]
        probe["vmrss_mb"] = round(probe.pop("rss_mb"), 1)
        results["year_sessions_p95_ms"] = probe.pop("sessions_p95_ms")
        results["year_resume_p95_ms"] = probe.pop("resume_p95_ms")
        added = probe["retention_turn_p99_ms"] - probe["baseline_turn_p99_ms"]
        results["year_retention_added_p99_ms"] = max(0.0, added)
        details.update(probe)
        details["bench_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _report(results, details, as_json)
    return 0


def _say(quiet: bool, line: str) -> None:
    if not quiet:
        print(f"  … {line}", file=sys.stderr, flush=True)


def _cli_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIL_", "TELEGRAM_"))}
    work = data.with_name(f"{data.name}-work")
    work.mkdir(parents=True, exist_ok=True)
    env.update(VIGIL_DATA_DIR=str(data), VIGIL_WORKDIR_ROOT=str(work), VIGIL_LOG_LEVEL="warning")
    return env


def _timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vigil", *args], env=env, capture_output=True, text=True,
                          timeout=900)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"vigil {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return took


def _probe(data: Path, retention_days: float, baseline_s: float) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "vigil.bench", "--year-probe", str(data), str(retention_days),
                           str(baseline_s)], capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the year probe failed: {done.stderr.strip()[-1500:]}")
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


def _report(results: dict[str, float], details: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps({**{k: round(v, 3) for k, v in results.items()}, "details": details}))
        return
    print(f"{'metric':<32} {'value':>12}  goal")
    for name, value in results.items():
        goal = YEAR_GOALS[name]
        if goal is None:
            print(f"{name:<32} {value:>12.3f}  (reported)")
            continue
        op, target = goal
        met = value >= target if op == ">=" else value <= target
        print(f"{name:<32} {value:>12.3f}  {op} {target:g} {'ok' if met else 'MISSED'}")
    for name, value in details.items():
        print(f"  {name}: {value}")


# ------------------------------------------------------------------------------------------ the probe process


class _ReplyOutbox(BenchOutbox):
    """The bench outbox, also telling who waits for a command's answer (sent, not streamed)."""

    def __init__(self) -> None:
        super().__init__()
        self.on_reply: Any = lambda key, text: None

    def send(self, key: str, target: Target, reply: Reply, ref: int | None = None) -> None:
        self.on_reply(key, reply.text)


def year_probe(data: Path, retention_days: float, baseline_s: float) -> int:
    """Run by `_probe` in a fresh process: the runtime over the year's store, measured; one JSON line."""
    from vigil.actors.core.protocol import Sender, SessionCommand
    from vigil.control.caller import Caller
    from vigil.control.dispatch import Control
    from vigil.logs import configure_logging
    from vigil.ops.retention import Retention
    from vigil.runtime import Runtime

    configure_logging("warning", "json")
    outbox = _ReplyOutbox()
    # Room to grow, as an operator of a store this size gives it (VIGIL_STORE_MAP_MB): opened at exactly its
    # file's size, the store's first growth would checkpoint inline (a sync of it), which issue 22.1 removes.
    room = max(64, 2 * (data / "data.mdb").stat().st_size // 2**20)
    runtime = Runtime(_bench_settings(data, store_map_mb=room), {"bench": outbox}, ZeroLatencyBenchModel())
    runtime.start()
    out: dict[str, Any] = {}
    try:
        headers = runtime.store.headers()
        control = Control(runtime)
        admin = Caller(key="bench:0", target=Target(channel="bench", chat_id=0), sender=Sender(user_id=1, name="a"),
                       admin=True, chat_type="private")
        out["sessions_p95_ms"] = percentile([_ms(lambda: control.sessions(admin)) for _ in range(100)], 0.95)
        users = [h for h in headers if h.chat_type == "private"][:100]
        out["sessions_user_p95_ms"] = percentile([_ms(lambda h=h: control.sessions(
            Caller(key=h.key, target=h.target, sender=Sender(user_id=h.target.chat_id), admin=False,
                   chat_type="private"))) for h in users], 0.95)

        rng = random.Random(7)
        with_past = [h for h in headers if h.generation > 1]
        with_past.sort(key=lambda h: -h.generation)
        chosen = with_past[:50] + rng.sample(with_past[50:], min(250, max(0, len(with_past) - 50)))
        answered = threading.Semaphore(0)
        waiting: dict[str, float] = {}
        latencies: list[float] = []

        def replied(key: str, text: str) -> None:
            at = waiting.pop(key, None)
            if at is not None and "conversation" in text:
                latencies.append(time.perf_counter() - at)
                answered.release()

        outbox.on_reply = replied
        for header in chosen:
            waiting[header.key] = time.perf_counter()
            runtime.submit(SessionCommand(key=header.key, target=header.target, name="resume",
                                          chat_type=header.chat_type, sender=_said(header, "").sender))
            if not answered.acquire(timeout=30):
                raise RuntimeError(f"/resume in {header.key} got no answer")
        out["resume_p95_ms"] = percentile([s * 1000 for s in latencies], 0.95)
        out["resume_chats"] = len(latencies)
        out["resume_most_conversations"] = chosen[0].generation - 1 if chosen else 0

        # Retention before every chat is touched: a turn in each would make every chat active again.
        out.update(_retention(runtime, outbox, control, headers, retention_days * DAY, Retention, baseline_s))
        headers = runtime.store.headers()
        started = time.perf_counter()
        each_once(runtime, outbox, (_said(h, "hello again") for h in headers), 100)
        out["touch_all_s"] = round(time.perf_counter() - started, 1)
        out["rss_mb"] = _rss_mb()
        out.update(_memory())
        out["live_sessions"] = runtime.registry.live_count()
    finally:
        runtime.shutdown(grace_s=1)
    print(json.dumps(out), flush=True)
    return 0


def _said(header: SessionHeader, text: str) -> Any:
    """A message in this chat from one of its people, as the Telegram adapter hands it over."""
    from vigil.actors.core.protocol import Sender, UserText

    return UserText(key=header.key, target=header.target, text=text, at=time.time(), chat_type=header.chat_type,
                    sender=Sender(user_id=header.participants[0] if header.participants else 1, name="b"))


def _memory() -> dict[str, float]:
    """Resident memory by kind (MiB): the process's own (anonymous) and the store's pages mapped in (file)."""
    out: dict[str, float] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile", "RssShmem"):
                out[f"{name.lower()}_mb"] = round(int(value.split()[0]) / 1024, 1)
    return out


def _ms(call: Any) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _retention(runtime: Any, outbox: BenchOutbox, control: Any, headers: list[SessionHeader], retention_s: float,
               retention_class: Any, baseline_s: float, rate: float = 100.0) -> dict[str, Any]:
    """A retention pass while turns arrive at `rate` per second in chats it keeps; the same load before and after.

    Its cost to a user is the p99 while it runs over the p99 without it: the lower of before and after (the
    pass is bracketed, as a shared machine's load drifts; the lower makes the cost the larger)."""
    now = time.time()
    active = [h for h in headers if max(h.last_activity, h.last_turn_at) > now - 30 * DAY]
    loop = OpenLoop(runtime, outbox, {h.key: partial(_said, h, "and one more thing") for h in active}, rate, seed=11)
    before = loop.run(partial(_past, time.perf_counter() + baseline_s))
    retention = retention_class(control.cleanups, retention_s)
    passed: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        began = time.perf_counter()
        sessions, conversations = retention.run_once()
        passed.update(retention_s=round(time.perf_counter() - began, 2), retention_sessions=sessions,
                      retention_conversations=conversations)
        finished.set()

    thread = threading.Thread(target=run, name="bench-retention")
    thread.start()
    during = loop.run(finished.is_set)
    thread.join()
    after = loop.run(partial(_past, time.perf_counter() + baseline_s))
    baseline = min(percentile(before, 0.99), percentile(after, 0.99))
    return {**passed, "baseline_turn_p99_ms": round(baseline, 2),
            "baseline_turn_p99_before_after_ms": [round(percentile(x, 0.99), 2) for x in (before, after)],
            "retention_turn_p99_ms": round(percentile(during, 0.99), 2),
            "retention_turn_median_ms": round(statistics.median(during), 2) if during else float("nan"),
            "retention_turns_served": len(during)}


def _past(deadline: float) -> bool:
    return time.perf_counter() >= deadline
