"""Who may do what in a shared chat, end to end: `vigil run` against the stand-ins (vigil/policy/roles.py).

In a group, members talk and use what is theirs; settings and deletion are for an admin of either kind:
a vigil admin (VIGIL_ADMIN_USERS) or the group's own Telegram admin, whom vigil learns from Telegram
(getChatAdministrators). A member's reminder is theirs, whoever else wrote in the turn that made it, and
nobody else's command, button or Claude's tool removes it. Every button press is answered exactly once.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import pytest

from tests.rig import BOT, Rig
from tests.standins.bot_api import CallbackQuery, SentMessage, User
from tests.standins.messages_api import ToolCall, ToolUseReply
from tests.standins.messages_api.content import current_turn_text
from tests.test_approve_e2e import button
from tests.test_sched_e2e import button_of, result_text, tool_results
from tests.test_tools_e2e import tool

pytestmark = pytest.mark.e2e

RIG_SETTINGS = {"VIGIL_TOOL_MODE": "ask"}


def answered(rig: Rig, query: CallbackQuery) -> CallbackQuery:
    return rig.bot.wait_for(lambda: q if (q := rig.bot.callback_query(query.id)).answered else None, 15,
                            "the answer to a button press")


def stored(rig: Rig, key: str) -> bool:
    return f"{key} " in rig.sessions_list()


def answered_once(rig: Rig) -> None:
    """Telegram refuses a second answerCallbackQuery for one press: vigil never sends one."""
    assert not rig.bot.failed_calls("answerCallbackQuery"), rig.bot.failed_calls("answerCallbackQuery")


# ------------------------------------------------------------------------------------------------ settings, deletion


def test_a_member_changes_and_deletes_nothing_and_the_groups_telegram_admin_can(rig: Rig) -> None:
    group = rig.group("Shared team")
    gwen, tom = rig.person("Gwen"), rig.person("Tom")
    rig.bot.promote(group.id, tom.id)  # the group's own admin, not a vigil admin
    key = f"tg:{group.id}"
    rig.ask(group.id, gwen, f"@{BOT} our history", "our history")

    refusal = rig.ask(group.id, gwen, "/mode auto", "⛔").text
    assert refusal == ("⛔ Only this group's admins or a vigil admin can change the permission mode "
                       "(/mode ask|auto|readonly) here.")
    assert "Mode for this chat: ask" in rig.ask(group.id, gwen, "/mode", "🔐").text, "reading is everyone's"
    assert "Only this group's admins" in rig.ask(group.id, gwen, "/forget", "⛔").text
    time.sleep(1.2)  # real idle time: the session is older than the cleanup's 1 s
    assert "Only this group's admins" in rig.ask(group.id, gwen, "/sessions cleanup 1s yes", "⛔").text
    for command in ("/model claude-opus-4-1", "/heartbeat every 5m", "/cd /", "/notes clear", "/pin", "/compact"):
        assert "Only this group's admins" in rig.ask(group.id, gwen, command, "⛔").text, command
    assert "Heartbeat" in rig.ask(group.id, gwen, "/heartbeat status", "🫀").text
    assert stored(rig, key), "a member deleted nothing"

    assert "Mode for this chat: auto" in rig.ask(group.id, tom, "/mode auto", "Done.").text
    prompt = rig.ask(group.id, tom, "/forget", "cannot be undone")
    # The prompt's Cancel is Tom's (or an admin's): Gwen's press is refused and the prompt stays.
    refusal_press = answered(rig, rig.bot.press_button(group.id, gwen.id, prompt.message_id, f"cancel:{tom.id}"))
    assert refusal_press.show_alert and "Only the person who asked for it or an admin" in (refusal_press.answer_text
                                                                                         or "")
    assert rig.message(group.id, prompt.message_id).reply_markup is not None
    rig.bot.press_button(group.id, tom.id, prompt.message_id, f"forget:{tom.id}:{key}")
    rig.bot.wait_for_bot_text(group.id, "🗑 Forgotten")
    assert not stored(rig, key)

    rig.ask(group.id, gwen, f"@{BOT} history again", "history again")
    time.sleep(1.2)
    rig.ask(group.id, tom, "/sessions cleanup 1s yes", "Deleted 1 session(s)")
    assert not stored(rig, key)
    asked = [c for c in rig.bot.calls if c.method == "getChatAdministrators" and str(group.id) == str(c.params.get(
        "chat_id"))]
    assert len(asked) == 1, "Telegram is asked once, then its answer is kept for a while"
    answered_once(rig)


def test_the_telegram_admin_of_a_forum_decides_in_every_topic_and_a_demotion_counts(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    forum = rig.bot.add_group(rig.group_id(supergroup=True), "Forum", forum=True)
    topic = rig.bot.create_topic(forum.id, "Plans")
    uma = rig.person("Uma")
    rig.bot.promote(forum.id, uma.id)
    rig.ask(forum.id, uma, "/mode readonly", "Done.", thread=topic)
    rig.ask(forum.id, uma, "/pin", "📌")  # the General topic: another session of the same group
    assert [c.params.get("message_thread_id") for c in rig.bot.calls if c.method == "getChatAdministrators"] == \
        [None], "one question about the whole forum, no topic in it"
    rig.bot.demote(forum.id, uma.id)
    rig.stop()  # a restart forgets what Telegram said (it is kept in memory, two minutes at most)
    rig.start()
    assert "Only this group's admins" in rig.ask(forum.id, uma, "/mode auto", "⛔", thread=topic).text


def test_group_settings_members_keeps_the_old_way(fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_GROUP_SETTINGS="members")
    group = rig.group("Easygoing")
    vic, wes = rig.person("Vic"), rig.person("Wes")
    rig.ask(group.id, vic, f"@{BOT} hello", "hello")
    assert "Mode for this chat: auto" in rig.ask(group.id, vic, "/mode auto", "Done.").text
    assert not [c for c in rig.bot.calls if c.method == "getChatAdministrators"], "no need to ask Telegram"
    # What belongs to someone stays theirs: Wes can't take Vic's prompt away.
    prompt = rig.ask(group.id, vic, "/forget", "cannot be undone")
    refusal = answered(rig, rig.bot.press_button(group.id, wes.id, prompt.message_id, f"cancel:{vic.id}"))
    assert refusal.show_alert


def test_an_anonymous_admin_counts_as_the_groups_admin(fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_ALLOWED_USERS="*")
    group = rig.group("Quiet chair")
    ann = rig.person("Ann")
    rig.bot.promote(group.id, ann.id, anonymous=True, title="chair")
    sent = rig.bot.send_text(group.id, ann.id, "/mode readonly", as_group=True)
    assert "Mode for this chat: readonly" in rig.answer(group.id, sent, "Done.").text


def test_an_anonymous_admin_is_told_why_where_the_list_decides(rig: Rig) -> None:
    group = rig.group("Anonymous chair")
    ann = rig.person("Ann")
    rig.bot.promote(group.id, ann.id, anonymous=True)
    sent = rig.bot.send_text(group.id, ann.id, "/mode auto", as_group=True)
    assert "can't tell who you are" in rig.answer(group.id, sent, "anonymous admin").text
    assert not stored(rig, f"tg:{group.id}")


# ------------------------------------------------------------------------------------------------ schedules


def test_a_members_reminder_from_a_collected_turn_is_theirs_and_paid_by_them(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    group = rig.group("Standup")
    bob, cat = rig.person("Bob"), rig.person("Cat")
    admin = rig.admin  # a vigil admin: exempt from budgets
    marker = "remind me hourly to stretch"
    rig.api.add_rule(lambda body: marker in current_turn_text(body)
                     and body["messages"][-1]["content"][0].get("type") != "tool_result",
                     lambda body: ToolUseReply(calls=[ToolCall("schedule", {"action": "create", "every": "FREQ=HOURLY",
                                                                             "text": "stretch"})]), times=1)
    first = rig.say(group.id, bob, f"@{BOT} a slow question [[slow=3]]")
    rig.bot.wait_for(lambda: rig.requests_with("a slow question") or None, 10, "Bob's first turn running")
    rig.say(group.id, bob, f"@{BOT} {marker}")
    rig.say(group.id, admin, f"@{BOT} ok")  # written while Bob's turn runs: the same collected turn
    rig.answer(group.id, first, "tool results", timeout=30)
    [made] = tool_results(rig, marker)
    sid = re.match(r"created ([a-z0-9]{6}):", result_text(made))
    assert sid and not made.get("is_error"), made
    collected = rig.requests_with(marker)[0]
    assert "ok" in current_turn_text(collected.body), "the admin's words were in the same turn"

    rig.say(group.id, bob, "/export")
    document = rig.bot.wait_for(lambda: next((d for d in rig.bot.documents if d.chat_id == group.id), None), 10,
                                "the group's export")
    [schedule] = json.loads(document.content)["session"]["schedules"]
    assert (schedule["owner"], schedule["owner_name"]) == (bob.id, "Bob")
    usage = rig.ask(admin.id, admin, "/usage", "💰").text
    assert f"user {bob.id}" in usage and f"user {admin.id}" not in usage, usage

    # Nobody else's command, button or Claude's tool removes it.
    refusal = rig.ask(group.id, cat, f"/schedules cancel {sid.group(1)}", "⛔").text
    assert refusal == f"⛔ Only Bob or an admin of this group can cancel {sid.group(1)}."
    listing = rig.ask(group.id, cat, "/schedules", "⏰")
    press = answered(rig, rig.bot.press_button(group.id, cat.id, listing.message_id, button_of(listing, sid.group(1))))
    assert press.show_alert and "Only Bob" in (press.answer_text or "")
    asked = f"please cancel it {tool('schedule', action='cancel', id=sid.group(1))}"
    rig.ask(group.id, cat, f"@{BOT} {asked}", "tool results", timeout=30)
    [cancel] = tool_results(rig, "please cancel it")
    assert cancel.get("is_error") is True and "cancel refused: Only Bob or an admin of this group can cancel" in \
        result_text(cancel), cancel
    assert sid.group(1) in rig.ask(group.id, bob, "/schedules", "⏰").text, "still there"
    # Bob himself may, through Claude too.
    mine = f"cancel mine {tool('schedule', action='cancel', id=sid.group(1))}"
    rig.ask(group.id, bob, f"@{BOT} {mine}", "tool results", timeout=30)
    [done] = tool_results(rig, "cancel mine")
    assert not done.get("is_error") and result_text(done).startswith(f"cancelled {sid.group(1)}"), done
    answered_once(rig)


# ------------------------------------------------------------------------------------------------ buttons


def test_a_resume_button_is_answered_once(rig: Rig) -> None:
    ida = rig.person("Ida")
    rig.ask(ida.id, ida, "the first conversation", "echo: the first conversation")
    rig.ask(ida.id, ida, "/new", "Fresh conversation")
    listing = rig.ask(ida.id, ida, "/resume", "Earlier conversations")
    buttons = [b for row in (listing.reply_markup or {}).get("inline_keyboard", []) for b in row]
    query = rig.bot.press_button(ida.id, ida.id, listing.message_id, str(buttons[0]["callback_data"]))
    rig.bot.wait_for_bot_text(ida.id, "Back to conversation #1")
    assert answered(rig, query).answer_text == "Switching conversation…"
    rig.ask(ida.id, ida, "/status", "📊")  # handled after the press: any second answer would have been sent
    answered_once(rig)


def test_every_kind_of_button_is_answered_once(rig: Rig) -> None:
    jo = rig.person("Jo")
    group = rig.group("Buttons")
    rig.bot.promote(group.id, jo.id)
    rig.ask(group.id, jo, f"@{BOT} something", "something")
    presses: list[tuple[SentMessage, User, str]] = []
    listing = rig.ask(group.id, jo, "/sessions", "🗂")
    presses.append((listing, jo, "sessions:cleanup:86400"))
    forget = rig.ask(group.id, jo, "/forget", "cannot be undone")
    presses.append((forget, jo, f"cancel:{jo.id}"))
    for message, user, data in presses:
        answered(rig, rig.bot.press_button(group.id, user.id, message.message_id, data))
    rig.ask(group.id, jo, "/status", "📊")
    answered_once(rig)


def test_the_groups_telegram_admin_answers_a_members_prompt_and_another_member_cannot(rig: Rig) -> None:
    group = rig.group("Shared files")
    gina, hal, tom = rig.person("Gina"), rig.person("Hal"), rig.person("Tom")
    rig.bot.promote(group.id, tom.id)
    marker = "write our plan"
    rig.api.add_rule(lambda body: marker in current_turn_text(body)
                     and body["messages"][-1]["content"][0].get("type") != "tool_result",
                     ToolUseReply(calls=[ToolCall("str_replace_based_edit_tool", {
                         "command": "create", "path": "plan.txt", "file_text": "step one\n"})]), times=1)
    sent = rig.say(group.id, gina, f"@{BOT} {marker}")
    prompt = rig.bot.wait_for(lambda: next((m for m in rig.bot.bot_messages(group.id)
                                            if m.message_id > sent.message_id and "🔐" in m.text and m.reply_markup),
                                           None), 30, "the approval prompt")
    refusal = answered(rig, rig.bot.press_button(group.id, hal.id, prompt.message_id, button(prompt, "Allow")))
    assert refusal.show_alert and (refusal.answer_text or "").startswith("Only Gina")
    deny = rig.bot.press_button(group.id, tom.id, prompt.message_id, button(prompt, "Deny"))
    assert answered(rig, deny).answer_text == "Denied."
    rig.edited_to(group.id, prompt.message_id, "❌ Denied by Tom", timeout=15)
    answered_once(rig)


def test_a_member_cleans_up_only_their_own_chats_and_not_with_a_groups_button(rig: Rig) -> None:
    group = rig.group("Members' club")
    kim = rig.person("Kim")
    rig.ask(group.id, kim, f"@{BOT} club talk", "club talk")
    rig.ask(kim.id, kim, "my own talk", "echo: my own talk")
    listing = rig.ask(group.id, kim, "/sessions", "🗂")
    refusal = answered(rig, rig.bot.press_button(group.id, kim.id, listing.message_id, "sessions:cleanup:86400"))
    assert refusal.show_alert and "Only this group's admins" in (refusal.answer_text or "")
    time.sleep(1.2)  # real idle time: both sessions are older than the cleanup's 1 s
    mine = rig.ask(kim.id, kim, "/sessions cleanup 1s", "🧹").text
    assert f"tg:{kim.id}" in mine and f"tg:{group.id}" not in mine, mine
    answered_once(rig)
