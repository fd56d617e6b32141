"""Pauses, end to end: a chat nobody writes in stops beating, is told once, and the next message resumes it
(schedules fire all the same); a chat that blocked the bot pauses its schedules until someone writes there.
`vigil run` against the stand-ins, with short times."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.rig import Rig
from tests.test_heartbeat_e2e import beat_requests
from tests.test_sched_e2e import FIRES, create, firings, wait_until

pytestmark = pytest.mark.e2e

PAUSED = "💤 Nobody has written here"  # the announcement (/heartbeat status says "💤 Paused since")


def test_a_quiet_chat_stops_beating_is_told_once_and_a_message_resumes_it(fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_HEARTBEAT_IDLE_PAUSE="4s", VIGIL_HEARTBEAT_MIN_INTERVAL="1s")
    ann = rig.person("Ann")
    # A reminder set now falls due while the heartbeat is paused: schedules are not paused.
    _, due = create(rig, ann.id, ann, "remind me later", ahead=9, text="water the plants")
    rig.ask(ann.id, ann, "/heartbeat every 1s", "Heartbeat on")
    told = rig.bot.wait_for(lambda: next((m for m in rig.bot.bot_messages(ann.id) if PAUSED in m.text), None), 30,
                            "the chat to be told the heartbeat paused")
    assert "Write anything to resume" in told.text
    beats = len(beat_requests(rig.api))
    assert beats >= 2, "it beat before it paused"
    status = rig.ask(ann.id, ann, "/heartbeat status", "Heartbeat")
    assert "Paused since" in status.text and "nobody had written here for 4s" in status.text, status.text
    assert "Next beat" not in status.text

    rig.bot.wait_for(lambda: firings(rig, ann.id) or None, 30, "the reminder, while the heartbeat is paused")
    wait_until(max(due, told_at(rig, ann.id)) + 3)  # three intervals in which no beat may come
    assert len(beat_requests(rig.api)) == beats, "no beats while paused"
    assert sum(PAUSED in m.text for m in rig.bot.bot_messages(ann.id)) == 1, "told once"
    assert "Paused since" in rig.ask(ann.id, ann, "/heartbeat status", "Heartbeat").text, \
        "a firing is not someone writing: still paused"

    back = rig.say(ann.id, ann, "I'm back")
    rig.answer(ann.id, back, "echo: I'm back")
    rig.bot.wait_for(lambda: len(beat_requests(rig.api)) > beats or None, 20, "beats to resume after a message")
    assert "Next beat" in rig.ask(ann.id, ann, "/heartbeat status", "Heartbeat").text
    after = [m.text for m in rig.replies(ann.id, back)]
    assert after[0].startswith("echo: I'm back") and not any("resum" in text for text in after), \
        "resuming says nothing"


def told_at(rig: Rig, chat_id: int) -> float:
    """When the pause was told, on the wall clock (the stand-in keeps message dates in whole seconds)."""
    return float(next(m.date for m in rig.bot.bot_messages(chat_id) if PAUSED in m.text))


def test_a_chat_that_blocked_the_bot_pauses_its_schedules_until_someone_writes(rig: Rig) -> None:
    ann = rig.person("Ann")
    create(rig, ann.id, ann, "first reminder", ahead=4, text="feed the cat")
    _, second = create(rig, ann.id, ann, "second reminder", ahead=9, text="walk the dog")
    rig.bot.block(ann.id)
    # The first fires (nobody knows yet), and Telegram refuses its reply for good: the schedules pause.
    rig.bot.wait_for(lambda: fired_for(rig, "feed the cat") or None, 30, "the first reminder's model call")
    rig.running().err.wait_for(lambda t: "schedules.paused_unreachable" in t, timeout=20,
                               what="the schedules to pause")
    wait_until(second + 3)
    assert not fired_for(rig, "walk the dog"), "a reminder in a chat that blocked the bot cost a model call"

    rig.bot.unblock(ann.id)
    back = rig.say(ann.id, ann, "I'm back")
    rig.answer(ann.id, back, "echo: I'm back")
    late = rig.bot.wait_for(lambda: next((m for m in firings(rig, ann.id) if "walk the dog" in m.text), None), 30,
                            "the paused reminder, once someone wrote")
    assert late.message_id > back.message_id
    assert len(fired_for(rig, "walk the dog")) == 1
    assert "no schedules" in rig.ask(ann.id, ann, "/schedules", "⏰").text


def fired_for(rig: Rig, text: str) -> list[object]:
    """The model calls of firings of the schedule with this text (not its creation's)."""
    return [r for r in rig.requests_with(FIRES) if text in r.last_user_text()]
