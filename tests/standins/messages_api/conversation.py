"""The conversation check: roles that alternate, content blocks each role may carry, and every tool_use
answered by a tool_result in the very next user message (results first).

Stricter than the real API in one place, on purpose: consecutive messages of one role are refused
rather than merged. The cache breakpoints found on the way are counted for `validator`, which
enforces the limit over the whole request.
"""

from __future__ import annotations

import re
from typing import Any

from tests.standins.images import ImageInfo
from tests.standins.messages_api.checks import BLOCK_KEYS, check_cache_control, check_extra_keys, check_text_block
from tests.standins.messages_api.content import content_blocks
from tests.standins.messages_api.errors import bad_tag, invalid
from tests.standins.messages_api.media import check_document, check_image, check_image_sizes

_TOOL_USE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
# Other block types the SDK can send; accepted without a key check (vigil does not use them).
_LOOSE_BLOCK_TYPES = frozenset(
    {
        "search_result",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "container_upload",
    }
)
_USER_ONLY = frozenset({"tool_result", "image", "document", "search_result", "container_upload"})
_ASSISTANT_ONLY = frozenset(
    {
        "tool_use",
        "thinking",
        "redacted_thinking",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
    }
)
_TOOL_RESULT_CONTENT_TYPES = frozenset(
    {"text", "image", "document", "search_result", "tool_reference", "browser_state"}
)


def check_messages(messages: Any, has_tools: bool) -> int:
    """Checks ``messages``; raises the first problem as a `Refusal`, else returns its cache breakpoints."""
    check = _ConversationCheck()
    check.run(messages, has_tools)
    return check.cache_breakpoints


class _ConversationCheck:
    def __init__(self) -> None:
        self.cache_breakpoints = 0
        # Every image of the request (path, header): how many there are decides how large each may be.
        self.images: list[tuple[str, ImageInfo | None]] = []

    def run(self, messages: Any, has_tools: bool) -> None:
        if not isinstance(messages, list):
            raise invalid("messages: Input should be a valid list")
        if not messages:
            raise invalid("messages: at least one message is required")
        seen_tool_use_ids: set[str] = set()
        uses_tool_blocks = False
        previous_role: str | None = None
        for i, message in enumerate(messages):
            path = f"messages.{i}"
            if not isinstance(message, dict):
                raise invalid(f"{path}: Input should be a valid dictionary")
            check_extra_keys(message, frozenset({"role", "content"}), path)
            role = message.get("role")
            if role not in ("user", "assistant"):
                # The SDK types a "system" role here too; the stand-in refuses it on purpose.
                raise invalid(f"{path}.role: Input should be 'user' or 'assistant'")
            if i == 0 and role != "user":
                raise invalid('messages: first message must use the "user" role')
            if role == previous_role:
                # Stricter than the real API (which merges consecutive turns), on purpose.
                raise invalid(
                    f'messages: roles must alternate between "user" and "assistant", '
                    f'but found multiple "{role}" roles in a row'
                )
            previous_role = role
            if "content" not in message:
                raise invalid(f"{path}.content: Field required")
            content = message["content"]
            if isinstance(content, str):
                if not content:
                    raise invalid(f"{path}: all messages must have non-empty content")
                if not content.strip():
                    raise invalid("messages: text content blocks must contain non-whitespace text")
                continue
            if not isinstance(content, list):
                raise invalid(f"{path}.content: Input should be a valid string or a list of content blocks")
            if not content:
                raise invalid(f"{path}: all messages must have non-empty content")
            for j, block in enumerate(content):
                uses_tool_blocks |= self._check_block(block, role, f"{path}.content.{j}", seen_tool_use_ids)
        check_image_sizes(self.images)
        if uses_tool_blocks and not has_tools:
            raise invalid("Requests which include `tool_use` or `tool_result` blocks must define tools.")
        self._check_tool_pairing(messages)
        last = messages[-1]
        if last["role"] == "assistant":
            blocks = content_blocks(last["content"])
            tail = blocks[-1] if blocks else None
            if isinstance(tail, dict) and tail.get("type") == "text" and tail["text"] != tail["text"].rstrip():
                raise invalid("messages: final assistant content cannot end with trailing whitespace")

    def _check_block(self, block: Any, role: str, path: str, seen_tool_use_ids: set[str]) -> bool:
        """Checks one content block; returns whether it is a tool_use/tool_result block."""
        if not isinstance(block, dict):
            raise invalid(f"{path}: Input should be a valid dictionary")
        block_type = block.get("type")
        if block_type not in BLOCK_KEYS and block_type not in _LOOSE_BLOCK_TYPES:
            raise bad_tag(path, block_type)
        if role == "assistant" and block_type in _USER_ONLY:
            raise invalid(f"{path}: `{block_type}` blocks can only be in `user` messages")
        if role == "user" and block_type in _ASSISTANT_ONLY:
            raise invalid(f"{path}: `{block_type}` blocks can only be in `assistant` messages")
        if block.get("cache_control") is not None:
            check_cache_control(block["cache_control"], f"{path}.cache_control")
            self.cache_breakpoints += 1
        if block_type == "text":
            check_text_block(block, path)
        elif block_type == "tool_use":
            check_extra_keys(block, BLOCK_KEYS["tool_use"], path)
            tool_use_id = block.get("id")
            if not isinstance(tool_use_id, str) or not _TOOL_USE_ID.match(tool_use_id):
                raise invalid(f"{path}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
            if tool_use_id in seen_tool_use_ids:
                raise invalid(f"{path}: `tool_use` ids must be unique: {tool_use_id}")
            seen_tool_use_ids.add(tool_use_id)
            if not isinstance(block.get("name"), str) or not block["name"]:
                raise invalid(f"{path}.name: Field required")
            if not isinstance(block.get("input"), dict):
                raise invalid(f"{path}.input: Input should be a valid dictionary")
            return True
        elif block_type == "tool_result":
            check_extra_keys(block, BLOCK_KEYS["tool_result"], path)
            if not isinstance(block.get("tool_use_id"), str):
                raise invalid(f"{path}.tool_use_id: Field required")
            if "is_error" in block and not isinstance(block["is_error"], bool):
                raise invalid(f"{path}.is_error: Input should be a valid boolean")
            content = block.get("content")
            if isinstance(content, list):
                for k, inner in enumerate(content):
                    inner_path = f"{path}.content.{k}"
                    if not isinstance(inner, dict) or inner.get("type") not in _TOOL_RESULT_CONTENT_TYPES:
                        tag = inner.get("type") if isinstance(inner, dict) else None
                        raise bad_tag(inner_path, tag)
                    if inner.get("type") == "text":
                        check_text_block(inner, inner_path)
                    self._check_media(inner, inner_path)
                    if inner.get("cache_control") is not None:
                        check_cache_control(inner["cache_control"], f"{inner_path}.cache_control")
                        self.cache_breakpoints += 1
            elif content is not None and not isinstance(content, str):
                raise invalid(f"{path}.content: Input should be a valid string or a list of content blocks")
            return True
        elif block_type in ("image", "document"):
            self._check_media(block, path)
        elif block_type in BLOCK_KEYS:
            check_extra_keys(block, BLOCK_KEYS[block_type], path)
        return False

    def _check_media(self, block: dict[str, Any], path: str) -> None:
        if block.get("type") == "image":
            self.images.append((path, check_image(block, path)))
        elif block.get("type") == "document":
            check_document(block, path)

    def _check_tool_pairing(self, messages: list[dict[str, Any]]) -> None:
        """Every tool_use is answered by a tool_result in the very next user message, results first."""
        for i, message in enumerate(messages):
            blocks = content_blocks(message["content"])
            if message["role"] == "assistant":
                ids = [b["id"] for b in blocks if b.get("type") == "tool_use"]
                if not ids:
                    continue
                following = content_blocks(messages[i + 1]["content"]) if i + 1 < len(messages) else []
                answered = {b.get("tool_use_id") for b in following if b.get("type") == "tool_result"}
                missing = [tid for tid in ids if tid not in answered]
                if missing:
                    raise invalid(
                        f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                        f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                        "a corresponding `tool_result` block in the next message."
                    )
                continue
            previous = content_blocks(messages[i - 1]["content"]) if i > 0 else []
            offered = {b.get("id") for b in previous if b.get("type") == "tool_use"}
            seen_results: set[str] = set()
            seen_other = False
            for j, block in enumerate(blocks):
                if block.get("type") != "tool_result":
                    seen_other = True
                    continue
                tool_use_id = block["tool_use_id"]
                if tool_use_id not in offered:
                    raise invalid(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{tool_use_id}. Each `tool_result` block must have a corresponding `tool_use` block "
                        "in the previous message."
                    )
                if tool_use_id in seen_results:
                    raise invalid(
                        f"messages.{i}.content.{j}: each tool_use must have a single result. "
                        f"Found multiple `tool_result` blocks with id: {tool_use_id}"
                    )
                seen_results.add(tool_use_id)
                if seen_other:
                    raise invalid(
                        f"messages.{i}: `tool_result` blocks must come first in the user message content, "
                        "before any other content"
                    )
