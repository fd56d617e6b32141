"""Anthropic's bash tool (`bash_20250124`): one shell command per call, opt-in.

Be clear about what this is: **bash is not a filesystem jail.** A command runs
with the service's own user and permissions, starts in the chat's working
directory, and can read or change anything that user can (`cat /etc/passwd`,
`cd /`, `curl`). That is why it is off unless the operator enables it. What
this module does do:

- each command runs as `bash --noprofile --norc -c COMMAND`, with the chat's
  working directory as cwd and stdin from /dev/null;
- in its own session and process group, so that on timeout or cancellation
  the whole group — background children included — gets SIGTERM and, after a
  short grace, SIGKILL; processes still running in the group when the command
  itself exits are stopped the same way, since nothing could ever talk to them;
- stdout and stderr are combined and capped (head and tail kept, the cut
  reported), and a non-zero exit status is reported;
- the environment is the service's minus its credentials: `ANTHROPIC_API_KEY`,
  `ANTHROPIC_AUTH_TOKEN`, `TELEGRAM_BOT_TOKEN`, any configured extra names, and
  any variable whose name contains TOKEN, SECRET or PASSWORD or ends in _KEY.

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
from collections.abc import Iterable, Mapping
from pathlib import Path

from vigil.tools.outcome import ToolOutcome

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


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group, then SIGKILL whatever is left after the grace."""
    pgid = proc.pid  # start_new_session made the command the leader of its own group
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + _KILL_GRACE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(pgid):
            return
        time.sleep(0.02)
    _signal_group(pgid, signal.SIGKILL)
    # If it is still not gone it is stuck in the kernel (D state): nothing
    # more we can do, and the chat must not hang on it.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


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


class BashRunner:
    """Runs `bash` tool calls: one fresh process group per command."""

    def __init__(
        self,
        timeout_s: float = 120,
        output_cap: int = 16000,
        scrub_env: Iterable[str] = (),
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if output_cap < 100:
            raise ValueError("output_cap must be at least 100")
        self._timeout_s = timeout_s
        self._cap = output_cap
        self._scrub = frozenset(scrub_env)

    def spec(self) -> dict[str, object]:
        """The tool definition to offer in the Messages API request."""
        return {"type": TOOL_TYPE, "name": TOOL_NAME}

    def environment(self, cwd: Path) -> dict[str, str]:
        """The environment a command gets: the service's, scrubbed, with PWD set."""
        env = scrubbed_env(os.environ, self._scrub)
        env["PWD"] = str(cwd)  # so `pwd` shows the chat's directory, not the service's
        return env

    def run(self, cwd: Path, tool_input: dict[str, object], cancel: threading.Event) -> ToolOutcome:
        """Run one command (blocking); never raises for anything the model sent."""
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
        try:
            proc = subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-c", command],
                cwd=cwd,
                env=self.environment(cwd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except (OSError, ValueError) as exc:
            return ToolOutcome(f"Error: could not start bash: {exc}", is_error=True)
        try:
            return self._supervise(proc, cancel)
        finally:
            # Whatever happened above (even an exception of ours), leave no
            # process of this command behind.
            if proc.poll() is None or _group_alive(proc.pid):
                _stop_group(proc)
            if proc.stdout is not None:
                proc.stdout.close()

    def _supervise(self, proc: subprocess.Popen[bytes], cancel: threading.Event) -> ToolOutcome:
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
            if code is not None and code < 0:
                try:
                    signame = signal.Signals(-code).name
                except ValueError:
                    signame = str(-code)
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
