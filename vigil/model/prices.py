"""What a model call costs, from Anthropic's published per-model prices.

Prices are USD per million tokens (platform.claude.com/docs/en/about-claude/pricing,
read 2026-11). A web search adds $10 per 1,000 searches; a web fetch only its tokens.
5-minute cache writes cost 1.25x the input price; cache reads a
per-model fraction of it. A model missing from the table (a new snapshot, a
name vigil has not heard of) is charged at the **highest** price of the family
it names, or of the whole table when it names none: a guess must never let a
user spend more than their budget says. Such a call is counted as estimated, so
`/usage` can say so, and the log warns once per model.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

from vigil.logs import get_logger
from vigil.ports import TokenUsage
from vigil.records.schema import Usage


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
# Server tools: a web search costs $10 per 1,000 (on top of the tokens its results add to the input);
# a web fetch costs nothing beyond its tokens.
WEB_SEARCH_MICROS = 10_000

_DATED = re.compile(r"(-\d{8})?")
_FAMILY = re.compile(r"claude-[a-z]+")


def _dearest(prices: list[Price]) -> Price:
    return max(prices, key=lambda p: (p.output, p.input, p.cache_read_factor, p.cache_write_factor))


_warned: set[str] = set()
_warned_lock = threading.Lock()

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
    """(price, known): `known` is False when the model is charged at its family's (or the table's) top price."""
    for prefix, price in _PRICES.items():
        # Exact, or exact plus a snapshot date (claude-haiku-4-5-20251001); anything else is a guess.
        if model.startswith(prefix) and _DATED.fullmatch(model[len(prefix):]):
            return price, True
    family = _FAMILY.match(model)
    kin = [p for prefix, p in _PRICES.items() if family and prefix.startswith(family.group(0))]
    return _dearest(kin or list(_PRICES.values())), False


def _warn_unpriced(model: str, price: Price) -> None:
    with _warned_lock:
        if model in _warned:
            return
        _warned.add(model)
    get_logger(__name__).warning(
        "model.unpriced", model=model, charged_input_per_mtok=price.input, charged_output_per_mtok=price.output,
        note="not in the price table: charged at the highest price of its family; costs are estimates")


def output_estimate(chars: int) -> int:
    """Output tokens for `chars` characters streamed, generously (3.5 a token): a call cut short is charged this."""
    return -(-chars * 2 // 7)


def cost_micros(model: str, usage: TokenUsage) -> int:
    """Cost of one call in integer micro-dollars (USD per MTok == micro-dollars per token)."""
    price, _ = price_for(model)
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_write_tokens * price.input * price.cache_write_factor
        + usage.cache_read_tokens * price.input * price.cache_read_factor
    )
    return round(total) + usage.web_search_requests * WEB_SEARCH_MICROS


def to_usage(model: str, usage: TokenUsage) -> Usage:
    """One call's tokens as a stored Usage with its cost (counted as estimated for an unpriced model)."""
    price, known = price_for(model)
    if not known:
        _warn_unpriced(model, price)
    return Usage(
        calls=1,
        estimated_calls=0 if known else 1,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cost_micros=cost_micros(model, usage),
        web_searches=usage.web_search_requests,
    )
