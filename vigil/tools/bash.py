"""Anthropic's bash tool (`bash_20250124`): one shell command per call, opt-in, always sandboxed.

Every command runs under bubblewrap (see `vigil.tools.sandbox` for what the
sandbox hides and what it lets through): a command never sees the service's
environment, its store, its home or another chat's directory, and only the
chat's workspace is writable. There is no unsandboxed path: a `BashRunner`
cannot be built without a `Sandbox` that was proven to work. This module
supervises the sandboxed process:

- each command runs as `bash --noprofile --norc -c COMMAND` inside the
  sandbox, in the chat's working directory, with stdin from /dev/null;
- bwrap runs in its own session and process group; on timeout or
  cancellation the group gets SIGTERM and, after a short grace, SIGKILL.
  Killing bwrap kills the sandbox's init (`--die-with-parent`), and the
  kernel then kills every process of the sandbox's PID namespace, so
  background children and fork bombs go with it;
- when the command itself exits, the in-sandbox supervisor gives background
  processes a moment to finish writing, then the sandbox ends and they are
  stopped: nothing could ever talk to them again (reported to the model);
- stdout and stderr are combined and capped (head and tail kept, the cut
  reported), and a non-zero exit status is reported.

Commands are independent processes: there is no persistent shell, so `cd`,
shell variables and background jobs do not carry over from one command to the
next. `{"restart": true}` is accepted and says so.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from vigil.tools.outcome import ToolOutcome
from vigil.tools.sandbox import Sandbox, WorkspaceRefused, detect

__all__ = ["ALWAYS_SCRUBBED", "TOOL_NAME", "TOOL_TYPE", "BashRunner", "is_secret_name", "scrubbed_env"]

TOOL_TYPE = "bash_20250124"
TOOL_NAME = "bash"

ALWAYS_SCRUBBED = frozenset({"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "TELEGRAM_BOT_TOKEN"})
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD")

RESTART_MESSAGE = (
    "bash session restarted. Note: every command runs in a fresh bash process started in the "
    "chat's working directory, so state such as `cd`, shell variables and background jobs does "
    "not persist between commands."
)

# How often the run loop looks at the cancel event and the clock.
_POLL_S = 0.05
# Between SIGTERM and SIGKILL: long enough for a test runner or compiler to
# clean up, short enough that /stop feels immediate.
_KILL_GRACE_S = 1.0
# After the command itself exits, how long background processes that still
# hold its output pipe get to finish writing before they are stopped.
_LINGER_S = 0.5
# Reads per loop turn, so that a command flooding output cannot starve the
# cancel and timeout checks.
_READS_PER_TURN = 16


def is_secret_name(name: str, extra: Iterable[str] = ()) -> bool:
    """Whether an environment variable must not reach the command."""
    upper = name.upper()
    if upper in ALWAYS_SCRUBBED or name in set(extra):
        return True
    return any(word in upper for word in _SECRET_WORDS) or upper.endswith("_KEY")


def scrubbed_env(base: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """`base` without credentials (see `is_secret_name`)."""
    extra_names = frozenset(extra)
    return {k: v for k, v in base.items() if not is_secret_name(k, extra_names)}


class _CappedOutput:
    """Keeps the first and last bytes of a stream, and counts what fell between."""

    def __init__(self, cap: int) -> None:
        self._head_cap = cap // 2
        self._tail_cap = cap - self._head_cap
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > self._tail_cap:
                del self._tail[: len(self._tail) - self._tail_cap]

    def render(self) -> str:
        omitted = self.total - len(self._head) - len(self._tail)
        head = self._head.decode("utf-8", errors="replace")
        tail = self._tail.decode("utf-8", errors="replace")
        if omitted <= 0:
            return head + tail
        return (
            f"{head}\n\n[... {omitted} bytes of output omitted: {self.total} bytes in all, "
            f"only the first and last {len(self._head) + len(self._tail)} are shown ...]\n\n{tail}"
        )


def _group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is still running (zombies don't count).

    `killpg(pgid, 0)` alone is not enough: orphaned members that died linger
    as zombies until init reaps them, and in containers init may never do so.
    """
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue  # exited while we looked
        # The command name is in parentheses and may itself contain spaces
        # and parentheses; the fields after the last ")" are fixed.
        fields = raw[raw.rfind(b")") + 2 :].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # Already gone, or only zombies are left: either way nothing to signal.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def _children(pid: int) -> list[int]:
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    return [p for p in pids if _parent_of(p) == pid]


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie has exited: it only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group, then SIGKILL whatever is left after the grace.

    The group is bwrap; its child is the sandbox's init, whose death makes the
    kernel kill every process in the sandbox. Wait for that init too, so that
    when this returns nothing of the command runs any more.
    """
    pgid = proc.pid  # start_new_session made bwrap the leader of its own group
    inits = _children(proc.pid) if proc.poll() is None else []
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + _KILL_GRACE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(pgid):
            break
        time.sleep(0.02)
    else:
        _signal_group(pgid, signal.SIGKILL)
    # If something is still not gone it is stuck in the kernel (D state): nothing
    # more we can do, and the chat must not hang on it.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    # bwrap's death sent its init SIGKILL (--die-with-parent), and init's death takes the whole PID
    # namespace with it. No signal to the init's pid here: once bwrap is gone it could be reused.
    gone_by = time.monotonic() + 5
    while any(_running(init) for init in inits) and time.monotonic() < gone_by:
        time.sleep(0.02)


def _drain(fd: int, out: _CappedOutput) -> bool:
    """Read what is available without blocking; True once the pipe reached EOF."""
    for _ in range(_READS_PER_TURN):
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        out.add(chunk)
    return False


def _read_available(fd: int) -> bytes:
    """What the pipe holds now, without waiting for writers that may still hold it."""
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    return b"".join(chunks)


class BashRunner:
    """Runs `bash` tool calls in the sandbox: one fresh bwrap process group per command."""

    def __init__(
        self,
        timeout_s: float = 120,
        output_cap: int = 16000,
        scrub_env: Iterable[str] = (),
        sandbox: Sandbox | None = None,
        read_only: Callable[[], Sequence[tuple[str, str]]] = lambda: (),
    ) -> None:
        """`sandbox` defaults to `detect()` (which raises `SandboxUnavailable`): never unsandboxed.
        `read_only` gives, at each command, the directories bound read-only beside the workspace (the Agent
        Skills' folders: they may change while vigil runs).

        `scrub_env` is still accepted but has nothing left to do: the sandbox's
        environment is built from nothing, so no variable of the service reaches a command.
        """
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if output_cap < 100:
            raise ValueError("output_cap must be at least 100")
        self._timeout_s = timeout_s
        self._cap = output_cap
        self._scrub = frozenset(scrub_env)
        self.sandbox = sandbox if sandbox is not None else detect()
        self._read_only = read_only

    def spec(self) -> dict[str, object]:
        """The tool definition to offer in the Messages API request."""
        return {"type": TOOL_TYPE, "name": TOOL_NAME}

    def run(self, cwd: Path, tool_input: dict[str, object], cancel: threading.Event,
            workspace: Path | None = None) -> ToolOutcome:
        """Run one command (blocking); never raises for anything the model sent.

        `workspace` is the chat's directory tree (holding `cwd`): the only
        writable place. Without one, `cwd` itself is.
        """
        if not isinstance(tool_input, dict):
            return ToolOutcome("Error: the tool input must be an object", is_error=True)
        if tool_input.get("restart") is True:
            return ToolOutcome(RESTART_MESSAGE)
        command = tool_input.get("command")
        if command is None:
            return ToolOutcome("Error: missing required field `command` (or `restart: true`)", is_error=True)
        if not isinstance(command, str):
            return ToolOutcome(
                f"Error: field `command` must be a string, got {type(command).__name__}", is_error=True
            )
        if not command.strip():
            return ToolOutcome("Error: field `command` must not be empty", is_error=True)
        if "\x00" in command:
            return ToolOutcome("Error: field `command` contains a NUL byte", is_error=True)
        if cancel.is_set():
            return ToolOutcome("Command not run: the turn was cancelled.", is_error=True)
        if not os.path.isdir(cwd):
            return ToolOutcome(f"Error: the working directory {cwd} does not exist", is_error=True)
        status_read, status_write = os.pipe()
        try:
            argv = self.sandbox.argv(workspace if workspace is not None else cwd, cwd, command, status_write,
                                     pause_fd=status_read, read_only=self._read_only())
            proc = subprocess.Popen(
                argv,
                cwd="/",
                env=self.sandbox.process_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=(status_write, status_read),
            )
        except WorkspaceRefused as exc:
            os.close(status_read)
            return ToolOutcome(f"Error: {exc}", is_error=True)
        except (OSError, ValueError) as exc:
            os.close(status_read)
            return ToolOutcome(f"Error: could not start the bash sandbox: {exc}", is_error=True)
        finally:
            os.close(status_write)  # the sandbox holds its own copy
        try:
            return self._supervise(proc, cancel, status_read)
        finally:
            # Whatever happened above (even an exception of ours), leave no
            # process of this command behind.
            if proc.poll() is None or _group_alive(proc.pid):
                _stop_group(proc)
            if proc.stdout is not None:
                proc.stdout.close()
            os.close(status_read)

    def _supervise(self, proc: subprocess.Popen[bytes], cancel: threading.Event, status_fd: int) -> ToolOutcome:
        assert proc.stdout is not None  # stdout=PIPE
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        out = _CappedOutput(self._cap)
        deadline = time.monotonic() + self._timeout_s
        reason: str | None = None
        exited_at: float | None = None
        eof = False
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                if eof:
                    # Output closed but the process still runs: just wait.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=_POLL_S)
                elif selector.select(_POLL_S):
                    eof = _drain(fd, out)
                if proc.poll() is not None:
                    if eof:
                        break
                    # Background processes still hold the pipe open; give them
                    # a moment to finish writing, then stop waiting for them.
                    exited_at = exited_at if exited_at is not None else time.monotonic()
                    if time.monotonic() - exited_at >= _LINGER_S:
                        break
                if cancel.is_set():
                    reason = "cancelled"
                    break
                if time.monotonic() >= deadline:
                    reason = "timeout"
                    break
            stragglers = reason is None and _group_alive(proc.pid)
            _stop_group(proc)
            # The in-sandbox supervisor says whether the command left processes running.
            stragglers = stragglers or (reason is None and b"stragglers" in _read_available(status_fd))
            # Collect what the killed processes wrote last, without waiting on
            # anyone who escaped the group and still holds the pipe.
            drain_until = time.monotonic() + 0.2
            while not eof and time.monotonic() < drain_until:
                if selector.select(_POLL_S):
                    eof = _drain(fd, out)

        text = out.render() or "(no output)"
        notes: list[str] = []
        if reason == "timeout":
            notes.append(
                f"[command timed out after {self._timeout_s:g} s; "
                "it and every process it started were killed]"
            )
        elif reason == "cancelled":
            notes.append("[command cancelled; it and every process it started were killed]")
        else:
            code = proc.returncode
            # Inside the sandbox a shell reports the command's death by signal N as 128 + N.
            signum = -code if code is not None and code < 0 else (code - 128 if code and 128 < code <= 192 else 0)
            if signum:
                try:
                    signame = signal.Signals(signum).name
                except ValueError:
                    signame = str(signum)
                notes.append(f"[killed by signal {signame}]")
            elif code:
                notes.append(f"[exit code: {code}]")
            if stragglers:
                notes.append(
                    "[background processes it left running were stopped: commands do not keep "
                    "running between tool calls]"
                )
        if notes:
            text = text.rstrip("\n") + "\n" + "\n".join(notes)
        return ToolOutcome(text, is_error=reason is not None)
