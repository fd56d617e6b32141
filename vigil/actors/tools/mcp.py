"""The chat's MCP tools in a turn: offered anew at each model call, run through the process's `McpManager`.

Which servers a chat has is its header's (`/mcp on|off`, actors/commands/mcp.py) over `VIGIL_MCP_DEFAULT`
(vigil.mcp.config.effective_servers). Their tools are listed before every model call of a turn
(`per_call`: a server that died keeps its tools offered, one whose list changed offers the new list), sent
after vigil's own tools, which never move and are never deferred, so the request's tools stay the same
from call to call and the prompt cache keeps hitting; past `VIGIL_MCP_MAX_EAGER_TOOLS` the rest wait behind
the API's tool search tool (vigil/mcp/deferral.py). A read-only chat is offered only the tools their
servers annotate read-only; whether a call needs a person's Allow is the gate's (actors/tools/approval_gate.py, by
vigil/policy/tool_mode.py's rule).

A call goes to the manager with the turn's cancel token (so `/stop` reaches the server as MCP
cancellation) and the chat's servers (a tool of a server turned off meanwhile is refused). It never
raises: a timeout, a crash or a protocol error is a one-sentence error result and the turn goes on.
Images it returns are stored in the media store and named in the turn by reference, as users' photos
are (vigil/model/attached.py), never kept as base64 in a turn record; `per_call` reads them in.

Two more things every request of a turn needs, MCP servers or not:
- the images of tool results are read in (`materialize`), the exchange's included;
- a tool search result (`tool_search_tool_result`) that names a tool the request no longer defines (its
  server turned off, a read-only chat) would make the API refuse the whole request, now and at every
  later turn: such a search is left out of the request, as a search cut short is (the stored turn keeps it).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from vigil.actors.core.state import Session
from vigil.actors.engine.runner import ToolSet
from vigil.cancel import CancelToken
from vigil.mcp.config import effective_servers
from vigil.mcp.deferral import TOOL_SEARCH_NAME, tool_specs
from vigil.mcp.names import PREFIX
from vigil.mcp.tools import McpTool
from vigil.model.attached import materialize, ref_block
from vigil.model.server_blocks import SERVER_USE
from vigil.policy.tool_mode import effective_mode
from vigil.ports import ModelRequest
from vigil.records.schema import Attachment
from vigil.text import one_line
from vigil.tools.outcome import ToolOutcome

if TYPE_CHECKING:
    from vigil.mcp.results import McpOutcome

__all__ = ["chat_servers", "chat_tool", "is_mcp", "offered_mcp", "with_mcp"]

SEARCH_RESULT = "tool_search_tool_result"
PROGRESS_CHARS = 100
STALE_SEARCH = "(searched for tools that are no longer offered here)"


def is_mcp(name: str) -> bool:
    return name.startswith(PREFIX)


def chat_servers(session: Session) -> tuple[str, ...]:
    """The MCP servers on in this chat (sorted), of those configured."""
    manager, header = session.deps.mcp, session.header
    if manager is None or header is None:
        return ()
    return effective_servers(header.mcp_on, header.mcp_off, session.deps.settings.mcp_default, manager.servers)


def chat_tool(session: Session, name: str) -> McpTool | None:
    """The MCP tool Claude calls `name`, if its server is on in this chat."""
    manager = session.deps.mcp
    tool = manager.tool(name) if manager is not None and is_mcp(name) else None
    return tool if tool is not None and tool.server in chat_servers(session) else None


def offered_mcp(session: Session, cancel: CancelToken | None = None) -> tuple[McpTool, ...]:
    """The MCP tools this chat is offered now (servers not running are started first): in a read-only chat
    only those annotated read-only."""
    manager, servers = session.deps.mcp, chat_servers(session)
    if manager is None or not servers or session.header is None:
        return ()
    tools = manager.tools(servers, cancel, wait=False)  # a server that hangs while starting holds up one turn
    if effective_mode(session.header, session.deps.settings) == "readonly":
        tools = tuple(t for t in tools if t.read_only)
    return tools


def with_mcp(session: Session, tools: ToolSet) -> ToolSet:
    """`tools` with the chat's MCP tools added at each model call, and their calls routed to the manager."""

    def per_call(request: ModelRequest, cancel: CancelToken) -> ModelRequest:
        if tools.per_call is not None:
            request = tools.per_call(request, cancel)
        offered = offered_mcp(session, cancel)
        specs = (*request.tools, *tool_specs(offered, session.deps.settings.mcp_max_eager_tools)) if offered \
            else request.tools
        unreadable = frozenset(session.header.unreadable) if session.header is not None else frozenset()
        messages = searches_fit(materialize(list(request.messages), session.deps.media, unreadable=unreadable),
                                specs)
        return msgspec.structs.replace(request, tools=specs, messages=tuple(messages))

    def run(name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
        if not is_mcp(name):
            return tools.run(name, tool_input, cancel)
        manager = session.deps.mcp
        if manager is None:
            return ToolOutcome(f"{name} is not a tool of any MCP server that is on in this chat", is_error=True)
        return _outcome(manager.call(name, tool_input, cancel=cancel, servers=chat_servers(session)), session)

    def describe(name: str, tool_input: dict[str, Any]) -> str:
        if name == TOOL_SEARCH_NAME:
            return f"🧰 looking for a tool: {one_line(str(tool_input.get('query', '')), PROGRESS_CHARS)}"
        if not is_mcp(name):
            return tools.describe(name, tool_input)
        tool = session.deps.mcp.tool(name) if session.deps.mcp is not None else None
        shown = f"{tool.server}: {tool.title or tool.tool}" if tool is not None else name
        return f"🔌 {one_line(shown, PROGRESS_CHARS)}"

    return dataclasses.replace(tools, run=run, describe=describe, per_call=per_call)


def _outcome(outcome: McpOutcome, session: Session) -> ToolOutcome:
    """The manager's outcome as the turn's: text, and its images as references to the media store."""
    if not outcome.images:
        return ToolOutcome(outcome.text, outcome.is_error)
    blocks: list[dict[str, Any]] = [{"type": "text", "text": outcome.text}] if outcome.text.strip() else []
    media = session.deps.media
    for image in outcome.images:
        if media is None:  # a runtime without a media store (tests): the block itself
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": image.media_type,
                                                       "data": base64.b64encode(image.data).decode("ascii")}})
            continue
        try:
            digest = media.put(image.data)
        except OSError as exc:
            session.log.warning("mcp.image_not_stored", error=repr(exc))
            blocks.append({"type": "text", "text": f"[an image the tool returned could not be stored: "
                                                   f"{exc.strerror or exc}]"})
            continue
        blocks.append(ref_block(Attachment(kind="image", digest=digest, media_type=image.media_type,
                                           size=len(image.data))))
    return ToolOutcome(outcome.text, outcome.is_error, blocks=tuple(blocks))


def searches_fit(messages: Sequence[dict[str, Any]], specs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` without the tool searches whose results name a tool `specs` does not define (see the module
    docstring); a message left with nothing says so in a line."""
    defined = {spec.get("name") for spec in specs}
    stale: set[str] = set()
    for message in messages:
        if message["role"] != "assistant" or not isinstance(message["content"], list):
            continue
        for block in message["content"]:
            if block.get("type") == SEARCH_RESULT and any(name not in defined for name in _references(block)):
                stale.add(str(block.get("tool_use_id")))
    if not stale:
        return list(messages)
    out = []
    for message in messages:
        content = message["content"]
        if message["role"] == "assistant" and isinstance(content, list):
            kept = [b for b in content if not (b.get("type") == SERVER_USE and b.get("id") in stale)
                    and not (b.get("type") == SEARCH_RESULT and b.get("tool_use_id") in stale)]
            if len(kept) != len(content):
                message = {"role": "assistant", "content": kept or [{"type": "text", "text": STALE_SEARCH}]}
        out.append(message)
    return out


def _references(block: dict[str, Any]) -> list[str]:
    inner = block.get("content")
    refs = inner.get("tool_references") if isinstance(inner, dict) else None
    return [str(r.get("tool_name")) for r in refs or [] if isinstance(r, dict) and r.get("type") == "tool_reference"]
