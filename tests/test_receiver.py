"""Taking updates in beneath HTTP and getUpdates: marks and held copies in the store, the receipt, `UpdateReceiver`.

Store tests run on real LMDB. The receiver runs with a stand-in for PTB's Application that only does
what `process_update` does for vigil: hand the update to a handler, here one that submits to the real
durable inbox (vigil/intake/inbox.py) on the real store, as `TelegramHandlers.take` does through the runtime.
The whole path with `vigil run` is tests/test_webhook_e2e.py and tests/test_intake_crash_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from telegram import Update

from tests.test_inbox import done, entry, header, hold_writer
from vigil.actors.core.protocol import Sender, UserText
from vigil.adapters.telegram.receive import receiver as receiver_module
from vigil.adapters.telegram.receive.receiver import MAX_REPLAYS, UpdateReceiver
from vigil.adapters.telegram.receive.webhook import WebhookServer
from vigil.intake.inbox import Inbox
from vigil.intake.receipt import CURRENT, Receipt
from vigil.records.held import HeldUpdate
from vigil.records.schema import Target
from vigil.store.store import LmdbStore

# ----------------------------------------------------------------------------- the store's marks and held copies


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


def flush(store: LmdbStore) -> None:
    """Wait until every write queued so far is durable (the writer commits in order)."""
    done(store.mark_updates(()))


def held(update_id: int, replays: int = 0) -> HeldUpdate:
    return HeldUpdate(at=1_700_000_000.0, update=json.dumps({"update_id": update_id}).encode(), replays=replays)


def test_a_held_update_counts_as_taken_until_its_mark_drops_it_in_the_same_transaction(store: LmdbStore) -> None:
    done(store.hold_update(902, held(902)))
    done(store.hold_update(901, held(901)))
    assert store.update_taken(901) and store.update_taken(902)
    assert [update_id for update_id, _ in store.held_updates()] == [901, 902]  # in update order
    assert done(store.forget_updates(time.time() + 1)) == 0, "held copies are not marks: never pruned"
    blocker, release = hold_writer(store)
    received = store.receive(1, entry("the album"), updates=(901, 902))  # one batch with the hold below
    again = store.hold_update(903, held(903))
    release.set()
    done(blocker)
    done(received)
    done(again)
    assert [update_id for update_id, _ in store.held_updates()] == [903]
    assert store.update_taken(901) and store.update_taken(902) and store.update_taken(903)
    done(store.mark_updates((903,)))
    assert store.held_updates() == [] and store.update_taken(903)


# ----------------------------------------------------------------------------- the receipt


def text(words: str) -> UserText:
    return UserText(key="tg:1", target=Target(channel="tg", chat_id=1), sender=Sender(user_id=1, name="Tess"),
                    text=words, at=time.time())


def accept(inbox: Inbox, receipt: Receipt | None, words: str, told: list[object]) -> Any:
    token = CURRENT.set(receipt)
    try:
        return inbox.accept(text(words), told.append)
    finally:
        CURRENT.reset(token)


def test_the_inbox_marks_the_update_its_write_is_made_for(store: LmdbStore) -> None:
    inbox, told = Inbox(store), list[object]()
    receipt = Receipt((801,))
    future = accept(inbox, receipt, "with a receipt", told)
    assert receipt.marked and receipt.finish(store.mark_updates) == [future]  # nothing more to mark
    done(future)
    assert store.update_taken(801)
    later = accept(inbox, receipt, "after the handling", told)  # the receipt's work is over: no claim any more
    assert receipt.writes() == [future]
    done(later)
    done(accept(inbox, None, "no update at all", told))
    assert len(told) == 3


def test_a_hold_comes_before_any_mark_in_the_writer_and_never_after_one(store: LmdbStore) -> None:
    inbox, told = Inbox(store), list[object]()
    holds: list[int] = []

    def hold(update_id: int) -> Callable[[], Any]:
        def submit() -> Any:
            holds.append(update_id)
            return store.hold_update(update_id, held(update_id))
        return submit

    first = Receipt((1201,), hold(1201))
    assert first.hold() and first.hold()  # held once
    done(accept(inbox, first, "downloaded", told))
    first.finish(store.mark_updates)
    assert holds == [1201] and store.held_updates() == [] and store.update_taken(1201)

    second = Receipt((1202,), hold(1202))
    accept(inbox, second, "quick", told)
    assert not second.hold(), "marked already: a copy written now would outlive the mark"
    for write in second.finish(store.mark_updates):
        done(write)
    assert holds == [1201] and store.held_updates() == []

    part = Receipt((1203,), hold(1203))
    assert part.hand_over() == (1203,)  # an album part: held first, then the album answers for it
    assert part.held and part.finish(store.mark_updates) and holds == [1201, 1203]
    done(part.writes()[0])
    assert [update_id for update_id, _ in store.held_updates()] == [1203]
    album = Receipt(part.updates)
    for write in [accept(inbox, album, "the album", told), *album.finish(store.mark_updates)]:
        done(write)
    assert store.held_updates() == [] and store.update_taken(1203)


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


def document(update_id: int) -> Update:
    """A message with a file to fetch: held at once."""
    parsed = Update.de_json({"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_700_000_000, "chat": {"id": 1, "type": "private"},
        "from": {"id": 1, "is_bot": False, "first_name": "Tess"},
        "document": {"file_id": "f", "file_unique_id": "u", "file_name": "a.pdf"}}}, None)
    assert parsed is not None
    return parsed


def receiver_of(store: LmdbStore, handle: Callable[[Update], Awaitable[None]], **kwargs: Any
                ) -> tuple[UpdateReceiver, FakeApp]:
    app = FakeApp(handle)
    return UpdateReceiver(app, store, **kwargs), app  # type: ignore[arg-type]


def test_an_update_delivered_again_is_taken_in_once(store: LmdbStore) -> None:
    inbox, told = Inbox(store), list[object]()
    started, release = asyncio.Event(), asyncio.Event()

    async def handle(_: Update) -> None:
        started.set()
        await release.wait()  # still being taken in when Telegram sends it again
        await asyncio.to_thread(inbox.accept, text("once"), told.append)

    receiver, app = receiver_of(store, handle, hold_after_s=60)

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
    assert store.update_taken(901) and store.held_updates() == []


def test_an_update_that_leaves_nothing_in_the_inbox_is_marked_before_its_answer(store: LmdbStore) -> None:
    async def ignore(_: Update) -> None:
        return None

    receiver, _ = receiver_of(store, ignore)
    assert asyncio.run(receiver.take(update(1001))) == 200
    assert store.update_taken(1001)


def test_an_update_the_store_cannot_save_is_answered_503(store: LmdbStore) -> None:
    async def ignore(_: Update) -> None:
        return None

    receiver, _ = receiver_of(store, ignore)
    store.writer.close()  # every write now fails: "the store is closed"
    assert asyncio.run(receiver.take(update(1101))) == 503
    assert asyncio.run(receiver.take(document(1102))) == 503


def test_an_update_handled_but_not_saved_in_time_is_not_handled_again_when_it_comes_again(
        store: LmdbStore, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, told = Inbox(store), list[object]()

    async def take_in(_: Update) -> None:
        await asyncio.to_thread(inbox.accept, text("only once"), told.append)

    receiver, app = receiver_of(store, take_in)
    monkeypatch.setattr(receiver_module, "DURABLE_TIMEOUT_S", 0.2)
    blocker, release = hold_writer(store)  # the store answers nothing in time: a disk stalled, or full

    async def scenario() -> list[int]:
        answers = [await receiver.take(update(1601))]
        release.set()
        done(blocker)
        answers.append(await receiver.take(update(1601)))  # delivered again: made durable, not taken twice
        return answers

    assert asyncio.run(scenario()) == [503, 200]
    assert app.handled == [1601] and len(told) == 1 and store.update_taken(1601)


def test_a_file_is_answered_on_its_held_copy_before_the_download_ends(store: LmdbStore) -> None:
    inbox, told = Inbox(store), list[object]()
    downloaded = asyncio.Event()

    writes = []

    async def download_then_take(_: Update) -> None:
        await downloaded.wait()  # the download: seconds, for 20 MB
        writes.append(await asyncio.to_thread(inbox.accept, text("the file"), told.append))

    receiver, _ = receiver_of(store, download_then_take, hold_after_s=60)

    async def scenario() -> None:
        assert await receiver.take(document(1301)) == 200  # answered with the download still going
        assert [update_id for update_id, _ in store.held_updates()] == [1301] and told == []
        assert receiver.handling == 1
        downloaded.set()
        await receiver.close(10)

    asyncio.run(scenario())
    done(writes[0])
    assert len(told) == 1 and store.held_updates() == [] and store.update_taken(1301)


def test_a_slow_handler_is_held_after_the_grace_and_a_shutdown_leaves_it_held(store: LmdbStore) -> None:
    async def forever(_: Update) -> None:
        await asyncio.Event().wait()  # a command stuck behind flood control, say

    receiver, _ = receiver_of(store, forever, hold_after_s=0.05)

    async def scenario() -> None:
        assert await receiver.take(update(1401)) == 200
        await receiver.close(0.05)  # cut short: no mark, so the copy stays for the restart
        assert receiver.handling == 0

    asyncio.run(scenario())
    flush(store)
    assert [update_id for update_id, _ in store.held_updates()] == [1401]


def test_held_updates_are_taken_up_again_in_order_and_dropped_after_too_many_tries(store: LmdbStore) -> None:
    for update_id, replays in ((1503, 0), (1501, 1), (1502, MAX_REPLAYS)):
        done(store.hold_update(update_id, held(update_id, replays)))
    done(store.mark_updates((1504,)))
    seen: list[int] = []

    async def note(update: Update) -> None:
        seen.append(update.update_id)

    receiver, _ = receiver_of(store, note)

    async def scenario() -> int:
        taken = await receiver.replay()
        assert await receiver.take(update(1501)) == 200  # Telegram sends it again meanwhile: not twice
        await receiver.close(10)
        return taken

    assert asyncio.run(scenario()) == 2
    flush(store)
    assert seen == [1501, 1503], "in update order; the one taken up too often is dropped"
    assert store.held_updates() == [] and all(store.update_taken(u) for u in (1501, 1502, 1503))


def test_the_secret_is_checked_before_the_body_is_read(store: LmdbStore) -> None:
    async def handle(_: Update) -> None:
        raise AssertionError("a refused request reached the handlers")

    receiver, app = receiver_of(store, handle)
    server = WebhookServer(receiver, app, "s3cret", "/hook", ("127.0.0.1", 0))  # type: ignore[arg-type]

    async def answers() -> list[int]:
        return [await server.answer(None, b'{"update_id": 5}'), await server.answer("s3cre", b'{"update_id": 5}'),
                await server.answer("s3cret-", b"not json"), await server.answer("s3cret", b"not json")]

    assert asyncio.run(answers()) == [403, 403, 403, 400]
    assert app.handled == [] and not store.update_taken(5)
