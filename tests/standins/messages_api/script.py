"""Deciding what the stand-in answers a request, as a `Plan`: in this order, the rules a test added, a
heartbeat turn's silence, the directives in the user's words, and the default echo.

A plan says what to send and how (delay, hang, error, text, tool calls, a cut or an error mid-stream);
`reply` turns it into the message, `sse` and `server` deliver it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.standins.messages_api.content import (
    content_blocks,
    current_turn_text,
    is_summary_request,
    tool_result_text,
    turn_index,
)
from tests.standins.messages_api.directives import parse_directives
from tests.standins.messages_api.errors import ERROR_MESSAGES
from tests.standins.messages_api.filler import filler_text
from tests.standins.messages_api.responders import (
    DropStream,
    ErrorReply,
    Hang,
    Responder,
    StreamError,
    TextReply,
    ToolCall,
    ToolUseReply,
    WebReply,
)
from tests.standins.messages_api.server_tools import WebPlan
from tests.standins.messages_api.state import State

DIRECTIVE = re.compile(r"\[\[[^\]]*\]\]")


@dataclass
class Plan:
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
    web: WebPlan | None = None
    tool_searches: list[str] = field(default_factory=list)  # the tool search tool's queries (tool_search)
    search_hang: bool = False  # [[search_hang]] with a tool search: it starts and never ends
    thinking_drop: int | None = None  # cut the stream after this many characters of thinking (`thinking`)
    thinking_seconds: float = 0.0  # spread the thinking over this long (`thinking`: `[[think_slow=S]]`)


def _plan_from_responder(responder: Responder) -> Plan:
    if isinstance(responder, TextReply):
        return Plan(delay=responder.delay, text=responder.text, seconds=responder.seconds, min_deltas=responder.deltas)
    if isinstance(responder, ToolUseReply):
        return Plan(delay=responder.delay, text=responder.text, calls=list(responder.calls))
    if isinstance(responder, ErrorReply):
        return Plan(delay=responder.delay, error=responder)
    if isinstance(responder, Hang):
        return Plan(delay=responder.delay, hang=True)
    if isinstance(responder, DropStream):
        return Plan(delay=responder.delay, text=responder.text, drop_after=responder.after_chars)
    if isinstance(responder, WebReply):
        web = WebPlan(list(responder.searches), list(responder.fetches), responder.pause, responder.hang_in_search)
        return Plan(delay=responder.delay, web=web)
    if isinstance(responder, StreamError):
        return Plan(
            delay=responder.delay,
            text=responder.text,
            stream_error=(responder.error_type, responder.message),
            stream_error_after=responder.after_chars,
        )
    raise TypeError(f"not a Responder: {responder!r}")


def offered_tools(body: dict[str, Any]) -> set[str]:
    tools = body.get("tools")
    return {t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)} if tools else set()


def _tool_rounds(messages: list[dict[str, Any]]) -> int:
    """How many tool_result-only user messages follow the message that began the current turn."""
    start = turn_index(messages)
    after = messages[start + 1 :] if start is not None else messages
    return sum(1 for m in after if m["role"] == "user")


def _ends_with_tool_results(messages: list[dict[str, Any]]) -> bool:
    last = messages[-1]
    blocks = content_blocks(last["content"])
    return last["role"] == "user" and bool(blocks) and all(b.get("type") == "tool_result" for b in blocks)


def _tool_results_text(messages: list[dict[str, Any]]) -> str:
    """``tool results: [...]``: what vigil sent back in the latest tool_result message."""
    for m in reversed(messages):
        blocks = content_blocks(m["content"])
        results = [b for b in blocks if b.get("type") == "tool_result"]
        if m["role"] == "user" and results:
            listed = [{"content": tool_result_text(b), "is_error": bool(b.get("is_error", False))} for b in results]
            return "tool results: " + json.dumps(listed, ensure_ascii=False)
    return "tool results: []"


def _default_text(body: dict[str, Any]) -> str:
    messages = body["messages"]
    if _ends_with_tool_results(messages):
        return _tool_results_text(messages)
    return "echo: " + current_turn_text(body)


def default_summary(body: dict[str, Any]) -> str:
    """What the stand-in "summarises" unless a rule says otherwise: the lines of the transcript it was
    given that users wrote, so a test can see which turns (and which earlier summary) a summary covers."""
    text = current_turn_text(body)
    said = [line.split(": ", 1)[1] for line in text.splitlines()
            if ": " in line and not line.startswith(("Claude", "Result", "---"))]
    earlier = text.split("<earlier_summary>\n", 1)[1].split("\n</earlier_summary>", 1)[0] \
        if "<earlier_summary>" in text else ""
    # Directives are dropped: the summary goes back into later requests, where they would steer the stand-in.
    said = [" ".join(DIRECTIVE.sub("", line).split()) for line in said]
    return "summary: " + " | ".join([*([f"({earlier})"] if earlier else []), *(line for line in said if line)])


def decide(state: State, body: dict[str, Any]) -> Plan:
    # Predicates run outside the lock, so one may look at api.requests without deadlocking.
    with state.lock:
        rules = list(state.rules)
    responder: Responder | Callable[[dict[str, Any]], Responder] | None = None
    for rule in rules:
        try:
            matched = bool(rule.predicate(body))
        except Exception:
            matched = False
        if not matched:
            continue
        with state.lock:
            if rule not in state.rules:  # used up by a concurrent request meanwhile
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    state.rules.remove(rule)
        responder = rule.responder
        break
    if responder is not None:
        resolved = responder if isinstance(responder, Responder) else responder(body)
        return _plan_from_responder(resolved)
    if is_summary_request(body):
        # Compaction asks for a summary of a transcript: the directives quoted in it are old turns'.
        return Plan(text=default_summary(body))
    if "send_message" in offered_tools(body):
        # A heartbeat turn: unless a rule says otherwise the model stays silent. Directives are
        # not read here, so words quoted from a chat can never steer a heartbeat by accident.
        return Plan(text="nothing to say")
    return _plan_from_directives(state, body)


def _plan_from_directives(state: State, body: dict[str, Any]) -> Plan:
    turn_text = current_turn_text(body)
    found = parse_directives(turn_text)
    if found.problems:
        return Plan(text="bad directive: " + "; ".join(found.problems))
    plan = Plan(delay=found.delay, seconds=found.slow)
    if found.hang:
        plan.hang = True
        return plan
    if found.error is not None:
        status, times = found.error
        with state.lock:
            served = state.error_counts.get(turn_text, 0)
            failing = times is None or served < times
            if failing:
                state.error_counts[turn_text] = served + 1
        if failing:
            retryable = status in (408, 409, 429) or status >= 500
            plan.error = ErrorReply(
                status,
                # 0 as the brief asks; the SDK ignores 0 and backs off 0.5 s+, so retry-after-ms too.
                retry_after=0 if status in (429, 529) else None,
                retry_after_ms=10 if retryable else None,
            )
            return plan
    if found.searches or found.fetches:
        plan.web = WebPlan(found.searches, found.fetches, found.pause, found.search_hang)
        return plan
    messages = body["messages"]
    rounds = _tool_rounds(messages)
    if rounds == 0:
        plan.tool_searches = found.tool_searches
        plan.search_hang = found.search_hang and bool(found.tool_searches)
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
        plan.stream_error = (error_type, ERROR_MESSAGES.get(error_type, "Error"))
    return plan

