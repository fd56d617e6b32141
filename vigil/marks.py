"""The store's marks of webhook updates taken in: the contract `UpdateReceiver` dedupes Telegram's redeliveries by.

A Protocol of its own (the `Store` port extends it) so the ports module stays one screen of contracts,
and so the webhook adapter can name exactly what it needs of the store. See vigil/store/inbox.py for
how a mark shares the transaction of its update's inbox entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from vigil.store_port import WriteFuture


class UpdateMarks(Protocol):
    def update_taken(self, update_id: int) -> bool:
        """Whether this webhook update was taken in before (marked by `receive` or `mark_updates`)."""
        ...

    def mark_updates(self, updates: Sequence[int]) -> WriteFuture:
        """Mark webhook updates as taken that put nothing in the inbox."""
        ...

    def forget_updates(self, before: float) -> WriteFuture:
        """Drop the marks of webhook updates taken before `before` (epoch seconds); the future's value: how many."""
        ...
