"""Stored turns -> a Messages API request that the API accepts, whatever happened to them.

Turns can be cut short anywhere: `/stop` mid-stream, a model error, `kill -9`
between a `tool_use` and its result. `normalize` is the one place that turns any
sequence of stored messages into a valid request:
- text blocks are never empty or whitespace-only;
- roles alternate, starting with the user (same-role neighbours are merged);
- every `tool_use` is answered by a `tool_result` first thing in the next user
  message (a missing one becomes an error result saying it was interrupted), and
  a `tool_result` without its `tool_use` is dropped;
- the service's own tool calls (web search, fetch) are kept only with their results, byte for byte
  (vigil/model/server_blocks.py): they need no `tool_result` from us.

Files users sent appear before their input's text as placeholders (vigil/model/attached.py), which
the window counts by their estimated tokens and `materialize` turns into image and document blocks
per request: nothing here reads a disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from vigil.model.attached import CARRIED, block_tokens, ref_block
from vigil.model.server_blocks import kept_whole
from vigil.records.schema import Input, Turn

Block = dict[str, Any]
ApiMessage = dict[str, Any]

INTERRUPTED_RESULT = "interrupted: this tool call was cut short and produced no result"
_STATUS_NOTES = {
    "stopped": "reply stopped by the user",
    "failed": "reply failed",
    "interrupted": "reply interrupted by a restart",
}


def _text_block(text: str) -> Block:
    return {"type": "text", "text": text}


def input_text(turn: Turn, group: bool) -> str:
    """The user-role text of a turn: its collected messages, with senders named in groups (a heartbeat's or a
    schedule firing's: the prompt it was given)."""
    if turn.kind in ("heartbeat", "schedule"):
        return turn.prompt
    return "\n\n".join(_item_text(item, group) for item in turn.inputs)


def _item_text(item: Input, group: bool) -> str:
    text = item.text
    saved = [_saved_line(a.path, a.name) for a in item.attachments if a.path or a.kind == "file"]
    if saved:
        text = "\n".join([text, *saved]) if text.strip() else "\n".join(saved)
    return f"[{item.user_name or item.user_id}] {text}" if group else text


def _saved_line(path: str, name: str) -> str:
    # The model's file and shell tools work on it there (they take absolute paths inside the workspace,
    # and the bash sandbox binds it at the same path); a file with no path was not kept anywhere.
    if not path:
        return f"[file {name or '(unnamed)'} received but not saved]"
    if path.startswith("/"):
        return f"[file saved at {path}]"
    # Stored before paths were absolute: relative to a working directory the chat may since have left.
    return f"[file saved at {path}, relative to the working directory the chat had when it arrived]"


def input_blocks(turn: Turn, group: bool) -> list[Block]:
    """The user-role content of a turn: each input's files (placeholders) before its text."""
    if turn.kind in ("heartbeat", "schedule") or not any(item.attachments for item in turn.inputs):
        return [_text_block(input_text(turn, group))]
    blocks: list[Block] = []
    texts: list[str] = []
    for item in turn.inputs:
        refs = [ref_block(a) for a in item.attachments if a.kind in CARRIED]
        if refs and texts:
            blocks.append(_text_block("\n\n".join(texts)))
            texts = []
        blocks.extend(refs)
        text = _item_text(item, group)
        if text.strip():
            texts.append(text)
    if texts:
        blocks.append(_text_block("\n\n".join(texts)))
    return blocks


def turn_messages(turn: Turn, group: bool = False) -> list[ApiMessage]:
    """A stored turn as API messages (before normalization)."""
    if turn.kind == "heartbeat":
        # A beat is kept only for what it said; its tool calls and silence are not conversation.
        if not turn.reply.strip():
            return []
        return [{"role": "user", "content": [_text_block(turn.prompt or "(scheduled check-in)")]},
                {"role": "assistant", "content": [_text_block(turn.reply)]}]
    messages: list[ApiMessage] = [{"role": "user", "content": input_blocks(turn, group)}]
    messages.extend({"role": m.role, "content": [dict(b) for b in m.content]} for m in turn.messages)
    note = _STATUS_NOTES.get(turn.status)
    if note:
        # Tell the model the reply was cut, in an assistant message, which also keeps roles alternating.
        messages.append({"role": "assistant", "content": [_text_block(f"[{note}]")]})
    return messages


def normalized_turn(turn: Turn, group: bool = False) -> list[ApiMessage]:
    """`normalize(turn_messages(turn))`, without the work for the common plain turn (text in, text out)."""
    messages = turn_messages(turn, group)
    if (turn.kind == "user" and turn.status == "done" and len(messages) == 2
            and messages[1]["role"] == "assistant" and _plain_text(messages[0]) and _plain_text(messages[1])):
        return messages
    return normalize(messages)


def _plain_text(message: ApiMessage) -> bool:
    return all(b.get("type") == "text" and str(b.get("text", "")).strip() and "cache_control" not in b
               for b in message["content"]) and bool(message["content"])


def _clean(content: Any) -> list[Block]:
    if isinstance(content, str):
        return [_text_block(content)] if content.strip() else []
    blocks: list[Block] = []
    for block in content:
        if block.get("type") == "text" and not str(block.get("text", "")).strip():
            continue
        blocks.append(dict(block))
    return blocks


def _merge_roles(messages: Iterable[ApiMessage]) -> list[ApiMessage]:
    merged: list[ApiMessage] = []
    for message in messages:
        content = _clean(message["content"])
        if not content:
            continue
        if merged and merged[-1]["role"] == message["role"]:
            merged[-1]["content"].extend(content)
        else:
            merged.append({"role": message["role"], "content": content})
    return merged


def _tool_use_ids(message: ApiMessage) -> list[str]:
    return [b["id"] for b in message["content"] if b.get("type") == "tool_use"]


def _pair_tools(messages: list[ApiMessage]) -> tuple[list[ApiMessage], bool]:
    """Answer every tool_use, drop orphan tool_results; reports whether anything was dropped."""
    out: list[ApiMessage] = []
    dropped = False
    seen_ids: set[str] = set()
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            content = []
            whole = kept_whole(message["content"])  # a search cut short ends no message sent back
            if len(whole) != len(message["content"]):
                dropped = True
            for block in whole:
                if block.get("type") == "tool_use":
                    if block.get("id") in seen_ids:
                        dropped = True
                        continue
                    seen_ids.add(block["id"])
                content.append(block)
            message = {"role": "assistant", "content": content}
            out.append(message)
            ids = _tool_use_ids(message)
            following = messages[index + 1] if index + 1 < len(messages) else None
            if ids and (following is None or following["role"] != "user"):
                out.append({"role": "user", "content": [_interrupted(i) for i in ids]})
            continue
        previous = out[-1] if out and out[-1]["role"] == "assistant" else None
        expected = _tool_use_ids(previous) if previous is not None else []
        results: dict[str, Block] = {}
        others: list[Block] = []
        for block in message["content"]:
            if block.get("type") == "tool_result":
                tool_id = block.get("tool_use_id")
                if tool_id in expected and tool_id not in results:
                    results[tool_id] = block
                else:
                    dropped = True
            else:
                others.append(block)
        answered = [results.get(i) or _interrupted(i) for i in expected]
        content = answered + others
        if content:
            out.append({"role": "user", "content": content})
        else:
            dropped = True
    return out, dropped


def _interrupted(tool_use_id: str) -> Block:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": INTERRUPTED_RESULT, "is_error": True}


def normalize(messages: Iterable[ApiMessage]) -> list[ApiMessage]:
    """Any message sequence -> a valid one (possibly empty); see the module docstring."""
    current = _merge_roles(messages)
    for _ in range(8):
        paired, dropped = _pair_tools(current)
        current = _merge_roles(paired)
        if not dropped:
            break
    while current and current[0]["role"] != "user":
        current.pop(0)
    # A leading user message can only carry tool_results answered by nothing before it.
    if current and any(b.get("type") == "tool_result" for b in current[0]["content"]):
        return normalize([{"role": "user", "content": [b for b in current[0]["content"]
                                                        if b.get("type") != "tool_result"]}, *current[1:]])
    return current


def join(parts: Iterable[list[ApiMessage]]) -> list[ApiMessage]:
    """Concatenate individually normalized turns, merging a same-role joint (copies only there)."""
    out: list[ApiMessage] = []
    for part in parts:
        if not part:
            continue
        if out and out[-1]["role"] == part[0]["role"]:
            out[-1] = {"role": part[0]["role"], "content": [*out[-1]["content"], *part[0]["content"]]}
            out.extend(part[1:])
        else:
            out.extend(part)
    return out


def estimate_tokens(messages: Iterable[ApiMessage]) -> int:
    """A cheap, deliberately generous token estimate (about 3.5 characters per token; files by their own)."""
    chars = 0
    files = 0
    for message in messages:
        for block in message["content"]:
            if block.get("type") == "text":
                chars += len(block["text"])
            elif (tokens := block_tokens(block)) is not None:
                files += tokens
            elif block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                # A tool's images (an MCP tool's) count as files, never by the length of their base64.
                sizes = [block_tokens(part) for part in block["content"]]
                files += sum(t for t in sizes if t is not None)
                rest = [part for part, t in zip(block["content"], sizes, strict=True) if t is None]
                chars += len(json.dumps({**block, "content": rest}, ensure_ascii=False))
            else:
                chars += len(json.dumps(block, ensure_ascii=False))
    return int(chars / 3.5) + 4 + files


def with_cache_point(message: ApiMessage) -> ApiMessage:
    """A copy of `message` whose last block carries an ephemeral cache breakpoint."""
    content = [dict(b) for b in message["content"]]
    content[-1]["cache_control"] = {"type": "ephemeral"}
    return {"role": message["role"], "content": content}
