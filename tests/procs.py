"""Running `vigil` as a real subprocess in tests, and reading its output without sleeping."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO


def vigil_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a vigil process: its own HOME, data dir and work root."""
    home = tmp / "home"
    work = tmp / "work"
    data = tmp / "data"
    for path in (home, work):
        path.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VIGIL_", "ANTHROPIC_", "TELEGRAM_")) and k != "NOTIFY_SOCKET"}
    # Tools run unasked unless a test asks for approvals (VIGIL_TOOL_MODE=ask, test_approve_*): the tests
    # written before permission modes drive tools as vigil then ran them.
    env.update(HOME=str(home), VIGIL_DATA_DIR=str(data), VIGIL_WORKDIR_ROOT=str(work),
               VIGIL_LOG_FORMAT="json", PYTHONUNBUFFERED="1", VIGIL_TOOL_MODE="auto")
    env.update(extra)
    return env


def run_vigil(args: list[str], env: dict[str, str], stdin: str = "", timeout: float = 60
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigil", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=timeout)


class LineReader:
    """Collects a stream's lines on a thread; tests wait for a line (or text) to appear."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closed = False
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 20.0, what: str = "") -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                text = "".join(self.lines)
                if predicate(text):
                    return text
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise AssertionError(f"timed out waiting for {what or 'output'}; got:\n{text[-2000:]}")
                self._cond.wait(remaining)

    def wait_closed(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("stream did not close")
                self._cond.wait(remaining)
            return "".join(self.lines)


class VigilProcess:
    """A long-running `vigil ...` with line readers on stdout and stderr."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "vigil", *args], env=env, text=True, bufsize=1,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.process.stdout is not None and self.process.stderr is not None
        self.out = LineReader(self.process.stdout)
        self.err = LineReader(self.process.stderr)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout=timeout)

    def __enter__(self) -> VigilProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def processes_with(marker: str) -> list[int]:
    """Host pids of running processes (zombies excluded) whose command line contains `marker`.

    Sandboxed commands report pids of their own PID namespace, which mean
    nothing on the host: tests find what a command left behind by a marker instead.
    """
    needle = marker.encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if needle in cmdline and stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X"):
            found.append(int(name))
    return found
