"""Blocks the model service wrote by running its own tools (web search, web fetch), kept as it sent them.

A `server_tool_use` block and its result (`web_search_tool_result`, `web_fetch_tool_result`, or any
other `*_tool_result` but the client's `tool_result`) come inside the assistant's own message and need
no `tool_result` from us. Their `encrypted_content` / `encrypted_index` (and every other byte) must go
back unchanged in later requests, so nothing here rewrites a block: `kept_whole` only decides which
whole blocks a message can keep.

The API refuses a `server_tool_use` without its result anywhere but at the very end of the request
(where a `pause_turn` leaves it, to be continued), and a result without its `server_tool_use` before
it. A reply cut short (`/stop`, a dropped stream, `kill -9`) can end between the two, so a stored
message keeps only complete pairs: the search that never finished is dropped, as if never begun.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SERVER_USE = "server_tool_use"


def is_server_result(block: Mapping[str, Any]) -> bool:
    kind = str(block.get("type", ""))
    return kind.endswith("_tool_result") and kind != "tool_result"


def is_server_block(block: Mapping[str, Any]) -> bool:
    return block.get("type") == SERVER_USE or is_server_result(block)


def kept_whole(content: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """`content` without server tool calls that have no result in it, nor results without their call."""
    blocks = list(content)
    uses = {b.get("id") for b in blocks if b.get("type") == SERVER_USE}
    answered = {b.get("tool_use_id") for b in blocks if is_server_result(b)}
    return [b for b in blocks
            if not (b.get("type") == SERVER_USE and b.get("id") not in answered)
            and not (is_server_result(b) and b.get("tool_use_id") not in uses)]


def web_searches(content: Iterable[Mapping[str, Any]]) -> int:
    """Searches that ran in `content` (each has its result block): what a call cut short was billed for."""
    return sum(1 for b in content if b.get("type") == "web_search_tool_result")
