"""Several conversations per chat (/new, /resume, /title) and message edits, through `vigil run`.

The real PTB and anthropic SDK talk to the stand-ins: what the model saw is read from the Messages API
stand-in's recorded requests, what the chat saw from the Bot API stand-in.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.rig import BOT, Rig
from tests.standins.bot_api import SentMessage

pytestmark = pytest.mark.e2e

OUTSIDER_ID = 5101


def buttons(message: SentMessage) -> list[dict[str, Any]]:
    return [b for row in (message.reply_markup or {}).get("inline_keyboard", []) for b in row]


def resume_button(listing: SentMessage, number: int) -> str:
    """The callback data of the /resume list's button for conversation #number."""
    return next(str(b["callback_data"]) for b in buttons(listing) if str(b["text"]).startswith(f"#{number} "))


def after(rig: Rig, chat_id: int, sent: SentMessage, needle: str) -> SentMessage:
    """Waits for a bot message after the bot's own message `sent` that contains `needle`."""
    def found() -> SentMessage | None:
        return next((m for m in rig.bot.bot_messages(chat_id) if m.message_id > sent.message_id and needle in m.text),
                    None)

    return rig.bot.wait_for(found, 10, f"a reply containing {needle!r} after message {sent.message_id}")


def test_after_new_and_three_turns_resume_carries_the_first_conversations_history_not_the_seconds(rig: Rig) -> None:
    """The issue's done-when: /resume to the first conversation; the next request carries its history only."""
    rosa = rig.person("Rosa")
    rig.ask(rosa.id, rosa, "my cat is called Pimento", "echo: my cat is called Pimento")
    rig.ask(rosa.id, rosa, "/new", "Fresh conversation started (#2)")
    for word in ("alpha", "bravo", "charlie"):
        rig.ask(rosa.id, rosa, f"second talk {word}", f"echo: second talk {word}")

    listing = rig.ask(rosa.id, rosa, "/resume", "Earlier conversations")
    assert "#1 «my cat is called Pimento» — 1 turns" in listing.text, listing.text
    query = rig.bot.press_button(rosa.id, rosa.id, listing.message_id, resume_button(listing, 1))
    back = after(rig, rosa.id, listing, "Back to conversation #1")
    assert rig.bot.callback_query(query.id).answered
    assert "#2 «second talk alpha»" in back.text, back.text

    rig.ask(rosa.id, rosa, "what is my cat called", "echo: what is my cat called")
    request = rig.requests_with("what is my cat called")[-1]
    assert "my cat is called Pimento" in request.all_text()
    assert "echo: my cat is called Pimento" in request.all_text()
    assert "second talk" not in request.all_text()

    # And back again, by number: the second conversation's history, not the first's (nor its new turn).
    rig.ask(rosa.id, rosa, "/resume 2", "Back to conversation #2")
    rig.ask(rosa.id, rosa, "which words did I say", "echo: which words did I say")
    request = rig.requests_with("which words did I say")[-1]
    for word in ("alpha", "bravo", "charlie"):
        assert f"second talk {word}" in request.all_text()
    assert "Pimento" not in request.all_text() and "what is my cat called" not in request.all_text()


def test_export_keeps_every_turn_of_both_conversations_after_switching_back_and_forth(rig: Rig) -> None:
    otto = rig.person("Otto")
    rig.ask(otto.id, otto, "one a", "echo: one a")
    rig.ask(otto.id, otto, "one b", "echo: one b")
    rig.ask(otto.id, otto, "/new", "Fresh conversation")
    rig.ask(otto.id, otto, "two a", "echo: two a")
    rig.ask(otto.id, otto, "/resume 1", "Back to conversation #1")
    rig.ask(otto.id, otto, "one c", "echo: one c")
    rig.ask(otto.id, otto, "/resume 2", "Back to conversation #2")
    rig.ask(otto.id, otto, "two b", "echo: two b")
    rig.ask(otto.id, otto, "/new third", "Fresh conversation started (#3 «third»)")
    rig.ask(otto.id, otto, "three a", "echo: three a")

    document = rig.exported(otto)
    said = {g["generation"]: [(t["seq"], t["inputs"][0]["text"]) for t in g["turns"]] for g in document["generations"]}
    assert said == {1: [(0, "one a"), (1, "one b"), (2, "one c")], 2: [(0, "two a"), (1, "two b")],
                    3: [(0, "three a")]}, said
    session = document["session"]
    assert session["generation"] == 3 and session["conversation_title"] == "third"
    earlier = {g["generation"]: (g["title"], g["turns"]) for g in document["conversations"]}
    assert earlier == {1: ("one a", 3), 2: ("two a", 2)}, earlier
    assert session["turns_total"] == 6


def test_titles_come_from_the_first_message_until_title_names_them(rig: Rig) -> None:
    tess = rig.person("Tess")
    rig.ask(tess.id, tess, "/title", "has no title yet")
    rig.ask(tess.id, tess, "Planning the garden beds for next spring, with raised boxes",
            "echo: Planning the garden")
    shown = rig.ask(tess.id, tess, "/title", "This conversation (#1)")
    assert "«Planning the garden beds for next spring,…»" not in shown.text  # cut at a word, without the comma
    assert "«Planning the garden beds for next spring…»" in shown.text, shown.text
    rig.ask(tess.id, tess, "and tomatoes", "echo: and tomatoes")  # a later message does not rename it
    rig.ask(tess.id, tess, "/title", "«Planning the garden beds for next spring…»")

    rig.ask(tess.id, tess, "/title Garden 2026", "is now «Garden 2026»")
    listing = rig.ask(tess.id, tess, "/sessions", "🗂")
    assert "💬 #1 «Garden 2026»" in listing.text, listing.text

    rig.ask(tess.id, tess, "/new", "Fresh conversation started (#2)")
    rig.ask(tess.id, tess, "[replying to you: «x»]\nBike repairs", "echo:")
    listing = rig.ask(tess.id, tess, "/sessions", "🗂")
    assert "💬 #2 «Bike repairs»" in listing.text, listing.text
    earlier = rig.ask(tess.id, tess, "/resume", "Earlier conversations")
    assert "#1 «Garden 2026» — 2 turns" in earlier.text, earlier.text
    assert [b["text"] for b in buttons(earlier)] == ["#1 Garden 2026"]


def test_a_resume_button_for_a_conversation_that_is_gone_says_so(rig: Rig) -> None:
    gus = rig.person("Gus")
    rig.ask(gus.id, gus, "old days", "echo: old days")
    rig.ask(gus.id, gus, "/new", "Fresh conversation")
    rig.ask(gus.id, gus, "newer days", "echo: newer days")
    listing = rig.ask(gus.id, gus, "/resume", "Earlier conversations")
    stale = resume_button(listing, 1)
    assert len(stale.encode()) <= 64

    ask = rig.ask(gus.id, gus, "/forget", "cannot be undone")
    rig.bot.press_button(gus.id, gus.id, ask.message_id, f"forget:{gus.id}:tg:{gus.id}")
    rig.bot.wait_for_bot_text(gus.id, "🗑 Forgotten")
    rig.ask(gus.id, gus, "fresh start", "echo: fresh start")
    # A new #1 exists now: the old button must not reach it.
    rig.ask(gus.id, gus, "/new", "Fresh conversation started (#2)")

    rig.bot.press_button(gus.id, gus.id, listing.message_id, stale)
    gone = after(rig, gus.id, listing, "no longer exists")
    assert "Back to" not in gone.text
    rig.ask(gus.id, gus, "/resume 7", "Conversation #7 no longer exists")
    rig.ask(gus.id, gus, "/resume 2", "is the current conversation already")
    rig.ask(gus.id, gus, "still here?", "echo: still here?")
    request = rig.requests_with("still here?")[-1]
    assert "fresh start" not in request.all_text() and "old days" not in request.all_text()


def test_only_allowed_people_press_a_groups_resume_buttons(rig: Rig) -> None:
    member = rig.person("Mira")
    outsider = rig.bot.add_user(OUTSIDER_ID, "Oscar", "oscar")
    group = rig.group("Mira's club")
    rig.ask(group.id, member, f"@{BOT} club plans", "club plans")
    rig.ask(group.id, member, "/new", "Fresh conversation")
    rig.ask(group.id, member, f"@{BOT} other plans", "other plans")
    listing = rig.ask(group.id, member, "/resume", "Earlier conversations")
    query = rig.bot.press_button(group.id, outsider.id, listing.message_id, resume_button(listing, 1))
    rig.bot.wait_for(lambda: rig.bot.callback_query(query.id).answered or None, 5, "the outsider's press answered")
    assert "private" in (rig.bot.callback_query(query.id).answer_text or "")
    rig.ask(group.id, member, "/title", "This conversation (#2)")  # the outsider's press switched nothing


def test_an_edit_before_the_answer_replaces_the_message(rig: Rig) -> None:
    """Edited while queued behind a running turn: the model sees only the edited text."""
    ella = rig.person("Ella")
    rig.say(ella.id, ella, "[[delay=2]] think first")
    rig.wait_request("think first")
    draft = rig.say(ella.id, ella, "meet at the old bridge")
    rig.bot.edit_message(ella.id, ella.id, draft.message_id, text="meet at the new bridge")
    rig.answer(ella.id, draft, "echo: meet at the new bridge")
    request = rig.requests_with("meet at the new bridge")[-1]
    assert "old bridge" not in json.dumps(request.body), "the text before the edit reached the model"
    assert not rig.requests_with("old bridge")
    assert not rig.requests_with("edited their earlier message")


def test_an_edit_after_the_answer_is_a_marked_correction_in_a_new_turn(rig: Rig) -> None:
    carl = rig.person("Carla")
    sent = rig.say(carl.id, carl, "the capital of Australia is Sydney")
    rig.answer(carl.id, sent, "echo: the capital of Australia is Sydney")
    rig.bot.edit_message(carl.id, carl.id, sent.message_id, text="the capital of Australia is Canberra")
    corrected = rig.answer(carl.id, sent, "the capital of Australia is Canberra")
    assert "[edited their earlier message «the capital of Australia is Sydney» to:]" in corrected.text
    request = rig.requests_with("Canberra")[-1]
    assert request.last_user_text().startswith("[edited their earlier message «the capital of Australia is Sydney»")
    assert "echo: the capital of Australia is Sydney" in request.all_text(), "the first answer stays history"
    assert len(rig.requests_with("Canberra")) == 1


def test_edits_of_outsiders_and_of_commands_are_ignored(rig: Rig) -> None:
    member = rig.person("Nadia")
    outsider = rig.bot.add_user(OUTSIDER_ID + 1, "Olaf", "olaf")
    group = rig.group("Nadia's group")
    said = rig.say(group.id, outsider, f"@{BOT} let me in")
    refusal = rig.answer(group.id, said, "private")
    rig.bot.edit_message(group.id, outsider.id, said.message_id, text=f"@{BOT} let me in, sneakily edited")
    command = rig.say(group.id, member, "/title Club")
    rig.answer(group.id, command, "is now «Club»")
    rig.bot.edit_message(group.id, member.id, command.message_id, text="/title Hijacked")
    plain = rig.say(member.id, member, "plain words")
    rig.answer(member.id, plain, "echo: plain words")
    rig.bot.edit_message(member.id, member.id, plain.message_id, text="/model claude-hijack-1")
    # Updates of a chat are handled in order: once these are answered, every edit above was handled.
    rig.ask(group.id, member, f"@{BOT} barrier", "barrier")
    rig.ask(member.id, member, "private barrier", "echo: private barrier")
    assert f'"user_id": {outsider.id}' in rig.running().err.wait_for(
        lambda t: '"telegram.edit_refused"' in t, what="the outsider's edit refused"), "refused in the adapter"
    assert not any("sneakily" in r.all_text() or "hijack" in r.all_text().lower() for r in list(rig.api.requests))
    assert [m.text for m in rig.replies(group.id, said) if "private" in m.text] == [refusal.text]
    rig.ask(group.id, member, "/title", "«Club»")
    rig.ask(member.id, member, "/model", "Model for this chat: claude-sonnet")
