"""Leaf checks shared by the request check (`validator`) and the conversation check (`conversation`):
cache_control markers, keys a shape may carry, text blocks.

Each raises the API's own refusal text, so a request vigil builds wrongly fails the way it would in
production.
"""

from __future__ import annotations

from typing import Any

from tests.standins.messages_api.errors import invalid

# Keys each content block type may carry (from the SDK's *BlockParam TypedDicts). Blocks vigil builds
# by dumping SDK response models (e.g. a ParsedTextBlock's parsed_output) are refused as the API would.
BLOCK_KEYS: dict[str, frozenset[str]] = {
    "text": frozenset({"type", "text", "cache_control", "citations"}),
    "tool_use": frozenset({"type", "id", "name", "input", "cache_control", "caller", "toolset_name"}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error", "cache_control", "toolset_name"}),
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
    "image": frozenset({"type", "source", "cache_control"}),
    "document": frozenset({"type", "source", "cache_control", "citations", "context", "title"}),
}


def check_cache_control(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise invalid(f"{path}: Input should be a valid dictionary")
    if value.get("type") != "ephemeral":
        raise invalid(f"{path}.type: Input should be 'ephemeral'")
    for key in value:
        if key not in ("type", "ttl"):
            raise invalid(f"{path}.{key}: Extra inputs are not permitted")
    if "ttl" in value and value["ttl"] not in ("5m", "1h"):
        raise invalid(f"{path}.ttl: Input should be '5m' or '1h'")


def check_extra_keys(obj: dict[str, Any], allowed: frozenset[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise invalid(f"{path}.{key}: Extra inputs are not permitted")


def check_text_block(block: dict[str, Any], path: str) -> None:
    check_extra_keys(block, BLOCK_KEYS["text"], path)
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid(
            f"{path}.text: Field required" if "text" not in block else f"{path}.text: Input should be a valid string"
        )
    if not text:
        raise invalid("messages: text content blocks must be non-empty")
    if not text.strip():
        raise invalid("messages: text content blocks must contain non-whitespace text")
