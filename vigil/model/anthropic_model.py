"""The model port on the anthropic SDK: streaming, the SDK's own retries, plain-sentence errors.

The SDK is imported on first use: it takes about a second to import, and a
service with 100,000 sessions should be ready before then. `/stop` closes the
HTTP stream from another thread; the reading thread then sees the stream end
and the call returns what arrived so far as a "cancelled" response.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from vigil.cancel import CancelToken
from vigil.logs import get_logger
from vigil.model.citations import cite_marks
from vigil.model.failures import explain
from vigil.model.prices import output_estimate
from vigil.model.server_blocks import SERVER_USE, is_server_result, kept_whole, web_searches
from vigil.model.thinking import THINKING_TYPES, kept_thinking
from vigil.ports import (
    ModelError,
    ModelRequest,
    ModelResponse,
    ServerToolSink,
    ThinkingSink,
    TokenUsage,
    UsageSink,
)
from vigil.text import clean, one_line

if TYPE_CHECKING:
    import anthropic


def api_message(exc: BaseException) -> str:
    """The API's own words of an error response (`error.message` of its JSON body), else ""."""
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else ""


def _short(text: str, limit: int = 160) -> str:
    return one_line(str(text), limit)


def _blocks(content: Any, complete: bool) -> tuple[dict[str, Any], ...]:
    """SDK content blocks -> request-form dicts; partial tool_use blocks are dropped.

    Blocks of the service's own tools, text that cites them, and thinking blocks are kept exactly as the
    API sent them (the SDK's dict of the fields it received): their encrypted parts and signatures must
    go back byte for byte. Of a reply cut short only complete server tool pairs are kept
    (vigil/model/server_blocks.py); unsigned thinking, and thinking that would end the message, never
    (vigil/model/thinking.py).
    """
    out: list[dict[str, Any]] = []
    for block in content:
        if block.type == "text":
            if not block.text.strip():
                continue
            if getattr(block, "citations", None):
                out.append({**block.to_dict(mode="json"), "text": clean(block.text)})
            else:
                out.append({"type": "text", "text": clean(block.text)})
        elif block.type == "tool_use":
            if complete:
                out.append({"type": "tool_use", "id": block.id, "name": block.name, "input": dict(block.input or {})})
        elif block.type == SERVER_USE or is_server_result({"type": block.type}) or block.type in THINKING_TYPES:
            out.append(block.to_dict(mode="json"))
    return tuple(kept_thinking(out if complete else kept_whole(out)))


def _chars(block: Any) -> int:
    """Characters the model produced in a (possibly partial) content block."""
    if block.type == "text":
        return len(block.text)
    if block.type == "thinking":  # thinking tokens are output tokens, billed as such
        return len(block.thinking)
    if block.type in ("tool_use", SERVER_USE):
        return len(block.name) + len(json.dumps(block.input or {}))
    return 0


def _usage(usage: Any) -> TokenUsage:
    if usage is None:
        return TokenUsage()
    return TokenUsage(
        input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        cache_read_tokens=int(getattr(usage, "cache_read_input_tokens", 0) or 0),
        cache_write_tokens=int(getattr(usage, "cache_creation_input_tokens", 0) or 0),
        web_search_requests=int(getattr(getattr(usage, "server_tool_use", None), "web_search_requests", 0) or 0),
    )


def _thinking_event(event: Any, on_thinking: ThinkingSink) -> None:
    """Thinking as it streams: a block opening, a piece of its summary, a block closed."""
    if event.type == "content_block_delta" and event.delta.type == "thinking_delta" and event.delta.thinking:
        on_thinking("text", event.delta.thinking)
    elif event.type in ("content_block_start", "content_block_stop") and event.content_block.type in THINKING_TYPES:
        on_thinking("start" if event.type == "content_block_start" else "end", "")


def _block_done(block: Any, on_text: Callable[[str], None], on_server_tool: ServerToolSink | None,
                numbers: dict[str, int]) -> None:
    """A content block ended: a cited text gets its links (as in `citations.reply_text`); a server tool
    call, now that its input is whole, is about to run at the service."""
    if block.type == "text" and getattr(block, "citations", None) and block.text.strip():
        marks = cite_marks(clean(block.text), block.citations, numbers)
        if marks:
            on_text(marks)
    elif block.type == SERVER_USE and on_server_tool is not None:
        on_server_tool(str(block.name), dict(block.input or {}))


class AnthropicModel:
    """ModelPort on `anthropic.Anthropic` (a thread-safe sync client shared by all sessions)."""

    def __init__(self, timeout_s: float = 120.0, max_retries: int = 2) -> None:
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._client: anthropic.Anthropic | None = None
        self._lock = threading.Lock()
        self._log = get_logger(__name__)

    def client(self) -> anthropic.Anthropic:
        with self._lock:
            if self._client is None:
                import anthropic

                self._client = anthropic.Anthropic(
                    timeout=anthropic.Timeout(self._timeout_s, connect=10.0),
                    max_retries=self._max_retries,
                )
            return self._client

    def warm_up(self) -> None:
        """Import the SDK and build the client in the background, off the start-up path."""
        threading.Thread(target=self.client, name="model-warm-up", daemon=True).start()

    def stream(self, request: ModelRequest, on_text: Callable[[str], None], cancel: CancelToken,
               on_usage: UsageSink | None = None, on_server_tool: ServerToolSink | None = None,
               on_thinking: ThinkingSink | None = None) -> ModelResponse:
        if cancel.cancelled:
            return ModelResponse(content=(), stop_reason="cancelled", usage=TokenUsage(), model=request.model)
        client = self.client()
        kwargs: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "system": list(request.system),
            "messages": list(request.messages),
        }
        if request.tools:
            kwargs["tools"] = list(request.tools)
        if request.thinking is not None:
            kwargs["thinking"] = dict(request.thinking)
        stream: Any = None
        numbers: dict[str, int] = {}  # cited pages, numbered as first cited in this call
        started = False  # any event arrived: a failure from here on broke an answer off (vigil.model.failures)
        try:
            with client.messages.stream(**kwargs) as stream, cancel.on_cancel(stream.close):
                for event in stream:
                    started = True
                    if cancel.cancelled:
                        break
                    if on_thinking is not None:
                        _thinking_event(event, on_thinking)
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        on_text(clean(event.delta.text))
                    elif event.type == "content_block_stop":
                        _block_done(event.content_block, on_text, on_server_tool, numbers)
                    elif on_usage is not None and event.type in ("message_start", "message_delta"):
                        # message_start carries the input (billed from here on), message_delta the output.
                        on_usage(_usage(stream.current_message_snapshot.usage))
                if cancel.cancelled:
                    return self._partial(stream, request.model, "cancelled")
                final = stream.get_final_message()
        except Exception as exc:  # the SDK's errors, and the transport's escaping a stream cut mid-read
            if cancel.cancelled:
                return self._partial(stream, request.model, "cancelled")
            raise self._error(exc, started, stream, request.model) from exc
        return ModelResponse(content=_blocks(final.content, complete=True), stop_reason=final.stop_reason or "end_turn",
                             usage=_usage(final.usage), model=final.model or request.model)

    def _partial(self, stream: Any, model: str, stop_reason: str) -> ModelResponse:
        """What a call cut short produced, and what it used: the API's input count, and output so far.

        The API reports output tokens only at the end (message_start says 1), so the output of a call cut
        short is estimated from what was streamed; the input was billed whole once message_start came.
        """
        snapshot = getattr(stream, "_current_snapshot_or_none", lambda: None)() if stream is not None else None
        if snapshot is None:
            return ModelResponse(content=(), stop_reason=stop_reason, usage=TokenUsage(), model=model)
        usage = _usage(snapshot.usage)
        streamed = output_estimate(sum(_chars(block) for block in snapshot.content))
        if streamed > usage.output_tokens:
            usage = msgspec.structs.replace(usage, output_tokens=streamed)
        content = _blocks(snapshot.content, complete=False)
        # The API counts searches only at the end; one whose results arrived was billed.
        searched = web_searches(content)
        if searched > usage.web_search_requests:
            usage = msgspec.structs.replace(usage, web_search_requests=searched)
        return ModelResponse(content=content, stop_reason=stop_reason, usage=usage, model=model)

    def _error(self, exc: BaseException, started: bool, stream: Any, model: str) -> ModelError:
        kind, sentence = explain(exc, started)
        if kind == "internal":
            self._log.error("model.call_failed", kind=kind, started=started, exc_info=exc)
        else:
            self._log.warning("model.call_failed", kind=kind, started=started, error=_short(repr(exc), 300))
        return ModelError(sentence, kind, self._partial(stream, model, "error"), detail=api_message(exc))
