"""The values a model call trades, beneath everything: the error tree's `ModelError` carries a partial answer.

They are re-exported by `vigil.ports`, the contract every caller reads them from; they live here, apart,
so that `vigil.errors` can name them without importing the contract (which imports the errors): the
layers run one way (tests/test_layout.py). Frozen msgspec Structs, like every value crossing a port.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["ModelRequest", "ModelResponse", "TokenUsage"]


class TokenUsage(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    web_search_requests: int = 0  # Anthropic's server web searches in the call (`usage.server_tool_use`), billed each


class ModelRequest(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One Messages API call, already valid: alternating roles, answered tool_use, no empty text."""

    model: str
    max_tokens: int
    system: tuple[dict[str, Any], ...]
    messages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...] = ()
    # The Messages API's `thinking` as vigil/model/thinking.py makes it from the chat's level; None: not sent.
    thinking: dict[str, Any] | None = None


class ModelResponse(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """The assistant message. `stop_reason` is "cancelled" when /stop cut it short."""

    content: tuple[dict[str, Any], ...]
    stop_reason: str
    usage: TokenUsage
    model: str = ""
