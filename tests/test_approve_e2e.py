"""Approvals end to end: `vigil run` in ask mode with the bash sandbox, driven through the stand-ins.

A bash command runs only after its starter taps Allow (the model then sees `hi-42`); Deny, the
timeout, `/stop` decline it (and it provably did not run); another group member's tap is refused;
"Allow for this turn" covers the next command; `/status` and `/stop` answer while a prompt waits;
read-only refuses a write; a heartbeat runs no bash; a `kill -9` during the prompt asks again and
runs the command once, and one killed while running is never run again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.rig import BOT, Rig
from tests.standins.bot_api import CallbackQuery, Message, SentMessage, User
from tests.standins.messages_api import RecordedRequest, ToolCall, ToolUseReply
from tests.test_tools_e2e import result_text, tool, tool_results
from vigil.tools.approvals import GONE

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]

ASK = {"VIGIL_ENABLE_BASH": "1", "VIGIL_TOOL_MODE": "ask"}
RIG_SETTINGS = ASK
HI = 'echo hi-$((6*7))'


def workdir(rig: Rig, chat_id: int) -> Path:
    root = Path(rig.env["VIGIL_WORKDIR_ROOT"])
    return root / ("users" if chat_id > 0 else "chats") / str(chat_id)


def prompt_after(rig: Rig, chat_id: int, after: Message | SentMessage, timeout: float = 30) -> SentMessage:
    """The next approval prompt in the chat after `after`."""
    def found() -> SentMessage | None:
        return next((m for m in rig.bot.bot_messages(chat_id) if m.message_id > after.message_id
                     and "🔐" in m.text and m.reply_markup), None)

    return rig.bot.wait_for(found, timeout, f"an approval prompt in chat {chat_id}")


def button(prompt: SentMessage, label: str) -> str:
    rows = (prompt.reply_markup or {}).get("inline_keyboard", [])
    return next(str(b["callback_data"]) for row in rows for b in row if label in b["text"])


def tap(rig: Rig, chat_id: int, user: User, prompt: SentMessage, label: str) -> CallbackQuery:
    """`user` taps the button labelled `label`; returns the query once vigil answered it."""
    query = rig.bot.press_button(chat_id, user.id, prompt.message_id, button(prompt, label))
    return rig.bot.wait_for(lambda: q if (q := rig.bot.callback_query(query.id)).answered else None, 15,
                            "the callback query to be answered")


def results_of(rig: Rig, command: str) -> list[RecordedRequest]:
    """Requests that answer a tool call running `command` (those ending in its tool_result)."""
    return [r for r in list(rig.api.requests) if tool_results(r) and command in r.all_text()]


# ------------------------------------------------------------------------------------------------ the shared rig


def test_allow_runs_the_command_and_the_model_sees_its_output(rig: Rig) -> None:
    ann = rig.person("Ann")
    sent = rig.say(ann.id, ann, tool("bash", command=HI))
    prompt = prompt_after(rig, ann.id, sent)
    assert HI in prompt.text and "Only Ann" in prompt.text
    assert not results_of(rig, HI), "nothing ran before the tap"
    answer = tap(rig, ann.id, ann, prompt, "Allow")
    assert answer.answer_text == "Allowed." and not answer.show_alert
    edited = rig.edited_to(ann.id, prompt.message_id, "✅ Allowed by Ann", timeout=15)
    assert edited.reply_markup is None and HI in edited.text
    rig.answer(ann.id, sent, "tool results", timeout=30)
    [result] = tool_results(results_of(rig, HI)[-1])
    assert "hi-42" in result_text(result) and not result.get("is_error")


def test_deny_declines_and_the_command_does_not_run(rig: Rig) -> None:
    bea = rig.person("Bea")
    command = "touch denied-marker; echo ran"
    sent = rig.say(bea.id, bea, tool("bash", command=command))
    prompt = prompt_after(rig, bea.id, sent)
    assert tap(rig, bea.id, bea, prompt, "Deny").answer_text == "Denied."
    reply = rig.answer(bea.id, sent, "tool results", timeout=30)
    assert "declined" in reply.text and '"is_error": true' in reply.text
    [result] = tool_results(results_of(rig, command)[-1])
    assert result["is_error"] is True and "Bea declined it" in result_text(result)
    assert rig.edited_to(bea.id, prompt.message_id, "❌ Denied by Bea", timeout=15).reply_markup is None
    assert workdir(rig, bea.id).is_dir() and not (workdir(rig, bea.id) / "denied-marker").exists()


def test_another_group_member_cannot_answer_the_starters_prompt(rig: Rig) -> None:
    gina, hal = rig.person("Gina"), rig.person("Hal")
    group = rig.group("Approvals")
    command = "touch group-marker; " + HI
    sent = rig.say(group.id, gina, f"@{BOT} " + tool("bash", command=command))
    prompt = prompt_after(rig, group.id, sent)
    refusal = tap(rig, group.id, hal, prompt, "Allow")
    assert refusal.show_alert and refusal.answer_text is not None and refusal.answer_text.startswith("Only Gina")
    refusal = tap(rig, group.id, hal, prompt, "Deny")
    assert refusal.show_alert and refusal.answer_text.startswith("Only Gina")  # type: ignore[union-attr]
    still = rig.message(group.id, prompt.message_id)
    assert still.reply_markup is not None and still.edits == 0, "the prompt stays as it was"
    assert not results_of(rig, command) and not (workdir(rig, group.id) / "group-marker").exists()
    # The admin may answer anyone's prompt.
    assert tap(rig, group.id, rig.admin, prompt, "Allow").answer_text == "Allowed."
    rig.edited_to(group.id, prompt.message_id, "✅ Allowed by Ada", timeout=15)
    rig.answer(group.id, sent, "tool results", timeout=30)
    assert (workdir(rig, group.id) / "group-marker").exists()


def test_allow_for_this_turn_covers_the_next_command_without_a_prompt(rig: Rig) -> None:
    cy = rig.person("Cy")
    first, second = "touch first-marker; echo one", "touch second-marker; echo two"
    sent = rig.say(cy.id, cy, tool("bash", command=first) + tool("bash", command=second))
    prompt = prompt_after(rig, cy.id, sent)
    assert first in prompt.text
    tap(rig, cy.id, cy, prompt, "Allow for this turn")
    rig.edited_to(cy.id, prompt.message_id, "☑️ Allowed for this turn by Cy", timeout=15)
    rig.answer(cy.id, sent, "tool results", timeout=30)
    assert (workdir(rig, cy.id) / "first-marker").exists() and (workdir(rig, cy.id) / "second-marker").exists()
    prompts = [m for m in rig.replies(cy.id, sent) if "🔐" in m.text]
    assert [p.message_id for p in prompts] == [prompt.message_id], "one prompt for the whole turn"


def test_status_and_stop_answer_at_once_while_a_prompt_waits_and_stop_denies(rig: Rig) -> None:
    dee = rig.person("Dee")
    command = "touch stopped-marker; echo ran"
    sent = rig.say(dee.id, dee, tool("bash", command=command))
    prompt = prompt_after(rig, dee.id, sent)
    status = rig.ask(dee.id, dee, "/status", "📊", timeout=10)
    assert "waiting for an approval" in status.text and "Mode: ask" in status.text
    rig.ask(dee.id, dee, "/stop", "Stopping", timeout=10)
    rig.answer(dee.id, sent, "stopped", timeout=30)
    # The prompt says so and loses its buttons by itself: there is nothing left to press.
    assert rig.edited_to(dee.id, prompt.message_id, "the turn was stopped", timeout=15).reply_markup is None
    assert not (workdir(rig, dee.id) / "stopped-marker").exists()
    # The stored turn answered the call: the next request replays it as declined.
    rig.ask(dee.id, dee, "and now?", "echo: and now?", timeout=30)
    replayed = rig.requests_with("and now?")[-1].all_text()
    assert "declined: the user stopped the turn" in replayed


def test_readonly_refuses_a_write_and_offers_no_bash(rig: Rig) -> None:
    eve = rig.person("Eve")
    assert "Mode for this chat: readonly" in rig.ask(eve.id, eve, "/mode readonly", "Done").text
    sent = rig.say(eve.id, eve, tool("str_replace_based_edit_tool", command="create", path="ro.txt",
                                     file_text="nope\n"))
    reply = rig.answer(eve.id, sent, "tool results", timeout=30)
    assert "read-only mode" in reply.text and '"is_error": true' in reply.text
    assert not (workdir(rig, eve.id) / "ro.txt").exists()
    request = rig.requests_with("ro.txt")[-1]
    offered = [t.get("name") for t in request.body.get("tools", [])]
    assert "bash" not in offered and "str_replace_based_edit_tool" in offered
    assert not [m for m in rig.replies(eve.id, sent) if "🔐" in m.text]


def test_a_heartbeat_in_ask_mode_runs_no_bash_and_asks_nobody(rig: Rig) -> None:
    fay = rig.person("Fay")
    rig.ask(fay.id, fay, "hello", "echo: hello", timeout=30)

    def beat(body: dict[str, object]) -> bool:
        return "send_message" in str(body.get("tools")) and "hello" in str(body.get("messages"))

    rig.api.add_rule(beat, ToolUseReply([ToolCall("bash", {"command": "touch beat-marker"})]), times=1)
    sent = rig.say(fay.id, fay, "/heartbeat test")
    rig.answer(fay.id, sent, "Test beat", timeout=30)
    beats = [r for r in list(rig.api.requests) if beat(r.body)]
    assert beats and all("bash" not in [t.get("name") for t in r.body.get("tools", [])] for r in beats)
    assert not [m for m in rig.replies(fay.id, sent) if "🔐" in m.text]
    assert not (workdir(rig, fay.id) / "beat-marker").exists()


# ------------------------------------------------------------------------------------------------ rigs of their own


def test_no_answer_within_the_timeout_is_a_deny(fresh: Callable[..., Rig]) -> None:
    rig = fresh(**ASK, VIGIL_APPROVAL_TIMEOUT="1s")
    ida = rig.person("Ida")
    command = "touch late-marker; echo ran"
    sent = rig.say(ida.id, ida, tool("bash", command=command))
    prompt = prompt_after(rig, ida.id, sent)
    assert "no answer within 1s counts as Deny" in prompt.text
    reply = rig.answer(ida.id, sent, "tool results", timeout=30)
    assert "nobody approved it within 1s" in reply.text
    # The prompt says so and loses its buttons by itself, before anyone presses one.
    closed = rig.edited_to(ida.id, prompt.message_id, "nobody answered in time", timeout=15)
    assert closed.reply_markup is None and closed.text.startswith(prompt.text)
    assert not (workdir(rig, ida.id) / "late-marker").exists()


def test_a_kill_during_the_prompt_asks_again_and_the_command_runs_once(fresh: Callable[..., Rig]) -> None:
    rig = fresh(**ASK)
    jo = rig.person("Jo")
    command = "echo run >> ran.txt; " + HI
    sent = rig.say(jo.id, jo, tool("bash", command=command))
    first = prompt_after(rig, jo.id, sent)
    rig.running().kill9()
    rig.start()
    again = prompt_after(rig, jo.id, first)  # the resumed turn asks afresh
    assert command in again.text
    assert tap(rig, jo.id, jo, first, "Allow").answer_text == GONE, "the old prompt's button finds nothing"
    assert tap(rig, jo.id, jo, again, "Allow").answer_text == "Allowed."
    rig.answer(jo.id, sent, "tool results", timeout=30)
    assert "hi-42" in result_text(tool_results(results_of(rig, command)[-1])[0])
    assert (workdir(rig, jo.id) / "ran.txt").read_text() == "run\n"
    rig.stop()
    rig.start()
    rig.ask(jo.id, jo, "still there?", "echo: still there?", timeout=30)
    assert (workdir(rig, jo.id) / "ran.txt").read_text() == "run\n"


def test_an_allowed_command_killed_while_running_is_never_run_again(fresh: Callable[..., Rig]) -> None:
    rig = fresh(**ASK)
    kim = rig.person("Kim")
    command = "echo run >> ran.txt; sleep 60"
    sent = rig.say(kim.id, kim, tool("bash", command=command))
    tap(rig, kim.id, kim, prompt_after(rig, kim.id, sent), "Allow")
    ran = workdir(rig, kim.id) / "ran.txt"
    rig.bot.wait_for(lambda: ran.exists() or None, 15, "the command to start")
    rig.running().kill9()
    rig.start()
    reply = rig.answer(kim.id, sent, "tool results", timeout=30)
    assert "interrupted: vigil restarted while this tool call was running" in reply.text
    assert ran.read_text() == "run\n"
    assert not [m for m in rig.replies(kim.id, sent) if "🔐" in m.text and m.reply_markup]
