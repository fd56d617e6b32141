"""The Bot API stand-in's groups as Telegram runs them: owners, admins (anonymous too), members, and buttons
answered once; driven by the real python-telegram-bot over HTTP."""

from __future__ import annotations

import pytest
from telegram import (
    Bot,
    ChatMemberAdministrator,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)
from telegram.error import BadRequest

from tests.ptb import ALICE, BOB, with_bot
from tests.standins.bot_api import BotAPI

GROUP = -4_000_002
FORUM = -1_001_234_567_777
OWNER = 999_000_001  # add_group's creator, "Group Admin"


def test_a_second_answer_to_one_button_press_is_refused_as_telegram_does(bot_api: BotAPI) -> None:
    async def body(bot: Bot) -> None:
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go")]])
        sent = await bot.send_message(ALICE, "Ready?", reply_markup=keyboard)
        query = bot_api.press_button(ALICE, ALICE, sent.message_id, "go")
        assert await bot.answer_callback_query(query.id, "first")
        with pytest.raises(BadRequest, match="Query is too old and response timeout expired or query id is invalid"):
            await bot.answer_callback_query(query.id, "second")

    with_bot(bot_api, body)
    [refused] = bot_api.failed_calls("answerCallbackQuery")
    assert refused.description == ("Bad Request: query is too old and response timeout expired or query ID is "
                                   "invalid")


def test_admins_members_and_strangers_of_a_group(bot_api: BotAPI) -> None:
    bot_api.add_group(GROUP, "Team")
    bot_api.add_user(1003, "Carol", "carol")
    bot_api.promote(GROUP, ALICE, title="chair")
    bot_api.send_text(GROUP, BOB, "hi all")

    async def body(bot: Bot) -> None:
        admins = await bot.get_chat_administrators(GROUP)
        assert [(type(m), m.user.id) for m in admins] == [(ChatMemberOwner, OWNER), (ChatMemberAdministrator, ALICE)]
        alice = await bot.get_chat_member(GROUP, ALICE)
        assert isinstance(alice, ChatMemberAdministrator) and alice.custom_title == "chair"
        assert isinstance(await bot.get_chat_member(GROUP, BOB), ChatMemberMember)
        assert isinstance(await bot.get_chat_member(GROUP, 1003), ChatMemberLeft)
        with pytest.raises(BadRequest, match="User not found"):
            await bot.get_chat_member(GROUP, 424242)
        with pytest.raises(BadRequest, match="There are no administrators in the private chat"):
            await bot.get_chat_administrators(ALICE)
        bot_api.demote(GROUP, ALICE)
        assert [m.user.id for m in await bot.get_chat_administrators(GROUP)] == [OWNER]
        assert isinstance(await bot.get_chat_member(GROUP, ALICE), ChatMemberMember)

    with_bot(bot_api, body)
    with pytest.raises(ValueError):
        bot_api.demote(GROUP, OWNER)  # an owner is not demoted


def test_an_anonymous_admin_writes_as_the_forum_in_any_topic(bot_api: BotAPI) -> None:
    bot_api.add_group(FORUM, "Forum", forum=True)
    topic = bot_api.create_topic(FORUM, "Plans")
    with pytest.raises(ValueError, match="no anonymous admin"):
        bot_api.send_text(FORUM, ALICE, "as the group?", thread_id=topic, as_group=True)
    bot_api.promote(FORUM, ALICE, anonymous=True, title="boss")

    async def body(bot: Bot) -> None:
        await bot.get_updates(timeout=0)  # the topic's creation
        bot_api.send_text(FORUM, ALICE, "/mode auto", thread_id=topic, as_group=True)
        [update] = await bot.get_updates(offset=-1, timeout=0)
        message = update.message
        assert message is not None and message.from_user is not None and message.sender_chat is not None
        assert (message.from_user.id, message.from_user.username) == (1087968824, "GroupAnonymousBot")
        assert (message.sender_chat.id, message.author_signature, message.message_thread_id) == (FORUM, "boss", topic)
        [_, alice] = await bot.get_chat_administrators(FORUM)
        assert isinstance(alice, ChatMemberAdministrator) and alice.is_anonymous and alice.can_manage_topics

    with_bot(bot_api, body)
