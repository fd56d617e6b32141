"""The tool sets turns offer, assembled in one place from small tool modules, behind the approval gate.

Each tool module gives a `ToolSet` (specs, run, describe) for one session; `merge` routes a call
to the set that offers the name. A new tool is a new module here and one line in the turn kind's
list below; a new turn kind is one more function. `approval_gate` wraps a turn's tools so that what
the chat's mode calls risky waits for Allow, and `approval_prompt` is what the person is shown.

May import `vigil.actors.core`, `engine` and `timing`, and the machinery beneath the actors (the
tools, MCP, recall, media, policy); the turns import this, never the reverse.
"""

from __future__ import annotations

from typing import Any

from vigil.actors.core.state import Session
from vigil.actors.engine.runner import ToolSet
from vigil.actors.tools.mcp import with_mcp
from vigil.actors.tools.notes import note_tools
from vigil.actors.tools.recall import recall_tools
from vigil.actors.tools.schedule import schedule_tools
from vigil.actors.tools.send_file import send_file_tools
from vigil.actors.tools.send_message import BeatSends, send_message_tools
from vigil.actors.tools.skills import skill_files
from vigil.actors.tools.web import web_tools
from vigil.actors.tools.workspace import workspace_tools
from vigil.cancel import CancelToken
from vigil.ports import ModelRequest
from vigil.tools.outcome import ToolOutcome

__all__ = ["beat_tools", "merge", "user_turn_tools"]


def merge(*parts: ToolSet, fallback: ToolSet | None = None) -> ToolSet:
    """One tool set of several; a name none offers goes to `fallback` (which says what is offered). Their
    `per_call`s run in turn."""
    owner = {str(spec["name"]): part for part in parts for spec in part.specs}
    hooks = [part.per_call for part in parts if part.per_call is not None]

    def per_call(request: ModelRequest, cancel: CancelToken) -> ModelRequest:
        for hook in hooks:
            request = hook(request, cancel)
        return request

    def run(name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
        part = owner.get(name, fallback)
        if part is None:
            return ToolOutcome(content=f"unknown tool {name!r}", is_error=True)
        return part.run(name, tool_input, cancel)

    def describe(name: str, tool_input: dict[str, Any]) -> str:
        part = owner.get(name, fallback)
        return name if part is None else part.describe(name, tool_input)

    return ToolSet(specs=tuple(spec for part in parts for spec in part.specs), run=run, describe=describe,
                   per_call=per_call if hooks else None)


def user_turn_tools(session: Session) -> ToolSet:
    """The tools of a user turn: the editor (and bash when enabled) jailed to this session's workspace,
    starting in its cwd (the editor also views the Agent Skills); save_note; send_file (through the editor's
    jail); the web; schedule; recall; the chat's MCP tools. Kept while the
    session's place stays the same."""
    assert session.header is not None, "tools run only in a session that has a header"
    header = session.header
    place = (header.cwd, header.workspace or header.cwd)  # workspace_of's, as text: no Path per call
    if session.toolset_cache is not None and session.toolset_cache[0] == place:
        return session.toolset_cache[1]
    workspace = skill_files(session, workspace_tools(session, place))  # and the skills' folders, read-only
    toolset = merge(workspace, note_tools(session), send_file_tools(session, place), web_tools(session.deps.settings),
                    schedule_tools(session),
                    recall_tools(session),  # this chat's past conversations (actors/tools/recall.py)
                    fallback=workspace)
    toolset = with_mcp(session, toolset)  # the chat's MCP servers' tools, listed at each model call
    session.toolset_cache = (place, toolset)
    return toolset


def beat_tools(session: Session, sends: BeatSends) -> ToolSet:
    """The tools of a heartbeat turn: send_message (the only way a beat reaches the chat), save_note, the web,
    recall, the chat's MCP tools."""
    return with_mcp(session, merge(send_message_tools(sends), note_tools(session), web_tools(session.deps.settings),
                                   recall_tools(session)))
