"""The cleanup button deletes what its prompt listed, for the one who asked, and expires.

`vigil run` against the stand-ins. The attacks: another group member, and an admin, pressing a
member's "Delete them"; a press after the prompt went stale (vigil restarted); a session used again
between the prompt and the press.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.rig import BOT, Rig, cleanup_button
from tests.standins.bot_api import CallbackQuery
from vigil.control.offers import EXPIRED, NOT_YOURS

pytestmark = pytest.mark.e2e


def answered(rig: Rig, query: CallbackQuery) -> CallbackQuery:
    return rig.bot.wait_for(lambda: q if (q := rig.bot.callback_query(query.id)).answered else None, 10,
                            "the answer to the press")


def stored(rig: Rig) -> set[str]:
    return {line.split()[0] for line in rig.sessions_list().splitlines() if line.startswith("tg:")}


def test_only_the_asker_deletes_and_only_what_was_listed(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    gina, hal, ivy = rig.person("Gina"), rig.person("Hal"), rig.person("Ivy")
    here, there = rig.group("Where Gina asks"), rig.group("Gina's other group")
    for group in (here, there):
        rig.bot.promote(group.id, gina.id)  # a group's sessions are its admins' to delete
    for chat in (here, there):
        rig.ask(chat.id, gina, f"@{BOT} hello {chat.title}", f"hello {chat.title}")
    rig.ask(gina.id, gina, "gina alone", "echo: gina alone")
    rig.ask(ivy.id, ivy, "ivy alone", "echo: ivy alone")
    rig.ask(here.id, hal, f"@{BOT} hal was here too", "hal was here too")
    time.sleep(1.2)  # real idle time: the sessions must be idle for longer than 1 s
    everything = stored(rig)

    # In a group the prompt lists that group's sessions only: nothing of Gina's other chats shows there.
    prompt = rig.ask(here.id, gina, "/sessions cleanup 1s", "🧹")
    assert f"tg:{here.id}" in prompt.text, prompt.text
    assert all(f"tg:{other}" not in prompt.text for other in (there.id, gina.id, ivy.id, hal.id)), prompt.text
    button = cleanup_button(prompt)
    assert len(button.encode()) <= 64

    # Another member of the group presses it: refused, with an alert; nothing deleted.
    refusal = answered(rig, rig.bot.press_button(here.id, hal.id, prompt.message_id, button))
    assert refusal.show_alert and refusal.answer_text == NOT_YOURS
    # An admin presses a member's prompt: the same (once, this deleted every user's idle sessions).
    refusal = answered(rig, rig.bot.press_button(here.id, rig.admin.id, prompt.message_id, button))
    assert refusal.show_alert and refusal.answer_text == NOT_YOURS
    assert stored(rig) == everything
    assert rig.message(here.id, prompt.message_id).reply_markup is not None

    # In her private chat Gina's prompt lists every chat of hers, and only hers.
    mine = rig.ask(gina.id, gina, "/sessions cleanup 1s", "🧹")
    listed = {f"tg:{here.id}", f"tg:{there.id}", f"tg:{gina.id}"}
    assert all(key in mine.text for key in listed), mine.text
    assert f"tg:{ivy.id}" not in mine.text and f"tg:{hal.id}" not in mine.text

    # Between the prompt and the press, one listed session is used again: it is no longer idle.
    rig.ask(there.id, gina, f"@{BOT} still using this one", "still using this one")

    rig.bot.press_button(gina.id, gina.id, mine.message_id, cleanup_button(mine))
    report = rig.edited_to(gina.id, mine.message_id, "Deleted")
    assert "Deleted 2 session(s)" in report.text and "Kept 1 session(s)" in report.text, report.text
    assert stored(rig) == everything - {f"tg:{here.id}", f"tg:{gina.id}"}
    assert f"tg:{there.id}" in stored(rig) and f"tg:{ivy.id}" in stored(rig)


def test_a_stale_prompt_deletes_nothing(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    olga = rig.person("Olga")
    group = rig.group("Olga's idle group")
    rig.bot.promote(group.id, olga.id)
    rig.ask(group.id, olga, f"@{BOT} soon idle", "soon idle")
    time.sleep(1.2)
    prompt = rig.ask(olga.id, olga, "/sessions cleanup 1s", "🧹")
    assert f"tg:{group.id}" in prompt.text
    # Prompts live in memory for ten minutes: after a restart the button is expired (the safe side).
    rig.stop()
    rig.start()
    refusal = answered(rig, rig.bot.press_button(olga.id, olga.id, prompt.message_id, cleanup_button(prompt)))
    assert refusal.show_alert and refusal.answer_text == EXPIRED
    assert f"tg:{group.id}" in stored(rig)
