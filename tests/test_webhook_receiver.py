"""Webhook mode beneath HTTP: update marks in the store, the request's receipt, and `UpdateReceiver`.

Store tests run on real LMDB. The receiver runs with a stand-in for PTB's Application that only does
what `process_update` does for vigil: hand the update to a handler, here one that submits to the real
durable inbox (vigil/inbox.py) on the real store, as `TelegramHandlers.take` does through the runtime.
The whole path over HTTP, with `vigil run`, is tests/test_webhook_e2e.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update

from tests.test_inbox import done, entry, header, hold_writer
from vigil.actors.protocol import Sender, UserText
from vigil.adapters.telegram.webhook import UpdateReceiver, WebhookServer
from vigil.inbox import Inbox
from vigil.receipt import CURRENT, Receipt
from vigil.store.schema import Target
from vigil.store.store import LmdbStore

# ----------------------------------------------------------------------------- the store's marks


def test_an_update_is_marked_in_the_transaction_of_its_inbox_entry(store: LmdbStore) -> None:
    received = store.receive(1, entry("hi"), updates=(501,))
    assert not store.update_taken(502)
    done(received)
    assert store.update_taken(501) and [e.text for _, e in store.inbox()] == ["hi"]


def test_a_message_taken_up_in_the_same_transaction_still_leaves_its_mark(store: LmdbStore) -> None:
    blocker, release = hold_writer(store)
    received = store.receive(1, entry("quick"), updates=(601,))
    committed = store.commit(header(), create=True, consumed=(1,))
    release.set()
    done(blocker)
    done(committed)
    assert received.done()
    assert store.inbox() == []  # never written: the session took it in the same transaction
    assert store.update_taken(601)


def test_marks_on_their_own_and_old_marks_dropped(store: LmdbStore) -> None:
    done(store.mark_updates((701, 702)))
    assert store.update_taken(701) and store.update_taken(702)
    assert done(store.forget_updates(time.time() - 3600)) == 0  # marked just now: kept
    assert done(store.forget_updates(time.time() + 1)) == 2
    assert not store.update_taken(701) and not store.update_taken(702)


# ----------------------------------------------------------------------------- the receipt


def text(words: str) -> UserText:
    return UserText(key="tg:1", target=Target(channel="tg", chat_id=1), sender=Sender(user_id=1, name="Tess"),
                    text=words, at=time.time())


def test_the_inbox_marks_the_update_of_the_request_it_is_accepted_in(store: LmdbStore) -> None:
    inbox, told = Inbox(store), list[object]()
    receipt = Receipt(801)
    token = CURRENT.set(receipt)
    try:
        future = inbox.accept(text("with a receipt"), told.append)
    finally:
        CURRENT.reset(token)
    writes, marked = receipt.close()
    assert marked and writes == [future]
    done(future)
    assert store.update_taken(801)
    token = CURRENT.set(receipt)  # work the update started that outlives its request: no claim any more
    try:
        later = inbox.accept(text("an album, later"), told.append)
    finally:
        CURRENT.reset(token)
    assert receipt.marks() == () and receipt.close() == (writes, True)  # nothing added after the answer
    done(later)
    done(inbox.accept(text("no webhook at all"), told.append))
    assert len(told) == 3


# ----------------------------------------------------------------------------- the receiver


class FakeProcessor:
    async def process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        await coroutine


class FakeApp:
    """What UpdateReceiver uses of PTB's Application: the update processor and process_update."""

    def __init__(self, handle: Callable[[Update], Awaitable[None]]) -> None:
        self.update_processor = FakeProcessor()
        self.handle = handle
        self.bot = None
        self.handled: list[int] = []

    async def process_update(self, update: Update) -> None:
        self.handled.append(update.update_id)
        await self.handle(update)


def update(update_id: int) -> Update:
    return Update(update_id)


def test_an_update_delivered_again_is_taken_in_once(store: LmdbStore) -> None:
    inbox, told = Inbox(store), list[object]()
    started, release = asyncio.Event(), asyncio.Event()

    async def handle(_: Update) -> None:
        started.set()
        await release.wait()  # still being taken in when Telegram sends it again
        await asyncio.to_thread(inbox.accept, text("once"), told.append)

    app = FakeApp(handle)
    receiver = UpdateReceiver(app, store)  # type: ignore[arg-type]

    async def scenario() -> list[int]:
        first = asyncio.ensure_future(receiver.take(update(901)))
        await started.wait()
        second = asyncio.ensure_future(receiver.take(update(901)))
        assert receiver.running == 1
        release.set()
        answers = [await first, await second]
        answers.append(await receiver.take(update(901)))  # after it was durable: from the mark
        return answers

    assert asyncio.run(scenario()) == [200, 200, 200]
    assert app.handled == [901] and len(told) == 1
    assert store.update_taken(901)


def test_an_update_that_leaves_nothing_in_the_inbox_is_marked_before_its_answer(store: LmdbStore) -> None:
    async def ignore(_: Update) -> None:
        return None

    receiver = UpdateReceiver(FakeApp(ignore), store)  # type: ignore[arg-type]
    assert asyncio.run(receiver.take(update(1001))) == 200
    assert store.update_taken(1001)


def test_an_update_the_store_cannot_save_is_answered_503(store: LmdbStore) -> None:
    async def ignore(_: Update) -> None:
        return None

    receiver = UpdateReceiver(FakeApp(ignore), store)  # type: ignore[arg-type]
    store.writer.close()  # every write now fails: "the store is closed"
    assert asyncio.run(receiver.take(update(1101))) == 503


def test_the_secret_is_checked_before_the_body_is_read(store: LmdbStore) -> None:
    async def handle(_: Update) -> None:
        raise AssertionError("a refused request reached the handlers")

    app = FakeApp(handle)
    server = WebhookServer(UpdateReceiver(app, store), app, store,  # type: ignore[arg-type]
                           "s3cret", "/hook", ("127.0.0.1", 0))

    async def answers() -> list[int]:
        return [await server.answer(None, b'{"update_id": 5}'), await server.answer("s3cre", b'{"update_id": 5}'),
                await server.answer("s3cret-", b"not json"), await server.answer("s3cret", b"not json")]

    assert asyncio.run(answers()) == [403, 403, 403, 400]
    assert app.handled == [] and not store.update_taken(5)
