"""The Bot API stand-in's HTTP side: one request in, Telegram's answer out, every call recorded.

On top of `tests.standins.loopback`, a request is checked the way Telegram checks it (the token in the
path, a known method name in any case), meets the faults a test injected, is decoded (`wire`), handled
by its method (`methods`) and recorded as an `ApiCall`. A stall executes the call and only then holds
the answer back: like Telegram, a request whose client gave up may still have taken effect.
"""

from __future__ import annotations

import http
import json
import select
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from tests.standins.bot_api.faults import Fault, Faults
from tests.standins.bot_api.methods import HANDLERS, METHOD_NAMES
from tests.standins.bot_api.methods.updates import ClientGone, get_updates
from tests.standins.bot_api.model import ApiCall, Download
from tests.standins.bot_api.state import World
from tests.standins.bot_api.wire import PATH_RE, TOKEN_RE, ApiError, Request, Upload, decode_request
from tests.standins.loopback import LoopbackHandler, LoopbackServer

FILE_PREFIX: Final = "/file/bot"  # PTB's base_file_url is base_url with /bot made /file/bot
_PROXY_502: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


class Router:
    """Answers the requests of one stand-in: routing, faults, the method, the record."""

    def __init__(self, world: World, faults: Faults, token: str) -> None:
        self.world = world
        self.faults = faults
        self.token = token

    def serve(self, handler: _Handler) -> None:
        if self.world.stopping:
            handler.close_connection = True
        try:
            body = _read_body(handler)
        except (OSError, ValueError):
            handler.close_connection = True
            return
        parts = urlsplit(handler.path)
        if parts.path.startswith(FILE_PREFIX):
            status, payload, content_type = self.download(parts.path)
        else:
            status, payload, content_type = self.handle(
                parts.path,
                parts.query,
                handler.headers.get("Content-Type", ""),
                body,
                lambda: _socket_closed(handler.connection),
            )
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            if self.world.stopping:
                handler.send_header("Connection", "close")
                handler.close_connection = True
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except OSError:  # the client hung up; it is already recorded as such where it matters
            handler.close_connection = True

    def download(self, path: str) -> tuple[int, bytes, str]:
        """``GET /file/bot<token>/<file_path>``: a stored file's bytes, as Telegram's file server serves
        them; an unknown path is 404 and a wrong token 401 (malformed: 404), with a JSON error body.
        While downloads are held (`BotAPI.hold_downloads`) a download waits, its request read and no byte
        answered, as a slow file server keeps a client waiting, until they are released."""
        token, _, file_path = path.removeprefix(FILE_PREFIX).partition("/")
        token, file_path = unquote(token), unquote(file_path)
        with self.world.cond:
            stored = self.world.file_paths.get(file_path) if token == self.token else None
            if stored is not None and self.world.downloads_held:
                self.world.downloads_waiting += 1
                self.world.cond.notify_all()
                try:
                    while self.world.downloads_held and not self.world.stopping:
                        self.world.cond.wait(0.2)
                finally:
                    self.world.downloads_waiting -= 1
            if stored is not None:
                status, body, ctype = 200, stored.content, "application/octet-stream"
            else:
                status = 401 if token != self.token and TOKEN_RE.fullmatch(token) else 404
                error = ApiError(status, "Unauthorized" if status == 401 else "Not Found")
                status, body, ctype = status, json.dumps(error.payload()).encode(), "application/json"
            self.world.downloads.append(Download(file_path, status, len(body), time.monotonic()))
            self.world.cond.notify_all()
        return status, body, ctype

    def handle(
        self, path: str, query: str, content_type: str, body: bytes, client_gone: Callable[[], bool]
    ) -> tuple[int, bytes, str]:
        """(HTTP status, body, content type) for one request; the call is recorded before it returns."""
        started = time.monotonic()
        json_type = "application/json"
        m = PATH_RE.fullmatch(path)
        method = unquote(m.group(2)) if m else path
        params: dict[str, Any] = {}
        fault: Fault | None = None
        status = 200
        result: Any = None
        error: ApiError | None = None
        raw_body: bytes | None = None
        files: dict[str, Upload] = {}
        try:
            if m is None or not m.group(2):
                raise ApiError(404, "Not Found")
            token = unquote(m.group(1))
            if token != self.token:
                # Telegram: a malformed token is 404, a well-formed unknown one 401.
                if TOKEN_RE.fullmatch(token):
                    raise ApiError(401, "Unauthorized")
                raise ApiError(404, "Not Found")
            canonical = METHOD_NAMES.get(method.lower())
            if canonical is None:
                raise ApiError(404, "Not Found")
            method = canonical
            params, files = decode_request(query, content_type, body)
            fault = self.faults.take(canonical.lower(), params)
            if fault is not None and fault.kind == "flood":
                raise ApiError(
                    429,
                    f"Too Many Requests: retry after {fault.retry_after}",
                    {"retry_after": fault.retry_after},
                )
            if fault is not None and fault.kind == "fail":
                status = fault.status
                phrase = _phrase(status)
                if status in (502, 504):
                    raw_body = _PROXY_502.replace(b"502 Bad Gateway", f"{status} {phrase}".encode())
                    error = ApiError(status, phrase)
                else:
                    raise ApiError(status, phrase)
            else:
                request = Request(method, params, files, client_gone)
                if canonical == "getUpdates":
                    result = get_updates(self.world, request)  # takes the lock itself, to wait on it
                else:
                    with self.world.cond:
                        result = HANDLERS[canonical](self.world, request)
        except ApiError as e:
            error = e
            status = e.code
        except Exception as e:  # a bug in the stand-in: answer and record it rather than hang up
            traceback.print_exc()
            error = ApiError(500, f"Internal Server Error: the stand-in failed: {e!r}")
            status = 500
        if fault is not None and fault.kind == "stall":
            self.world.stop_event.wait(fault.seconds)
        gone = bool(fault is not None and fault.kind == "stall" and client_gone())
        if isinstance(result, ClientGone):
            gone, result = True, []
        with self.world.cond:
            self.world.calls.append(
                ApiCall(
                    method=method,
                    params=_loggable(params, files),
                    ok=error is None,
                    error_code=None if error is None else error.code,
                    description=None if error is None else error.description,
                    time=started,
                    duration=time.monotonic() - started,
                    http_status=status,
                    result=result,
                    client_gone=gone,
                )
            )
            self.world.cond.notify_all()
        if raw_body is not None:
            return status, raw_body, "text/html"
        payload = error.payload() if error is not None else {"ok": True, "result": result}
        return status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), json_type


def _read_body(handler: _Handler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _socket_closed(sock: socket.socket) -> bool:
    """True once the peer hung up; never blocks."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class BotServer(LoopbackServer):
    request_queue_size = 128  # httpx opens many connections in a burst

    def __init__(self, router: Router) -> None:
        self.router = router
        super().__init__(_Handler)


class _Handler(LoopbackHandler):
    server: BotServer

    def do_POST(self) -> None:
        self.server.router.serve(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet; every request is in BotAPI.calls


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown Error"


def _loggable(params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
    logged = dict(params)
    for name, upload in files.items():
        logged[name] = {
            "filename": upload.filename,
            "size": len(upload.content),
            "mime_type": upload.content_type,
        }
    return logged
