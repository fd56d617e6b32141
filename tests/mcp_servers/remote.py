"""A remote MCP server behind a bearer token: `remote.py FD TRANSPORT`, serving on the listening socket
the test passes as file descriptor FD (already bound to 127.0.0.1, so the test knows the port before
the server runs), streamable HTTP at `/mcp` or HTTP+SSE at `/sse`. The token is `MCP_TEST_TOKEN`.

Requests without `Authorization: Bearer <token>` get 401, and each is counted in `MCP_TEST_DIR/refused`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

TOKEN = os.environ["MCP_TEST_TOKEN"]
DIR = Path(os.environ["MCP_TEST_DIR"])
server = MCPServer("remote")


@server.tool(annotations=ToolAnnotations(read_only_hint=True), description="Says the text back.")
def echo(text: str) -> str:
    return f"remote echo: {text}"


@server.tool(description="Records a value on the server.")
def remember(value: str) -> str:
    (DIR / "remembered").write_text(value)
    return f"remembered {value}"


def _bearer(app: Any) -> Any:
    expected = f"Bearer {TOKEN}".encode()

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            with open(DIR / "refused", "a") as refused:
                refused.write(f"{scope['method']} {scope['path']}\n")
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"error": "unauthorized"}'})
            return
        await app(scope, receive, send)

    return guarded


if __name__ == "__main__":
    fd, transport = int(sys.argv[1]), sys.argv[2]
    app = server.sse_app() if transport == "sse" else server.streamable_http_app()
    uvicorn.Server(uvicorn.Config(_bearer(app), fd=fd, log_level="warning", lifespan="on")).run()
