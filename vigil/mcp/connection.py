"""One MCP server's connection, on the manager's event loop: start, list, call, lose, start again.

Everything here runs on the one loop thread of `McpManager`; the other threads only read the
`ServerStatus` snapshots it publishes. The SDK's `Client` (protocol 2025-11-25 through the
`initialize` handshake: `mode="legacy"`, so `notifications/tools/list_changed` and
`notifications/cancelled` are what the server sees and sends) lives inside one runner task, since
the SDK's task groups must be entered and left by the same task; calls are made from other tasks.

- Start on first use. Concurrent callers share one start. A start that does not finish within the
  time limit is abandoned (the process is stopped).
- A lost connection (the process exited, the stream ended) is noticed when the transport's read
  stream ends, also between calls; the next use starts it again, after a backoff that grows with
  consecutive failures (0 s, 1 s, 2 s, ... 60 s), reset when a call completes.
- `notifications/tools/list_changed` refreshes the tool list (in a task of its own: the handler
  runs in the SDK's read loop, which a request from inside it would block).
- stderr of a stdio server goes to a pipe read here: its lines are logged at debug and the last few
  are kept to say why a server failed, both with the server's credentials blanked out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
from mcp import Client, MCPError, StdioServerParameters, stdio_client
from mcp.client import Transport
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from pydantic import ValidationError

from vigil import __version__
from vigil.logs import Redactor, get_logger
from vigil.mcp.config import RemoteServer, ServerConfig, StdioServer
from vigil.mcp.names import exposed_names
from vigil.mcp.stream import Watched
from vigil.mcp.tools import McpTool, ServerState, ServerStatus
from vigil.text import one_line

__all__ = ["BACKOFF_S", "Connection", "base_environment"]

BACKOFF_S = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 60.0)
# What a stdio server gets of vigil's environment besides its own `env`: the SDK's minimal set (HOME,
# LOGNAME, PATH, SHELL, TERM, USER, added by stdio_client itself) and these locale/time/temp ones.
# Never the API key or the bot token: a server that needs a credential names it in its entry.
_PASSED_ON = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_MAX_PAGES = 50
_MAX_TOOLS = 1000
_STDERR_LINES = 20
_STDERR_LINE_CHARS = 300
# A stdio server gets 2 s after its stdin closes and 2 s after SIGTERM (the SDK's timings): 3 s covers
# that with room, and then the wind-down is cancelled.
_CLOSE_S = 3.0


def base_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in _PASSED_ON if os.environ.get(name)}


class Connection:
    """One configured server. Not thread-safe: used on the manager's loop only."""

    def __init__(self, config: ServerConfig, publish: Callable[[ServerStatus], None],
                 extra_secrets: tuple[str, ...] = (), clock: Callable[[], float] = time.monotonic,
                 backoff: tuple[float, ...] = BACKOFF_S) -> None:
        self.config = config
        self._publish_to = publish
        self._redact = Redactor((*config.secrets(), *extra_secrets))
        self._clock = clock
        self._backoff = backoff
        self._log = get_logger(__name__, mcp_server=config.name)
        self._client: Client | None = None
        self._runner: asyncio.Task[None] | None = None
        self._starting: asyncio.Future[Client] | None = None
        self._stop: asyncio.Event | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self.state: ServerState = "not started"
        self.detail = ""
        self.tools: tuple[McpTool, ...] = ()
        self.failures = 0
        self.restarts = 0
        self.retry_at = 0.0
        self._publish()

    # ---- what the manager asks ----

    def redact(self, text: str) -> str:
        """`text` without this server's credentials (nor vigil's own)."""
        return self._redact(text)

    def retry_in(self) -> float | None:
        return max(0.0, self.retry_at - self._clock()) if self.state == "failed" else None

    def may_start(self) -> bool:
        return self.state != "running" and self._clock() >= self.retry_at

    async def ensure(self, timeout: float) -> Client | str:
        """The live client, started if need be (sharing a start already under way), or why there is none."""
        if self._client is not None and self.state == "running":
            return self._client
        if self._starting is None:
            wait = self.retry_in()
            if wait:
                return f"MCP server {self.config.name!r} is down ({self.detail}); the next try is in {wait:.0f} s"
            self._starting = asyncio.get_running_loop().create_future()
            # Retrieved here so that a start nobody waits for any more does not warn when it fails.
            self._starting.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._begin()
        starting = self._starting
        try:
            return await asyncio.wait_for(asyncio.shield(starting), timeout)
        except TimeoutError:
            if self._starting is starting:  # not a later start's business: that one has its own waiters
                runner = self._runner
                await self._lost(f"did not start within {timeout:g} s")
                if runner is not None:
                    runner.cancel()  # the SDK's shielded teardown stops the process
            return f"MCP server {self.config.name!r} did not start within {timeout:g} s"
        except Exception as exc:
            return f"MCP server {self.config.name!r} could not start: {self._reason(exc)}"

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float) -> types.CallToolResult | str:
        """tools/call within `timeout` (start included), or one sentence saying why there is no result."""
        deadline = self._clock() + timeout
        client = await self.ensure(timeout)
        if isinstance(client, str):
            return client
        left = max(0.1, deadline - self._clock())
        name = self.config.name
        try:
            result = await client.call_tool(tool, arguments, read_timeout_seconds=left)
        except MCPError as exc:
            if exc.code == types.REQUEST_TIMEOUT:
                self._completed()  # it is alive, only slow; it was sent notifications/cancelled
                return f"MCP tool {tool!r} of {name!r} timed out after {timeout:g} s and was cancelled"
            if exc.code == types.CONNECTION_CLOSED or self.state != "running":
                await self._lost("stopped during a call")
                again = "started" if isinstance(self.config, StdioServer) else "connected to"
                return (f"MCP server {name!r} stopped during the call{self._last_words()}; the call may or may "
                        f"not have taken effect. The server is {again} again at the next call.")
            self._completed()
            return f"MCP server {name!r} refused the call: {self._clean(exc.error.message)}"
        except ValidationError:
            self._completed()
            return f"MCP server {name!r} sent a result that does not follow the protocol"
        except Exception as exc:  # a transport's own error (httpx2, OSError...): nothing may reach the turn
            await self._lost(self._reason(exc))
            return f"MCP server {name!r} could not be reached: {self._reason(exc)}"
        self._completed()
        return result

    async def close(self) -> None:
        """Stop the server (stdio: close its stdin, then SIGTERM, then SIGKILL, as the SDK does)."""
        if self._stop is not None:
            self._stop.set()
        runner = self._runner
        if runner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(runner), _CLOSE_S)
            if not runner.done():  # e.g. a remote server that takes the session's DELETE and never answers
                runner.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(runner, _CLOSE_S)
        for task in list(self._background):
            task.cancel()
        self._client = None
        self.state, self.detail = "not started", ""
        self._publish()

    # ---- the runner: one connection's life ----

    def _begin(self) -> None:
        self.state, self.detail = "starting", ""
        self._stderr.clear()
        self._stop = asyncio.Event()
        self._publish()
        self._runner = asyncio.get_running_loop().create_task(self._run(self._stop), name=f"mcp:{self.config.name}")

    async def _run(self, stop: asyncio.Event) -> None:
        starting = self._starting
        assert starting is not None
        me = asyncio.current_task()
        client: Client | None = None
        try:
            async with self._transport(stop) as transport:
                client = Client(transport, mode="legacy", cache=None, message_handler=self._on_message,
                                client_info=types.Implementation(name="vigil", version=__version__))
                async with client:
                    await self._list(client)
                    self._client = client
                    self.state = "running"
                    self._publish()
                    if not starting.done():
                        starting.set_result(client)
                    if self._starting is starting:
                        self._starting = None
                    await stop.wait()
        except asyncio.CancelledError:
            if not starting.done():
                starting.set_exception(RuntimeError("stopped while starting"))
            raise
        except BaseException as exc:  # anyio wraps failures in groups; the first cause is the story
            failure = _first(exc)
            if not starting.done():
                starting.set_exception(failure)
            if self._runner is me:  # a runner replaced by a newer start has no say any more
                await self._lost(self._reason(failure), from_runner=True)
        finally:
            if self._client is client:
                self._client = None
            if self._starting is starting:
                self._starting = None

    @asynccontextmanager
    async def _transport(self, stop: asyncio.Event) -> AsyncIterator[Transport]:
        config = self.config

        def ended() -> None:
            # The read stream ended: the process exited or the HTTP stream closed. Wind the runner down.
            if not stop.is_set():
                stop.set()
                self._spawn(self._lost("exited" if isinstance(config, StdioServer) else "the connection closed"))

        if isinstance(config, RemoteServer):
            if config.transport == "sse":
                yield Watched(sse_client(config.url, headers=dict(config.headers)), ended)
                return
            # The SDK's documented way to send headers; its timeouts (a response stream may stay open).
            timeout = httpx2.Timeout(30.0, read=300.0)
            async with httpx2.AsyncClient(headers=dict(config.headers), timeout=timeout) as http:
                yield Watched(streamable_http_client(config.url, http_client=http), ended)
            return
        params = StdioServerParameters(command=config.command, args=list(config.args),
                                       env=base_environment() | dict(config.env), cwd=config.cwd)
        read_fd, write_fd = os.pipe()
        errlog = os.fdopen(write_fd, "w")
        reader = self._spawn(self._read_stderr(read_fd))
        try:
            # The parent's copy of the pipe's write end closes once the process has it, so the pipe
            # ends when the server (and whatever it started) is gone.
            yield Watched(stdio_client(params, errlog=errlog), ended, on_enter=errlog.close)
        finally:
            errlog.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(reader), 2)

    async def _read_stderr(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 16)
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
            try:
                while True:
                    try:
                        raw = await reader.readline()
                    except ValueError:  # a line past the limit: take what there is
                        raw = await reader.read(1 << 16)
                    if not raw:
                        return
                    line = self._clean(raw.decode("utf-8", errors="replace"))
                    if line:
                        self._stderr.append(line)
                        self._log.debug("mcp.stderr", line=line)
            finally:
                transport.close()

    # ---- tools ----

    async def _list(self, client: Client) -> None:
        listed: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            listed += page.tools
            cursor = page.next_cursor
            if cursor is None or len(listed) >= _MAX_TOOLS:
                break
        usable = [t for t in listed[:_MAX_TOOLS] if t.input_schema.get("type") == "object"]
        left_out = len(listed) - len(usable)
        names = exposed_names(self.config.name, [t.name for t in usable])
        tools = [McpTool(name=names[t.name], server=self.config.name, tool=t.name,
                         description=t.description or "", input_schema=t.input_schema,
                         read_only=bool(t.annotations and t.annotations.read_only_hint),
                         title=t.title or (t.annotations.title if t.annotations and t.annotations.title else ""))
                 for t in usable]
        self.tools = tuple(sorted(tools, key=lambda t: t.name))
        self.detail = f"{left_out} tools left out (no object input schema, or over {_MAX_TOOLS})" if left_out else ""
        self._publish()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._spawn(self._refresh())
        elif isinstance(message, Exception):
            self._log.debug("mcp.transport_error", error=self._clean(repr(message)))

    async def _refresh(self) -> None:
        client = self._client
        if client is None:
            return
        try:
            await self._list(client)
            self._log.info("mcp.tools_changed", tools=len(self.tools))
        except Exception as exc:
            self._log.info("mcp.tools_refresh_failed", reason=self._reason(exc))

    # ---- failures ----

    async def _lost(self, why: str, from_runner: bool = False) -> None:
        if self.state == "failed":
            return
        was_running = self.state == "running"
        self.failures += 1
        self.restarts += 1 if was_running else 0
        delay = self._backoff[min(self.failures, len(self._backoff)) - 1]
        self.retry_at = self._clock() + delay
        self.state, self.detail = "failed", why + self._last_words()
        self._client = None
        starting = self._starting
        if starting is not None and not starting.done():
            # Died while starting: its waiters learn it now, not when the SDK has wound the transport down.
            starting.set_exception(RuntimeError(self.detail))
            self._starting = None
        self._log.info("mcp.server_down", reason=self.detail, retry_in_s=delay)
        self._publish()
        if not from_runner and self._stop is not None:
            self._stop.set()  # the runner winds the transport down (and the process with it)

    def _completed(self) -> None:
        self.failures = 0

    def _last_words(self) -> str:
        return f" (its last words: {one_line(self._stderr[-1], 200)})" if self._stderr else ""

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, MCPError):
            return self._clean(exc.error.message)
        if isinstance(exc, FileNotFoundError):
            return f"{exc.filename or 'the command'} was not found"
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror
        return self._clean(str(exc)) or type(exc).__name__

    def _clean(self, text: str) -> str:
        return one_line(self._redact(text.strip()), _STDERR_LINE_CHARS)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _publish(self) -> None:
        self._publish_to(ServerStatus(name=self.config.name, describe=self.config.describe(), state=self.state,
                                      detail=self.detail, tools=self.tools, restarts=self.restarts))


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
