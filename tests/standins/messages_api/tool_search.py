"""The API's tool search tool and deferred tools (`defer_loading: true`), as the API plays and checks them.

Checked, as the API does: `defer_loading` is a boolean; a request with deferred tools carries a tool
search tool (``tool_search_tool_bm25_20251119`` or ``..._regex_20251119``, keys as the SDK's
``ToolSearchToolBm25_20251119Param``), which is itself not deferred, and not every tool is deferred;
every ``tool_reference`` (in a ``tool_search_tool_result`` or a client's ``tool_result``) names a tool
the request defines.

Played: ``[[tool_search=QUERY]]`` makes the "model" search first (a ``server_tool_use`` of the search
tool, ``{"query": QUERY}``, then its ``tool_search_tool_result`` with ``tool_reference`` blocks for
the best-matching deferred tools, in the SDK's types' shape), in the same answer as the turn's first
``[[tool=...]]`` call. A deferred tool can be called only once a search in the conversation (or in
that answer) has referenced it; before that the model does not know it (``tool NAME not offered``).
The blocks are remembered like the web tools' (`server_tools`): they must come back unchanged.

Counted: a deferred tool costs nothing in the input (the API keeps it out of the prompt, and out of
the cached prefix) until a ``tool_reference`` loads it; that costs the tool's full definition, where
the reference stands in the conversation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from tests.standins.messages_api.content import content_blocks
from tests.standins.messages_api.errors import invalid
from tests.standins.messages_api.server_tools import _canonical, _random, _served_key

SEARCH_TOOLS = {"tool_search_tool_bm25_20251119": "tool_search_tool_bm25",
                "tool_search_tool_regex_20251119": "tool_search_tool_regex"}
SEARCH_TOOL_KEYS = frozenset({"name", "type", "allowed_callers", "cache_control", "defer_loading", "strict"})
MAX_REFERENCES = 5
_WORD = re.compile(r"[a-z0-9]+")


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    return [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []


def is_deferred(tool: dict[str, Any]) -> bool:
    return tool.get("defer_loading") is True


def check_deferral(tools: list[Any]) -> None:
    """The request's tools, as the API checks deferral (after each tool's own check)."""
    search = None
    for i, tool in enumerate(tools):
        if "defer_loading" in tool and not isinstance(tool["defer_loading"], bool):
            raise invalid(f"tools.{i}.defer_loading: Input should be a valid boolean")
        if tool.get("type") in SEARCH_TOOLS:
            if is_deferred(tool):
                raise invalid(f"tools.{i}: the tool search tool cannot have defer_loading set to true")
            search = tool
    deferred = [t for t in tools if is_deferred(t)]
    if deferred and search is None:
        raise invalid("Tools with defer_loading set to true require a tool search tool "
                      "(tool_search_tool_regex or tool_search_tool_bm25) in the same request")
    if tools and len(deferred) == len(tools):
        raise invalid("All tools have defer_loading set. At least one tool must be non-deferred.")


def _references(block: dict[str, Any]) -> list[str]:
    """The tool names a search result (or a client's tool_result) references."""
    if block.get("type") == "tool_search_tool_result":
        inner = block.get("content")
        refs = inner.get("tool_references") if isinstance(inner, dict) else None
    elif block.get("type") == "tool_result" and isinstance(block.get("content"), list):
        refs = block["content"]
    else:
        return []
    return [str(r.get("tool_name")) for r in refs or [] if isinstance(r, dict) and r.get("type") == "tool_reference"]


def check_references(messages: list[Any], body: dict[str, Any]) -> None:
    defined = {t.get("name") for t in _tools(body)}
    for message in messages:
        for block in content_blocks(message.get("content")) if isinstance(message, dict) else []:
            if isinstance(block, dict):
                for name in _references(block):
                    if name not in defined:
                        raise invalid(f"Tool reference '{name}' has no corresponding tool definition")


def discovered(body: dict[str, Any], content: Sequence[dict[str, Any]] = ()) -> set[str]:
    """The deferred tools a search has referenced so far: in the conversation, and in `content`."""
    found: set[str] = set()
    for message in body.get("messages") or []:
        for block in content_blocks(message.get("content")) if isinstance(message, dict) else []:
            if isinstance(block, dict):
                found.update(_references(block))
    for block in content:
        found.update(_references(block))
    return found


def callable_tools(body: dict[str, Any], content: Sequence[dict[str, Any]] = ()) -> set[str]:
    """The tools the model can call: those not deferred, and the deferred ones a search has loaded."""
    loaded = discovered(body, content)
    return {str(t.get("name")) for t in _tools(body) if not is_deferred(t) or t.get("name") in loaded}


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("_", " "))


def _rank(query: str, tools: list[dict[str, Any]]) -> list[str]:
    """The deferred tools that match `query` best: word overlap with name, description and argument names."""
    wanted = set(_words(query))
    scored = []
    for tool in tools:
        if not is_deferred(tool):
            continue
        props = tool.get("input_schema", {}).get("properties", {})
        words = _words(" ".join([str(tool.get("name", "")), str(tool.get("description", "")), *map(str, props)]))
        score = sum(words.count(w) for w in wanted)
        if score:
            scored.append((-score, str(tool["name"])))
    return [name for _, name in sorted(scored)[:MAX_REFERENCES]]


def search_content(queries: list[str], body: dict[str, Any], served: dict[str, str]) -> list[dict[str, Any]] | str:
    """The ``server_tool_use`` and ``tool_search_tool_result`` blocks of the searches, or why there are none."""
    search = next((t for t in _tools(body) if t.get("type") in SEARCH_TOOLS), None)
    if search is None:
        return "tool tool_search not offered"
    content: list[dict[str, Any]] = []
    for query in queries:
        tool_id = _random("srvtoolu_")
        use = {"type": "server_tool_use", "id": tool_id, "name": search["name"], "input": {"query": query}}
        refs = [{"type": "tool_reference", "tool_name": name} for name in _rank(query, _tools(body))]
        result = {"type": "tool_search_tool_result", "tool_use_id": tool_id,
                  "content": {"type": "tool_search_tool_search_result", "tool_references": refs}}
        for block in (use, result):
            served[_served_key(block)] = _canonical(block)
        content += [use, result]
    return content


def reference_chars(block: dict[str, Any], body: dict[str, Any]) -> int:
    """The characters of the definitions a block's ``tool_reference``s load into the context."""
    names = _references(block)
    if not names:
        return 0
    tools = {t.get("name"): t for t in _tools(body)}
    return sum(len(json.dumps(tools[n], sort_keys=True)) for n in names if n in tools)
