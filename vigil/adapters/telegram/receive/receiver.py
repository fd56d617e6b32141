"""Taking Telegram updates in, polling or webhook alike: an update is confirmed only once it is durable.

Telegram forgets an update once it is confirmed (polling: a getUpdates offset past it, polling.py; a
webhook: the 2xx answer, webhook.py), so both modes hand each update to `UpdateReceiver.take`, which
runs it through the application's update processor (`PerChatOrder`: chats side by side, each in order,
/stop out of band), exactly as PTB would, and says when it may be confirmed:

- **The durable point.** A message (or a command for its session) is durable when its inbox write is
  committed (`vigil/intake/inbox.py`); the update's `Receipt` (`vigil/intake/receipt.py`) has that write mark the
  update as taken in the same transaction. An update that leaves nothing in the inbox (a command
  answered out of band, a refusal, an outsider, a button, a message for another bot) is marked on its
  own once its handling is over.
- **Held copies.** Some updates cannot wait for that: an album part waits for the rest of its album,
  a photo, file or voice note is downloaded first (seconds, for 20 MB), and a handler may be slow (a
  chat's update queued behind its album, flood control on a button's answer). Such an update is kept
  as it came (`hold_update`) and confirmed once that copy is durable: at once for album parts and
  files, after `HOLD_AFTER_S` for anything else still in hand. The mark that ends its handling drops
  the copy in the same transaction; after a crash, `replay` takes every copy left up again, before
  anything new is fetched. A copy taken up `MAX_REPLAYS` times without ending (a message that crashes
  vigil) is dropped with an error in the log, so it cannot keep the service in a restart loop.
- **Duplicates.** Telegram delivers an update again when it was not confirmed: vigil died after the
  update was durable but before its confirmation left. An update marked or held is recognised by its
  id and not handled again; one that arrives again while it is still being taken in waits for that
  take. (The inbox itself keys on arrival ids, which a redelivery does not keep.) Marks older than
  `MARK_DAYS` are dropped: Telegram stops redelivering long before.

If the store cannot confirm the write, the answer is 503 and Telegram (or the next getUpdates) delivers
the update again; this process remembers it was handled (`_unsaved`), so the delivery again only
retries making it durable (its mark, or its held copy while the handling goes on) and is not answered
twice. An update whose handling fails (a bug) is logged and confirmed, as PTB's own polling would:
otherwise it would come back forever, holding up every later update of its chat.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from telegram import Message, Update
from telegram.ext import Application

from vigil.adapters.telegram.receive.intake import fetches
from vigil.errors import StoreError
from vigil.intake.receipt import CURRENT, Receipt
from vigil.logs import get_logger
from vigil.ports import Store, WriteFuture
from vigil.records.held import HeldUpdate

HOLD_AFTER_S = 0.5  # an update still in hand after this is held, so its confirmation waits no longer
DURABLE_TIMEOUT_S = 50.0  # below Telegram's 60 s: a store that does not confirm gets a 503, not a hang-up
MAX_REPLAYS = 5
MARK_DAYS = 2.0
MAX_UNSAVED = 10_000  # updates handled but not durable remembered at most (a store failing for hours)
PRUNE_EVERY_S = 6 * 3600.0

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


def held_at_once(update: Update) -> bool:
    """Updates confirmed on their held copy without waiting: album parts, and messages with a file to fetch."""
    message = update.message
    return isinstance(message, Message) and bool(message.media_group_id or fetches(message))


class UpdateReceiver:
    """Takes updates in and says when each may be confirmed; takes held copies up again after a crash."""

    def __init__(self, app: AnyApplication, store: Store, hold_after_s: float = HOLD_AFTER_S) -> None:
        self._app = app
        self._store = store
        self._hold_after_s = hold_after_s
        self._answering: dict[int, asyncio.Task[int]] = {}
        self._handling: set[asyncio.Task[None]] = set()
        # Handled here, not confirmed (the store failed): each update's handling and how to hold it again.
        self._unsaved: dict[int, tuple[asyncio.Task[None], Callable[[], WriteFuture]]] = {}
        self._pruner: asyncio.Task[None] | None = None
        self._log = get_logger(__name__)

    @property
    def running(self) -> int:
        """Updates not answered yet."""
        return len(self._answering)

    @property
    def handling(self) -> int:
        """Updates whose handling is not over (answered or not)."""
        return len(self._handling)

    def start(self) -> None:
        """Drop old marks now and every few hours."""
        self._pruner = asyncio.get_running_loop().create_task(self._prune(), name="update marks")

    async def take(self, update: Update, raw: bytes | None = None) -> int:
        """The status to confirm this delivery of `update` with: 200 (confirm it) or 503 (deliver it again).

        `raw`: the update's JSON as Telegram sent it, kept if it must be held (else made from `update`).
        """
        update_id = update.update_id
        task = self._answering.get(update_id)
        if task is None and update_id in self._unsaved:
            task = self._answer(update_id, self._retry(update_id))
        elif task is None:
            if self._taken_before(update_id):
                self._log.info("telegram.update_duplicate", update_id=update_id)
                return 200
            task = self._start(update, raw)
        else:
            self._log.info("telegram.update_duplicate_in_flight", update_id=update_id)
        # Shielded: a delivery given up (a webhook request Telegram dropped, a shutdown) must not cut the take short.
        return await asyncio.shield(task)

    def _taken_before(self, update_id: int) -> bool:
        """Whether the update was taken in before (a cheap LMDB read: fine on the loop). A store that cannot
        be read (it stopped: a full disk) cannot say; the update is then handled, so its sender hears that it
        could not be saved (handlers.py), and answered 503 when its write fails, so it comes again."""
        try:
            return self._store.update_taken(update_id)
        except StoreError as exc:
            self._log.error("telegram.update_not_checked", update_id=update_id, error=str(exc))
            return False

    def _start(self, update: Update, raw: bytes | None, held: HeldUpdate | None = None) -> asyncio.Task[int]:
        return self._answer(update.update_id, self._take(update, raw, held))

    def _answer(self, update_id: int, answering: Coroutine[Any, Any, int]) -> asyncio.Task[int]:
        task = asyncio.get_running_loop().create_task(answering, name=f"update {update_id}")
        self._answering[update_id] = task
        task.add_done_callback(lambda _: self._answering.pop(update_id, None))
        return task

    async def _take(self, update: Update, raw: bytes | None, held: HeldUpdate | None) -> int:
        update_id = update.update_id
        body = raw if raw is not None else held.update if held is not None else None

        def hold() -> WriteFuture:
            kept = body if body is not None else update.to_json().encode()
            record = (HeldUpdate(at=time.time(), update=kept) if held is None
                      else HeldUpdate(at=held.at, update=kept, replays=held.replays + 1))
            return self._store.hold_update(update_id, record)

        receipt = Receipt((update_id,), hold)
        if held is not None or held_at_once(update):
            receipt.hold()
        # No await before the handling starts: updates reach their chat's lane in the order they were taken.
        handling = asyncio.get_running_loop().create_task(self._handle(update, receipt), name=f"handle {update_id}")
        self._handling.add(handling)
        handling.add_done_callback(self._handling.discard)
        if not receipt.reached:
            await asyncio.wait({handling}, timeout=self._hold_after_s)
            if not handling.done():
                receipt.hold()  # unless something marked it meanwhile: then that write is among the receipt's
        try:
            if not receipt.reached:  # the handling ended without a mark (the store refused it, or cancelled)
                raise RuntimeError("the update could not be marked")
            await asyncio.to_thread(_durable, receipt.writes(), DURABLE_TIMEOUT_S)
        except Exception as exc:  # StoreError, a full disk, a store that did not answer in time
            self._log.error("telegram.update_not_saved", update_id=update_id, error=repr(exc))
            if not handling.cancelled():
                self._remember_unsaved(update_id, handling, hold)
            return 503
        return 200

    def _remember_unsaved(self, update_id: int, handling: asyncio.Task[None], hold: Callable[[], WriteFuture]) -> None:
        self._unsaved[update_id] = (handling, hold)
        while len(self._unsaved) > MAX_UNSAVED:
            del self._unsaved[next(iter(self._unsaved))]

    async def _retry(self, update_id: int) -> int:
        """An update handled here comes again, not yet durable: make it so now, without handling it twice."""
        handling, hold = self._unsaved[update_id]
        try:
            if handling.done():
                write = self._store.mark_updates((update_id,))
            else:  # a held copy while the handling goes on, and a mark that drops it once it is over
                write = hold()
                handling.add_done_callback(lambda task: None if task.cancelled() else self._mark_later(update_id))
            await asyncio.to_thread(_durable, [write], DURABLE_TIMEOUT_S)
        except Exception as exc:
            self._log.error("telegram.update_not_saved", update_id=update_id, error=repr(exc), again=True)
            return 503
        self._unsaved.pop(update_id, None)
        return 200

    async def _handle(self, update: Update, receipt: Receipt) -> None:
        CURRENT.set(receipt)  # this task's own context: what the handlers write marks this update
        try:
            await self._app.update_processor.process_update(update, self._app.process_update(update))
        except Exception as exc:  # PTB hands handler errors to the error handler; this is anything else
            self._log.error("telegram.update_failed", update_id=update.update_id, error=repr(exc))
        # Cancelled (a shutdown): no mark, so a held copy stays and is taken up after the restart.
        try:
            receipt.finish(self._store.mark_updates)
        except Exception as exc:  # the store is closed or failing: a held copy stays, and an unheld update
            self._log.error("telegram.update_not_marked", update_id=update.update_id, error=repr(exc))

    def _mark_later(self, update_id: int) -> None:
        try:
            self._store.mark_updates((update_id,))
        except Exception as exc:  # the store still fails: the held copy stays, and is taken up after a restart
            self._log.error("telegram.update_not_marked", update_id=update_id, error=repr(exc))

    async def replay(self) -> int:
        """Take up the updates a previous run held and never finished, oldest first; how many.

        Called before anything new is fetched, so each chat's held updates keep their place in its order.
        """
        taken = 0
        for update_id, held in await asyncio.to_thread(self._store.held_updates):
            if update_id in self._answering:
                continue
            update = _parsed(held, self._app.bot)
            if update is None or held.replays >= MAX_REPLAYS:
                self._log.error("telegram.held_update_dropped", update_id=update_id, replays=held.replays,
                                reason="unreadable" if update is None else "taken up too often without ending")
                await asyncio.to_thread(self._mark, update_id)
                continue
            self._start(update, None, held)
            taken += 1
        if taken:
            self._log.info("telegram.held_updates_taken_up", updates=taken)
        return taken

    async def answered(self, timeout: float) -> bool:
        """Wait until every update taken is answered (each within the hold); False if some were not in time."""
        tasks = list(self._answering.values())
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending

    async def close(self, timeout: float) -> None:
        """At shutdown, once nothing new comes in: let handlings finish for up to `timeout`, then cancel them
        (what they held is taken up after the restart)."""
        if self._pruner is not None:
            self._pruner.cancel()
        await self.answered(timeout)
        cut = await finish_within(list(self._handling), timeout)
        if cut:
            self._log.warning("telegram.updates_left_held", updates=cut)

    async def _prune(self) -> None:
        while True:
            try:
                dropped = await asyncio.to_thread(self._forget_old)
                if dropped:
                    self._log.info("telegram.marks_dropped", marks=dropped)
            except Exception as exc:
                self._log.warning("telegram.marks_not_dropped", error=repr(exc))
            await asyncio.sleep(PRUNE_EVERY_S)

    def _mark(self, update_id: int) -> None:
        self._store.mark_updates((update_id,)).result()

    def _forget_old(self) -> int:
        return int(self._store.forget_updates(time.time() - MARK_DAYS * 86400).result())


async def finish_within(tasks: Sequence[asyncio.Task[Any]], timeout: float | None) -> int:
    """Let `tasks` finish for up to `timeout`, then cancel the rest and wait for them; how many were cut short."""
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    return len(pending)


def _parsed(held: HeldUpdate, bot: Any) -> Update | None:
    try:
        return Update.de_json(json.loads(held.update), bot)
    except Exception:
        return None


def _durable(writes: Sequence[WriteFuture], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for write in writes:
        write.result(max(0.0, deadline - time.monotonic()))
