"""The Bot API stand-in, exercised by the real python-telegram-bot over real HTTP.

Each test drives ``telegram.Bot`` (or a whole ``Application``) against ``BotAPI`` and checks
both sides: what PTB returns or raises, and what the stand-in recorded.  Nothing sleeps: tests
wait on the stand-in's condition variable (through ``asyncio.to_thread`` when the bot shares
the thread's event loop).
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.ptb import ALICE, BOB, with_bot
from tests.standins.bot_api import ANY, BotAPI, HtmlParseError, parse_html

T = TypeVar("T")


def present(value: T | None) -> T:
    """The value Telegram's schema calls optional but this test has just arranged to be there."""
    assert value is not None
    return value


def message_of(update: Update) -> Message:
    return present(update.message)

GROUP = -4_000_001
FORUM = -1_001_234_567_890


def last_call(bot_api: BotAPI, method: str) -> Any:
    return [c for c in bot_api.calls if c.method == method][-1]


# -- basics --------------------------------------------------------------------------------


def test_get_me_describes_the_bot(bot_api: BotAPI) -> None:
    async def body(bot: Bot) -> Any:
        return await bot.get_me()

    me = with_bot(bot_api, body)
    assert (me.id, me.is_bot, me.username, me.first_name) == (123456, True, "vigil_test_bot", "Vigil")
    assert bot_api.calls[0].method == "getMe" and bot_api.calls[0].ok
    assert bot_api.base_url.startswith("http://127.0.0.1:") and bot_api.base_url.endswith("/bot")


def test_tokens_and_unknown_methods_fail_as_at_telegram(bot_api: BotAPI) -> None:
    async def wrong_token() -> None:
        async with Bot("123456:WRONG", base_url=bot_api.base_url):
            pass

    with pytest.raises(InvalidToken):
        asyncio.run(wrong_token())
    assert bot_api.calls[-1].error_code == 401 and bot_api.calls[-1].description == "Unauthorized"

    async def unknown(bot: Bot) -> None:
        await bot.do_api_request("fooBar")

    with pytest.raises(EndPointNotFound):
        with_bot(bot_api, unknown)
    assert (bot_api.calls[-1].method, bot_api.calls[-1].error_code) == ("fooBar", 404)


# -- updates -------------------------------------------------------------------------------


def test_long_polling_round_trip_with_offsets(bot_api: BotAPI) -> None:
    bot_api.send_text(ALICE, ALICE, "hello")

    async def body(bot: Bot) -> None:
        first = await bot.get_updates(timeout=0)
        assert [u.message.text for u in first if u.message] == ["hello"]
        assert present(message_of(first[0]).from_user).id == ALICE and message_of(first[0]).chat.type == "private"
        # Unconfirmed updates come again.
        assert [u.update_id for u in await bot.get_updates(timeout=0)] == [first[0].update_id]
        # An offset confirms and drops them.
        offset = first[0].update_id + 1
        assert await bot.get_updates(offset=offset, timeout=0) == ()
        assert bot_api.pending_updates == 0

        # A long poll blocks until an update is queued, then answers at once.
        poll = asyncio.create_task(bot.get_updates(offset=offset, timeout=10))
        await bot_api.wait_for_async(lambda: bot_api.polls_waiting == 1, message="a waiting long poll")
        started = time.monotonic()
        bot_api.send_text(ALICE, ALICE, "second")
        second = await poll
        assert time.monotonic() - started < 5
        assert [u.message.text for u in second if u.message] == ["second"]
        assert second[0].update_id == offset

        # An empty long poll times out with no updates.
        started = time.monotonic()
        assert await bot.get_updates(offset=second[0].update_id + 1, timeout=1) == ()
        assert time.monotonic() - started >= 0.9

    with_bot(bot_api, body)
    polls = [c for c in bot_api.calls if c.method == "getUpdates"]
    assert polls[-1].params["timeout"] == 1 and all(c.ok for c in polls)


def test_an_offset_forgets_the_updates_below_it_and_delivers_the_rest_again(bot_api: BotAPI) -> None:
    for words in ("one", "two", "three"):
        bot_api.send_text(ALICE, ALICE, words)

    async def body(bot: Bot) -> None:
        ids = [u.update_id for u in await bot.get_updates(timeout=0)]
        assert len(ids) == 3 and ids == sorted(ids)
        # Confirming the first only (as vigil does when the second is not durable yet): the rest come again.
        again = await bot.get_updates(offset=ids[1], timeout=0)
        assert [(u.update_id, message_of(u).text) for u in again] == [(ids[1], "two"), (ids[2], "three")]
        assert bot_api.pending_updates == 2
        assert [u.update_id for u in await bot.get_updates(timeout=0)] == ids[1:], "offset 0: what is left"
        assert [u.update_id for u in await bot.get_updates(offset=ids[2] + 1, limit=1, timeout=0)] == []
        assert bot_api.pending_updates == 0

    with_bot(bot_api, body)


def test_a_second_poller_terminates_the_first_with_409(bot_api: BotAPI) -> None:
    async def body(bot: Bot) -> None:
        first = asyncio.create_task(bot.get_updates(timeout=10))
        await bot_api.wait_for_async(lambda: bot_api.polls_waiting == 1)
        async with Bot(bot_api.token, base_url=bot_api.base_url) as other:
            assert await other.get_updates(timeout=0) == ()
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await first

    with_bot(bot_api, body)
    assert any(c.error_code == 409 for c in bot_api.calls)


AnyApplication = Application[Any, Any, Any, Any, Any, Any]


async def _run_app(bot_api: BotAPI, app: AnyApplication, body: Callable[[], Awaitable[None]]) -> None:
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(timeout=5)
    try:
        await body()
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


def _app(bot_api: BotAPI, limiter: bool = True) -> AnyApplication:
    builder = ApplicationBuilder().token(bot_api.token).base_url(bot_api.base_url)
    if not limiter:
        return builder.build()
    return builder.rate_limiter(AIORateLimiter(max_retries=3)).build()


async def _echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(f"echo: {update.effective_message.text}")


def test_application_receives_an_update_and_replies(bot_api: BotAPI) -> None:
    app = _app(bot_api)
    app.add_handler(MessageHandler(filters.TEXT, _echo))

    async def body() -> None:
        bot_api.send_text(ALICE, ALICE, "hi there")
        sent = await asyncio.to_thread(bot_api.wait_for_bot_text, ALICE, "echo: hi there")
        assert sent.thread_id is None and sent.text == "echo: hi there"

    asyncio.run(_run_app(bot_api, app, body))
    methods = [c.method for c in bot_api.calls]
    assert methods[0] == "getMe" and "deleteWebhook" in methods and "sendMessage" in methods
    # PTB's stop() cancels the running long poll (the stand-in sees the client hang up), then
    # confirms what it fetched with one last getUpdates(timeout=0).  Calls are listed in the
    # order they were answered; ``time`` is when they arrived.
    polls = sorted((c for c in bot_api.calls if c.method == "getUpdates"), key=lambda c: c.time)
    assert polls[-1].params["timeout"] == 0 and polls[-2].client_gone
    assert bot_api.pending_updates == 0
    assert bot_api.failed_calls() == []


def test_rate_limiter_retries_a_429(bot_api: BotAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # PTB 22 warns whenever it builds a RetryAfter otherwise
    app = _app(bot_api)
    app.add_handler(MessageHandler(filters.TEXT, _echo))
    bot_api.flood(times=1, retry_after=1, method="sendMessage")

    async def body() -> None:
        bot_api.send_text(ALICE, ALICE, "busy?")
        await asyncio.to_thread(bot_api.wait_for_bot_text, ALICE, "echo: busy?")

    asyncio.run(_run_app(bot_api, app, body))
    sends = [c for c in bot_api.calls if c.method == "sendMessage"]
    assert [(c.ok, c.error_code) for c in sends] == [(False, 429), (True, None)]
    assert sends[0].description == "Too Many Requests: retry after 1"
    assert sends[1].time - sends[0].time >= 1.0  # the limiter honoured retry_after


def test_429_surfaces_as_retry_after_without_a_limiter(bot_api: BotAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # PTB 22 warns on int retry_after otherwise
    bot_api.flood(times=1, retry_after=7, chat_id=ALICE)

    async def body(bot: Bot) -> None:
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(ALICE, "x")
        assert caught.value.retry_after == dtm.timedelta(seconds=7)
        await bot.send_message(ALICE, "x")  # the flood was for one call only

    with_bot(bot_api, body)
    assert [m.text for m in bot_api.bot_messages(ALICE)] == ["x"]


# -- entities in user messages ---------------------------------------------------------------


def test_commands_and_mentions_carry_telegram_entities(bot_api: BotAPI) -> None:
    bot_api.add_group(GROUP, "Team")
    cmd = bot_api.send_text(GROUP, ALICE, "/status@vigil_test_bot now")
    plain_cmd = bot_api.send_text(GROUP, BOB, "/help")
    mention = bot_api.send_text(GROUP, BOB, "😀 hey @vigil_test_bot, and @alice")
    assert cmd.entities == [{"type": "bot_command", "offset": 0, "length": 22}]
    assert plain_cmd.entities == [{"type": "bot_command", "offset": 0, "length": 5}]
    # Offsets count UTF-16 code units: the emoji is two.
    assert [(e["type"], e["offset"], e["length"]) for e in mention.entities] == [
        ("mention", 7, 15),
        ("mention", 28, 6),
    ]

    async def body(bot: Bot) -> None:
        updates = await bot.get_updates(timeout=0)
        msgs = [u.message for u in updates if u.message]
        assert msgs[0].chat.type == "group" and msgs[0].chat.title == "Team"
        assert msgs[0].parse_entities() == {msgs[0].entities[0]: "/status@vigil_test_bot"}
        assert list(msgs[2].parse_entities().values()) == ["@vigil_test_bot", "@alice"]

    with_bot(bot_api, body)


@pytest.mark.e2e
def test_privacy_mode_hides_ordinary_group_chatter() -> None:
    with BotAPI(privacy_mode=True) as bot_api:
        bot_api.add_user(ALICE, "Alice")
        bot_api.add_group(GROUP, "Team")
        bot_api.send_text(GROUP, ALICE, "just chatting")
        bot_api.send_text(GROUP, ALICE, "/ask@vigil_test_bot something")
        bot_api.send_text(GROUP, ALICE, "/ask@other_bot something")
        bot_api.send_text(GROUP, ALICE, "hey @vigil_test_bot")

        async def body(bot: Bot) -> None:
            assert not (await bot.get_me()).can_read_all_group_messages
            texts = [u.message.text for u in await bot.get_updates(timeout=0) if u.message]
            assert texts == ["/ask@vigil_test_bot something", "hey @vigil_test_bot"]

        with_bot(bot_api, body)


def test_replies_to_bot_messages_carry_the_bot_as_author(bot_api: BotAPI) -> None:
    async def body(bot: Bot) -> None:
        sent = await bot.send_message(ALICE, "question?")
        bot_api.send_text(ALICE, ALICE, "answer", reply_to_message_id=sent.message_id)
        (update,) = await bot.get_updates(timeout=0)
        reply = present(message_of(update).reply_to_message)
        assert reply.message_id == sent.message_id and present(reply.from_user).id == bot.id
        assert message_of(update).message_id == sent.message_id + 1  # ids are shared per chat

    with_bot(bot_api, body)


# -- forum topics ----------------------------------------------------------------------------


def test_forum_topics(bot_api: BotAPI) -> None:
    bot_api.add_group(FORUM, "Forum", supergroup=True, forum=True)
    topic = bot_api.create_topic(FORUM, "Work")
    assert topic > 1
    bot_api.send_text(FORUM, ALICE, "in topic", thread_id=topic)
    bot_api.send_text(FORUM, ALICE, "in general")

    async def body(bot: Bot) -> None:
        updates = await bot.get_updates(timeout=0)
        created, in_topic, general = (message_of(u) for u in updates)
        assert present(created.forum_topic_created).name == "Work" and created.message_id == topic
        assert in_topic.message_thread_id == topic and in_topic.is_topic_message
        # Telegram presents topic messages as replies to the topic's creation message.
        assert present(in_topic.reply_to_message).message_id == topic
        assert general.message_thread_id is None and not general.is_topic_message
        assert general.reply_to_message is None

        sent = await bot.send_message(FORUM, "reply", message_thread_id=topic)
        assert sent.message_thread_id == topic and sent.is_topic_message
        # Replying to a topic message lands in that topic even without message_thread_id.
        await in_topic.reply_text("quoted")
        await bot.send_message(FORUM, "to general")
        await bot.send_chat_action(FORUM, "typing", message_thread_id=topic)

        with pytest.raises(BadRequest, match="Message thread not found"):
            await bot.send_message(FORUM, "x", message_thread_id=1)
        with pytest.raises(BadRequest, match="Message thread not found"):
            await bot.send_message(FORUM, "x", message_thread_id=topic + 100)
        with pytest.raises(BadRequest, match="Message thread not found"):
            await bot.send_message(ALICE, "x", message_thread_id=topic)

    with_bot(bot_api, body)
    assert [m.text for m in bot_api.bot_messages(FORUM, topic)] == ["reply", "quoted"]
    assert [m.text for m in bot_api.bot_messages(FORUM, None)] == ["to general"]
    assert len(bot_api.bot_messages(FORUM, ANY)) == 3
    assert bot_api.chat_actions == [(FORUM, topic, "typing")]
    assert last_call(bot_api, "sendMessage").description == "Bad Request: message thread not found"


# -- text limits and HTML ----------------------------------------------------------------------


def test_length_limit_counts_utf16_after_parsing(bot_api: BotAPI) -> None:
    async def body(bot: Bot) -> None:
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(ALICE, "😀" * 4096)  # 4096 characters, 8192 UTF-16 units
        await bot.send_message(ALICE, "😀" * 2048)
        await bot.send_message(ALICE, "a" * 4096)
        # Tags don't count, entities do: 4096 visible characters pass, 4097 don't.
        await bot.send_message(ALICE, "<b>" + "&amp;" * 4096 + "</b>", parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(ALICE, "<b>" + "b" * 4097 + "</b>", parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match="Message text is empty"):
            await bot.send_message(ALICE, " \n ")
        with pytest.raises(BadRequest, match="Message text is empty"):
            await bot.send_message(ALICE, "<b></b>", parse_mode=ParseMode.HTML)

    with_bot(bot_api, body)
    assert [len(m.text) for m in bot_api.bot_messages(ALICE)] == [2048, 4096, 4096]
    assert bot_api.bot_messages(ALICE)[2].entities == [("bold", 0, 4096)]
    assert [c.description for c in bot_api.failed_calls("sendMessage")] == [
        "Bad Request: message is too long",
        "Bad Request: message is too long",
        "Bad Request: message text is empty",
        "Bad Request: message text is empty",
    ]


HTML_ERRORS = [
    ("<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 0'),
    ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
    ("x<5", "Unclosed start tag at byte offset 1"),
    ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
    ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
    ("done</b>", "Unexpected end tag at byte offset 4"),
    ("<b>x</b", "Unclosed end tag at byte offset 4"),
    ("AT&T", "Character entity expected at byte offset 2"),
    ("é <span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 3'),
    ('<a href="x>y</a>', "Unclosed start tag at byte offset 0"),
    ("<b =1>x</b>", 'Empty attribute name in the tag "b" at byte offset 0'),
    ("<a href=x?y>z</a>", "Unexpected end of name token at byte offset 8"),
    ("<tg-emoji>x</tg-emoji>", "Invalid custom emoji identifier specified"),
    ("&#xD83D;", "Text contains invalid Unicode characters after decoding HTML entities"),
]


@pytest.mark.parametrize(("html", "reason"), HTML_ERRORS)
def test_html_parse_errors_match_telegram(html: str, reason: str) -> None:
    with pytest.raises(HtmlParseError) as caught:
        parse_html(html)
    assert str(caught.value).startswith(reason)


def test_html_entity_decoding_follows_tdlib() -> None:
    # tdlib accepts entities without ';' (a name runs to the first non-letter) and only a
    # lower-case 'x' in hex references ...
    assert parse_html("&amp;x &amp &lt &#65 &#x42;") == ("&x & < A B", [])
    with pytest.raises(HtmlParseError, match="Character entity expected at byte offset 0"):
        parse_html("&ampx")
    # ... and keeps a bare '&' literally; the stand-in refuses it unless told to be lenient.
    assert parse_html("AT&T &nbsp; &#X41;", strict_ampersand=False) == ("AT&T &nbsp; &#X41;", [])


def test_html_errors_reach_ptb_as_bad_request(bot_api: BotAPI) -> None:
    async def body(bot: Bot) -> None:
        for html, reason in HTML_ERRORS:
            with pytest.raises(BadRequest, match="Can't parse entities"):
                await bot.send_message(ALICE, html, parse_mode=ParseMode.HTML)
            assert present(bot_api.calls[-1].description).startswith(f"Bad Request: can't parse entities: {reason}")
        with pytest.raises(BadRequest, match="Can't parse entities"):
            await bot.send_message(ALICE, "*bold*", parse_mode=ParseMode.MARKDOWN_V2)

    with_bot(bot_api, body)
    assert bot_api.bot_messages(ALICE) == []


def test_html_entities_and_visible_text(bot_api: BotAPI) -> None:
    html = (
        "  <b>Bold <i>both</i></b> &lt;tag&gt; &amp; &quot;q&quot; &#8364;\n"
        '<a href="https://example.com">link</a> <code>x&lt;y</code>\n'
        '<pre><code class="language-python">print(1)</code></pre>'
        "<blockquote expandable>quote</blockquote> <tg-spoiler>s</tg-spoiler>\n\n"
    )

    async def body(bot: Bot) -> Any:
        return await bot.send_message(ALICE, html, parse_mode=ParseMode.HTML)

    msg = with_bot(bot_api, body)
    (sent,) = bot_api.bot_messages(ALICE)
    assert sent.raw == html and sent.parse_mode == "HTML"
    assert sent.text == 'Bold both <tag> & "q" €\nlink x<y\nprint(1)quote s'  # trimmed, as Telegram does
    assert sent.entities == [
        ("bold", 0, 9),
        ("italic", 5, 4),
        ("text_link", 24, 4),
        ("code", 29, 3),
        ("pre", 33, 8),
        ("expandable_blockquote", 41, 5),
        ("spoiler", 47, 1),
    ]
    assert msg.text == sent.text
    links = [e for e in msg.entities if e.type == "text_link"]
    assert links[0].url == "https://example.com/"
    assert [e.language for e in msg.entities if e.type == "pre"] == ["python"]


# -- edits -----------------------------------------------------------------------------------


def test_edits_and_message_not_modified(bot_api: BotAPI) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go")]])

    async def body(bot: Bot) -> None:
        sent = await bot.send_message(ALICE, "<b>draft</b>", parse_mode=ParseMode.HTML, reply_markup=keyboard)
        edited = await bot.edit_message_text(
            "<b>final</b>", ALICE, sent.message_id, parse_mode=ParseMode.HTML, reply_markup=keyboard
        )
        assert isinstance(edited, Message)  # True only for inline messages
        assert edited.text == "final" and edited.edit_date is not None
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_text(
                "<b>final</b>", ALICE, sent.message_id, parse_mode=ParseMode.HTML, reply_markup=keyboard
            )
        # Same text without the markup is a change: it removes the keyboard, as at Telegram.
        await bot.edit_message_text("<b>final</b>", ALICE, sent.message_id, parse_mode=ParseMode.HTML)
        # Same visible text but other formatting is a change too.
        await bot.edit_message_text("final", ALICE, sent.message_id)
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_reply_markup(ALICE, sent.message_id)
        await bot.edit_message_reply_markup(ALICE, sent.message_id, reply_markup=keyboard)
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await bot.edit_message_text("x", ALICE, 999)
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.edit_message_text("y" * 4097, ALICE, sent.message_id)
        user_msg = bot_api.send_text(ALICE, ALICE, "mine")
        with pytest.raises(BadRequest, match="Message can't be edited"):
            await bot.edit_message_text("x", ALICE, user_msg.message_id)
        assert await bot.delete_message(ALICE, sent.message_id)
        with pytest.raises(BadRequest, match="Message to delete not found"):
            await bot.delete_message(ALICE, sent.message_id)

    with_bot(bot_api, body)
    assert bot_api.bot_messages(ALICE) == []
    (sent,) = [m for m in bot_api.history(ALICE) if m.from_user and m.from_user.is_bot]
    assert sent.deleted and sent.text == "final" and sent.reply_markup is not None
    not_modified = [c for c in bot_api.failed_calls() if "not modified" in (c.description or "")]
    assert not_modified[0].description == (
        "Bad Request: message is not modified: specified new message content and reply markup are "
        "exactly the same as a current content and reply markup of the message"
    )


def test_edit_count_and_visible_state(bot_api: BotAPI) -> None:
    async def body(bot: Bot) -> None:
        sent = await bot.send_message(ALICE, "v1")
        await bot.edit_message_text("v2", ALICE, sent.message_id)
        await bot.edit_message_text("<i>v3</i>", ALICE, sent.message_id, parse_mode=ParseMode.HTML)

    with_bot(bot_api, body)
    (sent,) = bot_api.bot_messages(ALICE)
    assert (sent.text, sent.raw, sent.edits, sent.entities) == ("v3", "<i>v3</i>", 2, [("italic", 0, 2)])


# -- faults ----------------------------------------------------------------------------------


def test_blocked_and_deleted_chats(bot_api: BotAPI) -> None:
    bot_api.add_group(GROUP, "Team")
    bot_api.block(ALICE)
    bot_api.delete_chat(GROUP)

    async def body(bot: Bot) -> None:
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(ALICE, "hello?")
        with pytest.raises(Forbidden):
            await bot.send_chat_action(ALICE, "typing")
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(GROUP, "hello?")
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(-42, "nobody")

    with_bot(bot_api, body)
    assert [c.error_code for c in bot_api.failed_calls()] == [403, 403, 400, 400]


def test_5xx_surfaces_as_network_error(bot_api: BotAPI) -> None:
    bot_api.fail(times=1, status=502, method="sendMessage")
    bot_api.fail(times=1, status=500, method="sendMessage")

    async def body(bot: Bot) -> None:
        with pytest.raises(NetworkError, match="Bad Gateway"):  # an HTML page from the proxy
            await bot.send_message(ALICE, "one")
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(ALICE, "two")
        await bot.send_message(ALICE, "three")

    with_bot(bot_api, body)
    assert [m.text for m in bot_api.bot_messages(ALICE)] == ["three"]
    assert [(c.http_status, c.ok) for c in bot_api.calls if c.method == "sendMessage"] == [
        (502, False),
        (500, False),
        (200, True),
    ]


def test_stall_times_out_the_client_but_the_message_is_sent(bot_api: BotAPI) -> None:
    bot_api.stall(1, method="sendMessage")

    async def body(bot: Bot) -> None:
        with pytest.raises(TimedOut):
            await bot.send_message(ALICE, "slow")

    with_bot(bot_api, body, read_timeout=0.3)
    assert [m.text for m in bot_api.bot_messages(ALICE)] == ["slow"]
    # The answer was held back until after the client gave up: recorded as such.
    bot_api.wait_for(lambda: any(c.method == "sendMessage" and c.client_gone for c in bot_api.calls), timeout=5)


def test_migration_to_supergroup(bot_api: BotAPI) -> None:
    bot_api.add_group(GROUP, "Team")
    new_id = -1_009_999_999_999
    bot_api.migrate_to_supergroup(GROUP, new_id)

    async def body(bot: Bot) -> None:
        updates = await bot.get_updates(timeout=0)
        old, new = (message_of(u) for u in updates)
        assert (old.chat.id, old.migrate_to_chat_id) == (GROUP, new_id)
        assert (new.chat.id, new.chat.type, new.migrate_from_chat_id) == (new_id, "supergroup", GROUP)
        # PTB turns Telegram's 400 with migrate_to_chat_id into ChatMigrated.
        with pytest.raises(ChatMigrated) as caught:
            await bot.send_message(GROUP, "still there?")
        assert caught.value.new_chat_id == new_id
        await bot.send_message(new_id, "moved")

    with_bot(bot_api, body)
    failed = bot_api.failed_calls("sendMessage")[0]
    assert failed.description == "Bad Request: group chat was upgraded to a supergroup chat"
    assert bot_api.wait_for_bot_text(new_id, "moved").message_id == 2  # after the service message


# -- buttons, documents, commands ----------------------------------------------------------


def test_inline_button_press_becomes_a_callback_query(bot_api: BotAPI) -> None:
    app = _app(bot_api)
    seen: list[str] = []

    async def on_press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.message is not None
        seen.append(f"{query.data}@{query.message.message_id}")
        await query.answer("noted")
        await query.edit_message_text(f"chose {query.data}")

    app.add_handler(CallbackQueryHandler(on_press))

    async def body() -> None:
        keyboard = InlineKeyboardMarkup(
            [[InlineKeyboardButton("Yes", callback_data="yes"), InlineKeyboardButton("No", callback_data="no")]]
        )
        sent = await app.bot.send_message(ALICE, "Proceed?", reply_markup=keyboard)
        with pytest.raises(ValueError, match="no button"):
            bot_api.press_button(ALICE, ALICE, sent.message_id, "maybe")
        query = bot_api.press_button(ALICE, ALICE, sent.message_id, "yes")
        await asyncio.to_thread(bot_api.wait_for_bot_text, ALICE, "chose yes")
        assert bot_api.callback_query(query.id).answer_text == "noted"
        with pytest.raises(BadRequest, match="Query is too old"):
            await app.bot.answer_callback_query("12345")

    asyncio.run(_run_app(bot_api, app, body))
    assert seen == ["yes@1"]


def test_inline_keyboard_validation(bot_api: BotAPI) -> None:
    async def body(bot: Bot) -> None:
        too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="d" * 65)]])
        with pytest.raises(BadRequest, match="Button_data_invalid"):
            await bot.send_message(ALICE, "x", reply_markup=too_long)
        # 64 bytes of UTF-8 are fine, however few characters that is.
        fits = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="é" * 32)]])
        await bot.send_message(ALICE, "ok", reply_markup=fits)

    with_bot(bot_api, body)
    assert bot_api.failed_calls()[0].description == "Bad Request: BUTTON_DATA_INVALID"
    keyboard = {"inline_keyboard": [[{"text": "x", "callback_data": "é" * 32}]]}
    assert bot_api.bot_messages(ALICE)[0].reply_markup == keyboard


def test_send_document_multipart_upload(bot_api: BotAPI) -> None:
    bot_api.add_group(FORUM, "Forum", supergroup=True, forum=True)
    topic = bot_api.create_topic(FORUM, "Files")
    content = "line one\nzwei 😀\n".encode() + bytes(range(256))

    async def body(bot: Bot) -> None:
        msg = await bot.send_document(
            FORUM,
            content,
            filename='report "final".txt',
            caption="<b>Report</b> attached",
            parse_mode=ParseMode.HTML,
            message_thread_id=topic,
        )
        document = present(msg.document)
        assert document.file_name == 'report "final".txt' and document.file_size == len(content)
        assert msg.caption == "Report attached" and msg.message_thread_id == topic
        with pytest.raises(BadRequest, match="Message caption is too long"):
            await bot.send_document(FORUM, b"x", filename="a.txt", caption="c" * 1025)

    with_bot(bot_api, body)
    (doc,) = bot_api.documents
    assert (doc.chat_id, doc.thread_id, doc.filename, doc.content) == (FORUM, topic, 'report "final".txt', content)
    assert doc.caption == "Report attached" and doc.mime_type == "text/plain"
    upload = next(c for c in bot_api.calls if c.method == "sendDocument")
    assert upload.params["document"]["size"] == len(content)


def test_commands_webhook_chat_and_shutdown_methods(bot_api: BotAPI) -> None:
    bot_api.add_group(FORUM, "Forum", supergroup=True, forum=True)
    bot_api.send_text(ALICE, ALICE, "queued")

    async def body(bot: Bot) -> None:
        await bot.set_my_commands([("status", "Show status"), ("new", "Start over")])
        assert [(c.command, c.description) for c in await bot.get_my_commands()] == [
            ("status", "Show status"),
            ("new", "Start over"),
        ]
        with pytest.raises(BadRequest, match="Bot_command_invalid"):
            await bot.set_my_commands([("Bad-Command", "x")])
        assert (await bot.get_webhook_info()).pending_update_count == 1
        assert await bot.delete_webhook(drop_pending_updates=True)
        assert (await bot.get_webhook_info()).pending_update_count == 0
        chat = await bot.get_chat(FORUM)
        assert (chat.type, chat.is_forum, chat.title) == ("supergroup", True, "Forum")
        with pytest.raises(BadRequest, match="Wrong parameter action"):
            await bot.send_chat_action(ALICE, "dancing")
        await bot.delete_my_commands()
        assert await bot.get_my_commands() == ()
        assert await bot.close() and await bot.log_out()

    with_bot(bot_api, body)
    assert bot_api.commands == []
    assert [c.method for c in bot_api.calls if c.method in ("close", "logOut")] == ["close", "logOut"]


def test_wait_for_reports_recent_calls_on_timeout(bot_api: BotAPI) -> None:
    async def body(bot: Bot) -> None:
        await bot.send_message(ALICE, "something else")

    with_bot(bot_api, body)
    with pytest.raises(AssertionError) as caught:
        bot_api.wait_for_bot_text(ALICE, "never sent", timeout=0.2)
    assert "never sent" in str(caught.value) and "sendMessage" in str(caught.value)
