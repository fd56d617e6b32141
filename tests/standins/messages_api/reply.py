"""The assistant message a plan becomes: text cut at a stop sequence or max_tokens, tool calls (turned
into a text saying so when the tool is not offered or tool_choice is none), stop reason, ids and usage.

The same message is sent whole (non-streaming) or as events (`sse`).
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

from tests.standins.messages_api.responders import ToolCall
from tests.standins.messages_api.script import Plan, offered_tools
from tests.standins.messages_api.server_tools import web_content
from tests.standins.messages_api.state import State
from tests.standins.messages_api.thinking import add_thinking, thinking_seconds
from tests.standins.messages_api.tool_search import callable_tools, search_content
from tests.standins.messages_api.usage import input_usage, token_count

_ALPHANUM = string.ascii_letters + string.digits


def random_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUM) for _ in range(24))


def build_message(state: State, body: dict[str, Any], plan: Plan) -> dict[str, Any]:
    text = plan.text
    searched: list[dict[str, Any]] = []
    if plan.tool_searches:
        with state.lock:
            found = search_content(plan.tool_searches, body, state.served)
        searched, text = (found, text) if isinstance(found, list) else ([], found)
    # A deferred tool is known to the model only once a search loaded it.
    offered = offered_tools(body) & callable_tools(body, searched)
    choice = body.get("tool_choice")
    tools_disabled = isinstance(choice, dict) and choice.get("type") == "none"
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
    web_content_blocks: list[dict[str, Any]] = []
    server_use: dict[str, int] = {}
    web_stop = ""
    if plan.web is not None:
        needed = (["web_search"] if plan.web.searches else []) + (["web_fetch"] if plan.web.fetches else [])
        missing = [name for name in needed if name not in offered]
        if missing:
            text = f"tool {missing[0]} not offered"
        else:
            with state.lock:
                web_content_blocks, web_stop, server_use = web_content(plan.web, body["messages"], state.served)
    stop_reason = "tool_use" if calls else "end_turn"
    stop_sequence: str | None = None
    if not calls:
        for seq in body.get("stop_sequences") or []:
            at = text.find(seq)
            if at >= 0:
                text, stop_reason, stop_sequence = text[:at], "stop_sequence", seq
                break
    budget = body["max_tokens"]
    if not calls and token_count(len(text)) > budget:
        text, stop_reason, stop_sequence = text[: budget * 4], "max_tokens", None
    content: list[dict[str, Any]] = list(searched)
    if text:
        content.append({"type": "text", "text": text})
    for call in calls:
        content.append(
            {
                "type": "tool_use",
                "id": call.id or random_id("toolu_"),
                "name": call.name,
                "input": call.input,
            }
        )
    if web_stop:
        content, stop_reason, stop_sequence = web_content_blocks, web_stop, None
    with state.lock:  # thinking first, when on (`thinking`): its characters are output too
        thought, plan.thinking_drop = add_thinking(body, content, state.served)
    plan.thinking_seconds = thinking_seconds(body)
    output_chars = thought + len(text) + sum(len(json.dumps(c.input)) + 40 for c in calls)
    output_chars += sum(len(b.get("text", "")) + len(json.dumps(b.get("input", "")))
                        for b in [*web_content_blocks, *searched])
    usage = input_usage(state, body)
    return {
        "id": random_id("msg_"),
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
            "output_tokens": max(1, token_count(output_chars)),
            "service_tier": "standard",
            **({"server_tool_use": server_use} if server_use else {}),
        },
    }
