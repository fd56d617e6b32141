"""One HTTP connection to the Messages API stand-in, as the SDK sees it: JSON answers, chunked streams,
a cut mid-body, and noticing that the client hung up.

HTTP/1.1 with chunked transfer encoding is what lets a dropped stream look like an incomplete body to
the SDK (a close-delimited body would look like a normal end). Every wait gives up on `stop()` or a
hung-up client by raising `Disconnected`, so no request outlives its test.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.standins.loopback import LoopbackHandler, LoopbackServer


class Disconnected(Exception):
    """The client went away, or stop() released the request."""


class MessagesServer(LoopbackServer):
    """The listening server; ``route`` answers each request (`server.Router.handle`)."""

    def __init__(self, route: Callable[[Handler, str], None]) -> None:
        self.route = route
        super().__init__(Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-answer is routine here (timeouts, drops); anything else is a bug.
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError | OSError | Disconnected):
            super().handle_error(request, client_address)


class Handler(LoopbackHandler):
    # HTTP/1.1 (from LoopbackHandler) also gives chunked streams, so that a dropped stream is
    # detectable by the client as an incomplete body.
    server: MessagesServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self.server.route(self, "GET")

    def do_POST(self) -> None:
        self.server.route(self, "POST")

    # ---- wire helpers ----

    def client_gone(self) -> bool:
        """Whether the client closed its end: readable with nothing to read means EOF."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
            return peeked == b""
        except (OSError, ValueError):
            return True

    def send_json(self, status: int, payload: Any, request_id: str, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("request-id", request_id)
        self.send_header("content-length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def start_chunked(self, status: int, content_type: str, request_id: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("request-id", request_id)
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        # wfile is unbuffered (wbufsize = 0): every chunk is on the wire when this returns.
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def cut(self) -> None:
        """Close the connection abruptly (FIN, no terminating chunk) and stop serving it."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def wait(handler: Handler, stopping: threading.Event, seconds: float) -> None:
    """Sleep, but give up (raise Disconnected) on stop() or when the client hangs up."""
    if seconds <= 0:
        return
    deadline = time.monotonic() + seconds
    while True:
        if stopping.is_set() or handler.client_gone():
            raise Disconnected
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        stopping.wait(min(remaining, 0.05))
