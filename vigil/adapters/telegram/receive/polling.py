"""Polling mode: getUpdates driven by vigil, so that an update is confirmed only once it is durable.

PTB's Updater confirms a batch as soon as it has fetched it: its next getUpdates carries `offset = last
update_id + 1` while the updates still wait in its queue (`polling_action_cb` in telegram/ext/_updater.py),
so an update vigil dies on before it reaches the inbox is gone for good, and Telegram never sends it
again. Here each batch goes to the `UpdateReceiver` (receiver.py), and the next getUpdates asks from
the first update the receiver could not confirm (the store failed: it comes again), or from past the
batch: Telegram forgets exactly the updates that are durable (their message in the inbox, their mark,
or their held copy) and delivers the rest again after a crash. Waiting for a batch costs a group
commit (milliseconds); an update still in hand after `receiver.HOLD_AFTER_S` is held, so a slow chat
holds the next batch up by half a second at most.

Otherwise it behaves as PTB's Updater does, through the same `Bot.get_updates` (which PTB never sends
through its rate limiter): the webhook deleted first, keeping what Telegram queued (getUpdates is
refused while one is set); a 10 s long poll with `allowed_updates`; PTB's network retry loop (a
timeout retried at once, flood control waited out plus half a second, other errors, a second poller's
409 among them, retried after 1 s growing by half up to 30 s); at stop, the waiting poll cancelled
and one last getUpdates, without waiting, that confirms what was taken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta

from telegram import Bot, Update
from telegram.error import RetryAfter, TelegramError, TimedOut

from vigil.adapters.telegram.receive.receiver import UpdateReceiver
from vigil.errors import StartupError
from vigil.logs import get_logger

POLL_TIMEOUT_S = 10
FLOOD_SLACK_S = 0.5
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
UNSAVED_RETRY_S = 1.0  # the store refused an update: ask for it again after this


class Poller:
    """One getUpdates loop; `start` once the application runs, `stop` before it stops."""

    def __init__(self, bot: Bot, receiver: UpdateReceiver, allowed_updates: Sequence[str],
                 timeout: int = POLL_TIMEOUT_S) -> None:
        self._bot = bot
        self._receiver = receiver
        self._allowed = list(allowed_updates)
        self._timeout = timeout
        self._offset = 0  # the next getUpdates' offset: 0 asks from the oldest update Telegram still holds
        self._sent = 0  # the offset Telegram was last sent
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._log = get_logger(__name__)

    async def start(self) -> None:
        try:
            await self._bot.delete_webhook(drop_pending_updates=False)
        except TelegramError as exc:
            raise StartupError(f"Telegram refused to delete the webhook, so polling cannot start ({exc})") from None
        self._task = asyncio.get_running_loop().create_task(self._run(), name="getUpdates")

    async def stop(self) -> None:
        """No new updates: the waiting poll is cancelled, the batch in hand answered, the offset confirmed."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        if self._offset == self._sent:
            return
        try:
            await self._bot.get_updates(offset=self._offset, limit=1, timeout=0, allowed_updates=self._allowed)
        except TelegramError as exc:  # the updates come again after the restart, and are known by their marks
            self._log.warning("telegram.offset_not_confirmed", offset=self._offset, error=repr(exc))

    async def _run(self) -> None:
        wait = backoff = 0.0
        while not self._stopping.is_set():
            if wait:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)
                if self._stopping.is_set():
                    break
            wait = 0.0
            try:
                updates = await self._poll()
            except RetryAfter as exc:
                wait = _seconds(exc.retry_after) + FLOOD_SLACK_S
                self._log.warning("telegram.poll_flood_wait", seconds=wait)
            except TimedOut:
                pass  # a long poll that outlived its read timeout: ask again at once
            except Exception as exc:  # TelegramError (a 409 from a second poller too), or data PTB could not read
                wait = backoff = min(MAX_BACKOFF_S, backoff * 1.5) if backoff else FIRST_BACKOFF_S
                level = "warning" if isinstance(exc, TelegramError) else "error"
                getattr(self._log, level)("telegram.poll_failed", error=repr(exc), retry_in_s=round(wait, 1))
            else:
                backoff = 0.0
                if updates is None:
                    break
                if updates and not await self._take(updates):
                    wait = UNSAVED_RETRY_S

    async def _poll(self) -> tuple[Update, ...] | None:
        """One long poll; None if the service began to stop meanwhile (the poll is cancelled)."""
        poll = asyncio.ensure_future(self._bot.get_updates(
            offset=self._offset, timeout=self._timeout, allowed_updates=self._allowed))
        stopping = asyncio.ensure_future(self._stopping.wait())
        self._sent = self._offset
        await asyncio.wait({poll, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not poll.done():
            poll.cancel()  # nothing it would have brought is confirmed: Telegram keeps it for the restart
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await poll
            return None
        return poll.result()

    async def _take(self, updates: Sequence[Update]) -> bool:
        """Hand the batch on, in order; move the offset past what is durable. Whether all of it was."""
        # Started in order, with no await in between: each chat's updates reach its lane in Telegram's order.
        answers = [asyncio.ensure_future(self._receiver.take(update)) for update in updates]
        statuses = await asyncio.gather(*answers, return_exceptions=True)
        for update, status in zip(updates, statuses, strict=True):
            if status != 200:  # 503, or a bug: this one and those after it come again (known by their marks)
                self._offset = update.update_id
                self._log.warning("telegram.update_unconfirmed", update_id=update.update_id, status=repr(status))
                return False
        self._offset = updates[-1].update_id + 1
        return True


def _seconds(retry_after: int | timedelta) -> float:
    return retry_after.total_seconds() if isinstance(retry_after, timedelta) else float(retry_after)
