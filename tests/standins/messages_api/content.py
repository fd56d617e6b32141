"""Reading what a request says: its content blocks, the words of the current turn, and the
`RecordedRequest` tests look at.

The current turn's user message is the latest one with a text block: user messages made only of
tool_result blocks continue a turn and carry no words of the user. Validation, the script and the
prompt cache all read messages through these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.standins.messages_api.media import MediaBlock, media_block


def content_blocks(content: Any) -> list[Any]:
    """A message's content as a list of blocks: the API treats a string as one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    return []


def text_of_blocks(blocks: list[Any]) -> list[str]:
    return [
        b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
    ]


def tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(text_of_blocks(content))
    return ""


def turn_index(messages: list[Any]) -> int | None:
    """Index of the user message that began the current turn: the latest one with a text block.

    User messages made only of tool_result blocks continue a turn; they carry no words of the user."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "user" and text_of_blocks(content_blocks(m.get("content"))):
            return i
    return None


def current_turn_text(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    i = turn_index(messages)
    if i is None:
        return ""
    # Blocks are joined with a newline so that two blocks never run their words together.
    return "\n".join(text_of_blocks(content_blocks(messages[i].get("content"))))


SUMMARY_MARKER = "You are compacting a conversation"
"""How vigil's compaction call begins its system prompt (actors/turns/summary.py): such a request asks for a
summary of a transcript, so the words quoted in it are not the user's directives."""


def is_summary_request(body: dict[str, Any]) -> bool:
    """Whether ``body`` is vigil's summarisation call (compaction), recognised by its system prompt."""
    system = body.get("system")
    texts = [system] if isinstance(system, str) else text_of_blocks(system) if isinstance(system, list) else []
    return any(text.startswith(SUMMARY_MARKER) for text in texts)


@dataclass
class RecordedRequest:
    """One ``POST /v1/messages`` that passed auth. ``refused`` holds the error message when the
    stand-in answered it with a 4xx validation error (it is then also in ``MessagesAPI.errors``)."""

    body: dict[str, Any]
    headers: dict[str, str]
    stream: bool
    refused: str | None = None
    usage: dict[str, Any] | None = None  # the answer's usage, once built (input, cache read and written, output)

    @property
    def input_total(self) -> int:
        """Every input token of the request: uncached, read from the cache and written to it."""
        usage = self.usage or {}
        return sum(int(usage.get(k) or 0) for k in ("input_tokens", "cache_read_input_tokens",
                                                    "cache_creation_input_tokens"))

    def last_user_text(self) -> str:
        """Text blocks (newline-joined) of the latest user message that has any text block."""
        return current_turn_text(self.body)

    @property
    def is_summary(self) -> bool:
        """Whether this is vigil's summarisation call (compaction), not a turn of the conversation."""
        return is_summary_request(self.body)

    def media(self, current_turn: bool = False) -> list[MediaBlock]:
        """Every image and document block of the request (inside tool_results too), in order, decoded;
        with ``current_turn`` only those of the user message that began the current turn."""
        messages = self.body.get("messages")
        if not isinstance(messages, list):
            return []
        first = 0
        if current_turn:
            turn = turn_index(messages)
            if turn is None:
                return []
            first = turn
        out: list[MediaBlock] = []
        for i in range(first, (first + 1) if current_turn else len(messages)):
            message = messages[i]
            if not isinstance(message, dict):
                continue
            for j, block in enumerate(content_blocks(message.get("content"))):
                if not isinstance(block, dict):
                    continue
                inner = block.get("content") if block.get("type") == "tool_result" else None
                for candidate in [block, *(inner if isinstance(inner, list) else [])]:
                    found = media_block(candidate, i, j) if isinstance(candidate, dict) else None
                    if found is not None:
                        out.append(found)
        return out

    def images(self, current_turn: bool = False) -> list[bytes]:
        """The decoded bytes of every base64 image block (url images have none), in order."""
        return [m.data for m in self.media(current_turn) if m.kind == "image" and m.data is not None]

    def documents(self, current_turn: bool = False) -> list[MediaBlock]:
        """Every document block: ``data`` holds a PDF's bytes, ``text`` a text document's text."""
        return [m for m in self.media(current_turn) if m.kind == "document"]

    def all_text(self) -> str:
        """Every piece of text in the request: system, message text, tool_use inputs, tool_results.

        For "no request ever carries another chat's words" assertions."""
        parts: list[str] = []
        system = self.body.get("system")
        if isinstance(system, str):
            parts.append(system)
        elif isinstance(system, list):
            parts.extend(text_of_blocks(system))
        messages = self.body.get("messages")
        for m in messages if isinstance(messages, list) else []:
            if not isinstance(m, dict):
                continue
            for b in content_blocks(m.get("content")):
                if not isinstance(b, dict):
                    continue
                if b.get("type") == "text" and isinstance(b.get("text"), str):
                    parts.append(b["text"])
                elif b.get("type") == "tool_result":
                    parts.append(tool_result_text(b))
                elif b.get("type") == "tool_use":
                    parts.append(json.dumps(b.get("input"), ensure_ascii=False))
        return "\n".join(parts)
