"""Albums: the parts of one `media_group_id`, arriving as separate updates, gathered into one turn.

A user who sends three screenshots with "which one is right?" means one question about three images:
one turn, one model call. Telegram sends each part as its own message update, sharing a
`media_group_id`, with no "last part" marker. So parts are held until the album has been quiet for
`QUIET_S`, then handed on together, in message order.

The numbers: Telegram delivers an album's parts back to back (usually in the same getUpdates batch,
at worst one long-poll round apart), so 0.8 s of quiet ends an album with a wide margin while adding
less than a second to a turn that takes seconds anyway. An album has at most 10 parts: the tenth ends
it at once. Nothing is downloaded while gathering (a part is only a Message held in memory), so the
window is not stretched by a slow download; the parts are fetched when the album is handed on.

Order within the chat: the next message of the chat ends its open album first and waits until it has
been handed on, downloads and all, so "and the second one?" (or a /new) sent right after an album is
never handled before it. An album whose quiet window is over is no longer gathering but may still be
downloading, outside the chat's `PerChatOrder` lane: so every album's task is kept per chat until
`hand_on` returns, and `settle` and `close` wait for those too, not only for the albums still open.

Durability: each part is confirmed to Telegram on a held copy of its update (adapters/telegram/receive/receiver.py),
and the album answers for the parts' updates from then on: it is handed on under a `Receipt` of its own,
so the write that puts it in the inbox marks every part taken and drops their copies in one transaction
(or, if it writes nothing, the parts are marked once it is handed on). A crash in the window or during
the downloads loses nothing: the restart takes the held parts up again and gathers them anew. At
shutdown every open album is handed on at once, and every album being handed on is finished (`close`),
before the sessions stop; one still downloading when the grace runs out is cancelled, and its parts
are taken up after the restart.

Time is the event loop's clock (`loop.time()`, monotonic), so the window and its timeouts share one
clock, and a test can run them on a loop of virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from telegram import Message

from vigil.adapters.telegram.receive.keys import topic_of
from vigil.adapters.telegram.receive.receiver import finish_within
from vigil.intake.receipt import CURRENT, Receipt, Submit
from vigil.logs import get_logger

QUIET_S = 0.8
MAX_PARTS = 10  # Telegram's limit for one album

Lane = tuple[int, int | None]  # (chat id, forum topic): as PerChatOrder orders them
AlbumKey = tuple[int, int | None, str]


def lane_of(message: Message) -> Lane:
    return message.chat.id, topic_of(message)


@dataclass
class _Album:
    parts: list[Message] = field(default_factory=list)
    updates: list[int] = field(default_factory=list)  # the parts' updates, which the album marks taken
    last: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)  # end the quiet window early
    task: asyncio.Task[None] | None = None


class Albums:
    """Gathers album parts; `hand_on` gets each album's messages once, in message order."""

    def __init__(self, hand_on: Callable[[list[Message]], Awaitable[None]], quiet_s: float = QUIET_S,
                 mark: Submit | None = None) -> None:
        self.hand_on = hand_on
        self.quiet_s = quiet_s
        self.mark = mark  # marks the parts' updates taken when the album wrote nothing that did
        self._open: dict[AlbumKey, _Album] = {}
        # Every album's task from its first part until `hand_on` returns: gathering, or downloading.
        self._running: dict[Lane, set[asyncio.Task[None]]] = {}
        self.log = get_logger(__name__)

    @property
    def gathering(self) -> int:
        """Albums being gathered now (tests: none is left behind)."""
        return len(self._open)

    @property
    def unfinished(self) -> int:
        """Albums gathering or being handed on (tests: none is left behind)."""
        return sum(len(tasks) for tasks in self._running.values())

    def add(self, message: Message, updates: tuple[int, ...] = ()) -> None:
        """Hold a part (a message with a media_group_id) and the updates it came in; returns at once."""
        lane = lane_of(message)
        key = (*lane, str(message.media_group_id))
        album = self._open.get(key)
        loop = asyncio.get_running_loop()
        if album is None:
            album = self._open[key] = _Album()
            task = album.task = loop.create_task(self._gather(key, album), name=f"album {message.media_group_id}")
            running = self._running.setdefault(lane, set())
            running.add(task)
            task.add_done_callback(lambda done: self._finished(lane, done))
        album.updates.extend(updates)
        if any(part.message_id == message.message_id for part in album.parts):
            return  # the same part again (delivered twice while the store was failing): once is enough
        album.parts.append(message)
        album.last = loop.time()
        if len(album.parts) >= MAX_PARTS:
            album.done.set()

    def _finished(self, lane: Lane, task: asyncio.Task[None]) -> None:
        running = self._running.get(lane)
        if running is not None:
            running.discard(task)
            if not running:
                del self._running[lane]

    async def settle(self, lane: Lane) -> None:
        """Hand on the chat's (topic's) open albums now and wait for all its albums: a later message follows them."""
        for key, album in list(self._open.items()):
            if key[:2] == lane:
                album.done.set()
        for task in list(self._running.get(lane, ())):
            # Shielded: a cancelled update must not cancel the album it waited for.
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def close(self, timeout: float | None = None) -> None:
        """Hand on every open album and finish those being handed on (at shutdown, after polling stopped);
        those not done within `timeout` are cancelled: their parts stay held, to be taken up after the restart."""
        for album in list(self._open.values()):
            album.done.set()
        cut = await finish_within([task for running in self._running.values() for task in running], timeout)
        if cut:
            self.log.warning("telegram.albums_left_held", albums=cut)

    async def _gather(self, key: AlbumKey, album: _Album) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not album.done.is_set():
                left = album.last + self.quiet_s - loop.time()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(album.done.wait(), left)
        finally:
            # From here a late part (after the window) starts an album of its own.
            self._open.pop(key, None)
        parts = sorted(album.parts, key=lambda m: m.message_id)
        receipt = Receipt(album.updates)
        CURRENT.set(receipt)  # this task's own context: the inbox write of the album marks its parts' updates
        try:
            await self.hand_on(parts)
        except Exception as exc:  # a task's exception would otherwise only show at garbage collection
            self.log.error("telegram.album_failed", chat_id=key[0], parts=len(parts), error=repr(exc))
        # Cancelled (a shutdown): nothing marked, so the parts stay held and are taken up after the restart.
        if self.mark is not None and album.updates:
            try:
                receipt.finish(self.mark)
            except Exception as exc:  # the store is failing: the parts stay held and come back after a restart
                self.log.error("telegram.album_not_marked", chat_id=key[0], error=repr(exc))
