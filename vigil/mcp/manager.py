"""`McpManager`: vigil's MCP servers, shared by every chat, used from the actors' threads.

The SDK's clients are asyncio code; vigil's turns run on pykka's threads. The manager owns one event
loop on one thread of its own (started on first use, so a vigil without MCP servers starts no
thread) where every connection lives (vigil/mcp/connection.py). The other threads:

- read `tools()` and `status()` from snapshots the loop publishes under a lock; they wait on the loop
  only to start a server that is not running (on first use, or after it died and its backoff passed),
  and at most the time limit;
- `call()` hands the call to the loop and waits for it, its time limit, or the chat's `CancelToken`:
  `/stop` cancels the call's task, the SDK sends the server `notifications/cancelled`, and `call`
  returns at once without waiting for the server to wind down;
- never get an exception from a server: a failure is an `McpOutcome` with `is_error` and one
  sentence (vigil/mcp/results.py).

One server process (or HTTP session) serves every chat that has the server on: it acts with the
operator's credentials anyway, whoever asks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

import msgspec

from vigil.cancel import CancelToken
from vigil.logs import get_logger
from vigil.mcp.config import McpConfig
from vigil.mcp.connection import BACKOFF_S, Connection
from vigil.mcp.results import McpOutcome, convert, failure
from vigil.mcp.tools import McpTool, ServerStatus

__all__ = ["McpManager"]

_T = TypeVar("_T")
# A call's thread gives the loop this much beyond the call's own limit before it stops waiting.
_GRACE_S = 5.0
_SHUTDOWN_S = 10.0


class McpManager:
    """Thread-safe. `close()` stops every server; the manager cannot be used after it."""

    def __init__(self, config: McpConfig, timeout_s: float = 60.0, extra_secrets: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic, backoff: tuple[float, ...] = BACKOFF_S) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self._extra_secrets = tuple(extra_secrets)
        self._clock = clock
        self._backoff = backoff
        self._lock = threading.RLock()  # a Connection publishes its first status while being made
        self._statuses: dict[str, ServerStatus] = {
            name: ServerStatus(name=name, describe=server.describe()) for name, server in config.servers.items()}
        self._connections: dict[str, Connection] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._log = get_logger(__name__)

    # ---- reading ----

    @property
    def servers(self) -> tuple[str, ...]:
        """The configured servers' names, in the file's order."""
        return tuple(self.config.servers)

    def status(self, servers: Iterable[str] | None = None) -> tuple[ServerStatus, ...]:
        """The servers' latest snapshots (all configured ones, or those named), never waiting on a server."""
        with self._lock:
            names = list(self._statuses) if servers is None else [s for s in servers if s in self._statuses]
            statuses = [self._statuses[name] for name in names]
            connections = dict(self._connections)
        shown = []
        for status in statuses:
            connection = connections.get(status.name)
            retry = connection.retry_in() if connection is not None else None
            shown.append(dataclasses.replace(status, retry_in_s=retry))
        return tuple(shown)

    def tools(self, servers: Iterable[str], cancel: CancelToken | None = None,
              wait: bool = True) -> tuple[McpTool, ...]:
        """The tools of `servers` (unknown names ignored), sorted by name: stable, for the prompt cache.

        A server that is not running is started first when it may be (first use, or its backoff has
        passed), waiting at most the time limit; one that may not yet keeps offering the tools it had,
        so the prompt does not change while it is down (a call then says why it cannot run). With
        `wait` False, only a first start is waited for: a server tried before (that died, or failed) is
        started again in the background, so a server that hangs while starting holds up a turn once, not
        every turn (a call of one of its tools waits for that start)."""
        names = sorted({s for s in servers if s in self.config.servers})
        startable = [name for name in names if self._may_start(name)]
        if not wait:
            with self._lock:
                again = [name for name in startable if name in self._connections]
                under_way = {name for name in again if self._statuses[name].state == "starting"}
            startable = [name for name in startable if name not in again]
            if again and len(under_way) < len(again):
                self._start_soon([name for name in again if name not in under_way])
        if startable:
            self._run(self._start_all(startable), self.timeout_s, cancel)
        with self._lock:
            found = [tool for name in names for tool in self._statuses[name].tools]
        return tuple(sorted(found, key=lambda t: t.name))

    def tool(self, name: str) -> McpTool | None:
        """The tool Claude calls `name`, among the tools last listed by any server."""
        with self._lock:
            for status in self._statuses.values():
                for tool in status.tools:
                    if tool.name == name:
                        return tool
        return None

    # ---- calling ----

    def call(self, name: str, arguments: dict[str, Any], cancel: CancelToken | None = None,
             timeout: float | None = None, servers: Iterable[str] | None = None) -> McpOutcome:
        """Run the tool Claude calls `name`, if its server is among `servers` (the chat's; None: any);
        every failure is an error outcome, never an exception."""
        limit = self.timeout_s if timeout is None else timeout
        tool = self.tool(name)
        if tool is None or (servers is not None and tool.server not in set(servers)):
            return failure(f"{name} is not a tool of any MCP server that is on in this chat")
        if cancel is not None and cancel.cancelled:
            return failure("cancelled: the user stopped this turn before the tool ran")
        connection = self._connection(tool.server)
        result = self._run(connection.call(tool.tool, arguments, limit), limit, cancel)
        if isinstance(result, _Stopped):
            if result.cancelled:
                return failure(f"cancelled: the user stopped this turn while {name} ran; it was told to stop, "
                               "and may have taken effect in part")
            return failure(f"MCP tool {tool.tool!r} of {tool.server!r} did not answer within {limit:g} s")
        if isinstance(result, str):
            return failure(result)
        if isinstance(result, BaseException):
            self._log.warning("mcp.call_failed", tool=name, error=repr(result))
            return failure(f"MCP tool {tool.tool!r} of {tool.server!r} failed inside vigil ({type(result).__name__})")
        # What a server says about its own credentials must not reach the model either.
        outcome = convert(result)
        return msgspec.structs.replace(outcome, text=connection.redact(outcome.text))

    # ---- lifecycle ----

    def close(self, timeout: float = _SHUTDOWN_S) -> None:
        """Stop every server (stdio: stdin closed, then SIGTERM, then SIGKILL) and the loop's thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._close_all(), loop)
        try:
            future.result(timeout)
        except Exception as exc:
            self._log.warning("mcp.close_incomplete", error=repr(exc))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    # ---- on the loop ----

    def _may_start(self, name: str) -> bool:
        with self._lock:
            connection = self._connections.get(name)
        return connection is None or connection.may_start()

    def _start_soon(self, names: list[str]) -> None:
        try:
            loop = self._ensure_loop()
        except RuntimeError:  # closed: nothing starts any more
            return
        asyncio.run_coroutine_threadsafe(self._start_all(names), loop)

    async def _start_all(self, names: list[str]) -> None:
        await asyncio.gather(*(self._connection(name).ensure(self.timeout_s) for name in names))

    async def _close_all(self) -> None:
        with self._lock:
            connections = list(self._connections.values())
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)

    def _connection(self, name: str) -> Connection:
        with self._lock:
            connection = self._connections.get(name)
            if connection is None:
                connection = Connection(self.config.servers[name], self._publish, self._extra_secrets,
                                        self._clock, self._backoff)
                self._connections[name] = connection
            return connection

    def _publish(self, status: ServerStatus) -> None:
        with self._lock:
            self._statuses[status.name] = status

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("the MCP manager is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_serve, args=(loop,), name="mcp-loop", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _run(self, coro: Any, limit: float, cancel: CancelToken | None) -> Any:
        """Run `coro` on the loop and wait for it, its limit (plus a grace) or `cancel`, whichever is first:
        its result, the exception it raised, or `_Stopped`."""
        try:
            loop = self._ensure_loop()
        except RuntimeError as exc:
            coro.close()
            return exc
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, loop)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if cancel is None:
            done.wait(limit + _GRACE_S)
        else:
            with cancel.on_cancel(done.set):
                done.wait(limit + _GRACE_S)
        if future.done() and not future.cancelled():
            raised = future.exception()
            return raised if raised is not None else future.result()
        future.cancel()  # cancels the task on the loop: the SDK sends notifications/cancelled
        return _Stopped(cancelled=cancel is not None and cancel.cancelled)


@dataclasses.dataclass(frozen=True)
class _Stopped:
    cancelled: bool


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        # Connections that did not wind down in time (a remote server that hangs up on nobody) are
        # cancelled here, so their async generators close before the loop does.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=_SHUTDOWN_S / 2))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

