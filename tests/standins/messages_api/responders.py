"""What a test can ask the Messages API stand-in to answer: the responders, and the rules that pick them.

A rule is a predicate over the request body and a responder (or a callable making one from the body),
used up after ``times`` matches; `MessagesAPI.add_rule` adds them, `script.decide` consults them first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


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


@dataclass(frozen=True)
class WebReply:
    """Use the API's own web tools (when the request offers them): each search then each fetch, as a
    ``server_tool_use`` block and its result, then text citing the first result of each search. With
    ``pause`` the answer stops after the results with ``stop_reason: pause_turn`` (the request sending it
    back is answered with the cited text); with ``hang_in_search`` the first ``server_tool_use`` streams
    and its result never comes (the stream stays open, as a long search does)."""

    searches: Sequence[str] = ()
    fetches: Sequence[str] = ()
    pause: bool = False
    hang_in_search: bool = False
    delay: float = 0.0


Responder = TextReply | ToolUseReply | ErrorReply | Hang | DropStream | StreamError | WebReply
"""What to answer. :meth:`MessagesAPI.add_rule` also takes a callable ``body -> Responder``."""


@dataclass(eq=False)  # identity: two rules with equal fields are still two rules
class Rule:
    predicate: Callable[[dict[str, Any]], bool]
    responder: Responder | Callable[[dict[str, Any]], Responder]
    remaining: int | None
