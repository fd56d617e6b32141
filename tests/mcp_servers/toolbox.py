"""A stdio MCP server with every kind of tool vigil must handle; the test steers it through files.

`MCP_TEST_DIR` (required) is its scratch directory: notes are written there, the slow tool waits for
`release` to appear there and leaves `slow-started`, `slow-cancelled` or `slow-finished`, the crashing
tool leaves `crashed`. Each start appends a line to `starts`, so a test can count restarts.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ResourceLink,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
)
from PIL import Image as PILImage

DIR = Path(os.environ["MCP_TEST_DIR"])
server = MCPServer("toolbox")
READ_ONLY = ToolAnnotations(read_only_hint=True)


def _picture(fmt: str, size: tuple[int, int] = (24, 12)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, (200, 30, 30)).save(out, fmt)
    return out.getvalue()


@server.tool(annotations=READ_ONLY, description="Read a note by name.")
def read_note(name: str) -> str:
    path = DIR / f"note-{name}"
    return path.read_text() if path.exists() else f"no note {name}"


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False),
             description="Write a note.")
def write_note(name: str, text: str) -> str:
    (DIR / f"note-{name}").write_text(text)
    return f"wrote note {name}"


@server.tool(annotations=READ_ONLY, description="A picture: png, lying (JPEG bytes said to be PNG), broken, wide.")
def picture(kind: str = "png") -> Image:
    if kind == "png":
        return Image(data=_picture("PNG"), format="png")
    if kind == "lying":
        return Image(data=_picture("JPEG"), format="png")
    if kind == "wide":
        return Image(data=_picture("PNG", (9000, 20)), format="png")
    return Image(data=b"\x89PNG\r\n\x1a\nthis is no picture", format="png")


@server.tool(annotations=READ_ONLY, description="Waits until the test releases it (or `seconds` pass).")
async def slow(seconds: float = 3600.0) -> str:
    (DIR / "slow-started").write_text(str(os.getpid()))
    try:
        with anyio.move_on_after(seconds):
            while not (DIR / "release").exists():
                await anyio.sleep(0.02)
    except anyio.get_cancelled_exc_class():
        (DIR / "slow-cancelled").write_text("cancelled")
        raise
    (DIR / "slow-finished").write_text("finished")
    return "slow done"


@server.tool(description="Exits the server process in the middle of the call.")
def crash() -> str:
    (DIR / "crashed").write_text(str(os.getpid()))
    print("toolbox: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(7)


@server.tool(description="Adds a tool named `name` and tells the client its tool list changed.")
async def add_tool(name: str, ctx: Context) -> str:
    def added() -> str:
        return f"I am {name}"

    server.add_tool(added, name=name, description=f"A tool added at run time: {name}")
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


@server.tool(annotations=READ_ONLY, description="Every kind of content block at once.")
def rich() -> CallToolResult:
    return CallToolResult(
        content=[
            TextContent(text="plain text"),
            EmbeddedResource(resource=TextResourceContents(uri="file:///notes/a.txt", text="resource text")),
            EmbeddedResource(resource=BlobResourceContents(uri="file:///bin/x", mime_type="application/zip",
                                                           blob="UEsDBAoAAAAAAA==")),
            ResourceLink(uri="file:///docs/b.md", name="b.md", mime_type="text/markdown"),
            AudioContent(data="UklGRg==", mime_type="audio/wav"),
        ],
        structured_content={"answer": 42},
    )


@server.tool(annotations=READ_ONLY, description="Fails as a tool fails: isError.")
def fail() -> CallToolResult:
    return CallToolResult(content=[TextContent(text="the thing is broken")], is_error=True)


@server.tool(annotations=READ_ONLY, description="The names (and the test's values) of the server's environment.")
def environment() -> str:
    shown = {k: (v if k.startswith("MCP_TEST") else "") for k, v in os.environ.items()}
    return json.dumps(dict(sorted(shown.items())))


@server.tool(annotations=READ_ONLY, description="Says its credential (MCP_TEST_SECRET) on stderr and in its result.")
def leak() -> str:
    secret = os.environ.get("MCP_TEST_SECRET", "")
    print(f"toolbox: my secret is {secret}", file=sys.stderr, flush=True)
    return f"the secret is {secret}"


@server.tool(annotations=READ_ONLY, description="`size` characters of text.")
def big(size: int) -> str:
    return "".join(chr(ord("a") + i % 26) for i in range(size))


@server.tool(name="lookup.by/id", annotations=READ_ONLY, description="A tool whose name the API would refuse.")
def lookup(id: str) -> str:
    return f"found {id}"


if __name__ == "__main__":
    with open(DIR / "starts", "a") as starts:
        starts.write(f"{os.getpid()} {time.time()}\n")
    server.run("stdio")
