"""`ToolSet`: the tools a turn offers the model and how each call of one runs, as the turn runner takes them.

Each tool module gives one for a session (actors/tools/); `merge` makes one of several; the permission
gate (actors/tools/approval_gate.py) wraps one. `per_call` is a set's say in each model call of a turn: the request
about to go (its messages and `specs` filled in) made ready, e.g. with tools whose list can change from one
call to the next (the chat's MCP servers': actors/tools/mcp.py) added after `specs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vigil.cancel import CancelToken
from vigil.ports import ModelRequest
from vigil.tools.outcome import ToolOutcome

__all__ = ["ToolSet"]


@dataclass(frozen=True)
class ToolSet:
    specs: tuple[dict[str, Any], ...]
    run: Callable[[str, dict[str, Any], CancelToken], ToolOutcome]
    describe: Callable[[str, dict[str, Any]], str]
    per_call: Callable[[ModelRequest, CancelToken], ModelRequest] | None = None
