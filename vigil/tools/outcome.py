"""The result of one tool call, as it goes back to Claude in a `tool_result` block."""

from __future__ import annotations

from typing import Any

import msgspec


class ToolOutcome(msgspec.Struct, frozen=True):
    """What a tool produced: the text Claude reads, and whether the call failed.

    `is_error` maps onto the `is_error` flag of the Messages API's `tool_result`
    block. Tools set it when they could not do what was asked (bad input, a path
    outside the jail, a timeout); a command that ran and exited non-zero is not a
    tool failure, so its exit code is reported in `content` instead.

    `blocks`, when a tool gives more than text (an MCP tool's images), is the `tool_result`'s content
    as a list of blocks, `content` then being the text alone (for logs and progress lines).
    """

    content: str
    is_error: bool = False
    blocks: tuple[dict[str, Any], ...] = ()

    def result_content(self) -> str | list[dict[str, Any]]:
        """The `tool_result` block's content: the blocks when there are, else the text (never empty)."""
        if self.blocks:
            return [dict(block) for block in self.blocks]
        return self.content if self.content.strip() else "(no output)"
