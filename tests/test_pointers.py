"""What a message points at (adapters/telegram/receive/pointers.py), on Messages parsed by PTB from Bot API JSON."""

from __future__ import annotations

from typing import Any

from telegram import Message

from vigil.adapters.telegram.receive.pointers import QUOTE_CHARS, context_lines, reply_line, trimmed

BOT_ID = 42
ANN = {"id": 7, "is_bot": False, "first_name": "Ann", "last_name": "Lee"}
BOB = {"id": 8, "is_bot": False, "first_name": "Bob"}
BOT = {"id": BOT_ID, "is_bot": True, "first_name": "Vigil", "username": "vigil_bot"}
GROUP = {"id": -100, "type": "supergroup", "title": "Ops"}


def message(**fields: Any) -> Message:
    data: dict[str, Any] = {"message_id": 10, "date": 1_700_000_000, "chat": GROUP, "from": BOB, "text": "hm?"}
    data.update(fields)
    parsed = Message.de_json(data, None)
    assert parsed is not None
    return parsed


def replied(**fields: Any) -> dict[str, Any]:
    return {"message_id": 5, "date": 1_699_999_000, "chat": GROUP, **fields}


def test_a_plain_message_points_at_nothing() -> None:
    assert context_lines(message(), BOT_ID) == ""


def test_a_reply_to_another_member_brings_their_words() -> None:
    line = reply_line(message(reply_to_message=replied(**{"from": ANN, "text": "the deploy failed at step 3"})),
                      BOT_ID)
    assert line == "[replying to Ann Lee: «the deploy failed at step 3»]"


def test_a_reply_to_the_bot_and_to_ones_own_message() -> None:
    to_bot = message(reply_to_message=replied(**{"from": BOT, "text": "Run the migration first."}))
    assert reply_line(to_bot, BOT_ID) == "[replying to you: «Run the migration first.»]"
    own = message(reply_to_message=replied(**{"from": BOB, "text": "note to self"}))
    assert reply_line(own, BOT_ID) == "[replying to their own message: «note to self»]"


def test_a_quote_is_preferred_to_the_whole_message() -> None:
    quoting = message(reply_to_message=replied(**{"from": BOT, "text": "First do A. Then do B. Never do C."}),
                      quote={"text": "Then do B.", "position": 12, "is_manual": True})
    assert reply_line(quoting, BOT_ID) == "[replying to you, quoting: «Then do B.»]"


def test_media_in_the_replied_to_message_is_named_with_its_caption() -> None:
    photo = [{"file_id": "p1", "file_unique_id": "u1", "width": 90, "height": 90}]
    line = reply_line(message(reply_to_message=replied(**{"from": ANN, "photo": photo, "caption": "the error"})),
                      BOT_ID)
    assert line == "[replying to Ann Lee's photo: «the error»]"
    bare = reply_line(message(reply_to_message=replied(**{"from": BOT, "document": {
        "file_id": "d1", "file_unique_id": "u2", "file_name": "x.pdf"}})), BOT_ID)
    assert bare == "[replying to your file]"


def test_a_long_replied_to_text_is_trimmed_to_one_line() -> None:
    long = "word " * 400
    line = reply_line(message(reply_to_message=replied(**{"from": ANN, "text": "x\n\n" + long})), BOT_ID)
    quoted = line.split("«", 1)[1].rsplit("»", 1)[0]
    assert len(quoted) <= QUOTE_CHARS + 1 and quoted.endswith("…") and "\n" not in quoted
    assert trimmed("short") == "short"


def test_the_start_of_a_forum_topic_is_not_a_reply() -> None:
    start = replied(**{"from": ANN, "forum_topic_created": {"name": "Deploys", "icon_color": 7322096}})
    assert context_lines(message(reply_to_message=start, message_thread_id=5, is_topic_message=True), BOT_ID) == ""


def test_forwards_are_marked_with_their_origin() -> None:
    user = message(forward_origin={"type": "user", "date": 1_699_000_000, "sender_user": ANN})
    assert context_lines(user, BOT_ID) == "[forwarded from Ann Lee]"
    hidden = message(forward_origin={"type": "hidden_user", "date": 1_699_000_000, "sender_user_name": "Zed"})
    assert context_lines(hidden, BOT_ID) == "[forwarded from Zed]"
    channel = message(forward_origin={"type": "channel", "date": 1_699_000_000, "message_id": 3,
                                      "chat": {"id": -1009, "type": "channel", "title": "Status"},
                                      "author_signature": "Ops team"})
    assert context_lines(channel, BOT_ID) == "[forwarded from Status (Ops team)]"


def test_a_forwarded_reply_has_both_lines_forward_first() -> None:
    both = message(forward_origin={"type": "user", "date": 1_699_000_000, "sender_user": ANN},
                   reply_to_message=replied(**{"from": BOT, "text": "done"}))
    assert context_lines(both, BOT_ID) == "[forwarded from Ann Lee]\n[replying to you: «done»]"


def test_a_reply_to_a_message_of_another_chat_names_its_origin_and_quote() -> None:
    external = message(external_reply={"origin": {"type": "user", "date": 1_699_000_000, "sender_user": ANN}},
                       quote={"text": "ship it", "position": 0})
    assert reply_line(external, BOT_ID) == "[replying to Ann Lee, quoting: «ship it»]"
