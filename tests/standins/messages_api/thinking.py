"""Extended thinking, played as the API plays it and held to its rules.

With thinking on (a request's `thinking` of type `enabled` or `adaptive`, or none for a model the test
made think by default with `MessagesAPI.think_by_default`) every answer starts with a `thinking` block
(its text a few words on the user's turn, empty with `display: "omitted"`) signed by the stand-in:
the signature is an HMAC over the text under a key of this process, so a block changed by a byte, or
cut before its signature came, fails. `[[redacted_thinking]]` in the user's words puts a
`redacted_thinking` block (its `data` HMAC-sealed too) before it; `[[think_drop=N]]` cuts the stream
after N characters of thinking, before its signature; `[[think_slow=S]]` spreads the thinking over S
seconds. Streamed as the API streams it (the SDK's own test fixtures): `content_block_start` with empty
`thinking` and `signature`, `thinking_delta`s ending with an empty one, one `signature_delta`,
`content_block_stop`. Thinking counts as output tokens.

Refused, in the API's words where known:
- `thinking` of a shape the API refuses (keys per type, `display`), and thinking with a `tool_choice`
  that forces a tool;
- a `thinking` block without a valid signature, a `redacted_thinking` block with data not served
  here, anywhere in the request;
- with thinking on, a request continuing a turn (assistant messages after the turn's user message)
  whose first assistant message does not start with a thinking block; and an assistant message of
  that turn whose thinking blocks are not those served with it (dropped, reordered, swapped), told
  by the tool_use ids of the message they were served with;
- with thinking off, thinking in an assistant message in the final position; in any case an assistant
  message in the final position that ends with a thinking block.

The memory (what was served with which tool_use id; the models thinking by default) lives in
`State.served` beside the server tool blocks', under keys of its own (`think:`, `think-default:`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from typing import Any

from tests.standins.messages_api.connection import Handler
from tests.standins.messages_api.content import content_blocks, current_turn_text, turn_index
from tests.standins.messages_api.errors import invalid

_KEY = secrets.token_bytes(32)
THINKING_TYPES = frozenset({"thinking", "redacted_thinking"})
_CONFIG_KEYS = {"enabled": frozenset({"type", "budget_tokens", "display"}),
                "adaptive": frozenset({"type", "display"}), "disabled": frozenset({"type"}),
                "between_tools": frozenset({"type"})}
_DIRECTIVES = re.compile(r"\[\[(redacted_thinking|think_drop=(\d+))\]\]")
_SLOW = re.compile(r"\[\[think_slow=(\d+(?:\.\d+)?)\]\]")
_EXPECTED = ("Expected `thinking` or `redacted_thinking`, but found `{found}`. When `thinking` is enabled, a final "
             "`assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and "
             "`tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this "
             "requirement, disable `thinking`. Please consult our documentation at "
             "https://docs.claude.com/en/docs/build-with-claude/extended-thinking")
PIECE = 16  # characters per thinking_delta


def _mac(data: bytes) -> bytes:
    return hmac.new(_KEY, data, hashlib.sha256).digest()


def signature(text: str) -> str:
    return base64.b64encode(b"\x12\x0e" + _mac(b"thinking\x00" + text.encode())).decode()


def _sealed(data: str) -> bool:
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return False
    return len(raw) == 56 and hmac.compare_digest(raw[24:], _mac(b"redacted\x00" + raw[:24]))


def redacted_data() -> str:
    nonce = secrets.token_bytes(24)
    return base64.b64encode(nonce + _mac(b"redacted\x00" + nonce)).decode()


def _canonical(block: dict[str, Any]) -> str:
    return json.dumps(block, sort_keys=True, ensure_ascii=False)


def thinking_on(body: dict[str, Any], served: dict[str, str]) -> bool:
    """Whether the answer thinks: asked for, or the model's default (unless asked not to)."""
    config = body.get("thinking")
    if isinstance(config, dict):
        return config.get("type") in ("enabled", "adaptive")
    return f"think-default:{body.get('model')}" in served


# ------------------------------------------------------------------ answering


def add_thinking(body: dict[str, Any], content: list[dict[str, Any]], served: dict[str, str]) -> tuple[int, int | None]:
    """Put the thinking blocks first in `content` (a built answer) and remember them with its tool_use ids.

    Returns (characters of thinking, for the output tokens; where to cut the stream, or None). The caller
    holds the state's lock (`served` is its memory)."""
    if not thinking_on(body, served):
        return 0, None
    said = current_turn_text(body)
    directives = _DIRECTIVES.findall(said)
    words = " ".join(re.sub(r"\[\[[^\]]*\]\]", " ", said).split())[:80]
    messages = body["messages"]
    start = turn_index(messages)
    rounds = sum(1 for m in messages[(start or 0) + 1:] if m.get("role") == "user")
    text = (f"Round {rounds}: the tool results are in for «{words}»; deciding the next step."
            if rounds else f"The user wrote «{words}». Let me think it through before answering plainly.")
    config = body.get("thinking")
    if isinstance(config, dict) and config.get("display") == "omitted":
        text = ""
    blocks: list[dict[str, Any]] = []
    if any(name == "redacted_thinking" for name, _ in directives):
        blocks.append({"type": "redacted_thinking", "data": redacted_data()})
    blocks.append({"type": "thinking", "thinking": text, "signature": signature(text)})
    content[:0] = blocks
    kept = json.dumps([_canonical(b) for b in blocks])
    for block in content:
        if block.get("type") == "tool_use":
            served[f"think:{block['id']}"] = kept
    drop = next((int(n) for name, n in directives if name.startswith("think_drop")), None)
    return len(text), drop


def thinking_seconds(body: dict[str, Any]) -> float:
    """How long the thinking of an answer streams: `[[think_slow=S]]` in the user's words, else at once."""
    found = _SLOW.search(current_turn_text(body))
    return float(found.group(1)) if found else 0.0


def stream_block(send: Any, handler: Handler, index: int, block: dict[str, Any], drop: int | None,
                 pause: Callable[[int], None] = lambda pieces: None) -> bool:
    """Stream one thinking block as the API does; False if the stream was cut in it (`think_drop`).
    `pause(pieces)` is called before each of the block's `pieces` deltas (`think_slow`)."""
    send("content_block_start", {"type": "content_block_start", "index": index,
                                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
    if index == 0:
        send("ping", {"type": "ping"})
    text = block["thinking"]
    sent = 0
    pieces = [*(text[i:i + PIECE] for i in range(0, len(text), PIECE)), ""]
    for piece in pieces:
        pause(len(pieces))
        if drop is not None and sent >= drop:
            handler.cut()
            return False
        send("content_block_delta", {"type": "content_block_delta", "index": index,
                                     "delta": {"type": "thinking_delta", "thinking": piece}})
        sent += len(piece)
    if drop is not None:  # a cut asked for past the end of the text: still before the signature
        handler.cut()
        return False
    send("content_block_delta", {"type": "content_block_delta", "index": index,
                                 "delta": {"type": "signature_delta", "signature": block["signature"]}})
    return True


# ------------------------------------------------------------------ checking


def check_thinking(body: dict[str, Any], served: dict[str, str] | None) -> None:
    """The request's thinking and thinking blocks, as the API checks them (see the module docstring)."""
    memory = served or {}
    config = body.get("thinking")
    if isinstance(config, dict) and config.get("type") in _CONFIG_KEYS:
        kind = config["type"]
        for key in config:
            if key not in _CONFIG_KEYS[kind]:
                raise invalid(f"thinking.{kind}.{key}: Extra inputs are not permitted")
        if config.get("display") is not None and config["display"] not in ("summarized", "omitted"):
            raise invalid(f"thinking.{kind}.display: Input should be 'summarized' or 'omitted'")
    on = thinking_on(body, memory)
    choice = body.get("tool_choice")
    if on and isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise invalid("Thinking may not be enabled when tool_choice forces tool use.")
    messages = body["messages"]
    for i, message in enumerate(messages):
        if message.get("role") == "assistant":
            for j, block in enumerate(content_blocks(message.get("content"))):
                _check_block(block, f"messages.{i}.content.{j}")
    last = messages[-1]
    if last.get("role") == "assistant":
        blocks = content_blocks(last.get("content"))
        final = len(messages) - 1
        if not on and any(b.get("type") in THINKING_TYPES for b in blocks):
            raise invalid(f"messages.{final}.content.0: When thinking is disabled, an `assistant` message in the "
                          "final position cannot contain `thinking`. To use thinking blocks, enable `thinking` "
                          "in your request.")
        if blocks and blocks[-1].get("type") in THINKING_TYPES:
            raise invalid(f"messages.{final}.content.{len(blocks) - 1}: The final block in an assistant message "
                          "cannot be `thinking`.")
    if on:
        _check_turn(messages, memory)


def _check_block(block: Any, path: str) -> None:
    if not isinstance(block, dict):
        return
    if block.get("type") == "thinking":
        if "signature" not in block:
            raise invalid(f"{path}.thinking.signature: Field required")
        if not isinstance(block["signature"], str) or not isinstance(block.get("thinking"), str):
            raise invalid(f"{path}.thinking.signature: Input should be a valid string")
        if not hmac.compare_digest(block["signature"], signature(block["thinking"])):
            raise invalid(f"{path}: Invalid `signature` in `thinking` block")
    elif block.get("type") == "redacted_thinking" and not (
            isinstance(block.get("data"), str) and _sealed(block["data"])):
        raise invalid(f"{path}: Invalid `data` in `redacted_thinking` block")


def _check_turn(messages: list[dict[str, Any]], served: dict[str, str]) -> None:
    """The turn being continued: it starts with thinking, and each message keeps the thinking served with it."""
    start = turn_index(messages)
    if start is None:
        return
    answers = [k for k in range(start + 1, len(messages)) if messages[k].get("role") == "assistant"]
    if not answers:
        return
    first = content_blocks(messages[answers[0]].get("content"))
    if not first or first[0].get("type") not in THINKING_TYPES:
        found = first[0].get("type") if first else "nothing"
        raise invalid(f"messages.{answers[0]}.content.0.type: " + _EXPECTED.format(found=found))
    for k in answers:
        blocks = content_blocks(messages[k].get("content"))
        kept = [_canonical(b) for b in blocks if isinstance(b, dict) and b.get("type") in THINKING_TYPES]
        for block in blocks:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                expected = served.get(f"think:{block.get('id')}")
                if expected is not None and json.loads(expected) != kept:
                    raise invalid(f"messages.{k}: the `thinking` blocks of an assistant message must be passed "
                                  "back unmodified and in their original order")
