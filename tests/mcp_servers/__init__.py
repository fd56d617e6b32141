"""Real MCP servers for the tests, written with the SDK's own server side (`MCPServer`).

Each is a script run as its own process (`python tests/mcp_servers/<name>.py`), as an operator's
server would be: `toolbox` over stdio (the kinds of tool vigil must handle), `many_tools` over stdio
(200 tools, for deferral), `remote` over streamable HTTP or SSE behind a bearer token. `paths`
locates them for the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def script(name: str) -> list[str]:
    """The argv that runs server `name` with this interpreter."""
    return [sys.executable, str(HERE / f"{name}.py")]
