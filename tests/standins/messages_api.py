"""A loopback stand-in for the Anthropic Messages API, as strict as the real one.

vigil's end-to-end tests start ``vigil`` as a subprocess with ``ANTHROPIC_BASE_URL`` pointing at
:class:`MessagesAPI`, so the real ``anthropic`` SDK talks to it over real HTTP. The server therefore
has to look exactly like the API on the wire (status codes, error JSON, SSE framing, headers), and it
refuses every malformed request the real API would refuse -- more strictly in places (roles must
alternate) -- so a bug in how vigil builds requests fails a test instead of failing in production.

What it answers is decided, in this order, by:

1. rules added with :meth:`MessagesAPI.add_rule` (a predicate over the request body and a
   :data:`Responder`), checked in insertion order;
2. a heartbeat turn (the request offers a ``send_message`` tool) is answered ``nothing to say``
   (silence) -- its directives are not read;
3. directives in the text of the current turn's user message (``[[reply=...]]``, ``[[len=N]]``,
   ``[[delay=S]]``, ``[[slow=S]]``, ``[[error=STATUS times=K]]``, ``[[hang]]``, ``[[drop=N]]``,
   ``[[stream_error=overloaded]]``, ``[[tool=NAME {json}]]``), so tests that only control what the
   user types can still steer the model. The current turn's user message is the latest one with a
   text block: user messages made only of tool_result blocks continue the turn;
4. the default: ``echo: <the current turn's user text>`` (directives included, verbatim), or
   ``tool results: [...]`` when the request ends with tool results nobody scripted an answer for.

Standard library only: ``http.server.ThreadingHTTPServer`` on 127.0.0.1 in a daemon thread.

Things about the SDK (anthropic 2.12, on httpx2) that shaped this file:

* the SDK authenticates with ``Authorization: Bearer <api_key>``, not ``x-api-key``; both are accepted;
* it retries 408, 409, 429 and every status >= 500, honouring ``retry-after-ms`` first and then
  ``retry-after``, but only when the value is > 0: ``retry-after: 0`` falls back to its exponential
  backoff (0.5 s, 1 s, ...). Directive errors therefore also send ``retry-after-ms: 10``;
* an SSE ``error`` event arrives on a 200 response, so the SDK raises a plain ``APIStatusError``
  (not ``OverloadedError``) from the stream iterator, and never retries it;
* a stream cut mid-body surfaces as the raw ``httpx2.RemoteProtocolError`` from the iterator (it is not
  wrapped in ``APIConnectionError`` and not retried). That only works because the stream uses chunked
  transfer encoding: a close-delimited body would make a dropped connection look like a normal end.
  A non-streaming request cut mid-body is an ``APIConnectionError`` and *is* retried;
* a hang ends in ``APITimeoutError``, which is also retried: with the default ``max_retries=2`` a
  0.3 s timeout takes ~2 s (three attempts plus backoff) before the caller sees it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import secrets
import select
import socket
import string
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.standins.loopback import LoopbackHandler, LoopbackServer

__all__ = [
    "DropStream",
    "ErrorReply",
    "Hang",
    "MessagesAPI",
    "RecordedRequest",
    "Responder",
    "StreamError",
    "TextReply",
    "ToolCall",
    "ToolUseReply",
    "filler_text",
]


# --------------------------------------------------------------------------------------------------
# What a test can ask the stand-in to answer
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextReply:
    """Answer with ``text``; when streamed and ``seconds`` > 0, spread it over that long in at least
    ``deltas`` text deltas (a non-streaming request just waits ``seconds`` before answering)."""

    text: str
    seconds: float = 0.0
    deltas: int = 10
    delay: float = 0.0


@dataclass(frozen=True)
class ToolCall:
    """One ``tool_use`` block. ``id`` is generated (``toolu_...``) when not given."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class ToolUseReply:
    """Answer with ``stop_reason: tool_use``: optional leading text, then one or more tool calls.

    A call naming a tool the request does not offer is turned into the text ``tool NAME not offered``
    (a real model cannot call a tool it was not given; tests can assert on that text)."""

    calls: Sequence[ToolCall]
    text: str = ""
    delay: float = 0.0


@dataclass(frozen=True)
class ErrorReply:
    """Answer an HTTP error with the real API's error JSON.

    ``error_type`` defaults from the status (429 -> rate_limit_error, 529 -> overloaded_error, ...).
    ``retry_after`` sets ``retry-after`` (seconds), ``retry_after_ms`` sets ``retry-after-ms``, which the
    SDK reads first; ``should_retry`` sets ``x-should-retry``, which overrides the SDK's status rules."""

    status: int
    error_type: str | None = None
    message: str | None = None
    retry_after: float | None = None
    retry_after_ms: int | None = None
    should_retry: bool | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Hang:
    """Never answer: keep the socket open until :meth:`MessagesAPI.stop` or the client hangs up."""

    delay: float = 0.0


@dataclass(frozen=True)
class DropStream:
    """Streaming: send ``message_start`` and the first ``after_chars`` characters of ``text`` as text
    deltas, then cut the connection without ``message_stop``. A non-streaming request gets its headers
    and half of its body before the cut."""

    text: str = ""
    after_chars: int = 40
    delay: float = 0.0


@dataclass(frozen=True)
class StreamError:
    """Streaming: send the first ``after_chars`` characters of ``text``, then an SSE ``event: error``
    (by default ``overloaded_error``), as the API does when it fails mid-stream. A non-streaming request
    gets the matching HTTP error instead (529 for overloaded_error)."""

    text: str = "partial answer before the failure"
    error_type: str = "overloaded_error"
    message: str = "Overloaded"
    after_chars: int = 20
    delay: float = 0.0


Responder = TextReply | ToolUseReply | ErrorReply | Hang | DropStream | StreamError
"""What to answer. :meth:`MessagesAPI.add_rule` also takes a callable ``body -> Responder``."""


# --------------------------------------------------------------------------------------------------
# Recorded requests
# --------------------------------------------------------------------------------------------------


def _blocks(content: Any) -> list[Any]:
    """A message's content as a list of blocks: the API treats a string as one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    return []


def _text_of_blocks(blocks: list[Any]) -> list[str]:
    return [
        b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
    ]


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_of_blocks(content))
    return ""


def _turn_index(messages: list[Any]) -> int | None:
    """Index of the user message that began the current turn: the latest one with a text block.

    User messages made only of tool_result blocks continue a turn; they carry no words of the user."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "user" and _text_of_blocks(_blocks(m.get("content"))):
            return i
    return None


def _turn_text(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    i = _turn_index(messages)
    if i is None:
        return ""
    # Blocks are joined with a newline so that two blocks never run their words together.
    return "\n".join(_text_of_blocks(_blocks(messages[i].get("content"))))


@dataclass
class RecordedRequest:
    """One ``POST /v1/messages`` that passed auth. ``refused`` holds the error message when the
    stand-in answered it with a 4xx validation error (it is then also in ``MessagesAPI.errors``)."""

    body: dict[str, Any]
    headers: dict[str, str]
    stream: bool
    refused: str | None = None

    def last_user_text(self) -> str:
        """Text blocks (newline-joined) of the latest user message that has any text block."""
        return _turn_text(self.body)

    def all_text(self) -> str:
        """Every piece of text in the request: system, message text, tool_use inputs, tool_results.

        For "no request ever carries another chat's words" assertions."""
        parts: list[str] = []
        system = self.body.get("system")
        if isinstance(system, str):
            parts.append(system)
        elif isinstance(system, list):
            parts.extend(_text_of_blocks(system))
        messages = self.body.get("messages")
        for m in messages if isinstance(messages, list) else []:
            if not isinstance(m, dict):
                continue
            for b in _blocks(m.get("content")):
                if not isinstance(b, dict):
                    continue
                if b.get("type") == "text" and isinstance(b.get("text"), str):
                    parts.append(b["text"])
                elif b.get("type") == "tool_result":
                    parts.append(_tool_result_text(b))
                elif b.get("type") == "tool_use":
                    parts.append(json.dumps(b.get("input"), ensure_ascii=False))
        return "\n".join(parts)


# --------------------------------------------------------------------------------------------------
# Validation, as strict as the real API (stricter where noted)
# --------------------------------------------------------------------------------------------------


class _Refusal(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _invalid(message: str) -> _Refusal:
    return _Refusal(400, "invalid_request_error", message)


# The fields anthropic 2.12's messages.create()/stream() put in the body (resources/messages/messages.py).
# user_profile_id and workspace_id travel as headers. There is no temperature/top_p/top_k in this SDK.
_TOP_LEVEL_FIELDS = frozenset(
    {
        "max_tokens",
        "messages",
        "model",
        "cache_control",
        "container",
        "diagnostics",
        "inference_geo",
        "metadata",
        "output_config",
        "service_tier",
        "speed",
        "stop_sequences",
        "stream",
        "system",
        "thinking",
        "tool_choice",
        "tools",
    }
)
# client.beta.messages adds these; the beta endpoint is the same path, told apart by anthropic-beta.
_BETA_TOP_LEVEL_FIELDS = frozenset(
    {
        "billing_policy",
        "compaction",
        "context_management",
        "fallback_credit_token",
        "fallbacks",
        "mcp_servers",
        "thread",
    }
)
# Fields the SDK types as Optional: null is accepted for these and refused for the rest.
_NULLABLE_FIELDS = frozenset({"cache_control", "container", "diagnostics", "inference_geo", "speed"})

# Built-in (typed) tools and the name each must carry.
_BUILTIN_TOOLS: dict[str, str | None] = {
    "bash_20250124": "bash",
    "text_editor_20250124": "str_replace_editor",
    "text_editor_20250429": "str_replace_based_edit_tool",
    "text_editor_20250728": "str_replace_based_edit_tool",
    "memory_20250818": "memory",
    "web_search_20250305": "web_search",
    "web_search_20260209": "web_search",
    "web_search_20260318": "web_search",
    "web_fetch_20250910": "web_fetch",
    "web_fetch_20260209": "web_fetch",
    "web_fetch_20260309": "web_fetch",
    "web_fetch_20260318": "web_fetch",
    "code_execution_20250522": "code_execution",
    "code_execution_20250825": "code_execution",
    "code_execution_20260120": "code_execution",
    "code_execution_20260521": "code_execution",
    "tool_search_tool_bm25_20251119": "tool_search_tool_bm25",
    "tool_search_tool_regex_20251119": "tool_search_tool_regex",
    "browser_toolset_20260801": None,
    "computer_toolset_20260801": None,
}
_COMMON_TOOL_KEYS = frozenset(
    {"name", "type", "cache_control", "allowed_callers", "defer_loading", "input_examples", "strict"}
)
_CUSTOM_TOOL_KEYS = _COMMON_TOOL_KEYS | {"description", "input_schema", "eager_input_streaming"}
# The two built-ins vigil uses get their keys checked exactly; other built-ins are accepted as sent.
_STRICT_BUILTIN_KEYS: dict[str, frozenset[str]] = {
    "bash_20250124": _COMMON_TOOL_KEYS,
    "text_editor_20250728": _COMMON_TOOL_KEYS | {"max_characters"},
}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_TOOL_USE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")

# Keys each content block type may carry (from the SDK's *BlockParam TypedDicts). Blocks vigil builds
# by dumping SDK response models (e.g. a ParsedTextBlock's parsed_output) are refused as the API would.
_BLOCK_KEYS: dict[str, frozenset[str]] = {
    "text": frozenset({"type", "text", "cache_control", "citations"}),
    "tool_use": frozenset({"type", "id", "name", "input", "cache_control", "caller", "toolset_name"}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error", "cache_control", "toolset_name"}),
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
    "image": frozenset({"type", "source", "cache_control"}),
    "document": frozenset({"type", "source", "cache_control", "citations", "context", "title"}),
}
# Other block types the SDK can send; accepted without a key check (vigil does not use them).
_LOOSE_BLOCK_TYPES = frozenset(
    {
        "search_result",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "container_upload",
    }
)
_USER_ONLY = frozenset({"tool_result", "image", "document", "search_result", "container_upload"})
_ASSISTANT_ONLY = frozenset(
    {
        "tool_use",
        "thinking",
        "redacted_thinking",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
    }
)
_TOOL_RESULT_CONTENT_TYPES = frozenset(
    {"text", "image", "document", "search_result", "tool_reference", "browser_state"}
)
_MAX_CACHE_BREAKPOINTS = 4
_CACHE_LOOKBACK = 20  # block boundaries the API checks before each breakpoint


def _bad_tag(path: str, tag: Any) -> _Refusal:
    return _invalid(f"{path}: Input tag '{tag}' found using 'type' does not match any of the expected tags")


def _check_cache_control(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise _invalid(f"{path}: Input should be a valid dictionary")
    if value.get("type") != "ephemeral":
        raise _invalid(f"{path}.type: Input should be 'ephemeral'")
    for key in value:
        if key not in ("type", "ttl"):
            raise _invalid(f"{path}.{key}: Extra inputs are not permitted")
    if "ttl" in value and value["ttl"] not in ("5m", "1h"):
        raise _invalid(f"{path}.ttl: Input should be '5m' or '1h'")


def _check_extra_keys(obj: dict[str, Any], allowed: frozenset[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _invalid(f"{path}.{key}: Extra inputs are not permitted")


def _check_text_block(block: dict[str, Any], path: str) -> None:
    _check_extra_keys(block, _BLOCK_KEYS["text"], path)
    text = block.get("text")
    if not isinstance(text, str):
        raise _invalid(
            f"{path}.text: Field required" if "text" not in block else f"{path}.text: Input should be a valid string"
        )
    if not text:
        raise _invalid("messages: text content blocks must be non-empty")
    if not text.strip():
        raise _invalid("messages: text content blocks must contain non-whitespace text")


class _Validator:
    """Checks one request body; raises :class:`_Refusal` on the first problem, like the API."""

    def __init__(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.body = body
        self.headers = headers
        self.cache_breakpoints = 0

    def run(self) -> None:
        body, headers = self.body, self.headers
        if not headers.get("anthropic-version"):
            raise _invalid("anthropic-version: header is required")
        allowed = _TOP_LEVEL_FIELDS | (_BETA_TOP_LEVEL_FIELDS if headers.get("anthropic-beta") else frozenset())
        for key in body:
            if key not in allowed:
                raise _invalid(f"{key}: Extra inputs are not permitted")
        for key in ("model", "max_tokens", "messages"):
            if key not in body:
                raise _invalid(f"{key}: Field required")
        for key, value in body.items():
            if value is None and key not in _NULLABLE_FIELDS:
                raise _invalid(f"{key}: Input should not be null")
        model = body["model"]
        if not isinstance(model, str):
            raise _invalid("model: Input should be a valid string")
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise _invalid("max_tokens: Input should be a valid integer")
        # The SDK documents max_tokens=0 as valid (it pre-warms the prompt cache), so only < 0 is refused.
        if max_tokens < 0:
            raise _invalid("max_tokens: Input should be greater than or equal to 0")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise _invalid("stream: Input should be a valid boolean")
        self._check_optional_fields()
        tool_names = self._check_tools()
        self._check_system()
        self._check_messages(bool(tool_names))
        if body.get("cache_control") is not None:
            _check_cache_control(body["cache_control"], "cache_control")
            # Top-level cache_control marks the last cacheable block: it takes a breakpoint slot.
            self.cache_breakpoints += 1
        if self.cache_breakpoints > _MAX_CACHE_BREAKPOINTS:
            raise _invalid(
                f"A maximum of {_MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
                f"Found {self.cache_breakpoints}."
            )
        self._check_tool_choice(tool_names)
        # The model is looked up last: a malformed body is a 400 whatever the model.
        if not model.startswith("claude-"):
            raise _Refusal(404, "not_found_error", f"model: {model}")

    def _check_optional_fields(self) -> None:
        body = self.body
        if "metadata" in body:
            metadata = body["metadata"]
            if not isinstance(metadata, dict):
                raise _invalid("metadata: Input should be a valid dictionary")
            _check_extra_keys(metadata, frozenset({"user_id"}), "metadata")
            if metadata.get("user_id") is not None and not isinstance(metadata["user_id"], str):
                raise _invalid("metadata.user_id: Input should be a valid string")
        if "stop_sequences" in body:
            seqs = body["stop_sequences"]
            if not isinstance(seqs, list) or not all(isinstance(s, str) for s in seqs):
                raise _invalid("stop_sequences: Input should be a valid list of strings")
            if any(not s.strip() for s in seqs):
                raise _invalid("stop_sequences: each stop sequence must contain non-whitespace")
        if "service_tier" in body and body["service_tier"] not in ("auto", "standard_only"):
            raise _invalid("service_tier: Input should be 'auto' or 'standard_only'")
        if body.get("speed") is not None and body["speed"] not in ("standard", "fast"):
            raise _invalid("speed: Input should be 'standard' or 'fast'")
        for key in ("output_config", "container", "diagnostics"):
            if body.get(key) is not None and not isinstance(body[key], dict | str):
                raise _invalid(f"{key}: Input should be a valid dictionary")
        if "thinking" in body:
            thinking = body["thinking"]
            if not isinstance(thinking, dict) or thinking.get("type") not in (
                "enabled",
                "disabled",
                "adaptive",
            ):
                raise _invalid("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
            if thinking["type"] == "enabled":
                budget = thinking.get("budget_tokens")
                if not isinstance(budget, int) or budget < 1024:
                    raise _invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
                if budget >= body["max_tokens"]:
                    raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`")

    def _check_tools(self) -> set[str]:
        tools = self.body.get("tools")
        if tools is None:
            return set()
        if not isinstance(tools, list):
            raise _invalid("tools: Input should be a valid list")
        names: set[str] = set()
        for i, tool in enumerate(tools):
            path = f"tools.{i}"
            if not isinstance(tool, dict):
                raise _invalid(f"{path}: Input should be a valid dictionary")
            tool_type = tool.get("type")
            name = tool.get("name")
            if tool_type in (None, "custom"):
                _check_extra_keys(tool, _CUSTOM_TOOL_KEYS, f"{path}.custom")
                if not isinstance(name, str) or not _TOOL_NAME.match(name):
                    raise _invalid(f"{path}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
                schema = tool.get("input_schema")
                if schema is None:
                    raise _invalid(f"{path}.custom.input_schema: Field required")
                if not isinstance(schema, dict) or schema.get("type") != "object":
                    raise _invalid(f"{path}.custom.input_schema.type: Input should be 'object'")
                if "description" in tool and not isinstance(tool["description"], str):
                    raise _invalid(f"{path}.custom.description: Input should be a valid string")
            elif isinstance(tool_type, str) and tool_type in _BUILTIN_TOOLS:
                if tool_type in _STRICT_BUILTIN_KEYS:
                    _check_extra_keys(tool, _STRICT_BUILTIN_KEYS[tool_type], f"{path}.{tool_type}")
                expected = _BUILTIN_TOOLS[tool_type]
                if expected is not None and name != expected:
                    raise _invalid(f"{path}.{tool_type}.name: Input should be '{expected}'")
                if not isinstance(name, str):
                    raise _invalid(f"{path}.{tool_type}.name: Field required")
                if "max_characters" in tool and tool["max_characters"] is not None:
                    mc = tool["max_characters"]
                    if not isinstance(mc, int) or isinstance(mc, bool) or mc < 1:
                        raise _invalid(f"{path}.{tool_type}.max_characters: Input should be greater than or equal to 1")
            else:
                raise _bad_tag(path, tool_type)
            if tool.get("cache_control") is not None:
                _check_cache_control(tool["cache_control"], f"{path}.cache_control")
                self.cache_breakpoints += 1
            if name in names:
                raise _invalid("tools: Tool names must be unique.")
            names.add(name)
        return names

    def _check_system(self) -> None:
        if "system" not in self.body:
            return
        system = self.body["system"]
        if isinstance(system, str):
            return
        if not isinstance(system, list):
            raise _invalid("system: Input should be a valid string or a list of text blocks")
        for i, block in enumerate(system):
            path = f"system.{i}"
            if not isinstance(block, dict) or block.get("type") != "text":
                raise _invalid(f"{path}.type: Input should be 'text'")
            _check_extra_keys(block, _BLOCK_KEYS["text"], path)
            text = block.get("text")
            if not isinstance(text, str) or not text.strip():
                raise _invalid("system: text content blocks must contain non-whitespace text")
            if block.get("cache_control") is not None:
                _check_cache_control(block["cache_control"], f"{path}.cache_control")
                self.cache_breakpoints += 1

    def _check_messages(self, has_tools: bool) -> None:
        messages = self.body["messages"]
        if not isinstance(messages, list):
            raise _invalid("messages: Input should be a valid list")
        if not messages:
            raise _invalid("messages: at least one message is required")
        seen_tool_use_ids: set[str] = set()
        uses_tool_blocks = False
        previous_role: str | None = None
        for i, message in enumerate(messages):
            path = f"messages.{i}"
            if not isinstance(message, dict):
                raise _invalid(f"{path}: Input should be a valid dictionary")
            _check_extra_keys(message, frozenset({"role", "content"}), path)
            role = message.get("role")
            if role not in ("user", "assistant"):
                # The SDK types a "system" role here too; the stand-in refuses it on purpose.
                raise _invalid(f"{path}.role: Input should be 'user' or 'assistant'")
            if i == 0 and role != "user":
                raise _invalid('messages: first message must use the "user" role')
            if role == previous_role:
                # Stricter than the real API (which merges consecutive turns), on purpose.
                raise _invalid(
                    f'messages: roles must alternate between "user" and "assistant", '
                    f'but found multiple "{role}" roles in a row'
                )
            previous_role = role
            if "content" not in message:
                raise _invalid(f"{path}.content: Field required")
            content = message["content"]
            if isinstance(content, str):
                if not content:
                    raise _invalid(f"{path}: all messages must have non-empty content")
                if not content.strip():
                    raise _invalid("messages: text content blocks must contain non-whitespace text")
                continue
            if not isinstance(content, list):
                raise _invalid(f"{path}.content: Input should be a valid string or a list of content blocks")
            if not content:
                raise _invalid(f"{path}: all messages must have non-empty content")
            for j, block in enumerate(content):
                uses_tool_blocks |= self._check_block(block, role, f"{path}.content.{j}", seen_tool_use_ids)
        if uses_tool_blocks and not has_tools:
            raise _invalid("Requests which include `tool_use` or `tool_result` blocks must define tools.")
        self._check_tool_pairing(messages)
        last = messages[-1]
        if last["role"] == "assistant":
            blocks = _blocks(last["content"])
            tail = blocks[-1] if blocks else None
            if isinstance(tail, dict) and tail.get("type") == "text" and tail["text"] != tail["text"].rstrip():
                raise _invalid("messages: final assistant content cannot end with trailing whitespace")

    def _check_block(self, block: Any, role: str, path: str, seen_tool_use_ids: set[str]) -> bool:
        """Checks one content block; returns whether it is a tool_use/tool_result block."""
        if not isinstance(block, dict):
            raise _invalid(f"{path}: Input should be a valid dictionary")
        block_type = block.get("type")
        if block_type not in _BLOCK_KEYS and block_type not in _LOOSE_BLOCK_TYPES:
            raise _bad_tag(path, block_type)
        if role == "assistant" and block_type in _USER_ONLY:
            raise _invalid(f"{path}: `{block_type}` blocks can only be in `user` messages")
        if role == "user" and block_type in _ASSISTANT_ONLY:
            raise _invalid(f"{path}: `{block_type}` blocks can only be in `assistant` messages")
        if block.get("cache_control") is not None:
            _check_cache_control(block["cache_control"], f"{path}.cache_control")
            self.cache_breakpoints += 1
        if block_type == "text":
            _check_text_block(block, path)
        elif block_type == "tool_use":
            _check_extra_keys(block, _BLOCK_KEYS["tool_use"], path)
            tool_use_id = block.get("id")
            if not isinstance(tool_use_id, str) or not _TOOL_USE_ID.match(tool_use_id):
                raise _invalid(f"{path}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
            if tool_use_id in seen_tool_use_ids:
                raise _invalid(f"{path}: `tool_use` ids must be unique: {tool_use_id}")
            seen_tool_use_ids.add(tool_use_id)
            if not isinstance(block.get("name"), str) or not block["name"]:
                raise _invalid(f"{path}.name: Field required")
            if not isinstance(block.get("input"), dict):
                raise _invalid(f"{path}.input: Input should be a valid dictionary")
            return True
        elif block_type == "tool_result":
            _check_extra_keys(block, _BLOCK_KEYS["tool_result"], path)
            if not isinstance(block.get("tool_use_id"), str):
                raise _invalid(f"{path}.tool_use_id: Field required")
            if "is_error" in block and not isinstance(block["is_error"], bool):
                raise _invalid(f"{path}.is_error: Input should be a valid boolean")
            content = block.get("content")
            if isinstance(content, list):
                for k, inner in enumerate(content):
                    inner_path = f"{path}.content.{k}"
                    if not isinstance(inner, dict) or inner.get("type") not in _TOOL_RESULT_CONTENT_TYPES:
                        tag = inner.get("type") if isinstance(inner, dict) else None
                        raise _bad_tag(inner_path, tag)
                    if inner.get("type") == "text":
                        _check_text_block(inner, inner_path)
                    if inner.get("cache_control") is not None:
                        _check_cache_control(inner["cache_control"], f"{inner_path}.cache_control")
                        self.cache_breakpoints += 1
            elif content is not None and not isinstance(content, str):
                raise _invalid(f"{path}.content: Input should be a valid string or a list of content blocks")
            return True
        elif block_type in _BLOCK_KEYS:
            _check_extra_keys(block, _BLOCK_KEYS[block_type], path)
        return False

    def _check_tool_pairing(self, messages: list[dict[str, Any]]) -> None:
        """Every tool_use is answered by a tool_result in the very next user message, results first."""
        for i, message in enumerate(messages):
            blocks = _blocks(message["content"])
            if message["role"] == "assistant":
                ids = [b["id"] for b in blocks if b.get("type") == "tool_use"]
                if not ids:
                    continue
                following = _blocks(messages[i + 1]["content"]) if i + 1 < len(messages) else []
                answered = {b.get("tool_use_id") for b in following if b.get("type") == "tool_result"}
                missing = [tid for tid in ids if tid not in answered]
                if missing:
                    raise _invalid(
                        f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                        f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                        "a corresponding `tool_result` block in the next message."
                    )
                continue
            previous = _blocks(messages[i - 1]["content"]) if i > 0 else []
            offered = {b.get("id") for b in previous if b.get("type") == "tool_use"}
            seen_results: set[str] = set()
            seen_other = False
            for j, block in enumerate(blocks):
                if block.get("type") != "tool_result":
                    seen_other = True
                    continue
                tool_use_id = block["tool_use_id"]
                if tool_use_id not in offered:
                    raise _invalid(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{tool_use_id}. Each `tool_result` block must have a corresponding `tool_use` block "
                        "in the previous message."
                    )
                if tool_use_id in seen_results:
                    raise _invalid(
                        f"messages.{i}.content.{j}: each tool_use must have a single result. "
                        f"Found multiple `tool_result` blocks with id: {tool_use_id}"
                    )
                seen_results.add(tool_use_id)
                if seen_other:
                    raise _invalid(
                        f"messages.{i}: `tool_result` blocks must come first in the user message content, "
                        "before any other content"
                    )

    def _check_tool_choice(self, tool_names: set[str]) -> None:
        if "tool_choice" not in self.body:
            return
        choice = self.body["tool_choice"]
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise _invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        allowed = {"type", "disable_parallel_tool_use"} | ({"name"} if choice["type"] == "tool" else set())
        _check_extra_keys(choice, frozenset(allowed), f"tool_choice.{choice['type']}")
        if choice["type"] in ("any", "tool") and not tool_names:
            raise _invalid("tool_choice: tool_choice may only be specified while providing tools.")
        if choice["type"] == "tool" and choice.get("name") not in tool_names:
            raise _invalid(f"tool_choice.tool.name: Tool '{choice.get('name')}' not found in provided tools")


# --------------------------------------------------------------------------------------------------
# Directives
# --------------------------------------------------------------------------------------------------

_DIRECTIVE = re.compile(r"\[\[(reply|len|delay|slow|error|hang|drop|stream_error|tool)(=|\]\])")
_TOOL_DIRECTIVE_NAME = re.compile(r"\s*([A-Za-z0-9_-]+)\s*")
_ERROR_DIRECTIVE = re.compile(r"^\s*(\d{3})(?:\s+times=(\d+))?\s*$")


@dataclass
class _Directives:
    reply: str | None = None
    length: int | None = None
    delay: float = 0.0
    slow: float = 0.0
    error: tuple[int, int | None] | None = None
    hang: bool = False
    drop: int | None = None
    stream_error: str | None = None
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _parse_directives(text: str) -> _Directives:
    found = _Directives()
    decoder = json.JSONDecoder()
    pos = 0
    while match := _DIRECTIVE.search(text, pos):
        name = match.group(1)
        if match.group(2) == "]]":
            value = None
            pos = match.end()
        elif name == "tool":
            # The JSON may itself contain "]]", so it is decoded rather than cut at the first "]]".
            name_match = _TOOL_DIRECTIVE_NAME.match(text, match.end())
            if name_match is None:
                found.problems.append(f"tool directive without a tool name at {match.start()}")
                pos = match.end()
                continue
            tool_input: Any = {}
            p = name_match.end()
            if not text.startswith("]]", p):
                try:
                    tool_input, p = decoder.raw_decode(text, p)
                except json.JSONDecodeError as e:
                    found.problems.append(f"tool {name_match.group(1)}: bad JSON input ({e})")
                    pos = p
                    continue
                while p < len(text) and text[p].isspace():
                    p += 1
            if not text.startswith("]]", p) or not isinstance(tool_input, dict):
                found.problems.append(f"tool {name_match.group(1)}: expected a JSON object then ]]")
                pos = p
                continue
            found.tools.append((name_match.group(1), tool_input))
            pos = p + 2
            continue
        else:
            end = text.find("]]", match.end())
            if end < 0:
                found.problems.append(f"unterminated [[{name}=")
                break
            value = text[match.end() : end]
            pos = end + 2
        try:
            _apply_directive(found, name, value)
        except ValueError as e:
            found.problems.append(f"[[{name}={value}]]: {e}")
    return found


def _apply_directive(found: _Directives, name: str, value: str | None) -> None:
    if name == "hang":
        found.hang = True
        return
    if value is None:
        raise ValueError("needs a value")
    if name == "reply":
        found.reply = value
    elif name == "len":
        found.length = int(value)
    elif name == "delay":
        found.delay = float(value)
    elif name == "slow":
        found.slow = float(value)
    elif name == "drop":
        found.drop = int(value)
    elif name == "stream_error":
        found.stream_error = value.strip()
    elif name == "error":
        m = _ERROR_DIRECTIVE.match(value)
        if m is None:
            raise ValueError("expected STATUS or STATUS times=N")
        found.error = (int(m.group(1)), int(m.group(2)) if m.group(2) else None)


_WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
]  # fmt: skip
# Line lengths and lines per paragraph cycle through these, so a long reply has short lines, long
# lines, single-line and many-line paragraphs: every branch of a message splitter gets exercised.
_LINE_LENGTHS = (72, 18, 133, 47, 260, 9, 95, 410, 61, 1500, 33, 120, 3000, 25)
_LINES_PER_PARAGRAPH = (3, 1, 5, 2, 4, 1, 7)


def filler_text(n: int) -> str:
    """Deterministic text of exactly ``n`` characters in numbered paragraphs (``p1 ...``, ``p2 ...``)
    of varied line lengths; it never starts or ends with whitespace."""
    paragraphs: list[str] = []
    total = 0
    word = line_no = 0
    while total < n:
        lines: list[str] = []
        for _ in range(_LINES_PER_PARAGRAPH[len(paragraphs) % len(_LINES_PER_PARAGRAPH)]):
            target = _LINE_LENGTHS[line_no % len(_LINE_LENGTHS)]
            line_no += 1
            line = f"p{len(paragraphs) + 1}" if not lines else ""
            while len(line) < target:
                w = _WORDS[word % len(_WORDS)]
                word += 1
                line = f"{line} {w}" if line else w
            lines.append(line)
        paragraph = "\n".join(lines)
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    text = "\n\n".join(paragraphs)[:n]
    # A reply ending in whitespace is refused by the API when sent back as the final assistant turn.
    if text and text[-1].isspace():
        text = text[:-1] + "."
    return text


# --------------------------------------------------------------------------------------------------
# Planning an answer
# --------------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    delay: float = 0.0
    hang: bool = False
    error: ErrorReply | None = None
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    seconds: float = 0.0
    min_deltas: int = 10
    drop_after: int | None = None
    stream_error: tuple[str, str] | None = None
    stream_error_after: int = 20


def _plan_from_responder(responder: Responder) -> _Plan:
    if isinstance(responder, TextReply):
        return _Plan(delay=responder.delay, text=responder.text, seconds=responder.seconds, min_deltas=responder.deltas)
    if isinstance(responder, ToolUseReply):
        return _Plan(delay=responder.delay, text=responder.text, calls=list(responder.calls))
    if isinstance(responder, ErrorReply):
        return _Plan(delay=responder.delay, error=responder)
    if isinstance(responder, Hang):
        return _Plan(delay=responder.delay, hang=True)
    if isinstance(responder, DropStream):
        return _Plan(delay=responder.delay, text=responder.text, drop_after=responder.after_chars)
    if isinstance(responder, StreamError):
        return _Plan(
            delay=responder.delay,
            text=responder.text,
            stream_error=(responder.error_type, responder.message),
            stream_error_after=responder.after_chars,
        )
    raise TypeError(f"not a Responder: {responder!r}")


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES = {
    "invalid_request_error": "Invalid request",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
    "overloaded_error": "Overloaded",
}
_STATUS_OF_ERROR_TYPE = {
    "overloaded_error": 529,
    "api_error": 500,
    "rate_limit_error": 429,
    "timeout_error": 504,
}


def _offered_tools(body: dict[str, Any]) -> set[str]:
    tools = body.get("tools")
    return {t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)} if tools else set()


def _tool_rounds(messages: list[dict[str, Any]]) -> int:
    """How many tool_result-only user messages follow the message that began the current turn."""
    start = _turn_index(messages)
    after = messages[start + 1 :] if start is not None else messages
    return sum(1 for m in after if m["role"] == "user")


def _ends_with_tool_results(messages: list[dict[str, Any]]) -> bool:
    last = messages[-1]
    blocks = _blocks(last["content"])
    return last["role"] == "user" and bool(blocks) and all(b.get("type") == "tool_result" for b in blocks)


def _tool_results_text(messages: list[dict[str, Any]]) -> str:
    """``tool results: [...]``: what vigil sent back in the latest tool_result message."""
    for m in reversed(messages):
        blocks = _blocks(m["content"])
        results = [b for b in blocks if b.get("type") == "tool_result"]
        if m["role"] == "user" and results:
            listed = [{"content": _tool_result_text(b), "is_error": bool(b.get("is_error", False))} for b in results]
            return "tool results: " + json.dumps(listed, ensure_ascii=False)
    return "tool results: []"


def _default_text(body: dict[str, Any]) -> str:
    messages = body["messages"]
    if _ends_with_tool_results(messages):
        return _tool_results_text(messages)
    return "echo: " + _turn_text(body)


# --------------------------------------------------------------------------------------------------
# Usage and prompt caching
# --------------------------------------------------------------------------------------------------


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def _without_cache_control(obj: dict[str, Any]) -> dict[str, Any]:
    # cache_control marks where a prefix ends; it is not part of the cached content itself.
    return {k: v for k, v in obj.items() if k != "cache_control"}


def _cache_segments(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The request as the API caches it: tools, then system, then message blocks, in that order.

    Each segment is (serialized text, ttl if a cache breakpoint ends there else None)."""
    segments: list[tuple[str, str | None]] = []

    def ttl(obj: dict[str, Any]) -> str | None:
        cc = obj.get("cache_control")
        return str(cc.get("ttl", "5m")) if isinstance(cc, dict) else None

    def dump(obj: Any) -> str:
        return json.dumps(obj, sort_keys=True, ensure_ascii=False)

    for tool in body.get("tools") or []:
        segments.append(("tool:" + dump(_without_cache_control(tool)), ttl(tool)))
    system = body.get("system")
    if isinstance(system, str) and system:
        segments.append(("system:" + system, None))
    elif isinstance(system, list):
        for block in system:
            segments.append(("system:" + dump(_without_cache_control(block)), ttl(block)))
    for message in body["messages"]:
        for block in _blocks(message["content"]):
            inner = block.get("content")
            marked = ttl(block)
            if isinstance(inner, list):
                # A breakpoint inside a tool_result's content ends the prefix at that tool_result.
                marked = marked or next((ttl(b) for b in inner if isinstance(b, dict) and ttl(b)), None)
                block = {
                    **block,
                    "content": [_without_cache_control(b) for b in inner if isinstance(b, dict)],
                }
            segments.append((message["role"] + ":" + dump(_without_cache_control(block)), marked))
    if isinstance(body.get("cache_control"), dict) and segments:
        text, marked = segments[-1]
        segments[-1] = (text, marked or str(body["cache_control"].get("ttl", "5m")))
    return segments


@dataclass
class _InputUsage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    ttl: str


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------

_ALPHANUM = string.ascii_letters + string.digits


def _random_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUM) for _ in range(24))


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


@dataclass(eq=False)  # identity: two rules with equal fields are still two rules
class _Rule:
    predicate: Callable[[dict[str, Any]], bool]
    responder: Responder | Callable[[dict[str, Any]], Responder]
    remaining: int | None


class _Disconnected(Exception):
    """The client went away, or stop() released the request."""


class _Server(LoopbackServer):
    def __init__(self, api: MessagesAPI) -> None:
        self.api = api
        super().__init__(_Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-answer is routine here (timeouts, drops); anything else is a bug.
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError | OSError | _Disconnected):
            super().handle_error(request, client_address)


class _Handler(LoopbackHandler):
    # HTTP/1.1 (from LoopbackHandler) also gives chunked streams, so that a dropped stream is
    # detectable by the client as an incomplete body.
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self.server.api._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.api._handle(self, "POST")

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


class MessagesAPI:
    """The stand-in server. See the module docstring for what it answers and refuses."""

    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self.errors: list[dict[str, Any]] = []
        # Prompt-cache entries shorter than this many tokens are not cached (the real API's minimum is
        # 1024+ tokens depending on the model); 0 by default so small test prompts cache too.
        self.min_cache_tokens = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._rules: list[_Rule] = []
        self._cache: set[str] = set()
        self._error_counts: dict[str, int] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None

    # ---- lifecycle ----

    def start(self) -> MessagesAPI:
        self._stopping.clear()
        self._server = _Server(self)
        self.base_url = f"http://127.0.0.1:{self._server.port}"
        self._server.serve_in_thread(f"messages-api:{self._server.port}")
        return self

    def stop(self) -> None:
        # Released hangs, delays and slow streams see the event and end their requests.
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.close()

    def __enter__(self) -> MessagesAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- test controls ----

    def add_rule(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        responder: Responder | Callable[[dict[str, Any]], Responder],
        times: int | None = None,
    ) -> None:
        """Answer requests whose body satisfies ``predicate`` with ``responder`` (or with what a callable
        responder returns for the body), for the next ``times`` matching requests (None = forever).

        A predicate that raises counts as not matching, so ``lambda b: b["tools"][0]...`` is fine."""
        with self._lock:
            self._rules.append(_Rule(predicate, responder, times))

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def clear_cache(self) -> None:
        """Forget every prompt-cache entry (as if they had all expired)."""
        with self._lock:
            self._cache.clear()

    def wait_for_requests(self, n: int, timeout: float = 10) -> list[RecordedRequest]:
        """Block until at least ``n`` requests were recorded; returns a snapshot of them all."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= n, timeout=timeout):
                texts = [r.last_user_text()[:60] for r in self.requests]
                raise AssertionError(f"expected {n} requests within {timeout}s, got {len(self.requests)}: {texts}")
            return list(self.requests)

    # ---- request handling ----

    def _refuse(self, handler: _Handler, refusal: _Refusal, request_id: str, body: Any) -> None:
        # Recorded so a test can assert vigil was never refused; errors a test asked for (rules,
        # [[error=...]]) go through _send_error instead and are not recorded.
        with self._lock:
            self.errors.append(
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

    def _handle(self, handler: _Handler, method: str) -> None:
        request_id = _random_id("req_")
        headers = {k.lower(): v for k, v in handler.headers.items()}
        length = int(headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = urlsplit(handler.path).path
        try:
            if not self._authorized(headers):
                raise _Refusal(401, "authentication_error", "invalid x-api-key")
            if method == "GET" and path == "/v1/models":
                data = [_model_info(m) for m, _, _ in _MODELS]
                page = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
                handler.send_json(200, page, request_id)
            elif method == "GET" and path.startswith("/v1/models/"):
                model_id = unquote(path.removeprefix("/v1/models/"))
                if not model_id.startswith("claude-"):
                    raise _Refusal(404, "not_found_error", f"model: {model_id}")
                handler.send_json(200, _model_info(model_id), request_id)
            elif method == "POST" and path == "/v1/messages":
                self._messages(handler, headers, raw, request_id)
            elif method == "POST" and path == "/v1/messages/count_tokens":
                self._count_tokens(handler, headers, raw, request_id)
            else:
                raise _Refusal(404, "not_found_error", "Not Found")
        except _Refusal as refusal:
            self._refuse(handler, refusal, request_id, body=_loads_or_none(raw))
        except _Disconnected:
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
            raise _invalid(f"There was an error parsing the body of the request: {e}") from None
        if not isinstance(body, dict):
            raise _invalid("Input should be a valid dictionary")
        return body

    def _count_tokens(self, handler: _Handler, headers: dict[str, str], raw: bytes, request_id: str) -> None:
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
                raise _invalid(f"{key}: Extra inputs are not permitted")
        _Validator({**body, "max_tokens": 1}, headers).run()
        total = sum(len(text) for text, _ in _cache_segments(body))
        handler.send_json(200, {"input_tokens": _tokens(total)}, request_id)

    def _messages(self, handler: _Handler, headers: dict[str, str], raw: bytes, request_id: str) -> None:
        body = self._parse_body(raw)
        refusal: _Refusal | None = None
        try:
            _Validator(body, headers).run()
        except _Refusal as r:
            refusal = r
        stream = body.get("stream") is True
        with self._arrived:
            self.requests.append(RecordedRequest(body, headers, stream, refusal.message if refusal else None))
            self._arrived.notify_all()
        if refusal is not None:
            raise refusal
        plan = self._decide(body)
        self._wait(handler, plan.delay)
        if plan.hang:
            self._wait(handler, math.inf)
        if plan.error is not None:
            self._send_error(handler, plan.error, request_id)
            return
        if plan.stream_error is not None and not stream:
            error_type, error_message = plan.stream_error
            self._send_error(
                handler,
                ErrorReply(_STATUS_OF_ERROR_TYPE.get(error_type, 500), error_type, error_message),
                request_id,
            )
            return
        message = self._build_message(body, plan)
        if stream:
            self._stream(handler, message, plan, request_id)
        else:
            self._wait(handler, plan.seconds)
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

    def _wait(self, handler: _Handler, seconds: float) -> None:
        """Sleep, but give up (raise _Disconnected) on stop() or when the client hangs up."""
        if seconds <= 0:
            return
        deadline = time.monotonic() + seconds
        while True:
            if self._stopping.is_set() or handler.client_gone():
                raise _Disconnected
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._stopping.wait(min(remaining, 0.05))

    def _send_error(self, handler: _Handler, error: ErrorReply, request_id: str) -> None:
        error_type = error.error_type or _ERROR_TYPES.get(error.status, "api_error")
        message = error.message or _ERROR_MESSAGES.get(error_type, "Error")
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

    # ---- deciding what to answer ----

    def _decide(self, body: dict[str, Any]) -> _Plan:
        # Predicates run outside the lock, so one may look at api.requests without deadlocking.
        with self._lock:
            rules = list(self._rules)
        responder: Responder | Callable[[dict[str, Any]], Responder] | None = None
        for rule in rules:
            try:
                matched = bool(rule.predicate(body))
            except Exception:
                matched = False
            if not matched:
                continue
            with self._lock:
                if rule not in self._rules:  # used up by a concurrent request meanwhile
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
            responder = rule.responder
            break
        if responder is not None:
            resolved = responder if isinstance(responder, Responder) else responder(body)
            return _plan_from_responder(resolved)
        if "send_message" in _offered_tools(body):
            # A heartbeat turn: unless a rule says otherwise the model stays silent. Directives are
            # not read here, so words quoted from a chat can never steer a heartbeat by accident.
            return _Plan(text="nothing to say")
        return self._plan_from_directives(body)

    def _plan_from_directives(self, body: dict[str, Any]) -> _Plan:
        turn_text = _turn_text(body)
        found = _parse_directives(turn_text)
        if found.problems:
            return _Plan(text="bad directive: " + "; ".join(found.problems))
        plan = _Plan(delay=found.delay, seconds=found.slow)
        if found.hang:
            plan.hang = True
            return plan
        if found.error is not None:
            status, times = found.error
            with self._lock:
                served = self._error_counts.get(turn_text, 0)
                failing = times is None or served < times
                if failing:
                    self._error_counts[turn_text] = served + 1
            if failing:
                retryable = status in (408, 409, 429) or status >= 500
                plan.error = ErrorReply(
                    status,
                    # 0 as the brief asks; the SDK ignores 0 and backs off 0.5 s+, so retry-after-ms too.
                    retry_after=0 if status in (429, 529) else None,
                    retry_after_ms=10 if retryable else None,
                )
                return plan
        messages = body["messages"]
        rounds = _tool_rounds(messages)
        if rounds < len(found.tools):
            name, tool_input = found.tools[rounds]
            plan.calls = [ToolCall(name, tool_input)]
        elif found.reply is not None:
            plan.text = found.reply
        elif found.length is not None:
            plan.text = filler_text(found.length)
        elif found.tools:
            plan.text = _tool_results_text(messages)
        else:
            plan.text = _default_text(body)
        if found.drop is not None:
            plan.drop_after = found.drop
            if len(plan.text) < found.drop + 10:
                # The cut has to fall mid-text, so short replies are lengthened with filler.
                plan.text = (plan.text + " " + filler_text(found.drop + 40)).strip()
        if found.stream_error is not None:
            kind = found.stream_error
            error_type = kind if kind.endswith("_error") else f"{kind}_error"
            plan.stream_error = (error_type, _ERROR_MESSAGES.get(error_type, "Error"))
        return plan

    # ---- building the answer ----

    def _input_usage(self, body: dict[str, Any]) -> _InputUsage:
        """Token counts with the prompt cache simulated, as the API does it.

        Every breakpoint's prefix is written to the cache. For reading, the API looks back from each
        breakpoint over about 20 block boundaries for the longest prefix it has cached (so a breakpoint
        that moved on to the newest message still hits the previous turn's entry). The longest hit is
        read; the rest up to the last breakpoint is written; what follows the last breakpoint is input."""
        segments = _cache_segments(body)
        digest = hashlib.sha256(str(body["model"]).encode())  # caches are per model
        prefixes: list[tuple[str, int]] = []  # (key, tokens) of the prefix ending at each segment
        chars = 0
        for text, _ in segments:
            digest.update(text.encode())
            digest.update(b"\x00")
            chars += len(text)
            prefixes.append((digest.hexdigest(), _tokens(chars)))
        total = _tokens(chars)
        breakpoints = [
            i for i, (_, ttl) in enumerate(segments) if ttl is not None and prefixes[i][1] >= self.min_cache_tokens
        ]
        if not breakpoints:
            return _InputUsage(total, 0, 0, "5m")
        candidates = {j for b in breakpoints for j in range(max(0, b - _CACHE_LOOKBACK + 1), b + 1)}
        with self._lock:
            read = max((prefixes[j][1] for j in candidates if prefixes[j][0] in self._cache), default=0)
            self._cache.update(prefixes[b][0] for b in breakpoints)
        last = prefixes[breakpoints[-1]][1]
        return _InputUsage(total - last, last - read, read, segments[breakpoints[-1]][1] or "5m")

    def _build_message(self, body: dict[str, Any], plan: _Plan) -> dict[str, Any]:
        offered = _offered_tools(body)
        choice = body.get("tool_choice")
        tools_disabled = isinstance(choice, dict) and choice.get("type") == "none"
        text = plan.text
        calls: list[ToolCall] = []
        for call in plan.calls:
            if call.name not in offered:
                text = f"tool {call.name} not offered"
                calls = []
                break
            if tools_disabled:
                text = f"tool {call.name} not allowed: tool_choice is none"
                calls = []
                break
            calls.append(call)
        stop_reason = "tool_use" if calls else "end_turn"
        stop_sequence: str | None = None
        if not calls:
            for seq in body.get("stop_sequences") or []:
                at = text.find(seq)
                if at >= 0:
                    text, stop_reason, stop_sequence = text[:at], "stop_sequence", seq
                    break
        budget = body["max_tokens"]
        if not calls and _tokens(len(text)) > budget:
            text, stop_reason, stop_sequence = text[: budget * 4], "max_tokens", None
        content: list[dict[str, Any]] = []
        if text:
            content.append({"type": "text", "text": text})
        for call in calls:
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id or _random_id("toolu_"),
                    "name": call.name,
                    "input": call.input,
                }
            )
        output_chars = len(text) + sum(len(json.dumps(c.input)) + 40 for c in calls)
        usage = self._input_usage(body)
        return {
            "id": _random_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "stop_details": None,
            "usage": {
                "input_tokens": usage.input_tokens,
                "cache_creation_input_tokens": usage.cache_creation_input_tokens,
                "cache_read_input_tokens": usage.cache_read_input_tokens,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": usage.cache_creation_input_tokens if usage.ttl == "5m" else 0,
                    "ephemeral_1h_input_tokens": usage.cache_creation_input_tokens if usage.ttl == "1h" else 0,
                },
                "output_tokens": max(1, _tokens(output_chars)),
                "service_tier": "standard",
            },
        }

    def _stream(self, handler: _Handler, message: dict[str, Any], plan: _Plan, request_id: str) -> None:
        handler.start_chunked(200, "text/event-stream; charset=utf-8", request_id)

        def send(event: str, data: dict[str, Any]) -> None:
            if self._stopping.is_set():
                raise _Disconnected
            handler.write_chunk(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
        start["usage"] = {**usage, "output_tokens": 1}
        send("message_start", {"type": "message_start", "message": start})

        text_pieces = _split_text(message, plan)
        delta_count = sum(len(pieces) for pieces in text_pieces.values())
        pause = plan.seconds / delta_count if plan.seconds > 0 and delta_count else 0.0
        sent_chars = 0
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                send(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                if index == 0:
                    send("ping", {"type": "ping"})
                for piece in text_pieces[index]:
                    if plan.drop_after is not None and sent_chars >= plan.drop_after:
                        handler.cut()
                        return
                    if plan.stream_error is not None and sent_chars >= plan.stream_error_after:
                        self._send_stream_error(send, handler, plan.stream_error)
                        return
                    if plan.drop_after is not None:
                        piece = piece[: plan.drop_after - sent_chars]
                    elif plan.stream_error is not None:
                        piece = piece[: plan.stream_error_after - sent_chars]
                    self._wait(handler, pause)
                    send(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
                    sent_chars += len(piece)
            else:
                start_block = {**block, "input": {}}
                send(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start_block},
                )
                if index == 0:
                    send("ping", {"type": "ping"})
                # The API's first input_json_delta is empty; the SDK must cope, so the stand-in does it too.
                raw = json.dumps(block["input"])
                for piece in ["", *(raw[i : i + 16] for i in range(0, len(raw), 16))]:
                    send(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
            send("content_block_stop", {"type": "content_block_stop", "index": index})
        if plan.drop_after is not None:
            handler.cut()
            return
        if plan.stream_error is not None:
            self._send_stream_error(send, handler, plan.stream_error)
            return
        if not message["content"]:
            send("ping", {"type": "ping"})
        delta_usage = {
            "input_tokens": usage["input_tokens"],
            "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
            "cache_read_input_tokens": usage["cache_read_input_tokens"],
            "output_tokens": usage["output_tokens"],
        }
        send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
                "usage": delta_usage,
            },
        )
        send("message_stop", {"type": "message_stop"})
        handler.end_chunked()

    @staticmethod
    def _send_stream_error(
        send: Callable[[str, dict[str, Any]], None], handler: _Handler, error: tuple[str, str]
    ) -> None:
        # The API ends the stream cleanly after an error event; the failure is in the payload.
        send("error", {"type": "error", "error": {"type": error[0], "message": error[1]}})
        handler.end_chunked()


def _split_text(message: dict[str, Any], plan: _Plan) -> dict[int, list[str]]:
    """Text deltas per text block: ~32 characters each, or at least ``plan.min_deltas`` of them
    when the stream is slowed down (so "slow" really arrives in many pieces)."""
    pieces: dict[int, list[str]] = {}
    for index, block in enumerate(message["content"]):
        if block["type"] != "text":
            continue
        text = block["text"]
        count = max(1, math.ceil(len(text) / 32))
        if plan.seconds > 0:
            count = max(count, plan.min_deltas)
        if plan.drop_after is not None or plan.stream_error is not None:
            # Several deltas before the cut, so "some text arrived, then it broke" is what is tested.
            count = max(count, math.ceil(len(text) / 10))
        count = min(count, len(text))
        pieces[index] = list(_even_split(text, count))
    return pieces


def _even_split(text: str, count: int) -> Iterator[str]:
    size, extra = divmod(len(text), count)
    at = 0
    for i in range(count):
        end = at + size + (1 if i < extra else 0)
        yield text[at:end]
        at = end


def _loads_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def validate_request(body: dict[str, Any]) -> str | None:
    """Check a request body against the stand-in's rules without a server: the refusal message, or None.

    The ``anthropic-version`` header the SDK always sends is supplied here, so only the body is judged.
    """
    try:
        _Validator(body, {"anthropic-version": "2023-06-01"}).run()
    except _Refusal as refusal:
        return refusal.message
    return None
