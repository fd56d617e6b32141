"""Albums (adapters/telegram/albums.py): parts sharing a media_group_id are handed on once, together, in order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from telegram import Message

from vigil.adapters.telegram.albums import MAX_PARTS, Albums, lane_of

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


class Recorder:
    def __init__(self) -> None:
        self.albums: list[list[int]] = []
        self.changed = asyncio.Event()

    async def hand_on(self, parts: list[Message]) -> None:
        self.albums.append([p.message_id for p in parts])
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.albums) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))


def test_parts_are_handed_on_together_in_message_order_after_the_quiet_window() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        albums = Albums(recorder.hand_on, quiet_s=0.2)
        started = time.monotonic()
        for message_id in (12, 11, 13):  # updates may come out of order: the album is in message order
            albums.add(part(message_id, caption="which one?" if message_id == 11 else None))
        assert albums.gathering == 1 and recorder.albums == []
        await recorder.wait_for(1)
        assert time.monotonic() - started >= 0.2
        assert recorder.albums == [[11, 12, 13]]
        assert albums.gathering == 0

    asyncio.run(scenario())


def test_a_part_extends_the_window() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        albums = Albums(recorder.hand_on, quiet_s=1.0)
        albums.add(part(1))
        await asyncio.sleep(0.5)  # real elapsed time inside the window
        albums.add(part(2))
        await asyncio.sleep(0.5)  # 1 s after the first part, 0.5 s after the second: still open
        assert recorder.albums == []
        await recorder.wait_for(1)
        assert recorder.albums == [[1, 2]]

    asyncio.run(scenario())


def test_the_next_message_of_the_chat_ends_its_album_first() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        albums = Albums(recorder.hand_on, quiet_s=60)
        albums.add(part(1))
        albums.add(part(2))
        other_chat = {"id": 78, "type": "private", "first_name": "Bob"}
        albums.add(part(3, group="g2", chat=other_chat))
        started = time.monotonic()
        await albums.settle(lane_of(part(4, group="")))
        assert time.monotonic() - started < 5
        assert recorder.albums == [[1, 2]], "only this chat's album, and before settle returned"
        assert albums.gathering == 1
        await albums.close()
        assert recorder.albums == [[1, 2], [3]]
        assert albums.gathering == 0

    asyncio.run(scenario())


def test_the_tenth_part_ends_the_album_at_once() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        albums = Albums(recorder.hand_on, quiet_s=60)
        for message_id in range(1, MAX_PARTS + 1):
            albums.add(part(message_id))
        await recorder.wait_for(1)
        assert recorder.albums == [list(range(1, MAX_PARTS + 1))]

    asyncio.run(scenario())


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

    asyncio.run(scenario())
