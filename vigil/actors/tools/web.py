"""Anthropic's server-side web tools (`web_search`, `web_fetch`) as a tool set: offered, never run here.

The model service runs these itself, inside the call: the reply carries a `server_tool_use` block,
then its result, and needs no `tool_result` from us (vigil/model/server_blocks.py keeps them as
returned). So this set only gives the tool definitions `VIGIL_WEB` asks for, and the progress line
the reply shows while one runs (`describe`). Each model call may search and fetch at most
`VIGIL_WEB_MAX_USES` times apiece: a turn of many rounds is bounded by the rounds and the budget.

The newest tool versions the installed SDK knows are used. Fetched pages are capped in tokens:
a page becomes part of the chat's history, paid for again in every later turn until it leaves
the window. Offered in heartbeats too: a beat's history carries the chat's search blocks, which
the API reads with the web tools defined, and a beat may need to look something up (a reminder
about the weather); its budget and `BEAT_MAX_ROUNDS` bound what that costs.
"""

from __future__ import annotations

import functools
from typing import Any

from vigil.actors.engine.runner import ToolSet
from vigil.cancel import CancelToken
from vigil.config.settings import Settings, WebTool
from vigil.text import one_line
from vigil.tools.outcome import ToolOutcome

WEB_SEARCH_TYPE = "web_search_20260318"
WEB_FETCH_TYPE = "web_fetch_20260318"
FETCH_MAX_CONTENT_TOKENS = 20_000
PROGRESS_CHARS = 120


def web_specs(settings: Settings) -> tuple[dict[str, Any], ...]:
    return _web_specs(tuple(settings.web), settings.web_max_uses)


@functools.lru_cache(maxsize=8)
def _web_specs(web: tuple[WebTool, ...], max_uses: int) -> tuple[dict[str, Any], ...]:
    # Shared by every session's tool set (read only), not a copy in each live one.
    specs: list[dict[str, Any]] = []
    if "search" in web:
        specs.append({"type": WEB_SEARCH_TYPE, "name": "web_search", "max_uses": max_uses})
    if "fetch" in web:
        specs.append({"type": WEB_FETCH_TYPE, "name": "web_fetch", "max_uses": max_uses,
                      "max_content_tokens": FETCH_MAX_CONTENT_TOKENS})
    return tuple(specs)


def describe_web(name: str, tool_input: dict[str, Any]) -> str:
    """The progress line of a server tool while it runs."""
    if name == "web_search":
        return f"🔎 searching: {one_line(str(tool_input.get('query', '')), PROGRESS_CHARS)}"
    if name == "web_fetch":
        return f"🌐 reading: {one_line(str(tool_input.get('url', '')), PROGRESS_CHARS)}"
    return f"⚙️ {name}"


def _never_run(name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
    # A client tool_use naming a server tool: the service runs those itself, never through us.
    return ToolOutcome(content=f"{name} runs at the model service, not as a client tool", is_error=True)


def web_tools(settings: Settings) -> ToolSet:
    return ToolSet(specs=web_specs(settings), run=_never_run, describe=describe_web)
