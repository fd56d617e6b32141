"""End to end on Telegram: `vigil run` as a subprocess against the Bot API and Messages API stand-ins.

Most tests share one running vigil (module-scoped `shared` rig) and stay independent of each other
by using their own users, chats and words; tests that need other settings, inject faults that are
not scoped to one chat, or restart vigil get a `fresh` rig of their own. Every wait is on a
condition with a timeout; the few real sleeps are for real elapsed time (a session going idle).
The rig itself is in `tests/rig.py`, its fixtures in `tests/conftest.py`.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.rig import BOT, TELEGRAM_LIMIT, Rig, squash, undelivered, utf16_units
from tests.standins.bot_api import SentMessage
from tests.standins.messages_api import TextReply, filler_text

pytestmark = pytest.mark.e2e

OUTSIDER_ID = 5001
COMMAND_NAMES = ("start", "help", "new", "status", "sessions", "cd", "pwd", "model", "heartbeat", "notes",
                 "usage", "stop", "export", "forget", "resume", "title", "pin",
                 "mode", "compact", "schedules", "search", "think", "mcp", "skills")


def spaced(text: str) -> str:
    """Whitespace runs collapsed to one space."""
    return " ".join(text.split())


def assert_html_fallbacks_were_plain(rig: Rig, chat_id: int) -> None:
    """A refused HTML attempt may be followed by a plain resend, which must have succeeded."""
    calls = rig.text_calls(chat_id)
    for index, call in enumerate(calls):
        if call.ok or "can't parse entities" not in (call.description or ""):
            continue
        retry = next((c for c in calls[index + 1:] if c.method == call.method
                      and c.params.get("message_id") == call.params.get("message_id")), None)
        assert retry is not None and retry.ok and not retry.params.get("parse_mode"), (call, retry)


# ------------------------------------------------------------------------------------------------
# 1-4: a private chat, many chats, long and hostile replies, Markdown
# ------------------------------------------------------------------------------------------------


def test_a_private_chat_gets_one_reply_with_typing(rig: Rig) -> None:
    alice = rig.person("Alice")
    sent = rig.say(alice.id, alice, "hello there, vigil")
    reply = rig.answer(alice.id, sent, "echo: hello there, vigil")
    assert reply.text == "echo: hello there, vigil"
    assert (alice.id, None, "typing") in rig.bot.chat_actions
    assert len(rig.replies(alice.id, sent)) == 1

    # A reply that streams for a few seconds: drafted from its first half second (the first words at
    # once, not after an interval), then sent for good as one message; no message is edited.
    story = filler_text(700)
    sent = rig.say(alice.id, alice, "[[len=700]][[slow=3]] tell me a story")
    asked = wait_for_request(rig, "tell me a story")
    rig.bot.wait_for(lambda: any(squash(m.text) == squash(story) for m in rig.replies(alice.id, sent)),
                     15, "the whole streamed story")
    shown = rig.replies(alice.id, sent)
    assert len(shown) == 1, [m.text[:40] for m in shown]
    assert shown[0].edits == 0, "a private chat's reply is drafted, not edited"
    drafts = [d for d in rig.bot.drafts(alice.id) if d.text and squash(story).startswith(squash(d.text))]
    assert len(drafts) >= 3, f"the reply was drafted while it streamed: {[d.text[:20] for d in drafts]}"
    assert drafts[0].time - asked < 0.5, f"the first words were drafted {drafts[0].time - asked:.2f}s after the call"
    assert len({d.draft_id for d in drafts}) == 1, "one draft id for the reply, so the client animates it"
    grown = [squash(d.text) for d in drafts]
    assert all(squash(story).startswith(g) for g in grown), grown
    assert grown == sorted(grown, key=len) and len(grown[0]) < len(grown[-1]), "the draft grew"
    assert len(grown[0]) < len(squash(story)) // 4, "the first draft came with the first words, not later"
    sends = [c for c in rig.text_calls(alice.id) if c.method == "sendMessage" and c.ok
             and c.result["message_id"] > sent.message_id]
    assert len(sends) == 1
    assert sends[0].time > drafts[-1].time, "no draft follows the message that persists the reply"
    assert not undelivered(rig, alice.id)


def wait_for_request(rig: Rig, words: str, timeout: float = 10.0) -> float:
    """When (monotonic, within ~5 ms) the model call with `words` reached the Messages API stand-in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rig.requests_with(words):
            return time.monotonic()
        time.sleep(0.005)  # polling for the arrival: the stand-in records no time of its own
    raise AssertionError(f"no model request with {words!r} within {timeout}s")


def test_a_group_reply_streams_by_editing_one_message(rig: Rig) -> None:
    group = rig.group("Story circle")
    gus = rig.person("Gus")
    story = filler_text(700)
    sent = rig.say(group.id, gus, f"@{BOT} [[len=700]][[slow=7]] a group story")
    rig.bot.wait_for(lambda: any(squash(m.text) == squash(story) for m in rig.replies(group.id, sent)),
                     20, "the whole streamed story")
    shown = rig.replies(group.id, sent)
    assert len(shown) == 1, [m.text[:40] for m in shown]
    assert shown[0].edits >= 1, "the reply was previewed in place while it streamed"
    assert rig.bot.drafts(group.id) == [], "groups have no drafts"
    assert not rig.bot.failed_calls("sendMessageDraft")
    assert not undelivered(rig, group.id)


def test_five_chats_at_once_each_get_their_own_answer_quickly(rig: Rig) -> None:
    names = ["Anneliese", "Bartholomew", "Cordelia", "Dmitri", "Evangeline"]
    people = [rig.person(name) for name in names]
    started = time.monotonic()
    sent = [rig.say(p.id, p, f"[[delay=2]] hello from {p.first_name}") for p in people]
    for person, message in zip(people, sent, strict=True):
        rig.answer(person.id, message, f"hello from {person.first_name}", timeout=15)
    elapsed = time.monotonic() - started
    assert elapsed < 8, f"five 2 s answers took {elapsed:.1f} s: the chats were not served concurrently"

    for person, message in zip(people, sent, strict=True):
        others = [n for n in names if n != person.first_name]
        texts = [m.text for m in rig.replies(person.id, message)]
        assert texts == [f"echo: [[delay=2]] hello from {person.first_name}"], texts
        mine = rig.requests_with(f"hello from {person.first_name}")
        assert mine
        for request in mine:
            words = request.all_text()
            assert not [n for n in others if n in words], f"{person.first_name}'s request carries another chat"


def test_a_long_reply_arrives_whole_in_messages_that_fit(rig: Rig) -> None:
    lena = rig.person("Lena")
    sent = rig.say(lena.id, lena, "[[len=9500]] the long one")
    expected = filler_text(9500)

    def complete() -> list[SentMessage] | None:
        parts = rig.replies(lena.id, sent)
        return parts if squash("".join(m.text for m in parts)) == squash(expected) else None

    parts = rig.bot.wait_for(complete, 20, "the whole 9500-character reply")
    assert len(parts) >= 3
    assert all(utf16_units(m.text) <= TELEGRAM_LIMIT for m in parts)
    calls = rig.text_calls(lena.id)
    assert not [c for c in calls if "message is too long" in (c.description or "")]
    assert not undelivered(rig, lena.id)


HOSTILE = ("Signs: < > & _ * [ ] and <b>unclosed, a & b, x<y>z, a lone ` backtick, snake_case_name, "
           "2 * 3 * 4, &amp; &lt;tag&gt;\n\n```python\nprint('<b>unclosed & open fence')\nx = a < b")
HOSTILE_PIECES = ("< > & _ * [ ]", "<b>unclosed", "a & b", "x<y>z", "a lone ` backtick", "snake_case_name",
                  "2 * 3 * 4, & <tag>", "print('<b>unclosed & open fence')", "x = a < b")


def test_a_hostile_reply_arrives_whole_and_readable(rig: Rig) -> None:
    hank = rig.person("Hank")
    sent = rig.say(hank.id, hank, f"[[reply={HOSTILE}]] be difficult")

    def complete() -> str | None:
        visible = spaced(" ".join(m.text for m in rig.replies(hank.id, sent)))
        return visible if all(piece in visible for piece in HOSTILE_PIECES) else None

    visible = rig.bot.wait_for(complete, 10, "every piece of the hostile reply")
    for char in "<>&_*[]`":
        assert char in visible
    calls = rig.text_calls(hank.id)
    assert not [c for c in calls if "message is too long" in (c.description or "")]
    assert_html_fallbacks_were_plain(rig, hank.id)
    assert not undelivered(rig, hank.id)


LONG_CODE = "\n".join(f"print('line {n}: <tag> & more')" for n in range(450))
LONG_HOSTILE = {
    "angles": ("a<b & c>d " * 1100, "a<b & c>d " * 1100),
    "emoji": ("😀" * 3000, "😀" * 3000),
    "fence": (f"```python\n{LONG_CODE}\n```", LONG_CODE),
}


@pytest.mark.parametrize("name", sorted(LONG_HOSTILE))
def test_a_long_hostile_reply_is_cut_where_telegram_allows(rig: Rig, name: str) -> None:
    model_text, visible_text = LONG_HOSTILE[name]
    person = rig.person(f"Long {name}")
    word = f"long hostile {name}"
    rig.api.add_rule(lambda body: word in json.dumps(body["messages"][-1]), TextReply(model_text), times=1)
    sent = rig.say(person.id, person, word)

    def complete() -> list[SentMessage] | None:
        parts = rig.replies(person.id, sent)
        return parts if squash("".join(m.text for m in parts)) == squash(visible_text) else None

    parts = rig.bot.wait_for(complete, 20, f"the whole {name} reply")
    assert len(parts) >= 2
    assert all(utf16_units(m.text) <= TELEGRAM_LIMIT for m in parts)
    assert not [c for c in rig.text_calls(person.id) if "message is too long" in (c.description or "")]
    assert_html_fallbacks_were_plain(rig, person.id)
    assert not undelivered(rig, person.id)


def test_a_model_failure_is_one_plain_sentence(rig: Rig) -> None:
    mia = rig.person("Mia")
    sent = rig.say(mia.id, mia, "[[error=529]] please answer")
    failure = rig.answer(mia.id, sent, "overloaded")
    assert failure.text.startswith("⚠️"), failure.text
    assert len(rig.replies(mia.id, sent)) == 1
    rig.ask(mia.id, mia, "then this one", "echo: then this one")
    assert "please answer" in rig.requests_with("then this one")[-1].all_text()


def test_claude_keeps_notes_for_the_chat(rig: Rig) -> None:
    nora = rig.person("Nora")
    rig.ask(nora.id, nora, '[[tool=save_note {"text": "Nora takes her tea green"}]] remember my tea',
            "tool results")
    notes = rig.ask(nora.id, nora, "/notes", "🗒")
    assert "Nora takes her tea green" in notes.text
    rig.ask(nora.id, nora, "what tea", "echo: what tea")
    assert "Nora takes her tea green" in rig.requests_with("what tea")[-1].all_text()
    rig.ask(nora.id, nora, "/notes clear", "Notes cleared")
    assert "No notes yet" in rig.ask(nora.id, nora, "/notes", "🗒").text


def test_markdown_is_rendered_as_telegram_html(rig: Rig) -> None:
    mark = rig.person("Mark")
    sent = rig.say(mark.id, mark, "[[reply=**bold** and `code`]] format it")
    reply = rig.answer(mark.id, sent, "bold and code")
    assert reply.text == "bold and code"
    assert reply.parse_mode == "HTML"
    kinds = {kind for kind, _, _ in reply.entities}
    assert {"bold", "code"} <= kinds, reply.entities


# ------------------------------------------------------------------------------------------------
# 5-6: groups and forum topics
# ------------------------------------------------------------------------------------------------


def test_in_a_group_the_bot_answers_only_what_is_addressed_to_it(rig: Rig) -> None:
    group = rig.group("Book club")
    gina = rig.person("Gina")
    chatter = rig.say(group.id, gina, "just chatting about zanzibar books")
    mention = rig.say(group.id, gina, f"@{BOT} hi from the group")
    answer = rig.answer(group.id, chatter, "hi from the group")
    assert answer.text == "echo: [Gina] hi from the group"
    assert rig.requests_with("hi from the group")[-1].last_user_text() == "[Gina] hi from the group"
    assert not [r for r in rig.api.requests if "zanzibar" in r.all_text()], "plain chatter reached the model"
    assert len(rig.replies(group.id, chatter)) == 1
    assert mention.message_id < answer.message_id

    replying = rig.say(group.id, gina, "and a reply to you", reply_to=answer.message_id)
    # The reply brings what it answers into the turn, marked (issue 12), before the words themselves.
    rig.answer(group.id, replying, "echo: [Gina] [replying to you: «echo: [Gina] hi from the group»]\n"
                                   "and a reply to you")

    other = rig.say(group.id, gina, "/status@other_bot")
    ours = rig.say(group.id, gina, f"/status@{BOT}")
    status = rig.answer(group.id, ours, f"📊 Session tg:{group.id}")
    assert [m.message_id for m in rig.replies(group.id, other)] == [status.message_id], \
        "/status@other_bot was answered too"


def test_group_chatter_that_starts_with_a_slash_is_not_for_the_bot(rig: Rig) -> None:
    group = rig.group("Sysadmins")
    sid = rig.person("Sid")
    chatter = rig.say(group.id, sid, "/usr/lib is where the libraries live")
    assert not chatter.entities, "Telegram marks no command here"
    rig.ask(group.id, sid, f"@{BOT} a marker after the chatter", "a marker after the chatter")
    assert not [r for r in rig.api.requests if "/usr/lib" in r.all_text()], "the chatter reached the model"
    assert len(rig.replies(group.id, chatter)) == 1


def test_forum_topics_are_separate_sessions(rig: Rig) -> None:
    forum = rig.group("Forum of things", forum=True)
    first = rig.bot.create_topic(forum.id, "Topic one")
    second = rig.bot.create_topic(forum.id, "Topic two")
    fay = rig.person("Fay")
    words = {first: "apricot in topic one", second: "blueberry in topic two", None: "cherry in general"}
    for thread, text in words.items():
        reply = rig.ask(forum.id, fay, f"@{BOT} {text}", f"echo: [Fay] {text}", thread=thread)
        assert reply.thread_id == thread
    general_calls = [c for c in rig.text_calls(forum.id) if "cherry in general" in str(c.params.get("text"))]
    assert general_calls and all("message_thread_id" not in c.params for c in general_calls)

    for thread, text in words.items():
        again = f"second round {thread or 'general'}"
        reply = rig.ask(forum.id, fay, f"@{BOT} {again}", f"echo: [Fay] {again}", thread=thread)
        assert reply.thread_id == thread
        history = rig.requests_with(again)[-1].all_text()
        assert text in history
        assert not [t for t in words.values() if t != text and t in history], "a topic saw another's history"

    status = rig.ask(forum.id, fay, "/status", "📊 Session", thread=first)
    assert f"📊 Session tg:{forum.id}:{first} " in status.text
    status = rig.ask(forum.id, fay, "/status", "📊 Session", thread=None)
    assert f"📊 Session tg:{forum.id} " in status.text


# ------------------------------------------------------------------------------------------------
# 7-8: access and limits
# ------------------------------------------------------------------------------------------------


def test_an_outsider_is_refused_once_and_leaves_no_trace(rig: Rig) -> None:
    outsider = rig.bot.add_user(OUTSIDER_ID, "Oscar", "oscar_outside")
    rig.bot.add_private_chat(outsider)
    for n in range(3):
        rig.say(outsider.id, outsider, f"outsider quokka words {n}")
    rig.bot.wait_for_bot_text(outsider.id, str(OUTSIDER_ID))
    # Updates are handled in order: once a later message is answered, all three were handled.
    marker = rig.person("Marker")
    rig.ask(marker.id, marker, "after the outsider", "echo: after the outsider")
    assert len(rig.bot.bot_messages(outsider.id)) == 1
    assert len([c for c in rig.text_calls(outsider.id) if c.ok]) == 1
    assert not [r for r in rig.api.requests if "quokka" in r.all_text()]
    listing = rig.sessions_list()
    assert f"tg:{marker.id} " in listing
    assert f"tg:{OUTSIDER_ID}" not in listing

    admin = rig.admin
    rig.ask(admin.id, admin, "the admin asks", "echo: the admin asks")


def test_an_outsider_cannot_press_a_groups_buttons(rig: Rig) -> None:
    group = rig.group("Mixed company")
    gwen = rig.person("Gwen")
    olaf = rig.bot.add_user(OUTSIDER_ID + 1, "Olaf", "olaf_outside")
    rig.bot.promote(group.id, gwen.id)  # /forget in a group is for its admins
    rig.ask(group.id, gwen, f"@{BOT} keep this group's history", "keep this group's history")
    prompt = rig.ask(group.id, gwen, "/forget", "cannot be undone")
    query = rig.bot.press_button(group.id, olaf.id, prompt.message_id, f"forget:{gwen.id}:tg:{group.id}")
    rig.bot.wait_for(lambda: rig.bot.callback_query(query.id).answered, 5, "the answer to the outsider's press")
    answered = rig.bot.callback_query(query.id)
    assert answered.show_alert and str(olaf.id) in (answered.answer_text or "")
    assert rig.message(group.id, prompt.message_id).reply_markup is not None
    assert f"tg:{group.id} " in rig.sessions_list()


def test_only_the_asker_or_an_admin_can_confirm_a_groups_forget(rig: Rig) -> None:
    group = rig.group("Shared notes")
    hugo, ines = rig.person("Hugo"), rig.person("Ines")
    rig.bot.promote(group.id, hugo.id)  # /forget in a group is for its admins
    rig.ask(group.id, hugo, f"@{BOT} remember the quinces", "remember the quinces")
    prompt = rig.ask(group.id, hugo, "/forget", "cannot be undone")
    data = f"forget:{hugo.id}:tg:{group.id}"
    buttons = [b for row in (prompt.reply_markup or {}).get("inline_keyboard", []) for b in row]
    assert buttons[0]["callback_data"] == data
    query = rig.bot.press_button(group.id, ines.id, prompt.message_id, data)
    rig.bot.wait_for(lambda: rig.bot.callback_query(query.id).answered, 5, "the answer to Ines's press")
    answered = rig.bot.callback_query(query.id)
    assert answered.show_alert and "Only the person who asked" in (answered.answer_text or "")
    assert rig.message(group.id, prompt.message_id).reply_markup is not None
    assert f"tg:{group.id} " in rig.sessions_list()
    rig.bot.press_button(group.id, hugo.id, prompt.message_id, data)
    rig.bot.wait_for_bot_text(group.id, "🗑 Forgotten")
    assert f"tg:{group.id} " not in rig.sessions_list()


def test_messages_per_minute_limit(fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_MESSAGES_PER_MINUTE="3")
    rita = rig.person("Rita")
    for n in range(3):
        rig.ask(rita.id, rita, f"message number {n}", f"echo: message number {n}")
    fourth = rig.say(rita.id, rita, "one too many walrus")
    refusal = rig.answer(rita.id, fourth, "try again in")
    assert re.search(r"try again in \d+s", refusal.text), refusal.text
    admin = rig.admin
    for n in range(5):
        rig.ask(admin.id, admin, f"admin message {n}", f"echo: admin message {n}")
    assert not [r for r in rig.api.requests if "walrus" in r.all_text()], "the refused message reached the model"
    assert len(rig.replies(rita.id, fourth)) == 1


def test_daily_budget(fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_DAILY_BUDGET_USD="0.000001")
    bud = rig.person("Bud")
    rig.ask(bud.id, bud, "the first is answered", "echo: the first is answered")
    refusal = rig.ask(bud.id, bud, "the second costs pelican", "budget")
    assert "00:00 UTC" in refusal.text, refusal.text
    assert not [r for r in rig.api.requests if "pelican" in r.all_text()]


# ------------------------------------------------------------------------------------------------
# 9: commands
# ------------------------------------------------------------------------------------------------


def test_start_and_help_list_the_commands(rig: Rig) -> None:
    newbie = rig.person("Newbie")
    for command in ("/start", "/help"):
        reply = rig.ask(newbie.id, newbie, command, "/forget")
        for name in COMMAND_NAMES:
            assert f"/{name}" in reply.text, (command, name)
    assert {c["command"] for c in rig.bot.commands} == set(COMMAND_NAMES)


def test_new_starts_a_fresh_conversation(rig: Rig) -> None:
    nina = rig.person("Nina")
    rig.ask(nina.id, nina, "remember the kiwi", "echo: remember the kiwi")
    rig.ask(nina.id, nina, "/new", "Fresh conversation")
    rig.ask(nina.id, nina, "what fruit was it", "echo: what fruit was it")
    request = rig.requests_with("what fruit was it")[-1]
    assert "kiwi" not in request.all_text()
    assert len(request.body["messages"]) == 1
    status = rig.ask(nina.id, nina, "/status", "📊 Session")
    assert "(generation 2)" in status.text, status.text


def test_status_answers_at_once_while_a_turn_runs(rig: Rig) -> None:
    sam = rig.person("Sam")
    rig.say(sam.id, sam, "[[delay=3]] think slowly")
    rig.wait_request("think slowly")
    started = time.monotonic()
    status = rig.ask(sam.id, sam, "/status", "📊 Session", timeout=5)
    assert time.monotonic() - started < 1.0
    assert "State: answering" in status.text, status.text
    rig.bot.wait_for_bot_text(sam.id, "echo: [[delay=3]] think slowly", timeout=10)


def test_stop_interrupts_a_streaming_reply(rig: Rig) -> None:
    stella = rig.person("Stella")
    sent = rig.say(stella.id, stella, "[[len=800]][[slow=5]] a slow story")
    draft = rig.bot.wait_for_draft(stella.id, filler_text(800)[:10], timeout=5)
    stopped_at = time.monotonic()
    stop = rig.say(stella.id, stella, "/stop")
    rig.answer(stella.id, stop, "Stopping", timeout=5)
    stopped = rig.answer(stella.id, sent, "⏹ stopped", timeout=5)
    assert time.monotonic() - stopped_at < 2.5, "the reply did not stop at once"
    assert squash(draft.text) in squash(stopped.text), "what was drafted before /stop stays in the chat"
    assert [m.message_id for m in rig.replies(stella.id, sent) if m.text.startswith(draft.text[:10])] == [
        stopped.message_id], "the stopped reply is one message"
    shown = stopped.text
    assert len(squash(shown)) < len(squash(filler_text(800))), "the whole story came anyway"

    rig.ask(stella.id, stella, "and now something else", "echo: and now something else")
    request = rig.requests_with("and now something else")[-1]
    assert "a slow story" in request.all_text()
    assert squash(shown.replace("⏹ stopped", ""))[:200] in squash(request.all_text()), "the partial reply is history"


def test_cd_and_pwd_stay_inside_the_work_root(rig: Rig) -> None:
    carl = rig.person("Carl")
    # Carl is no admin: his chat's own directory is as far as he may go (tests/test_workspace_e2e.py).
    root = Path(rig.env["VIGIL_WORKDIR_ROOT"]).resolve() / "users" / str(carl.id)
    (root / "cd_project" / "inner").mkdir(parents=True)
    outside = rig.tmp / "outside"
    outside.mkdir()
    (root / "cd_escape").symlink_to(outside)
    project = root / "cd_project"

    rig.ask(carl.id, carl, "/cd cd_project", f"📁 {project}")
    assert rig.ask(carl.id, carl, "/pwd", "📁").text == f"📁 {project}"
    for wanted in ("../..", "/etc", "../cd_escape", str(root / "cd_escape")):
        refusal = rig.ask(carl.id, carl, f"/cd {wanted}", "⛔")
        assert f"stays {project}" in refusal.text, refusal.text
        assert rig.ask(carl.id, carl, "/pwd", "📁").text == f"📁 {project}", wanted
    rig.ask(carl.id, carl, "/cd inner", f"📁 {project / 'inner'}")
    assert rig.ask(carl.id, carl, "/pwd", "📁").text == f"📁 {project / 'inner'}"


def test_model_can_be_chosen_per_chat(rig: Rig) -> None:
    mo = rig.person("Mo")
    choices = rig.ask(mo.id, mo, "/model", "Choices")
    assert "claude-haiku-5-5" in choices.text and "claude-sonnet-5-5" in choices.text
    rig.ask(mo.id, mo, "/model claude-haiku-5-5", "🧠")
    rig.ask(mo.id, mo, "which model answers", "echo: which model answers")
    assert rig.requests_with("which model answers")[-1].body["model"] == "claude-haiku-5-5"
    refusal = rig.ask(mo.id, mo, "/model nonsense", "⛔")
    assert "claude-haiku-5-5" in refusal.text
    rig.ask(mo.id, mo, "still haiku", "echo: still haiku")
    assert rig.requests_with("still haiku")[-1].body["model"] == "claude-haiku-5-5"


def test_usage_shows_todays_tokens_and_cost(rig: Rig) -> None:
    uma = rig.person("Uma")
    rig.ask(uma.id, uma, "count my tokens", "echo: count my tokens")
    usage = rig.ask(uma.id, uma, "/usage", "💰")
    today = re.search(r"Today: (\S+) tokens · \$(\d+\.\d+) \((\d+) calls\)", usage.text)
    assert today, usage.text
    assert today.group(1) != "0" and today.group(3) == "1"
    assert f"tg:{uma.id}" in usage.text


def test_sessions_lists_and_pages(rig: Rig) -> None:
    pat = rig.person("Pat")
    groups = [rig.group(f"Pat's group {n}") for n in range(6)]
    for n, group in enumerate(groups):
        rig.ask(group.id, pat, f"@{BOT} page test {n}", f"page test {n}")
    listing = rig.ask(pat.id, pat, "/sessions", "🗂")
    assert "Your sessions (6)" in listing.text and "page 1/2" in listing.text, listing.text
    assert f"tg:{groups[-1].id}" in listing.text and f"tg:{groups[0].id}" not in listing.text
    buttons = [b for row in (listing.reply_markup or {}).get("inline_keyboard", []) for b in row]
    older = next(b for b in buttons if b["text"] == "Older ▶")
    query = rig.bot.press_button(pat.id, pat.id, listing.message_id, older["callback_data"])
    page2 = rig.edited_to(pat.id, listing.message_id, "page 2/2")
    assert f"tg:{groups[0].id}" in page2.text
    assert rig.bot.callback_query(query.id).answered

    admin = rig.admin
    everyone = rig.ask(admin.id, admin, "/sessions", "🗂")
    total = re.search(r"All sessions \((\d+)\)", everyone.text)
    assert total and int(total.group(1)) >= len(groups), everyone.text


def test_sessions_cleanup_deletes_idle_sessions(rig: Rig) -> None:
    cleo = rig.person("Cleo")
    group = rig.group("Cleo's old group")
    rig.bot.promote(group.id, cleo.id)  # a group's sessions are its admins' to delete
    rig.ask(group.id, cleo, f"@{BOT} soon idle", "soon idle")
    assert f"tg:{group.id} " in rig.sessions_list()
    listed, done = rig.clean_up_idle(cleo)
    assert f"tg:{group.id}" in listed, listed
    assert f"tg:{group.id}" in done.text and "1 turns" in done.text, done.text
    assert f"tg:{group.id}" not in rig.sessions_list()


def test_cleanup_of_a_live_session_leaves_nothing_behind(rig: Rig) -> None:
    clem = rig.person("Clem")
    group = rig.group("Clem's live group")
    rig.bot.promote(group.id, clem.id)
    rig.ask(group.id, clem, f"@{BOT} the secret is zebra", "the secret is zebra")
    rig.clean_up_idle(clem)

    rig.ask(group.id, clem, f"@{BOT} anything stored", "anything stored")
    request = rig.requests_with("anything stored")[-1]
    assert "zebra" not in request.all_text(), "the deleted conversation was sent to the model"
    assert len(request.body["messages"]) == 1


def test_status_after_cleanup_of_a_live_session(rig: Rig) -> None:
    cody = rig.person("Cody")
    group = rig.group("Cody's live group")
    rig.bot.promote(group.id, cody.id)
    rig.ask(group.id, cody, f"@{BOT} about to be cleaned", "about to be cleaned")
    rig.clean_up_idle(cody)
    status = rig.ask(group.id, cody, "/status", "📊 Session")
    assert "No conversation yet" in status.text, status.text


def test_export_sends_the_conversation_as_json(rig: Rig) -> None:
    eve = rig.person("Eve")
    rig.ask(eve.id, eve, "export me a kumquat", "echo: export me a kumquat")
    rig.say(eve.id, eve, "/export")
    document = rig.bot.wait_for(lambda: next((d for d in rig.bot.documents if d.chat_id == eve.id), None), 10,
                                "the exported document")
    assert document.filename.endswith(".json")
    exported = json.loads(document.content)
    turn = exported["generations"][0]["turns"][0]
    assert turn["inputs"][0]["text"] == "export me a kumquat"
    assert turn["reply"] == "echo: export me a kumquat"
    assert exported["session"]["key"] == f"tg:{eve.id}"


def test_forget_deletes_the_session_after_confirmation(rig: Rig) -> None:
    finn = rig.person("Finn")
    rig.ask(finn.id, finn, "forget the figs", "echo: forget the figs")
    ask = rig.ask(finn.id, finn, "/forget", "cannot be undone")
    query = rig.bot.press_button(finn.id, finn.id, ask.message_id, f"cancel:{finn.id}")
    rig.bot.wait_for(lambda: rig.message(finn.id, ask.message_id).reply_markup is None, 5, "the buttons gone")
    assert rig.bot.callback_query(query.id).answer_text == "Cancelled."
    assert f"tg:{finn.id} " in rig.sessions_list()

    ask = rig.ask(finn.id, finn, "/forget", "cannot be undone")
    rig.bot.press_button(finn.id, finn.id, ask.message_id, f"forget:{finn.id}:tg:{finn.id}")
    rig.bot.wait_for_bot_text(finn.id, "🗑 Forgotten")
    status = rig.ask(finn.id, finn, "/status", "📊 Session")
    assert "No conversation yet" in status.text, status.text
    assert f"tg:{finn.id} " not in rig.sessions_list()
    rig.ask(finn.id, finn, "anything left", "echo: anything left")
    assert "figs" not in rig.requests_with("anything left")[-1].all_text()


# ------------------------------------------------------------------------------------------------
# 10: Telegram misbehaving
# ------------------------------------------------------------------------------------------------


def test_flood_control_is_waited_out(rig: Rig) -> None:
    flo = rig.person("Flo")
    rig.bot.flood(times=2, retry_after=1, method="sendMessage", chat_id=flo.id)
    rig.ask(flo.id, flo, "despite the flood", "echo: despite the flood", timeout=15)
    sends = [c for c in rig.text_calls(flo.id) if c.method == "sendMessage"]
    assert [c.error_code for c in sends] == [429, 429, None]
    for previous, retry in itertools.pairwise(sends):
        assert retry.time - previous.time >= 0.95, "retry_after was not honoured"


def test_bad_gateway_is_retried(pooled: Callable[..., Rig]) -> None:
    rig = pooled()
    gus = rig.person("Gus")
    rig.bot.fail(times=2, status=502, method="sendMessage", chat_id=gus.id)
    rig.ask(gus.id, gus, "through the gateway", "echo: through the gateway", timeout=15)
    sends = [c for c in rig.text_calls(gus.id) if c.method == "sendMessage"]
    assert [c.http_status for c in sends] == [502, 502, 200]


def test_a_slow_telegram_answer_does_not_duplicate_the_reply(pooled: Callable[..., Rig]) -> None:
    rig = pooled()
    sal = rig.person("Sal")
    rig.bot.stall(seconds=6.5, method="sendMessage", chat_id=sal.id)
    sent = rig.say(sal.id, sal, "on a slow network day")
    rig.answer(sal.id, sent, "echo: on a slow network day", timeout=15)
    # The stalled call is recorded when its answer is finally given; any retry came before that.
    rig.bot.wait_for(lambda: [c for c in rig.text_calls(sal.id) if c.duration >= 6], 15, "the stalled answer")
    texts = [m.text for m in rig.replies(sal.id, sent)]
    assert texts == ["echo: on a slow network day"], texts


def test_a_blocked_user_does_not_stop_the_service(rig: Rig) -> None:
    bea = rig.person("Bea")
    rig.say(bea.id, bea, "[[delay=1]] are you there")
    rig.wait_request("are you there")
    rig.bot.block(bea.id)
    rig.bot.wait_for(lambda: [c for c in rig.text_calls(bea.id) if c.error_code == 403], 10,
                     "vigil meeting the block")
    other = rig.person("Otto")
    rig.ask(other.id, other, "still serving?", "echo: still serving?")
    assert rig.alive()
    assert "Traceback" not in rig.running().err.text


# ------------------------------------------------------------------------------------------------
# 11-13: restart, migration, Markdown fallback
# ------------------------------------------------------------------------------------------------


def test_conversations_continue_after_a_restart(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    ann, ben = rig.person("Ann"), rig.person("Ben")
    rig.ask(ann.id, ann, "my word is walnut", "echo: my word is walnut")
    rig.ask(ben.id, ben, "my word is hazelnut", "echo: my word is hazelnut")

    assert rig.stop() < 10
    rig.start()

    for person, mine, theirs in ((ann, "walnut", "hazelnut"), (ben, "hazelnut", "walnut")):
        rig.ask(person.id, person, "what was my word", "echo: what was my word")
        history = rig.requests_with("what was my word")[-1].all_text()
        assert f"my word is {mine}" in history and theirs not in history
        assert len([m for m in rig.bot.bot_messages(person.id) if mine in m.text]) == 1, \
            "an old message was answered again after the restart"
    assert not rig.api.errors


def test_a_turn_cut_by_sigterm_is_answered_after_the_restart(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    pam = rig.person("Pam")
    # Slower than the shutdown grace the first time only: the retry after the restart is quick.
    rig.api.add_rule(lambda body: "the first words" in json.dumps(body["messages"][-1]),
                     TextReply("slow first answer", delay=5), times=1)
    rig.say(pam.id, pam, "the first words")
    rig.wait_request("the first words")
    waiting = rig.say(pam.id, pam, "the second words, waiting behind it")
    rig.bot.wait_for(lambda: rig.bot.pending_updates == 0, 5, "vigil took the second message")
    assert rig.stop() < 10
    note = rig.bot.wait_for_bot_text(pam.id, "restarting")
    assert "answer this again" in note.text

    rig.start()
    rig.answer(pam.id, waiting, "echo: the first words", timeout=15)
    rig.answer(pam.id, waiting, "echo: the second words, waiting behind it", timeout=15)
    assert not rig.api.errors


def test_a_reply_held_back_at_shutdown_is_delivered_after_the_restart(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    flo = rig.person("Flo")
    rig.bot.flood(times=1, retry_after=30, method="sendMessage", chat_id=flo.id)
    rig.say(flo.id, flo, "answer me despite the flood")
    rig.bot.wait_for(lambda: [c for c in rig.text_calls(flo.id) if c.error_code == 429], 10, "the flood")
    rig.stop()
    rig.start()
    rig.bot.wait_for_bot_text(flo.id, "echo: answer me despite the flood", timeout=5)


def test_a_group_upgraded_to_a_supergroup_keeps_its_session(rig: Rig) -> None:
    group = rig.group("Soon super")
    milo = rig.person("Milo")
    rig.ask(group.id, milo, f"@{BOT} remember the mango", "echo: [Milo] remember the mango")
    new_id = rig.group_id(supergroup=True)
    rig.bot.migrate_to_supergroup(group.id, new_id)
    rig.ask(new_id, milo, f"@{BOT} which fruit", "echo: [Milo] which fruit")
    assert "remember the mango" in rig.requests_with("which fruit")[-1].all_text()
    assert not [m for m in rig.bot.bot_messages(group.id) if "which fruit" in m.text]


ODD_MARKDOWN = (
    "**bold *nested italic* end** and ~~strike~~ then ***both***",
    "| a | b |\n|---|---|\n| <x> | & |\n| `c|d` | **e** |",
    "[a link](https://example.com/a_(b)_c?x=1&y=<2>) and [bad](javascript:alert(1)) and <https://auto.link>",
    "> quoted **bold\n> still** quoted\n\n- list\n  - nested `code`\n    1. deep & <deeper>",
    "&amp; &lt; &#123; &#xZZ; & &# &; <tg-spoiler>x</tg-spoiler> ||s|| <pre>y</pre>",
    "```\n</pre><b>inside a fence\n```\n`` ` `` **[x](http://x.com)** ![img](http://x/y.png)",
    "# Heading with <tag> & stuff\n---\n***\n__init__.py and *a **b* c**",
)


def test_odd_markdown_is_always_delivered(rig: Rig) -> None:
    odd = rig.person("Oddie")
    for n, text in enumerate(ODD_MARKDOWN):
        sent = rig.say(odd.id, odd, f"[[reply={text}]] odd {n}")
        rig.wait_request(f"odd {n}")
        rig.bot.wait_for(lambda: rig.replies(odd.id, sent), 10, f"the reply to odd markdown {n}")  # noqa: B023
    # Each reply is one message; wait until the last one's final delivery is done, then check them all.
    marker = rig.say(odd.id, odd, "after the odd ones")
    rig.answer(odd.id, marker, "echo: after the odd ones")
    assert not undelivered(rig, odd.id)
    assert_html_fallbacks_were_plain(rig, odd.id)
    assert all(m.text.strip() for m in rig.bot.bot_messages(odd.id))
