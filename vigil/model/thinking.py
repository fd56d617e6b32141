"""Claude's thinking: a chat's level as the Messages API's `thinking` parameter, and the thinking blocks
of a reply as the API will take them back.

Levels (`/think`, `VIGIL_THINKING`; a chat that never chose has none and sends no `thinking` at all,
leaving it to the model's default):
- `off`: `{"type": "disabled"}`;
- `auto`: `{"type": "adaptive"}`: Claude decides whether and how much to think;
- `low`, `medium`, `high`: `{"type": "enabled", "budget_tokens": 2048 | 8192 | 24576}`.

Thinking tokens are output tokens and count against `max_tokens`, and the API wants a budget of at
least 1,024 and below `max_tokens`. So a level raises `max_tokens` rather than squeeze the answer:
the request gets the budget on top of the answer's own room (the `max_tokens` asked for; `auto` gets
`AUTO_ROOM` on top), up to `MAX_OUTPUT_TOKENS`, the smallest output limit of the models that think.
Where that ceiling binds, the budget gives way (the answer keeps its room), down to 1,024 and no
further. Raising `max_tokens` costs nothing by itself: the API bills the tokens produced.

With `show` (`/think show`) the request asks for summarized thinking (`display: "summarized"`), the
text the chat then shows above the answer; otherwise the model's default display stands.

Blocks: `thinking` (text and `signature`) and `redacted_thinking` (`data`) go back to the API exactly
as received: the signature covers them, and within a tool loop the assistant message must start with
them. A block cut short (the stream broke or /stop came before its `signature_delta`) has no
signature and is dropped: the API refuses an unsigned block. And an assistant message may not end
with a thinking block (the SDK's own fallback code strips them for that reason), so trailing ones go
too: a reply cut while it was still thinking leaves nothing, which the API takes as no message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

ThinkingLevel = Literal["off", "auto", "low", "medium", "high"]
LEVELS: tuple[ThinkingLevel, ...] = get_args(ThinkingLevel)
BUDGETS: dict[ThinkingLevel, int] = {"low": 2048, "medium": 8192, "high": 24576}
MIN_BUDGET = 1024
AUTO_ROOM = 16384
# Claude Opus 4 and 4.1 write at most 32,000 tokens; every later model that thinks allows more.
MAX_OUTPUT_TOKENS = 32000
THINKING_TYPES = frozenset({"thinking", "redacted_thinking"})


def thinking_request(level: ThinkingLevel | None, max_tokens: int,
                     show: bool = False) -> tuple[dict[str, Any] | None, int]:
    """(the request's `thinking`, or None to send none; the `max_tokens` to send with it)."""
    if level is None:
        return None, max_tokens
    if level == "off":
        return {"type": "disabled"}, max_tokens
    display: dict[str, Any] = {"display": "summarized"} if show else {}
    ceiling = max(MAX_OUTPUT_TOKENS, max_tokens)  # a max_tokens set above it is the operator's own
    if level == "auto":
        return {"type": "adaptive", **display}, min(max_tokens + AUTO_ROOM, ceiling)
    budget = BUDGETS[level]
    if budget + max_tokens > ceiling:  # the answer keeps its room; the budget gives way, to 1,024 at least
        budget = max(MIN_BUDGET, ceiling - max_tokens)
    return {"type": "enabled", "budget_tokens": budget, **display}, min(budget + max_tokens, ceiling)


def signed(block: dict[str, Any]) -> bool:
    """Whether a thinking block is whole: a redacted one always is; a thinking one once its signature came."""
    if block.get("type") == "thinking":
        return isinstance(block.get("signature"), str) and bool(block["signature"])
    return True


def kept_thinking(blocks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks without unsigned thinking, and without the thinking blocks that would end the message."""
    kept = [block for block in blocks if signed(block)]
    while kept and kept[-1].get("type") in THINKING_TYPES:
        kept.pop()
    return kept


def thinking_text(blocks: Sequence[dict[str, Any]]) -> str:
    """The summarized thinking of a reply's blocks, as `/think show` shows it ("" if none or omitted)."""
    return "\n\n".join(str(b.get("thinking") or "").strip() for b in blocks
                       if b.get("type") == "thinking" and str(b.get("thinking") or "").strip())
