"""The editor and bash (the Toolbox's tools), jailed to a session's workspace and started in its cwd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vigil.actors.core.state import Session
from vigil.actors.engine.runner import ToolSet
from vigil.cancel import CancelToken
from vigil.tools.outcome import ToolOutcome


def workspace_tools(session: Session, place: tuple[str, str]) -> ToolSet:
    """`place` is (cwd, workspace) as the header holds them when the set is made."""
    toolbox = session.deps.toolbox
    cwd, workspace = Path(place[0]), Path(place[1])

    def run(name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
        return toolbox.run(name, tool_input, cwd, cancel.event, workspace=workspace)

    def describe(name: str, tool_input: dict[str, Any]) -> str:
        return toolbox.describe(name, tool_input, cwd)

    return ToolSet(specs=tuple(toolbox.specs()), run=run, describe=describe)
