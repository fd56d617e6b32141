"""The Bot API stand-in's files, media and drafts, exercised by the real python-telegram-bot over real HTTP.

What users post (photos, albums, documents, voice, replies, quotes, forwards) must parse in PTB's own
classes exactly as Telegram's updates do; what the bot fetches (getFile, downloads) and sends (sendPhoto,
sendDocument, sendMessageDraft) must meet Telegram's limits and words. Images are real ones, made by
`tests.standins.images`, whose headers the stand-ins read.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import urllib.error
import urllib.request
from typing import Any, TypeVar

import pytest
from telegram import (
    Bot,
    File,
    Message,
    MessageOriginChannel,
    MessageOriginHiddenUser,
    MessageOriginUser,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter

from tests.ptb import ALICE, BOB, with_bot
from tests.standins.bot_api import MAX_DOWNLOAD_BYTES, MAX_PHOTO_BYTES, BotAPI, ForwardOrigin, Quote
from tests.standins.images import image_info, make_jpeg, make_png

T = TypeVar("T")

GROUP = -4_000_001


def present(value: T | None) -> T:
    assert value is not None
    return value


async def messages(bot: Bot) -> list[Message]:
    updates: tuple[Update, ...] = await bot.get_updates(timeout=0)
    if updates:
        await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    return [present(u.message) for u in updates]


async def fetch(bot: Bot, file_id: str) -> bytes:
    """getFile, then the download PTB makes from its file_path."""
    buf = io.BytesIO()
    await (await bot.get_file(file_id)).download_to_memory(buf)
    return buf.getvalue()


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# -- what users post ------------------------------------------------------------------------------


def test_a_photo_arrives_as_sizes_and_its_largest_downloads_byte_for_byte(bot_api: BotAPI) -> None:
    photo = make_jpeg(1600, 1200, level=90)
    bot_api.send_photo(ALICE, ALICE, photo, caption="what is this?")

    async def body(bot: Bot) -> None:
        (msg,) = await messages(bot)
        assert msg.caption == "what is this?" and msg.text is None
        sizes = msg.photo
        assert [(s.width, s.height) for s in sizes] == [(90, 68), (320, 240), (800, 600), (1280, 960), (1600, 1200)]
        assert len({s.file_id for s in sizes}) == len({s.file_unique_id for s in sizes}) == 5
        assert await fetch(bot, sizes[-1].file_id) == photo
        assert sizes[-1].file_size == len(photo)
        thumb = await fetch(bot, sizes[0].file_id)
        assert image_info(thumb) is not None and present(image_info(thumb)).width == 90
        file = await bot.get_file(sizes[-1].file_id)
        assert present(file.file_path).endswith(".jpg") and file.file_size == len(photo)

    with_bot(bot_api, body)
    assert [d.status for d in bot_api.downloads] == [200, 200]


def test_a_photo_given_as_its_sizes_keeps_them(bot_api: BotAPI) -> None:
    small, large = make_png(40, 30, (1, 2, 3)), make_png(400, 300, (4, 5, 6))
    bot_api.send_photo(ALICE, ALICE, [small, large])
    with pytest.raises(ValueError, match="smallest first"):
        bot_api.send_photo(ALICE, ALICE, [large, small])
    with pytest.raises(ValueError, match="not an image"):
        bot_api.send_photo(ALICE, ALICE, b"%PDF-1.4 not a photo")

    async def body(bot: Bot) -> None:
        (msg,) = await messages(bot)
        assert [(s.width, s.height) for s in msg.photo] == [(40, 30), (400, 300)]
        assert await fetch(bot, msg.photo[0].file_id) == small
        assert await fetch(bot, msg.photo[1].file_id) == large

    with_bot(bot_api, body)


def test_an_album_is_one_update_per_photo_sharing_a_media_group(bot_api: BotAPI) -> None:
    photos = [make_jpeg(640, 480, level=10 * i) for i in range(3)]
    sent = bot_api.send_album(ALICE, ALICE, photos, caption="three views")
    with pytest.raises(ValueError, match=r"2\.\.10"):
        bot_api.send_album(ALICE, ALICE, photos[:1])

    async def body(bot: Bot) -> None:
        got = await messages(bot)
        assert [m.message_id for m in got] == [m.message_id for m in sent]
        assert len({m.media_group_id for m in got}) == 1 and got[0].media_group_id
        assert [m.caption for m in got] == ["three views", None, None]
        assert [await fetch(bot, m.photo[-1].file_id) for m in got] == photos

    with_bot(bot_api, body)


def test_documents_voice_audio_and_video_notes_parse_in_ptb(bot_api: BotAPI) -> None:
    pdf = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
    bot_api.send_document(ALICE, ALICE, pdf, "../../etc/contract.pdf", "application/pdf", caption="read this")
    bot_api.send_voice(ALICE, ALICE, b"OggS voice", duration=7)
    bot_api.send_audio(ALICE, ALICE, b"ID3 song", duration=200, performer="Band", title="Song")
    bot_api.send_video_note(ALICE, ALICE, b"\x00\x00\x00\x18ftypmp42", duration=5)

    async def body(bot: Bot) -> None:
        doc_msg, voice_msg, audio_msg, note_msg = await messages(bot)
        doc = present(doc_msg.document)
        assert (doc.file_name, doc.mime_type, doc.file_size) == ("../../etc/contract.pdf", "application/pdf", len(pdf))
        assert doc_msg.caption == "read this"
        assert await fetch(bot, doc.file_id) == pdf
        served = present((await bot.get_file(doc.file_id)).file_path)
        assert served.startswith(f"{bot_api.base_file_url}{bot_api.token}/")
        voice = present(voice_msg.voice)
        assert voice.mime_type == "audio/ogg"  # (duration: PTB warns on reading it; checked below)
        assert await fetch(bot, voice.file_id) == b"OggS voice"
        audio = present(audio_msg.audio)
        assert (audio.performer, audio.title, audio.mime_type) == ("Band", "Song", "audio/mpeg")
        note = present(note_msg.video_note)
        assert note.length == 240
        assert await fetch(bot, note.file_id) == b"\x00\x00\x00\x18ftypmp42"

    with_bot(bot_api, body)
    durations = [next(iter(m.media.values())).get("duration") for m in bot_api.history(ALICE)]
    assert durations == [None, 7, 200, 5]


def test_replies_quotes_and_forwards_carry_what_they_point_at(bot_api: BotAPI) -> None:
    async def bot_says(bot: Bot) -> Message:
        return await bot.send_message(ALICE, "The capital of France is Paris.")

    bot_msg = with_bot(bot_api, bot_says)
    own = bot_api.send_text(ALICE, ALICE, "my own note")
    reply = bot_api.send_text(ALICE, ALICE, "why?", reply_to=bot_api.bot_messages(ALICE)[0], quote="Paris")
    bot_api.send_text(ALICE, ALICE, "and this", reply_to=own)
    bot_api.send_photo(ALICE, ALICE, make_jpeg(100, 100), caption="see", reply_to=bot_msg.message_id,
                   quote=Quote("capital", position=4, is_manual=False))
    bot_api.send_text(ALICE, ALICE, "fwd one", forward_origin=ForwardOrigin.user(bot_api.bot_user))
    bot_api.send_text(ALICE, ALICE, "fwd two", forward_origin=ForwardOrigin.hidden_user("Mystery"))
    bot_api.send_document(ALICE, ALICE, b"post", "post.txt", "text/plain",
                      forward_origin=ForwardOrigin.channel(-1001, "News", 77, username="news"))
    with pytest.raises(ValueError, match="not in the replied message"):
        bot_api.send_text(ALICE, ALICE, "x", reply_to=own, quote="Paris")
    with pytest.raises(ValueError, match="needs reply_to"):
        bot_api.send_text(ALICE, ALICE, "x", quote="Paris")

    async def body(bot: Bot) -> None:
        got = await messages(bot)
        quoted, to_own, photo_reply, fwd_user, fwd_hidden, fwd_channel = got[1:]
        assert got[0].message_id == own.message_id and quoted.message_id == reply.message_id
        replied = present(quoted.reply_to_message)
        assert (replied.message_id, replied.text) == (bot_msg.message_id, "The capital of France is Paris.")
        assert present(replied.from_user).is_bot and replied.reply_to_message is None
        quote = present(quoted.quote)
        assert (quote.text, quote.position, quote.is_manual) == ("Paris", 25, True)
        assert present(to_own.reply_to_message).text == "my own note" and to_own.quote is None
        assert present(photo_reply.quote).is_manual is None and present(photo_reply.quote).position == 4
        origin = fwd_user.forward_origin
        assert isinstance(origin, MessageOriginUser) and origin.sender_user.id == bot_api.bot_user.id
        hidden = fwd_hidden.forward_origin
        assert isinstance(hidden, MessageOriginHiddenUser) and hidden.sender_user_name == "Mystery"
        channel = fwd_channel.forward_origin
        assert isinstance(channel, MessageOriginChannel) and (channel.chat.title, channel.message_id) == ("News", 77)

    with_bot(bot_api, body)


def test_captions_and_replies_to_others_carry_mentions_and_privacy_mode_judges_them(bot_api: BotAPI) -> None:
    bot_api.privacy_mode = True
    bot_api.add_group(GROUP, "Team")
    bot_api.send_photo(GROUP, BOB, make_jpeg(64, 64), caption="hey @vigil_test_bot what is it?")
    bot_api.send_photo(GROUP, BOB, make_jpeg(64, 64), caption="just for @alice")
    bot_api.send_document(GROUP, BOB, b"data", "a.csv", "text/csv")
    bobs = bot_api.send_text(GROUP, BOB, "the deploy broke at 3am")
    bot_api.send_text(GROUP, ALICE, "@vigil_test_bot what does he mean?", reply_to=bobs, quote="deploy broke")

    async def body(bot: Bot) -> None:
        photo, question = await messages(bot)
        (entity,) = photo.caption_entities
        assert (entity.type, photo.parse_caption_entity(entity)) == ("mention", "@vigil_test_bot")
        replied = present(question.reply_to_message)
        assert (present(replied.from_user).id, replied.text) == (BOB, "the deploy broke at 3am")
        assert present(question.quote).text == "deploy broke"

    with_bot(bot_api, body)


# -- what the bot fetches -------------------------------------------------------------------------


def test_get_file_refuses_big_and_unknown_files_and_downloads_check_the_token(bot_api: BotAPI) -> None:
    big_id, _ = bot_api.add_file(bytes(MAX_DOWNLOAD_BYTES + 1), "document", "big.bin")
    ok_id, ok_unique = bot_api.add_file(bytes(MAX_DOWNLOAD_BYTES), "document", "edge.bin")

    async def body(bot: Bot) -> str:
        with pytest.raises(BadRequest, match="File is too big"):
            await bot.get_file(big_id)
        with pytest.raises(BadRequest, match="Invalid file_id"):
            await bot.get_file("no-such-file")
        file = await bot.get_file(ok_id)
        assert (file.file_unique_id, file.file_size) == (ok_unique, MAX_DOWNLOAD_BYTES)
        return present(file.file_path)

    url = with_bot(bot_api, body)
    status, data = http_get(url)
    assert status == 200 and len(data) == MAX_DOWNLOAD_BYTES
    path = url.removeprefix(f"{bot_api.base_file_url}{bot_api.token}/")
    assert http_get(f"{bot_api.base_file_url}999:WRONG/{path}")[0] == 401
    assert http_get(f"{bot_api.base_file_url}{bot_api.token}/documents/nothing.bin")[0] == 404

    async def missing(bot: Bot) -> None:
        file = File(ok_id, ok_unique, file_path=f"{bot_api.base_file_url}{bot_api.token}/documents/nothing.bin")
        file.set_bot(bot)
        with pytest.raises(InvalidToken, match="Not Found"):
            await file.download_to_memory(io.BytesIO())

    with_bot(bot_api, missing)
    assert [d.status for d in bot_api.downloads] == [200, 401, 404, 404]


# -- what the bot sends ---------------------------------------------------------------------------


def test_held_downloads_wait_until_released(bot_api: BotAPI) -> None:
    data = b"%PDF-1.4 a slow one"
    bot_api.send_document(ALICE, ALICE, data, "slow.pdf", "application/pdf")
    bot_api.hold_downloads()

    async def body(bot: Bot) -> None:
        (msg,) = await messages(bot)
        download = asyncio.ensure_future(fetch(bot, present(msg.document).file_id))
        await bot_api.wait_for_async(lambda: bot_api.downloads_waiting == 1, message="the download held")
        assert not download.done() and bot_api.downloads == []
        bot_api.hold_downloads(False)
        assert await download == data

    with_bot(bot_api, body)
    assert bot_api.downloads_waiting == 0 and [d.status for d in bot_api.downloads] == [200]


def test_send_photo_uploads_resends_and_limits(bot_api: BotAPI) -> None:
    photo = make_png(1200, 900, (9, 9, 9))
    bot_api.add_group(-1_001_234_567_890, "Forum", supergroup=True, forum=True)

    async def body(bot: Bot) -> None:
        msg = await bot.send_photo(ALICE, photo, caption="<b>chart</b>", parse_mode=ParseMode.HTML,
                                   filename="chart.png")
        assert msg.caption == "chart" and [(s.width, s.height) for s in msg.photo][-1] == (1200, 900)
        assert await fetch(bot, msg.photo[-1].file_id) == photo
        again = await bot.send_photo(ALICE, msg.photo[-1].file_id)
        assert [s.file_id for s in again.photo] == [s.file_id for s in msg.photo]
        with pytest.raises(BadRequest, match="too big for a photo; the maximum size is 10485760 bytes"):
            await bot.send_photo(ALICE, make_jpeg(100, 100, size=MAX_PHOTO_BYTES + 1))
        await bot.send_photo(ALICE, make_jpeg(100, 100, size=MAX_PHOTO_BYTES))  # the limit itself is fine
        with pytest.raises(BadRequest, match="Photo_invalid_dimensions"):
            await bot.send_photo(ALICE, make_png(8000, 2001))
        with pytest.raises(BadRequest, match="Photo_invalid_dimensions"):
            await bot.send_photo(ALICE, make_png(2100, 100))
        await bot.send_photo(ALICE, make_png(2000, 100))  # ratio 20 exactly
        with pytest.raises(BadRequest, match="Image_process_failed"):
            await bot.send_photo(ALICE, b"GIF? no, plain text", filename="x.gif")
        with pytest.raises(BadRequest, match="Failed to get http url content"):
            await bot.send_photo(ALICE, "https://example.com/cat.jpg")
        with pytest.raises(BadRequest, match="Wrong file identifier/http url specified"):
            await bot.send_photo(ALICE, "AgACAgIAAxkBAAI-unknown")
        doc = await bot.send_document(ALICE, b"not a photo", filename="a.txt")
        with pytest.raises(BadRequest, match="Type of file mismatch"):
            await bot.send_photo(ALICE, present(doc.document).file_id)
        with pytest.raises(BadRequest, match="Message caption is too long"):
            await bot.send_photo(ALICE, photo, caption="c" * 1025)
        with pytest.raises(BadRequest, match="Message thread not found"):
            await bot.send_photo(-1_001_234_567_890, photo, message_thread_id=99)

    with_bot(bot_api, body)
    first, again, limit, ratio = bot_api.photos
    assert (image_info(ratio.content) or None, ratio.chat_id) == (image_info(make_png(2000, 100)), ALICE)
    assert (first.chat_id, first.filename, first.content, first.caption) == (ALICE, "chart.png", photo, "chart")
    assert (first.mime_type, first.raw_caption, first.parse_mode) == ("image/png", "<b>chart</b>", "HTML")
    assert again.content == photo and len(limit.content) == MAX_PHOTO_BYTES
    assert [u.kind for u in bot_api.uploads] == ["photo", "photo", "photo", "photo", "document"]


def test_big_bot_photos_get_a_2560_largest_size(bot_api: BotAPI) -> None:
    async def body(bot: Bot) -> None:
        msg = await bot.send_photo(ALICE, make_jpeg(4000, 3000))
        assert [(s.width, s.height) for s in msg.photo][-1] == (2560, 1920)

    with_bot(bot_api, body)


def test_documents_over_50_mb_are_refused_with_413(bot_api: BotAPI) -> None:
    async def body(bot: Bot) -> None:
        with pytest.raises(NetworkError, match="Request Entity Too Large"):
            await bot.send_document(ALICE, bytes(50 * 1024 * 1024 + 1), filename="huge.bin")
        msg = await bot.send_document(ALICE, b"x" * 10, filename="small.bin")
        again = await bot.send_document(ALICE, present(msg.document).file_id, caption="again")
        assert present(again.document).file_id == present(msg.document).file_id

    with_bot(bot_api, body)
    assert [(d.filename, d.content, d.caption) for d in bot_api.documents] == [
        ("small.bin", b"x" * 10, None),
        ("small.bin", b"x" * 10, "again"),
    ]


# -- drafts ---------------------------------------------------------------------------------------


def test_message_drafts_in_private_chats_are_recorded_with_their_time(
    bot_api: BotAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # RetryAfter.retry_after as a timedelta, without a warning
    bot_api.add_group(GROUP, "Team")

    async def body(bot: Bot) -> None:
        assert await bot.send_message_draft(ALICE, 7, "") is True  # "Thinking…"
        assert await bot.send_message_draft(ALICE, 7) is True
        assert await bot.send_message_draft(ALICE, 7, "The <b>first</b> words", parse_mode=ParseMode.HTML)
        assert await bot.send_message_draft(ALICE, 7, "The first words and more")
        with pytest.raises(BadRequest, match="Textdraft_peer_invalid"):
            await bot.send_message_draft(GROUP, 7, "in a group")
        with pytest.raises(BadRequest, match="Draft_id must be non-zero"):
            await bot.send_message_draft(ALICE, 0, "zero")
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message_draft(ALICE, 7, "x" * 4097)
        assert await bot.send_message_draft(ALICE, 7, "<b>y</b>" * 4096, parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match="Can't parse entities"):
            await bot.send_message_draft(ALICE, 7, "<b>open", parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match="Message thread not found"):
            await bot.send_message_draft(ALICE, 7, "topic", message_thread_id=5)
        bot_api.flood(method="sendMessageDraft", retry_after=3)
        with pytest.raises(RetryAfter):
            await bot.send_message_draft(ALICE, 7, "flooded")

    with_bot(bot_api, body)
    drafts = bot_api.drafts(ALICE, 7)
    assert [d.text for d in drafts] == ["", "", "The first words", "The first words and more", "y" * 4096]
    assert drafts[2].entities == [("bold", 4, 5)] and drafts[2].raw == "The <b>first</b> words"
    assert all(a.time <= b.time for a, b in itertools.pairwise(drafts))
    assert bot_api.wait_for_draft(ALICE, "first", timeout=1) is not None
    assert bot_api.history(ALICE) == [] and bot_api.bot_messages(ALICE) == []


def test_blocked_users_refuse_drafts(bot_api: BotAPI) -> None:
    bot_api.block(ALICE)

    async def body(bot: Bot) -> Any:
        with pytest.raises(Exception, match="blocked"):
            await bot.send_message_draft(ALICE, 1, "hi")

    with_bot(bot_api, body)
    assert bot_api.drafts() == []
