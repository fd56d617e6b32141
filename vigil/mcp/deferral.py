"""Many MCP tools without a big prompt: the first N in full, the rest behind the API's tool search tool.

Every tool definition is input on every request. A chat with five servers may have 200 tools, most
of them never used in a given turn. So at most `VIGIL_MCP_MAX_EAGER_TOOLS` (20) MCP tools are sent in
full; the others go with `defer_loading: true`, which the API keeps out of the prompt until the model
finds them with the tool search tool (`tool_search_tool_bm25_20251119`: natural-language queries over
names, descriptions and argument names), sent once in the same request. The split follows the tools'
stable (sorted) order, so the same tools are eager on every request and the prompt cache keeps hitting.

The API refuses a request whose tools are all deferred: vigil's own tools (the editor at least) are
always sent in full beside these, and the search tool itself is never deferred.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from vigil.mcp.tools import McpTool

__all__ = ["TOOL_SEARCH_NAME", "TOOL_SEARCH_TYPE", "tool_specs"]

# The anthropic SDK's ToolSearchToolBm25_20251119Param.
TOOL_SEARCH_TYPE: Final = "tool_search_tool_bm25_20251119"
TOOL_SEARCH_NAME: Final = "tool_search_tool_bm25"


def tool_specs(tools: Sequence[McpTool], max_eager: int) -> list[dict[str, Any]]:
    """The tool definitions to send for a chat's MCP tools: eager ones, deferred ones, and the search
    tool when any are deferred. `tools` in any order; the result's order depends only on their names."""
    ordered = sorted(tools, key=lambda t: t.name)
    eager = [tool.spec() for tool in ordered[:max_eager]]
    deferred = [{**tool.spec(), "defer_loading": True} for tool in ordered[max_eager:]]
    if not deferred:
        return eager
    return [*eager, *deferred, {"type": TOOL_SEARCH_TYPE, "name": TOOL_SEARCH_NAME}]
