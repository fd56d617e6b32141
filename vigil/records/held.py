"""The record of a Telegram update held as it came (vigil/store/inbox.py, adapters/telegram/receive/receiver.py).

A record of its own module beside the inbox's: the schema module holds the session's records.
"""

from __future__ import annotations

from typing import ClassVar

from vigil.records.schema import Record, _Decoder


class HeldUpdate(Record, frozen=True, gc=False, kw_only=True, tag="held_update"):
    """A Telegram update kept as it came, while what it becomes is not durable yet.

    An album part waiting for its album, a message whose file is still downloading, an update whose
    handling is slow: Telegram is told it arrived once this record is on disk, and a restart takes the
    update up again from it. It goes in the transaction that marks the update taken.
    """

    CURRENT: ClassVar[int] = 1

    at: float  # when it was first held
    update: bytes  # the update's JSON, as Telegram sent it
    replays: int = 0  # restarts that took it up again without finishing it


decode_held = _Decoder(HeldUpdate)
