"""The history window of a live session: the turns sent to the model, normalized once and cached.

Rebuilding the request from the store every turn costs time proportional to
the history; the window keeps each turn's normalized messages and token
estimate, so a turn costs the same at 10 turns as at 10,000. It is bounded by
the token budget, and it moves in steps (down to ~60% of the budget when it
overflows) so that the request prefix, and with it the prompt cache, stays
stable for many turns.

Each turn is kept as encoded JSON bytes, not as dicts: bytes are compact and
invisible to Python's cyclic garbage collector, whose pauses (which stop every
session at once) grow with the number of long-lived objects it must walk.
"""

from __future__ import annotations

import msgspec

from vigil.model.history import ApiMessage, estimate_tokens, join, normalize, turn_messages
from vigil.ports import Store
from vigil.store.schema import Turn

SLIDE_TO = 0.6
_ENCODE = msgspec.json.Encoder().encode
_DECODE = msgspec.json.Decoder(list[dict[str, object]]).decode


class HistoryWindow:
    """Turns [start, upto) of one generation."""

    def __init__(self, generation: int, start: int, group: bool) -> None:
        self.generation = generation
        self.start = start
        self.upto = start
        self.group = group
        self._entries: list[tuple[int, int, bytes]] = []  # (seq, tokens, messages as JSON)
        self._tokens = 0

    @classmethod
    def load(cls, store: Store, key: str, generation: int, start: int, upto: int, group: bool) -> HistoryWindow:
        window = cls(generation, start, group)
        for turn in store.turns(key, generation, start, upto):
            window.add(turn)
        window.upto = max(window.upto, upto)
        return window

    def matches(self, generation: int, start: int, upto: int, group: bool) -> bool:
        return (self.generation, self.start, self.upto, self.group) == (generation, start, upto, group)

    def add(self, turn: Turn) -> None:
        messages = normalize(turn_messages(turn, self.group))
        tokens = estimate_tokens(messages)
        self._entries.append((turn.seq, tokens, _ENCODE(messages)))
        self._tokens += tokens
        self.upto = turn.seq + 1

    @property
    def tokens(self) -> int:
        return self._tokens

    def slide(self, budget: int) -> bool:
        """Drop the oldest turns if over budget; True if the start moved."""
        if self._tokens <= budget:
            return False
        target = int(budget * SLIDE_TO)
        # Never drop the newest turn while it fits the budget on its own: the model should see it.
        while self._entries and self._tokens > target and (len(self._entries) > 1 or self._tokens > budget):
            _, tokens, _ = self._entries.pop(0)
            self._tokens -= tokens
        self.start = self._entries[0][0] if self._entries else self.upto
        return True

    def messages(self) -> list[ApiMessage]:
        """The window as one valid message list (fresh dicts: the caller may change them)."""
        return join(_DECODE(entry[2]) for entry in self._entries)
