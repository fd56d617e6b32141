"""A transport that says when its connection ended: the one signal common to stdio, HTTP and SSE.

The SDK's session fails the calls in flight when the server's stream ends, but tells nobody about
an idle connection that died (a stdio server that exited between calls). Wrapping the transport's
read stream (the SDK's documented `ReadStream` protocol) lets the manager mark the server down at
once, so `/mcp` says so and the next use starts it again.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import anyio
from mcp.client import Transport
from mcp.client._transport import TransportStreams
from mcp.shared._stream_protocols import ReadStream
from mcp.shared.message import SessionMessage

__all__ = ["Watched"]


class _WatchedRead:
    """Forwards a ReadStream; calls `ended` once when it runs dry or is closed under the reader."""

    def __init__(self, inner: ReadStream[SessionMessage | Exception], ended: Callable[[], None]) -> None:
        self._inner = inner
        self._ended = ended
        self._told = False

    def __getattr__(self, name: str) -> Any:  # `last_context`, read by the dispatcher when present
        return getattr(self._inner, name)

    def _end(self) -> None:
        if not self._told:
            self._told = True
            self._ended()

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                        exc_tb: TracebackType | None) -> bool | None:
        await self.aclose()
        return None


class Watched:
    """`inner` as a Transport whose read stream reports its end; `on_enter` runs once it is connected."""

    def __init__(self, inner: Transport, ended: Callable[[], None],
                 on_enter: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._ended = ended
        self._on_enter = on_enter

    async def __aenter__(self) -> TransportStreams:
        try:
            read, write = await self._inner.__aenter__()
        finally:
            if self._on_enter is not None:
                self._on_enter()
        return _WatchedRead(read, self._ended), write

    async def __aexit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                        exc_tb: TracebackType | None) -> bool | None:
        return await self._inner.__aexit__(exc_type, exc_val, exc_tb)
