"""The Messages API stand-in's routes: auth, the model list, ``POST /v1/messages`` (validate, record,
decide, answer whole or streamed) and ``count_tokens``.

A malformed request is refused as the API would and recorded in `MessagesAPI.errors`, so a test can
assert vigil was never refused; errors a test asked for are answered but not recorded there. A bug
in the stand-in answers 500 with ``x-should-retry: false`` and a traceback on stderr, never a hang.
"""

from __future__ import annotations

import contextlib
import json
import math
import traceback
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.standins.messages_api import sse
from tests.standins.messages_api.connection import Disconnected, Handler, wait
from tests.standins.messages_api.content import RecordedRequest
from tests.standins.messages_api.errors import ERROR_MESSAGES, ERROR_TYPES, STATUS_OF_ERROR_TYPE, Refusal, invalid
from tests.standins.messages_api.media import MAX_REQUEST_BYTES
from tests.standins.messages_api.reply import build_message, random_id
from tests.standins.messages_api.responders import ErrorReply
from tests.standins.messages_api.script import decide
from tests.standins.messages_api.state import State
from tests.standins.messages_api.usage import cache_segments, token_count
from tests.standins.messages_api.validator import Validator

_MODELS = (
    ("claude-opus-5-5", "Claude Opus 5.5", "opus"),
    ("claude-sonnet-5-5", "Claude Sonnet 5.5", "sonnet"),
    ("claude-haiku-5-5", "Claude Haiku 5.5", "haiku"),
    ("claude-opus-4-7", "Claude Opus 4.7", "opus"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "sonnet"),
    ("claude-haiku-4-5", "Claude Haiku 4.5", "haiku"),
)


def _model_info(model_id: str) -> dict[str, Any]:
    display, line = next(((d, ln) for m, d, ln in _MODELS if m == model_id), (model_id, None))
    return {
        "type": "model",
        "id": model_id,
        "display_name": display,
        "created_at": "2026-01-01T00:00:00Z",
        "lifecycle": "active",
        "deprecated_at": None,
        "retires_at": None,
        "line": line,
        "max_input_tokens": 1_000_000,
        "max_tokens": 128_000,
    }


class Router:
    """Answers the requests of one stand-in from its `State`."""

    def __init__(self, state: State, api_key: str) -> None:
        self.state = state
        self.api_key = api_key

    def _refuse(self, handler: Handler, refusal: Refusal, request_id: str, body: Any) -> None:
        # Recorded so a test can assert vigil was never refused; errors a test asked for (rules,
        # [[error=...]]) go through _send_error instead and are not recorded.
        with self.state.lock:
            self.state.errors.append(
                {
                    "status": refusal.status,
                    "type": refusal.error_type,
                    "message": refusal.message,
                    "path": handler.path,
                    "body": body,
                }
            )
        payload = {
            "type": "error",
            "error": {"type": refusal.error_type, "message": refusal.message},
            "request_id": request_id,
        }
        handler.send_json(refusal.status, payload, request_id)

    def _authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("x-api-key") == self.api_key or headers.get("authorization") == f"Bearer {self.api_key}"

    def handle(self, handler: Handler, method: str) -> None:
        """Answers one request; the route `connection.MessagesServer` calls."""
        request_id = random_id("req_")
        headers = {k.lower(): v for k, v in handler.headers.items()}
        length = int(headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = urlsplit(handler.path).path
        try:
            if not self._authorized(headers):
                raise Refusal(401, "authentication_error", "invalid x-api-key")
            if method == "GET" and path == "/v1/models":
                data = [_model_info(m) for m, _, _ in _MODELS]
                page = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
                handler.send_json(200, page, request_id)
            elif method == "GET" and path.startswith("/v1/models/"):
                model_id = unquote(path.removeprefix("/v1/models/"))
                if not model_id.startswith("claude-"):
                    raise Refusal(404, "not_found_error", f"model: {model_id}")
                handler.send_json(200, _model_info(model_id), request_id)
            elif method == "POST" and path == "/v1/messages":
                if len(raw) > MAX_REQUEST_BYTES:
                    raise Refusal(413, "request_too_large", ERROR_MESSAGES["request_too_large"])
                self._messages(handler, headers, raw, request_id)
            elif method == "POST" and path == "/v1/messages/count_tokens":
                self._count_tokens(handler, headers, raw, request_id)
            else:
                raise Refusal(404, "not_found_error", "Not Found")
        except Refusal as refusal:
            self._refuse(handler, refusal, request_id, body=_loads_or_none(raw))
        except Disconnected:
            handler.cut()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        except Exception as exc:
            # A bug in the stand-in: say so loudly on stderr and to the client, never hang.
            traceback.print_exc()
            with contextlib.suppress(OSError):
                handler.send_json(
                    500,
                    {"type": "error", "error": {"type": "api_error", "message": f"stand-in bug: {exc!r}"}},
                    request_id,
                    {"x-should-retry": "false"},
                )

    def _parse_body(self, raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise invalid(f"There was an error parsing the body of the request: {e}") from None
        if not isinstance(body, dict):
            raise invalid("Input should be a valid dictionary")
        return body

    def _count_tokens(self, handler: Handler, headers: dict[str, str], raw: bytes, request_id: str) -> None:
        body = self._parse_body(raw)
        # count_tokens takes the same request minus the generation settings.
        for key in (
            "max_tokens",
            "stream",
            "stop_sequences",
            "metadata",
            "service_tier",
            "container",
            "inference_geo",
            "diagnostics",
        ):
            if key in body:
                raise invalid(f"{key}: Extra inputs are not permitted")
        Validator({**body, "max_tokens": 1}, headers).run()
        total = sum(len(text) for text, _ in cache_segments(body))
        handler.send_json(200, {"input_tokens": token_count(total)}, request_id)

    def _messages(self, handler: Handler, headers: dict[str, str], raw: bytes, request_id: str) -> None:
        body = self._parse_body(raw)
        refusal: Refusal | None = None
        with self.state.lock:
            served = dict(self.state.served)
        try:
            Validator(body, headers, served).run()
        except Refusal as r:
            refusal = r
        stream = body.get("stream") is True
        recorded = RecordedRequest(body, headers, stream, refusal.message if refusal else None)
        with self.state.arrived:
            self.state.requests.append(recorded)
            self.state.arrived.notify_all()
        if refusal is not None:
            raise refusal
        plan = decide(self.state, body)
        wait(handler, self.state.stopping, plan.delay)
        if plan.hang:
            wait(handler, self.state.stopping, math.inf)
        if plan.error is not None:
            self._send_error(handler, plan.error, request_id)
            return
        if plan.stream_error is not None and not stream:
            error_type, error_message = plan.stream_error
            self._send_error(
                handler,
                ErrorReply(STATUS_OF_ERROR_TYPE.get(error_type, 500), error_type, error_message),
                request_id,
            )
            return
        message = build_message(self.state, body, plan)
        recorded.usage = message["usage"]
        if stream:
            sse.stream(handler, self.state.stopping, message, plan, request_id)
        else:
            wait(handler, self.state.stopping, plan.seconds)
            data = json.dumps(message).encode()
            if plan.drop_after is not None:
                handler.send_response(200)
                handler.send_header("content-type", "application/json")
                handler.send_header("request-id", request_id)
                handler.send_header("content-length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data[: len(data) // 2])
                handler.cut()
                return
            handler.send_json(200, message, request_id)

    def _send_error(self, handler: Handler, error: ErrorReply, request_id: str) -> None:
        error_type = error.error_type or ERROR_TYPES.get(error.status, "api_error")
        message = error.message or ERROR_MESSAGES.get(error_type, "Error")
        extra: dict[str, str] = {}
        if error.retry_after is not None:
            ra = error.retry_after
            extra["retry-after"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        if error.retry_after_ms is not None:
            extra["retry-after-ms"] = str(error.retry_after_ms)
        if error.should_retry is not None:
            extra["x-should-retry"] = "true" if error.should_retry else "false"
        payload = {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }
        handler.send_json(error.status, payload, request_id, extra)


def _loads_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
