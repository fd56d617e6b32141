"""Decoding a Bot API request as Telegram does, and the error answers in Telegram's words.

PTB 22 sends every value as a string (``application/x-www-form-urlencoded``; ``multipart/form-data`` when
a file goes along, with httpx's HTML5 escaping of field values); Telegram also takes GET query strings and
JSON bodies. Everything here is about bytes becoming parameters, and a refusal becoming an answer, so
the methods never see an encoding.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

# Values that stay strings even when they look like JSON ("123" as text must stay text).
_STRING_PARAMS: Final = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "action",
        "language_code",
        "url",
        "inline_message_id",
        "business_connection_id",
        "message_effect_id",
        "document",
        "photo",
        "file_id",
        "secret_token",
        "ip_address",
        "name",
        "title",
        "description",
        "short_description",
    }
)


class ApiError(Exception):
    """A Bot API error answer."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            d["parameters"] = self.parameters
        return d


def bad(description: str, parameters: dict[str, Any] | None = None) -> ApiError:
    return ApiError(400, f"Bad Request: {description}", parameters)


@dataclass
class Upload:
    """A file part of a multipart request."""

    filename: str
    content: bytes
    content_type: str


@dataclass
class Request:
    """A decoded call as a method handler sees it; ``client_gone`` tells whether the client hung up."""

    method: str
    params: dict[str, Any]
    files: dict[str, Upload]
    client_gone: Callable[[], bool]


# The request path is /bot<token>/<method>; Telegram tells a malformed token (404) from an unknown one (401).
PATH_RE: Final = re.compile(r"/bot([^/]*)/([^/]*)")
TOKEN_RE: Final = re.compile(r"\d+:[A-Za-z0-9_-]+")


def _decode_value(key: str, raw: str) -> Any:
    if key in _STRING_PARAMS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _unescape_form_param(value: str) -> str:
    # httpx escapes multipart parameter values the HTML5 way: '"' -> %22, control chars -> %XX.
    value = re.sub(r"%([01][0-9A-F]|22)", lambda m: chr(int(m.group(1), 16)), value)
    return value.replace("\\\\", "\\")


def _parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, Upload]]:
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise bad("can't parse multipart/form-data: no boundary")
    delimiter = b"\r\n--" + m.group(1).encode("latin-1")
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for part in (b"\r\n" + body).split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        part = part.removeprefix(b"\r\n")
        head, _, content = part.partition(b"\r\n\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        params = {k.lower(): _unescape_form_param(v) for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', disposition)}
        field_name = params.get("name")
        if field_name is None:
            continue
        if "filename" in params:
            files[field_name] = Upload(
                params["filename"], content, headers.get("content-type", "application/octet-stream")
            )
        else:
            fields[field_name] = content.decode("utf-8", "replace")
    return fields, files


def decode_request(query: str, content_type: str, body: bytes) -> tuple[dict[str, Any], dict[str, Upload]]:
    params: dict[str, Any] = {k: _decode_value(k, v) for k, v in parse_qsl(query, keep_blank_values=True)}
    files: dict[str, Upload] = {}
    ctype = content_type.split(";")[0].strip().lower()
    if not body:
        return params, files
    if ctype == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError:
            raise bad("can't parse JSON encoded request") from None
        if not isinstance(decoded, dict):
            raise bad("JSON object expected as request body")
        params.update(decoded)
    elif ctype == "multipart/form-data":
        fields, files = _parse_multipart(body, content_type)
        params.update({k: _decode_value(k, v) for k, v in fields.items()})
    else:  # application/x-www-form-urlencoded, PTB's usual encoding
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        params.update({k: _decode_value(k, v) for k, v in pairs})
    return params, files


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def decoded(raw: Any, what: str) -> Any:
    """A parameter Telegram takes JSON-serialized: a non-empty string is decoded (or refused as Telegram
    words it, "can't parse <what> JSON object"); anything else (already decoded, absent, empty) as it is."""
    if isinstance(raw, str) and raw:
        try:
            return json.loads(raw)
        except ValueError:
            raise bad(f"can't parse {what} JSON object") from None
    return raw


def allowed_updates(req: Request) -> list[str] | None:
    """The `allowed_updates` a getUpdates or setWebhook call names (a JSON array, or already a list); None if
    it names none. One setting at Telegram, shared by both methods: the caller stores it."""
    allowed = decoded(req.params.get("allowed_updates"), "allowed updates")
    return [str(a) for a in allowed] if isinstance(allowed, list) else None
