"""Shared chats, what they see and where their files go, end to end: `vigil run` against the stand-ins.

An upload goes through the sending chat's own workspace jail (a directory swapped for a symlink to
another chat's tree is refused, never followed); an approval prompt shows all it asks about (a long
command goes whole in a file before it, the buttons after); a group sees its first words within about a
second of the model's first token and, however many replies stream at once, stays within Telegram's
~20 messages and edits a minute.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from tests.rig import BOT, Rig, chat_of, squash
from tests.standins.bot_api import ApiCall, SentMessage
from tests.standins.messages_api import TextReply, ToolCall, ToolUseReply, filler_text
from tests.standins.messages_api.content import current_turn_text
from tests.test_approve_e2e import button, tap
from tests.test_tools_e2e import tool

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]

RIG_SETTINGS = {"VIGIL_ENABLE_BASH": "1", "VIGIL_TOOL_MODE": "ask"}


def root_of(rig: Rig) -> Path:
    return Path(rig.env["VIGIL_WORKDIR_ROOT"]).resolve()


def scripted(rig: Rig, marker: str, reply: ToolUseReply | TextReply) -> None:
    """The model answers the turn holding `marker` (not its tool results) with `reply`, once."""
    rig.api.add_rule(lambda body: marker in current_turn_text(body)
                     and body["messages"][-1]["content"][0].get("type") != "tool_result", reply, times=1)


# ------------------------------------------------------------------------------------------------ uploads


def test_an_upload_never_lands_outside_the_senders_own_directory(rig: Rig) -> None:
    ann, bob = rig.person("Ann"), rig.person("Bob")
    rig.ask(bob.id, bob, "hello", "echo: hello")  # Bob's workspace exists
    root = root_of(rig)
    mine, his = root / "users" / str(ann.id), root / "users" / str(bob.id)
    rig.ask(ann.id, ann, "hi", "echo: hi")
    (mine / "proj").mkdir()
    rig.ask(ann.id, ann, "/cd proj", f"📁 {mine / 'proj'}")
    rig.ask(ann.id, ann, "/mode auto", "Done.")
    # Her own bash swaps proj for a symlink to Bob's workspace (its sandbox lets it: the link is in her tree).
    swap = f"cd .. && rmdir proj && ln -s ../{bob.id} proj && echo swapped"
    rig.ask(ann.id, ann, tool("bash", command=swap), "swapped", timeout=30)
    assert (mine / "proj").is_symlink() and (mine / "proj").resolve() == his.resolve()

    sent = rig.bot.send_document(ann.id, ann.id, b"ann's private notes\n", "notes.txt", "text/plain")
    refusal = rig.answer(ann.id, sent, "I couldn't take that file")
    assert "Nothing was kept" in refusal.text
    assert not (his / "uploads").exists(), "nothing was written into Bob's directory"
    assert not any(p.name == "notes.txt" for p in root.rglob("*")), "nor anywhere else"


# ------------------------------------------------------------------------------------------------ approval prompts


def test_a_long_command_goes_whole_in_a_file_before_its_prompt(rig: Rig) -> None:
    cara = rig.person("Cara")
    lines = [f"echo line {i:03d} {'x' * 60}" for i in range(80)]
    command = "\n".join([*lines, "touch the-tail-ran"])  # what matters is at the end
    assert len(command) > 5000
    scripted(rig, "run my long script", ToolUseReply(calls=[ToolCall("bash", {"command": command})]))
    sent = rig.say(cara.id, cara, "run my long script")

    def prompt() -> SentMessage | None:
        return next((m for m in rig.bot.bot_messages(cara.id) if m.message_id > sent.message_id
                     and "🔐" in m.text and m.reply_markup), None)

    shown = rig.bot.wait_for(prompt, 30, "the approval prompt")
    [document] = [d for d in rig.bot.documents if d.chat_id == cara.id]
    assert document.content.decode() == command, "the whole command, exactly"
    assert document.filename == "command.sh" and document.message_id < shown.message_id, "the file, then the prompt"
    assert "command.sh just above" in shown.text and lines[0] in shown.text and "the-tail-ran" not in shown.text
    assert len(shown.text) < 4096 and button(shown, "Allow")
    assert tap(rig, cara.id, cara, shown, "Deny").answer_text == "Denied."


def test_a_change_that_fits_is_shown_whole_in_the_prompt(rig: Rig) -> None:
    dora = rig.person("Dora")
    body = "\n".join(f"setting_{i} = {i}" for i in range(30))  # 30 lines: the prompt showed 8 of them
    scripted(rig, "write my config", ToolUseReply(calls=[ToolCall(
        "str_replace_based_edit_tool", {"command": "create", "path": "config.py", "file_text": body})]))
    sent = rig.say(dora.id, dora, "write my config")
    shown = rig.bot.wait_for(lambda: next((m for m in rig.bot.bot_messages(dora.id) if m.message_id > sent.message_id
                                           and "🔐" in m.text and m.reply_markup), None), 30, "the prompt")
    assert all(f"+ setting_{i} = {i}" in shown.text for i in range(30)), shown.text
    assert not [d for d in rig.bot.documents if d.chat_id == dora.id]
    assert tap(rig, dora.id, dora, shown, "Deny").answer_text == "Denied."


# ------------------------------------------------------------------------------------------------ group streaming


def test_a_group_sees_the_first_words_while_the_model_pauses(rig: Rig) -> None:
    group = rig.group("Quick looks")
    eli = rig.person("Eli")
    first, rest = "Here come the very first words. ", "And now the rest, after a pause."
    assert len(first) == len(rest) == 32  # the stand-in streams it in two deltas: first, then rest
    # The first delta comes 2.5 s into the answer, the rest 2.5 s after it: less than a group's 3 s edit interval.
    scripted(rig, "think it over", TextReply(first + rest, seconds=5.0, deltas=2))
    sent = rig.say(group.id, eli, f"@{BOT} think it over")
    rig.answer(group.id, sent, rest.strip(), timeout=30)
    texts = [str(c.params.get("text", "")) for c in rig.text_calls(group.id)]
    early = [t for t in texts if first.strip() in t and rest.strip() not in t]
    assert early, f"the first words were shown before the rest: {texts}"


def group_posts(rig: Rig, chat_id: int) -> list[ApiCall]:
    return [c for c in list(rig.bot.calls) if c.method in ("sendMessage", "editMessageText", "sendDocument")
            and chat_of(c) == chat_id and c.ok]


def test_replies_streaming_at_once_in_a_forum_stay_within_the_groups_minute(rig: Rig) -> None:
    forum = rig.bot.add_group(rig.group_id(supergroup=True), "Busy forum", forum=True)
    topics = [rig.bot.create_topic(forum.id, f"Topic {i}") for i in range(3)]
    fay = rig.person("Fay")
    story = squash(filler_text(3000))
    for i, topic in enumerate(topics):
        rig.say(forum.id, fay, f"@{BOT} [[len=3000]][[slow=24]] story {i}", thread=topic)
    def told(topic: int) -> bool:
        return any(squash(m.text) == story for m in rig.bot.bot_messages(forum.id, topic))

    rig.bot.wait_for(lambda: all(told(topic) for topic in topics), 60, "the whole story in every topic")
    posts = group_posts(rig, forum.id)
    # The replies stream for 24 s: their final messages are not held back behind the group's rate limit.
    assert posts[-1].time - posts[0].time < 36, "the final replies waited for room in the group's minute"
    busiest = max(sum(1 for other in posts if call.time <= other.time < call.time + 60) for call in posts)
    assert busiest <= 20, f"{busiest} messages and edits in one minute in one group"
    edits: dict[str, list[float]] = {}
    for call in posts:
        if call.method == "editMessageText":
            edits.setdefault(str(call.params.get("message_id")), []).append(call.time)
    assert len(edits) == 3, "each reply was previewed in place while it streamed"
    # Previews keep to the group's pace (3 s); only the final edit may follow the last preview sooner.
    gaps = [b - a for times in edits.values() for a, b in itertools.pairwise(times[:-1])]
    assert all(gap > 2.5 for gap in gaps), f"previews came faster than the group's pace: {gaps}"
