"""The API's own tools (web search, web fetch), played as the API plays them, and held to its rules.

When a plan asks for searches or fetches and the request offers the tool, the assistant message
carries, per step, a ``server_tool_use`` block (``srvtoolu_...``) and its result
(``web_search_tool_result`` with results holding ``encrypted_content``, ``web_fetch_tool_result``
with the page as a document), then text whose cited part has ``citations``
(``web_search_result_location`` with ``url``, ``title``, ``encrypted_index``). With ``pause`` the
message stops there (``stop_reason: pause_turn``); the request that sends it back (ending with that
assistant message) is answered with the cited text. Usage counts ``server_tool_use``.

Every server block and citation served is remembered, as JSON, in `State.served`: a later request
must carry each one exactly as served (``cache_control`` aside, which a request may add), a result
must follow its ``server_tool_use`` in the same message, and a ``server_tool_use`` without its
result is refused anywhere but at the end of the request's final assistant message.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from tests.standins.messages_api.content import content_blocks
from tests.standins.messages_api.errors import invalid

_SERVER_ID = re.compile(r"^srvtoolu_[a-zA-Z0-9_]+$")
_ALPHANUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Keys the web tool versions vigil uses may carry (the SDK's WebSearchTool20260318Param /
# WebFetchTool20260318Param), checked exactly, as the API does.
_SEARCH_KEYS = frozenset({"name", "type", "allowed_callers", "allowed_domains", "blocked_domains", "cache_control",
                          "defer_loading", "max_uses", "response_inclusion", "strict", "user_location"})
WEB_TOOL_KEYS: dict[str, frozenset[str]] = {
    "web_search_20260318": _SEARCH_KEYS,
    "web_fetch_20260318": (_SEARCH_KEYS - {"user_location"})
    | {"citations", "max_content_tokens", "url_sources", "use_cache"},
}


@dataclass
class WebPlan:
    """What the API's tools do in one answer: searches (queries), fetches (URLs), a pause, a hang."""

    searches: list[str] = field(default_factory=list)
    fetches: list[str] = field(default_factory=list)
    pause: bool = False
    hang_in_search: bool = False  # stream the first server_tool_use, then never its result


def _random(prefix: str, size: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUM) for _ in range(size))


def _canonical(block: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in block.items() if k != "cache_control"}, sort_keys=True, ensure_ascii=False)


def _served_key(block: dict[str, Any]) -> str:
    if block.get("type") == "server_tool_use":
        return f"use:{block.get('id')}"
    return f"result:{block.get('tool_use_id')}"


def is_server_result(block: Any) -> bool:
    kind = str(block.get("type", "")) if isinstance(block, dict) else ""
    return kind.endswith("_tool_result") and kind != "tool_result"


def check_web_tool(tool: dict[str, Any], path: str) -> None:
    """The fields of a web tool definition, as the API checks them."""
    tool_type = str(tool.get("type"))
    for key in tool:
        if key not in WEB_TOOL_KEYS[tool_type]:
            raise invalid(f"{path}.{tool_type}.{key}: Extra inputs are not permitted")
    for key in ("max_uses", "max_content_tokens"):
        value = tool.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise invalid(f"{path}.{tool_type}.{key}: Input should be greater than or equal to 1")
    if tool.get("allowed_domains") is not None and tool.get("blocked_domains") is not None:
        raise invalid(f"{path}.{tool_type}: Cannot specify both allowed_domains and blocked_domains")
    citations = tool.get("citations")
    if citations is not None and (not isinstance(citations, dict) or not isinstance(citations.get("enabled"), bool)):
        raise invalid(f"{path}.{tool_type}.citations.enabled: Input should be a valid boolean")


def check_server_blocks(messages: list[dict[str, Any]], served: dict[str, str] | None) -> None:
    """Server blocks in assistant messages: paired, and (with the stand-in's memory) unchanged."""
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        blocks = content_blocks(message.get("content"))
        used: set[str] = set()
        answered: set[str] = set()
        for j, block in enumerate(blocks):
            if not isinstance(block, dict):
                continue
            path = f"messages.{i}.content.{j}"
            if block.get("type") == "server_tool_use":
                tool_id = block.get("id")
                if not isinstance(tool_id, str) or not _SERVER_ID.match(tool_id):
                    raise invalid(f"{path}.id: String should match pattern '^srvtoolu_[a-zA-Z0-9_]+$'")
                used.add(tool_id)
                _check_served(block, path, served)
            elif is_server_result(block):
                kind, tool_id = block["type"], block.get("tool_use_id")
                if tool_id not in used:
                    raise invalid(f"{path}: unexpected `tool_use_id` found in `{kind}` blocks: {tool_id}. "
                                  f"Each `{kind}` block must have a corresponding `server_tool_use` block before it.")
                answered.add(str(tool_id))
                _check_served(block, path, served)
            elif block.get("type") == "text" and block.get("citations") and served is not None:
                for k, citation in enumerate(block["citations"]):
                    if not isinstance(citation, dict) or f"cite:{_canonical(citation)}" not in served:
                        raise invalid(f"{path}.citations.{k}: invalid citation: its `encrypted_index` does not "
                                      "match any search result in this conversation")
        dangling = sorted(used - answered)
        final = i == len(messages) - 1
        if dangling and not final:
            raise invalid(f"messages.{i}: `server_tool_use` ids were found without their result blocks: "
                          f"{', '.join(dangling)}. Each `server_tool_use` block must be followed by its result "
                          "block in the same message, unless it ends the final assistant message.")


def _check_served(block: dict[str, Any], path: str, served: dict[str, str] | None) -> None:
    if served is None:
        return
    kept = served.get(_served_key(block))
    if kept is None:
        raise invalid(f"{path}: `{block.get('type')}` block was not produced by this API: server tool blocks "
                      "must be passed back exactly as they were received")
    if kept != _canonical(block):
        raise invalid(f"{path}: `{block.get('type')}` block does not match the one the API returned "
                      "(`encrypted_content` and every other field must be passed back unchanged)")


def _search_blocks(query: str, served: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    tool_id = _random("srvtoolu_")
    use = {"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {"query": query}}
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-") or "search"
    results = [
        {"type": "web_search_result", "url": f"https://{site}/{slug}", "title": f"{query} - {name}",
         "encrypted_content": _random("Eq", 120), "page_age": age}
        for site, name, age in (("en.wikipedia.org/wiki", "Wikipedia", None),
                                ("example.org/articles", "Example News", "2 days ago"))
    ]
    result = {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": results}
    for block in (use, result):
        served[_served_key(block)] = _canonical(block)
    return use, result


def _fetch_blocks(url: str, served: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    tool_id = _random("srvtoolu_")
    use = {"type": "server_tool_use", "id": tool_id, "name": "web_fetch", "input": {"url": url}}
    document = {"type": "document", "title": f"Page at {url}",
                "source": {"type": "text", "media_type": "text/plain", "data": f"The text of {url}."}}
    result = {"type": "web_fetch_tool_result", "tool_use_id": tool_id,
              "content": {"type": "web_fetch_result", "url": url, "content": document,
                          "retrieved_at": "2026-11-20T10:00:00Z"}}
    for block in (use, result):
        served[_served_key(block)] = _canonical(block)
    return use, result


def _cited_text(results: list[dict[str, Any]], served: dict[str, str]) -> list[dict[str, Any]]:
    """Text citing the first result of each search: a lead-in, the cited sentence(s), a full stop."""
    cited: list[dict[str, Any]] = []
    for result in results:
        first = result["content"][0] if isinstance(result.get("content"), list) and result["content"] else None
        if not isinstance(first, dict):
            continue
        citation = {"type": "web_search_result_location", "url": first["url"], "title": first["title"],
                    "encrypted_index": _random("Eo", 40), "cited_text": f"What {first['title']} says."}
        served[f"cite:{_canonical(citation)}"] = ""
        sentence = f"{first['title']} has the answer"
        cited.append({"type": "text", "text": sentence, "citations": [citation]})
    if not cited:
        return [{"type": "text", "text": "I read the pages."}]
    return [{"type": "text", "text": "Here is what I found: "}, *cited, {"type": "text", "text": "."}]


def web_content(web: WebPlan, messages: list[dict[str, Any]],
                served: dict[str, str]) -> tuple[list[dict[str, Any]], str, dict[str, int]]:
    """(content, stop_reason, server_tool_use counts) of an answer that uses the API's web tools."""
    last = messages[-1] if messages else {}
    if last.get("role") == "assistant":  # a paused turn sent back: it goes on from its results
        results = [b for b in content_blocks(last.get("content")) if isinstance(b, dict)
                   and b.get("type") == "web_search_tool_result"]
        return _cited_text(results, served), "end_turn", {}
    content: list[dict[str, Any]] = []
    searched: list[dict[str, Any]] = []
    for query in web.searches:
        use, result = _search_blocks(query, served)
        content += [use, result]
        searched.append(result)
    for url in web.fetches:
        content += list(_fetch_blocks(url, served))
    counts = {"web_search_requests": len(web.searches), "web_fetch_requests": len(web.fetches)}
    if web.pause:
        return content, "pause_turn", counts
    return content + _cited_text(searched, served), "end_turn", counts
