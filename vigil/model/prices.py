"""What a model call costs, from Anthropic's published per-model prices.

Prices are USD per million tokens (platform.claude.com/docs/en/about-claude/pricing,
read 2026-11). 5-minute cache writes cost 1.25x the input price; cache reads a
per-model fraction of it. A model missing from the table is priced as the
family it names (or as Sonnet) and flagged so the operator can see it in logs.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from vigil.ports import TokenUsage
from vigil.store.schema import Usage


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_read_factor: float = 0.10
    cache_write_factor: float = 1.25


# Longest matching prefix wins.
_PRICES: dict[str, Price] = {
    "claude-fable-5-2": Price(10.0, 50.0, 0.025),
    "claude-mythos-5-2": Price(10.0, 50.0, 0.025),
    "claude-fable-5-1": Price(10.0, 50.0, 0.025),
    "claude-mythos-5-1": Price(10.0, 50.0, 0.025),
    "claude-fable-5": Price(10.0, 50.0),
    "claude-mythos": Price(10.0, 50.0),
    "claude-opus-5-5": Price(4.0, 20.0, 0.05),
    "claude-opus-5": Price(5.0, 25.0),
    "claude-opus-4-5": Price(5.0, 25.0),
    "claude-opus-4-6": Price(5.0, 25.0),
    "claude-opus-4-7": Price(5.0, 25.0),
    "claude-opus-4-8": Price(5.0, 25.0),
    "claude-opus-4": Price(15.0, 75.0),
    "claude-opus": Price(5.0, 25.0),
    "claude-sonnet-5-5": Price(2.0, 10.0, 0.05),
    "claude-sonnet-5": Price(2.0, 10.0),
    "claude-sonnet-4-6": Price(3.0, 15.0),
    "claude-sonnet-4-5": Price(3.0, 15.0),
    "claude-sonnet": Price(3.0, 15.0),
    "claude-haiku-5-5": Price(0.10, 0.50),
    "claude-haiku-4-5": Price(1.0, 5.0),
    "claude-haiku": Price(1.0, 5.0),
}
_FALLBACK = _PRICES["claude-sonnet"]
_DATED = re.compile(r"(-\d{8})?")

# The choices `/model` offers; any other `claude-*` name is accepted too.
MODEL_CHOICES: tuple[str, ...] = (
    "claude-sonnet-5-5",
    "claude-opus-5-5",
    "claude-haiku-5-5",
    "claude-fable-5-1",
    "claude-sonnet-4-6",
    "claude-opus-4-8",
)


@functools.lru_cache(maxsize=256)
def price_for(model: str) -> tuple[Price, bool]:
    """(price, known): `known` is False when the model fell back to a family or default price."""
    best = ""
    for prefix in _PRICES:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    if not best:
        return _FALLBACK, False
    # Exact, or exact plus a snapshot date (claude-haiku-4-5-20251001); anything else is a family guess.
    return _PRICES[best], _DATED.fullmatch(model[len(best):]) is not None


def cost_micros(model: str, usage: TokenUsage) -> int:
    """Cost of one call in integer micro-dollars (USD per MTok == micro-dollars per token)."""
    price, _ = price_for(model)
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_write_tokens * price.input * price.cache_write_factor
        + usage.cache_read_tokens * price.input * price.cache_read_factor
    )
    return round(total)


def to_usage(model: str, usage: TokenUsage) -> Usage:
    """One call's tokens as a stored Usage with its cost."""
    return Usage(
        calls=1,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cost_micros=cost_micros(model, usage),
    )
