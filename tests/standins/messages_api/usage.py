"""Token counts, with the prompt cache simulated as the API does it.

The request is cached as tools, then system, then message blocks; every cache breakpoint's prefix is
written, and the longest prefix already cached within the look-back window is read. Tokens are
characters / 4: tests compare counts between requests, not against the real tokenizer. Images and PDFs
count as the API estimates them (`media.billed`), not by their base64 text.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from tests.standins.messages_api.content import content_blocks
from tests.standins.messages_api.media import billed
from tests.standins.messages_api.state import State
from tests.standins.messages_api.tool_search import is_deferred, reference_chars

_CACHE_LOOKBACK = 20  # block boundaries the API checks before each breakpoint


def token_count(chars: int) -> int:
    return math.ceil(chars / 4)


def _without_cache_control(obj: dict[str, Any]) -> dict[str, Any]:
    # cache_control marks where a prefix ends; it is not part of the cached content itself.
    return {k: v for k, v in obj.items() if k != "cache_control"}


def cache_segments(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The request as the API caches it: tools, then system, then message blocks, in that order.

    Each segment is (serialized text, ttl if a cache breakpoint ends there else None)."""
    segments: list[tuple[str, str | None]] = []

    def ttl(obj: dict[str, Any]) -> str | None:
        cc = obj.get("cache_control")
        return str(cc.get("ttl", "5m")) if isinstance(cc, dict) else None

    def dump(obj: Any) -> str:
        return json.dumps(obj, sort_keys=True, ensure_ascii=False)

    for tool in body.get("tools") or []:
        if not is_deferred(tool):  # out of the prompt until a tool_reference loads it (tool_search)
            segments.append(("tool:" + dump(_without_cache_control(tool)), ttl(tool)))
    system = body.get("system")
    if isinstance(system, str) and system:
        segments.append(("system:" + system, None))
    elif isinstance(system, list):
        for block in system:
            segments.append(("system:" + dump(_without_cache_control(block)), ttl(block)))
    for message in body["messages"]:
        for block in content_blocks(message["content"]):
            inner = block.get("content")
            marked = ttl(block)
            # Images and PDFs count by the API's estimate, not by the length of their base64 text.
            block, extra = billed(block)
            extra += reference_chars(block, body)  # what a tool_reference loads (tool_search)
            if isinstance(inner, list):
                # A breakpoint inside a tool_result's content ends the prefix at that tool_result.
                marked = marked or next((ttl(b) for b in inner if isinstance(b, dict) and ttl(b)), None)
                billed_inner = [billed(_without_cache_control(b)) for b in inner if isinstance(b, dict)]
                extra += sum(n for _, n in billed_inner)
                block = {**block, "content": [b for b, _ in billed_inner]}
            text = message["role"] + ":" + dump(_without_cache_control(block))
            segments.append((text + " " * extra, marked))
    if isinstance(body.get("cache_control"), dict) and segments:
        text, marked = segments[-1]
        segments[-1] = (text, marked or str(body["cache_control"].get("ttl", "5m")))
    return segments


@dataclass
class InputUsage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    ttl: str


def input_usage(state: State, body: dict[str, Any]) -> InputUsage:
    """Token counts with the prompt cache simulated, as the API does it.

    Every breakpoint's prefix is written to the cache. For reading, the API looks back from each
    breakpoint over about 20 block boundaries for the longest prefix it has cached (so a breakpoint
    that moved on to the newest message still hits the previous turn's entry). The longest hit is
    read; the rest up to the last breakpoint is written; what follows the last breakpoint is input."""
    segments = cache_segments(body)
    digest = hashlib.sha256(str(body["model"]).encode())  # caches are per model
    prefixes: list[tuple[str, int]] = []  # (key, tokens) of the prefix ending at each segment
    chars = 0
    for text, _ in segments:
        digest.update(text.encode())
        digest.update(b"\x00")
        chars += len(text)
        prefixes.append((digest.hexdigest(), token_count(chars)))
    total = token_count(chars)
    breakpoints = [
        i for i, (_, ttl) in enumerate(segments) if ttl is not None and prefixes[i][1] >= state.min_cache_tokens
    ]
    if not breakpoints:
        return InputUsage(total, 0, 0, "5m")
    candidates = {j for b in breakpoints for j in range(max(0, b - _CACHE_LOOKBACK + 1), b + 1)}
    with state.lock:
        read = max((prefixes[j][1] for j in candidates if prefixes[j][0] in state.cache), default=0)
        state.cache.update(prefixes[b][0] for b in breakpoints)
    last = prefixes[breakpoints[-1]][1]
    return InputUsage(total - last, last - read, read, segments[breakpoints[-1]][1] or "5m")
