"""Albums (adapters/telegram/receive/albums.py): parts sharing a media_group_id are handed on once, together, in order.

The scenarios run on an event loop of virtual time (`run`): the quiet window is measured on the loop's
clock, which moves only when every task waits for a timer, and then straight to the next one. So a
window's arithmetic holds exactly however loaded the machine is, and no test sleeps for real.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any

from telegram import Message

from vigil.adapters.telegram.receive.albums import MAX_PARTS, Albums, lane_of

CHAT = {"id": 77, "type": "private", "first_name": "Ann"}
ANN = {"id": 77, "is_bot": False, "first_name": "Ann"}


def part(message_id: int, group: str = "g1", chat: dict[str, Any] | None = None, **fields: Any) -> Message:
    data = {"message_id": message_id, "date": 1_700_000_000, "chat": chat or CHAT, "from": ANN,
            "media_group_id": group,
            "photo": [{"file_id": f"f{message_id}", "file_unique_id": f"u{message_id}", "width": 9, "height": 9}],
            **fields}
    parsed = Message.de_json(data, None)
    assert parsed is not None
    return parsed


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A loop whose clock jumps to the next timer whenever nothing is ready, instead of waiting for it."""

    def __init__(self) -> None:
        selector = selectors.DefaultSelector()
        real_select = selector.select

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            ready = real_select(0 if timeout is not None else None)  # None: nothing scheduled, wait for I/O
            if not ready and timeout:
                self.now += timeout
            return ready

        selector.select = select  # type: ignore[method-assign]
        self.now = 0.0
        super().__init__(selector)

    def time(self) -> float:
        return self.now


def run(scenario: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        runner.run(scenario)


def now() -> float:
    return asyncio.get_running_loop().time()


class Recorder:
    def __init__(self) -> None:
        self.albums: list[list[int]] = []
        self.at: list[float] = []  # when each album was handed on (virtual time)
        self.changed = asyncio.Event()

    async def hand_on(self, parts: list[Message]) -> None:
        self.albums.append([p.message_id for p in parts])
        self.at.append(now())
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = 600.0) -> None:
        deadline = now() + timeout
        while len(self.albums) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - now()))


def test_parts_are_handed_on_together_in_message_order_after_the_quiet_window() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        albums = Albums(recorder.hand_on, quiet_s=0.2)
        started = now()
        for message_id in (12, 11, 13):  # updates may come out of order: the album is in message order
            albums.add(part(message_id, caption="which one?" if message_id == 11 else None))
        assert albums.gathering == 1 and recorder.albums == []
        await recorder.wait_for(1)
        assert recorder.at[0] - started >= 0.2 - 1e-9
        assert recorder.albums == [[11, 12, 13]]
        assert albums.gathering == 0 and albums.unfinished == 0

    run(scenario())


def test_a_part_extends_the_window() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        albums = Albums(recorder.hand_on, quiet_s=1.0)
        albums.add(part(1))
        await asyncio.sleep(0.9)
        albums.add(part(2))
        second = now()
        await asyncio.sleep(0.5)  # past the first part's window, inside the second's: still open
        assert recorder.albums == []
        await recorder.wait_for(1)
        assert recorder.albums == [[1, 2]]
        assert recorder.at[0] - second >= 1.0 - 1e-9  # virtual time: exact but for float rounding

    run(scenario())


def test_the_next_message_of_the_chat_ends_its_album_first() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        albums = Albums(recorder.hand_on, quiet_s=60)
        albums.add(part(1))
        albums.add(part(2))
        other_chat = {"id": 78, "type": "private", "first_name": "Bob"}
        albums.add(part(3, group="g2", chat=other_chat))
        started = now()
        await albums.settle(lane_of(part(4, group="")))
        assert now() - started < 5
        assert recorder.albums == [[1, 2]], "only this chat's album, and before settle returned"
        assert albums.gathering == 1
        await albums.close()
        assert recorder.albums == [[1, 2], [3]]
        assert albums.gathering == 0

    run(scenario())


def test_the_tenth_part_ends_the_album_at_once() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        albums = Albums(recorder.hand_on, quiet_s=60)
        for message_id in range(1, MAX_PARTS + 1):
            albums.add(part(message_id))
        await recorder.wait_for(1)
        assert recorder.albums == [list(range(1, MAX_PARTS + 1))]

    run(scenario())


def test_a_failing_hand_on_is_logged_and_does_not_stick() -> None:
    async def scenario() -> None:
        calls: list[int] = []

        async def broken(parts: list[Message]) -> None:
            calls.append(len(parts))
            raise RuntimeError("boom")

        albums = Albums(broken, quiet_s=60)
        albums.add(part(1))
        await albums.close()
        assert calls == [1] and albums.gathering == 0
        albums.add(part(2))  # a new album works as before
        await albums.close()
        assert calls == [1, 1]

    run(scenario())


class Slow:
    """A hand-on that downloads until the test lets it finish; notes what reached the chat, in order."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def hand_on(self, parts: list[Message]) -> None:
        self.started.set()
        await self.release.wait()
        self.order.append("album")

    async def downloading(self, first: Message) -> Albums:
        """Albums whose album of `first` is past its window and being handed on."""
        albums = Albums(self.hand_on, quiet_s=0.5)
        albums.add(first)
        await asyncio.wait_for(self.started.wait(), 60)
        assert albums.gathering == 0 and albums.unfinished == 1
        return albums


def test_the_next_message_waits_for_an_album_still_being_handed_on() -> None:
    async def scenario() -> None:
        slow = Slow()
        albums = await slow.downloading(part(1))

        async def next_message() -> None:
            await albums.settle(lane_of(part(2, group="")))
            slow.order.append("next message")

        follower = asyncio.create_task(next_message())
        await asyncio.sleep(30)  # (virtual) the album takes its time; nothing may overtake it meanwhile
        assert slow.order == [] and not follower.done()
        slow.release.set()
        await asyncio.wait_for(follower, 60)
        assert slow.order == ["album", "next message"]
        assert albums.unfinished == 0

    run(scenario())


def test_close_finishes_an_album_still_being_handed_on() -> None:
    async def scenario() -> None:
        slow = Slow()
        albums = await slow.downloading(part(1))
        closing = asyncio.create_task(albums.close())
        await asyncio.sleep(30)
        assert not closing.done(), "close returned while an album was still downloading: it would be lost"
        slow.release.set()
        await asyncio.wait_for(closing, 60)
        assert slow.order == ["album"] and albums.unfinished == 0

    run(scenario())


def test_another_chats_album_does_not_hold_up_this_chat() -> None:
    async def scenario() -> None:
        slow = Slow()
        albums = await slow.downloading(part(1, chat={"id": 78, "type": "private", "first_name": "Bob"}))
        await asyncio.wait_for(albums.settle(lane_of(part(2, group=""))), 1)
        slow.release.set()
        await albums.close()

    run(scenario())
