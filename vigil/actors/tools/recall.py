"""recall: Claude searches this chat's own past, the conversations before this one and what left its context.

Read-only (it never waits for an approval, in any /mode), offered in every turn. The search is the
recall index's (vigil/recall/): BM25 over this chat's passages only, the words read back from the store,
held to a small size whatever `limit` asks, since the result lands in the model's context.
"""

from __future__ import annotations

from typing import Any

from vigil.actors.core.state import Session
from vigil.actors.engine.runner import ToolSet
from vigil.actors.tools.web import PROGRESS_CHARS
from vigil.cancel import CancelToken
from vigil.recall import DEFAULT_LIMIT, MAX_LIMIT, format_hits
from vigil.text import one_line
from vigil.tools.outcome import ToolOutcome

RECALL_TOOL: dict[str, Any] = {
    "name": "recall",
    "description": ("Search this chat's own past conversations, earlier ones and turns no longer in your context, "
                    "for what was said. Returns the best-matching passages with conversation number, title, date "
                    "and who said it."),
    "input_schema": {"type": "object", "properties": {
        "query": {"type": "string", "description": "words to look for; a \"quoted phrase\" stays a phrase"},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                  "description": f"passages to return (default {DEFAULT_LIMIT})"}},
        "required": ["query"]},
}


def recall(session: Session, tool_input: dict[str, Any]) -> ToolOutcome:
    query = tool_input.get("query")
    if not isinstance(query, str) or not query.strip():
        return ToolOutcome(content="not searched: give `query`, the words to look for", is_error=True)
    limit = tool_input.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        return ToolOutcome(content=f"not searched: `limit` is a whole number from 1 to {MAX_LIMIT}", is_error=True)
    header = session.header
    tz = header.heartbeat.tz if header is not None else "UTC"
    try:
        found = session.deps.recall.search(session.key, query, limit)
    except Exception as exc:  # the index is derived data: its failure is a tool error, never a failed turn
        session.log.error("recall.tool_failed", error=repr(exc))
        return ToolOutcome(content="the search index failed; try again later", is_error=True)
    return ToolOutcome(content=format_hits(found, tz=tz, now=session.deps.clock()))


def recall_tools(session: Session) -> ToolSet:
    def run(name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
        return recall(session, tool_input)

    def describe(name: str, tool_input: dict[str, Any]) -> str:
        return f"🗂 recalling: {one_line(str(tool_input.get('query', '')), PROGRESS_CHARS)}"

    return ToolSet(specs=(RECALL_TOOL,), run=run, describe=describe)
