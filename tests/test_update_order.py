"""The per-chat update processor beneath the e2e tests: order within a chat, none across, no leftovers."""

from __future__ import annotations

import asyncio
import datetime as dt

from telegram import Chat, Message, MessageEntity, Update, User

from vigil.adapters.telegram.receive.order import PerChatOrder, lanes_of


def update(update_id: int, chat_id: int, text: str) -> Update:
    entities = (MessageEntity(MessageEntity.BOT_COMMAND, 0, len(text.split()[0])),) if text.startswith("/") else ()
    message = Message(message_id=update_id, date=dt.datetime.now(dt.UTC), chat=Chat(chat_id, Chat.PRIVATE),
                      text=text, entities=entities, from_user=User(chat_id, "someone", False))
    return Update(update_id, message=message)


def test_chats_run_side_by_side_and_each_keeps_its_order() -> None:
    async def scenario() -> list[str]:
        processor = PerChatOrder()
        done: list[str] = []
        release = asyncio.Event()

        async def slow() -> None:
            await release.wait()
            done.append("a1")

        async def note(name: str) -> None:
            done.append(name)

        tasks = [asyncio.create_task(processor.process_update(update(1, 1, "/export"), slow())),
                 asyncio.create_task(processor.process_update(update(2, 1, "after the export"), note("a2"))),
                 asyncio.create_task(processor.process_update(update(3, 2, "another chat"), note("b1"))),
                 asyncio.create_task(processor.process_update(update(4, 1, "/stop@vigil_bot"), note("a-stop")))]
        for _ in range(20):
            await asyncio.sleep(0)
        assert done == ["b1", "a-stop"]  # chat 2 and /stop did not wait; chat 1's message did
        assert processor.lines == 1
        release.set()
        await asyncio.gather(*tasks)
        assert processor.lines == 0  # an idle chat leaves no lock behind
        return done

    assert asyncio.run(scenario()) == ["b1", "a-stop", "a1", "a2"]


def test_only_stop_and_status_skip_the_line() -> None:
    assert lanes_of(update(1, 5, "/stop")) == ()
    assert lanes_of(update(1, 5, "/status@vigil_bot")) == ()
    assert lanes_of(update(1, 5, "/export")) == ((5, None),)
    assert lanes_of(update(1, 5, "stop")) == ((5, None),)


def test_an_upgrade_to_a_supergroup_keeps_the_order_of_both_chats() -> None:
    moved = Message(message_id=1, date=dt.datetime.now(dt.UTC), chat=Chat(-5, Chat.GROUP),
                    migrate_to_chat_id=-1005)
    assert lanes_of(Update(1, message=moved)) == ((-1005, None), (-5, None))
