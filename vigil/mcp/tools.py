"""What vigil knows of a server and its tools, as the other threads see it: immutable snapshots.

A `Connection` (on the MCP event loop) publishes a new `ServerStatus` whenever something changes; the
actor threads, `/mcp` and the system prompt read the latest one without waiting on the loop, so a
server that hangs while starting never holds up `/status` or another chat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["NO_CONFIG", "McpTool", "ServerState", "ServerStatus", "server_lines"]

ServerState = Literal["not started", "starting", "running", "failed"]


@dataclass(frozen=True)
class McpTool:
    """One tool of one server, under the name Claude sees (`mcp__<server>__<tool>`, see vigil/mcp/names.py)."""

    name: str
    server: str
    tool: str  # the name the server gave it: what tools/call is sent
    description: str
    input_schema: dict[str, Any] = field(hash=False, compare=False)
    read_only: bool  # annotations.readOnlyHint: a hint from the server, trusted as far as its operator is
    title: str = ""

    def spec(self) -> dict[str, Any]:
        """The Messages API tool definition (`defer_loading` is added by vigil/mcp/deferral.py)."""
        spec: dict[str, Any] = {"name": self.name, "input_schema": self.input_schema}
        if self.description:
            spec["description"] = self.description
        return spec


@dataclass(frozen=True)
class ServerStatus:
    """One server, for `/mcp`: its state, why it failed, its tools. Holds no credential."""

    name: str
    describe: str  # "stdio: uvx (2 arguments)" or "http: https://host/mcp": no env, header or query
    state: ServerState = "not started"
    detail: str = ""  # why it failed, or what was left out of its tools
    tools: tuple[McpTool, ...] = ()
    restarts: int = 0
    retry_in_s: float | None = None  # failed: when the next start may be tried

    def line(self) -> str:
        """A one-line summary: `notes · running · 3 tools`."""
        parts = [self.name, self.state]
        if self.state == "running" or self.tools:
            parts.append(f"{len(self.tools)} tool{'s' if len(self.tools) != 1 else ''}")
        if self.detail:
            parts.append(self.detail)
        if self.state == "failed" and self.retry_in_s:
            parts.append(f"next try in {self.retry_in_s:.0f} s")
        return " · ".join(parts)


def server_lines(status: ServerStatus) -> list[str]:
    """One server for /mcp: its summary line, what it is, and its tools (read-only ones first)."""
    lines = [f"• {status.line()} — {status.describe}"]
    if status.state == "not started":
        lines.append("  starts when Claude first uses it")
    reads = [tool.tool for tool in status.tools if tool.read_only]
    changes = [tool.tool for tool in status.tools if not tool.read_only]
    if reads:
        lines.append(f"  read-only: {', '.join(reads)}")
    if changes:
        lines.append(f"  may change things (asks first in ask mode): {', '.join(changes)}")
    return lines


NO_CONFIG = ("🔌 No MCP servers are configured here: the operator lists them in the file VIGIL_MCP_CONFIG names "
             "(the mcpServers format of Claude Desktop and Claude Code).")
