"""A stdio MCP server with `MCP_TEST_TOOLS` (default 200) tools, each with a realistic description and
schema: what five servers' worth of tools cost a request, for the deferral measurement."""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("many")
_TOPICS = ("calendar", "invoice", "ticket", "contact", "repository", "deployment", "document", "metric")


def _make(index: int) -> None:
    topic = _TOPICS[index % len(_TOPICS)]

    def run(query: str, limit: int = 10, include_archived: bool = False) -> str:
        return f"{topic} {index}: {query} ({limit}, {include_archived})"

    server.add_tool(
        run,
        name=f"{topic}_action_{index:03d}",
        description=(f"Looks up {topic} records matching a free-text query and returns at most `limit` of "
                     f"them, newest first. Archived {topic}s are left out unless asked for. Variant {index}."),
        annotations=ToolAnnotations(read_only_hint=index % 2 == 0),
    )


for i in range(int(os.environ.get("MCP_TEST_TOOLS", "200"))):
    _make(i)

if __name__ == "__main__":
    server.run("stdio")
