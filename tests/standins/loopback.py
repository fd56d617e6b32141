"""The HTTP plumbing both stand-ins share: a keep-alive server on 127.0.0.1 in a daemon thread.

What makes it more than ``ThreadingHTTPServer``: it knows its open connections, so `close()` can
cut idle keep-alive connections too. Otherwise an httpx pool would go on being served by a stand-in
the test has stopped, and a restart test would never see the outage it arranged.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    # A stand-in restarted by a test must not be refused its port by lingering TIME_WAIT sockets.
    allow_reuse_address = True

    def __init__(self, handler: type[LoopbackHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(("127.0.0.1", 0), handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def serve_in_thread(self, name: str) -> None:
        # A short poll interval keeps close() (which waits for the serve loop to notice) fast.
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name=name, daemon=True)
        self._thread.start()

    def track(self, sock: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)

    def close(self) -> None:
        """Stops serving, closes the listening socket and every open connection, joins the thread."""
        self.shutdown()
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class LoopbackHandler(BaseHTTPRequestHandler):
    # HTTP/1.1: keep-alive, as the real services and the SDKs' httpx pools expect.
    protocol_version = "HTTP/1.1"
    server: LoopbackServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            with contextlib.suppress(OSError):  # the client hung up first: routine here
                super().finish()
        finally:
            self.server.track(self.connection, add=False)
