"""The store's record of Telegram updates taken in: the contract `UpdateReceiver` confirms and dedupes by.

A Protocol of its own (the `Store` port extends it) so the ports module stays one screen of contracts,
and so the receiver can name exactly what it needs of the store. See vigil/store/inbox.py for how a
mark shares the transaction of its update's inbox entry, and drops the update's held copy there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from vigil.ports.store import WriteFuture
    from vigil.records.held import HeldUpdate


class UpdateMarks(Protocol):
    def update_taken(self, update_id: int) -> bool:
        """Whether this update was taken in before: marked (by `receive` or `mark_updates`) or held."""
        ...

    def mark_updates(self, updates: Sequence[int]) -> WriteFuture:
        """Mark updates as taken that put nothing in the inbox; drops their held copies."""
        ...

    def hold_update(self, update_id: int, held: HeldUpdate) -> WriteFuture:
        """Keep an update as it came until what it becomes is durable (its mark drops the copy)."""
        ...

    def held_updates(self) -> list[tuple[int, HeldUpdate]]:
        """The updates held and not yet taken, in update order."""
        ...

    def forget_updates(self, before: float) -> WriteFuture:
        """Drop the marks of updates taken before `before` (epoch seconds); the future's value: how many."""
        ...
