"""Schedules end to end: `vigil run` against the stand-ins, the model calling `schedule` through directives.

The done-when: Claude calls `schedule` with a time 3 seconds ahead and the text "stand up"; the chat
receives a message about it within a few seconds of that time, also when vigil was restarted in between.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.procs import run_vigil
from tests.rig import BOT, Rig
from tests.standins.bot_api import Message, SentMessage, User
from tests.standins.messages_api import ErrorReply, Hang, RecordedRequest, Responder, ToolCall, ToolUseReply
from tests.standins.messages_api.content import current_turn_text

pytestmark = pytest.mark.e2e

# A floor of 2 s lets a recurrence fire twice in a few seconds, and still refuse one every second.
RIG_SETTINGS = {"VIGIL_HEARTBEAT_MIN_INTERVAL": "2s", "VIGIL_MAX_SCHEDULES": "3"}
FIRES = "It fires now"  # in every firing's prompt, so in the stand-in's echo of it
DUE = re.compile(r"It fires now \(due (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\)")


def iso_in(seconds: float) -> tuple[str, float]:
    due = time.time() + seconds
    return dt.datetime.fromtimestamp(due, dt.UTC).isoformat(timespec="milliseconds"), due


def tool_results(rig: Rig, marker: str) -> list[dict[str, Any]]:
    """The tool_result blocks vigil sent back in the turn whose message holds `marker`."""
    def found() -> RecordedRequest | None:
        return next((r for r in rig.requests_with(marker)
                     if any(b.get("type") == "tool_result" for b in r.body["messages"][-1]["content"])), None)

    request = rig.bot.wait_for(found, 30, f"the tool results of {marker!r}")
    return [b for b in request.body["messages"][-1]["content"] if b.get("type") == "tool_result"]


def result_text(block: dict[str, Any]) -> str:
    content = block["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def create(rig: Rig, chat_id: int, user: User, marker: str, prefix: str = "", ahead: float | None = None,
           **tool_input: str) -> tuple[str, float]:
    """Has the model create a schedule, `ahead` seconds after the model's answer (if given); its id and `at`.

    The time is taken when the stand-in answers, as a model would: on a loaded machine the user's message
    can take seconds to reach it, and "3 seconds ahead" means from the model's call, not from the typing.
    """
    due: list[float] = []

    def respond(body: dict[str, Any]) -> Responder:
        extra = dict(tool_input)
        if ahead is not None:
            extra["at"], when = iso_in(ahead)
            due.append(when)
        return ToolUseReply(calls=[ToolCall("schedule", {"action": "create", **extra})])

    rig.api.add_rule(lambda body: marker in current_turn_text(body)
                     and body["messages"][-1]["content"][0].get("type") != "tool_result", respond, times=1)
    rig.ask(chat_id, user, f"{prefix}{marker}", "tool results:", timeout=30)
    [result] = tool_results(rig, marker)
    made = re.match(r"created ([a-z0-9]{6}):", result_text(result))
    assert made and not result.get("is_error"), result
    return made.group(1), (due[0] if due else 0.0)


def firings(rig: Rig, chat_id: int, after: Message | None = None) -> list[SentMessage]:
    return [m for m in rig.bot.bot_messages(chat_id) if FIRES in m.text
            and (after is None or m.message_id > after.message_id)]


def wait_until(moment: float) -> None:
    """Real time passing is the condition: vigil must be down (or idle) across a due time."""
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.5))


def test_a_reminder_set_by_the_model_arrives_at_its_time(rig: Rig) -> None:
    ann = rig.person("Ann")
    _, due = create(rig, ann.id, ann, "remind me", ahead=3, text="stand up")
    fired = rig.bot.wait_for(lambda: next(iter(firings(rig, ann.id)), None), 15, "the reminder")
    arrived = time.time()
    assert due - 0.5 <= arrived <= due + 4, f"arrived {arrived - due:+.1f}s from its time"
    assert "stand up" in fired.text
    request = rig.wait_request(FIRES)
    assert "remind me" in json.dumps(request.body["messages"]), "the firing turn carries the chat's history"
    assert "schedule" in {t["name"] for t in request.body["tools"]}
    listing = rig.ask(ann.id, ann, "/schedules", "⏰")
    assert "no schedules" in listing.text, "a one-time reminder is gone once it fired"


def test_a_reminder_arrives_across_a_restart(fresh: Callable[..., Rig]) -> None:
    rig = fresh(**RIG_SETTINGS)
    ann = rig.person("Ann")
    # Ahead by 3 s from the model's call, the done-when's time, if the machine stops vigil that fast; a
    # loaded one may not, and then the reminder would fire before the restart instead of after it.
    _, due = create(rig, ann.id, ann, "remind me after the restart", ahead=6, text="stand up")
    rig.stop()
    assert time.time() < due, "vigil was stopped before the reminder's time"
    restarted = time.monotonic()
    due_mono = restarted + due - time.time()
    rig.start()
    ready = time.monotonic()
    fired = rig.bot.wait_for(lambda: next(iter(firings(rig, ann.id)), None), 30, "the reminder after a restart")
    arrived = time.monotonic()
    # The firing turn begins (the chat is shown "typing") at its time, or at once if the restart took longer.
    began = next(c.time for c in rig.bot.calls if c.method == "sendChatAction" and c.time > restarted
                 and c.params.get("chat_id") in (ann.id, str(ann.id)))
    assert due_mono - 0.5 <= began <= max(due_mono, ready) + 3, f"began {began - due_mono:+.1f}s from its time"
    # Its reply comes after a model call, the new process's first: under a second on an idle machine, but
    # the SDK's import (vigil/model/anthropic_model.py warms it up in the background) took 7 s on a loaded one.
    assert arrived <= max(due_mono, ready) + 15, f"arrived {arrived - due_mono:+.1f}s from its time"
    assert "stand up" in fired.text
    wait_until(time.time() + 2)
    assert len(firings(rig, ann.id)) == 1, "fired once"


def test_a_missed_recurrence_fires_once_after_downtime_then_goes_on_from_now(fresh: Callable[..., Rig]) -> None:
    rig = fresh(**RIG_SETTINGS)
    ann = rig.person("Ann")
    _, first = create(rig, ann.id, ann, "every three seconds", ahead=6, every="FREQ=SECONDLY;INTERVAL=3",
                      text="drink water")
    rig.stop()
    assert time.time() < first
    wait_until(first + 3 * 3 + 0.5)  # four occurrences pass while vigil is down
    down_until = time.time()
    rig.start()
    rig.bot.wait_for(lambda: len(firings(rig, ann.id)) >= 3 or None, 20, "firings after the restart")
    dues = [dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC).timestamp()
            for r in list(rig.api.requests) if (m := DUE.search(r.last_user_text()))]
    missed = [d for d in dues if d < down_until]
    assert len(missed) == 1, f"the missed occurrences fire once, not as a burst: {dues}"
    later = [d for d in dues if d >= down_until]
    # Occurrences of the rule, each once, from now on (one that passed while a firing ran is not caught up).
    assert later and all(b > a for a, b in itertools.pairwise(later)), dues
    assert all(round(d - math.ceil(first)) % 3 == 0 for d in dues), dues
    assert dues[0] == math.ceil(first), "the first missed occurrence is the one that fires"
    assert later[0] - down_until < 3 + 6, "then the rule goes on from now"


def test_a_recurrence_fires_twice_and_stops_when_cancelled(rig: Rig) -> None:
    bo = rig.person("Bo")
    sid, _ = create(rig, bo.id, bo, "stretch every two seconds", every="FREQ=SECONDLY;INTERVAL=2", text="stretch")
    rig.bot.wait_for(lambda: len(firings(rig, bo.id)) >= 2 or None, 15, "two firings")
    listing = rig.ask(bo.id, bo, "/schedules", "⏰")
    assert sid in listing.text and "FREQ=SECONDLY;INTERVAL=2" in listing.text and "stretch" in listing.text
    cancelled = rig.ask(bo.id, bo, f"/schedules cancel {sid}", "Cancelled")
    count = len(firings(rig, bo.id))
    wait_until(time.time() + 4.5)  # two intervals in which nothing may fire
    assert len(firings(rig, bo.id)) == count, "nothing fires after /schedules cancel"
    assert "no schedules" in rig.ask(bo.id, bo, "/schedules", "⏰").text
    assert cancelled.text.startswith("🗑")


def bot_said(rig: Rig, chat_id: int, after_id: int, needle: str) -> SentMessage:
    return rig.bot.wait_for(lambda: next((m for m in rig.bot.bot_messages(chat_id)
                                          if m.message_id > after_id and needle in m.text), None),
                            15, f"the bot saying {needle!r}")


def button_of(message: SentMessage, schedule_id: str) -> str:
    buttons = [b for row in (message.reply_markup or {}).get("inline_keyboard", []) for b in row]
    return next(str(b["callback_data"]) for b in buttons if schedule_id in str(b["callback_data"]))


def test_cancel_by_button_only_for_its_owner_or_an_admin_in_a_group(rig: Rig) -> None:
    cy, dan = rig.person("Cy"), rig.person("Dan")
    group = rig.group("Standup")
    sid, due = create(rig, group.id, cy, "remind the group", prefix=f"@{BOT} ", ahead=10, text="group stand up")
    listing = rig.ask(group.id, dan, "/schedules", "⏰")
    assert "group stand up" in listing.text
    button = button_of(listing, sid)
    assert len(button.encode()) <= 64
    # Dan's press is refused at once, in an alert only he sees: nothing is said in the group.
    press = rig.bot.press_button(group.id, dan.id, listing.message_id, button)
    rig.bot.wait_for(lambda: rig.bot.callback_query(press.id).answered, 10, "the answer to Dan's press")
    refusal = rig.bot.callback_query(press.id)
    assert refusal.show_alert and f"Only Cy or an admin of this group can cancel {sid}" in (refusal.answer_text or "")
    rig.bot.press_button(group.id, cy.id, listing.message_id, button)
    cancelled = bot_said(rig, group.id, listing.message_id, f"Cancelled {sid}")
    later = [m for m in rig.bot.bot_messages(group.id) if m.message_id > listing.message_id]
    assert not any("Only Cy" in m.text for m in later), "the refusal was Dan's alone"
    assert cancelled.message_id > listing.message_id
    wait_until(due + 2)
    assert not firings(rig, group.id), "a cancelled reminder does not fire"


def test_a_past_time_a_malformed_or_too_frequent_rule_and_the_cap_are_refused_clearly(rig: Rig) -> None:
    eve = rig.person("Eve")
    past, _ = iso_in(-60)
    later, _ = iso_in(3600)
    calls = [{"at": past, "text": "too late"},
             {"every": "FREQ=SOMETIMES", "text": "malformed"},
             {"every": "61 * * * *", "text": "no such minute"},
             {"every": "FREQ=SECONDLY", "text": "every second"},
             *[{"at": later, "text": f"one of many {i}"} for i in range(4)]]
    reply = ToolUseReply(calls=[ToolCall("schedule", {"action": "create", **c}) for c in calls])
    rig.api.add_rule(lambda body: "set them all" in current_turn_text(body)
                     and body["messages"][-1]["content"][0].get("type") != "tool_result", reply, times=1)
    rig.ask(eve.id, eve, "set them all", "tool results:", timeout=30)
    results = tool_results(rig, "set them all")
    assert len(results) == 8
    errors = [(bool(r.get("is_error")), result_text(r)) for r in results]
    assert errors[0][0] and "in the past" in errors[0][1]
    assert errors[1][0] and "not a valid RRULE" in errors[1][1]
    assert errors[2][0] and "not a valid cron expression" in errors[2][1]
    assert errors[3][0] and "shortest interval allowed is 2s" in errors[3][1]
    assert [e for e, _ in errors[4:7]] == [False, False, False]
    assert errors[7][0] and "the most allowed (3)" in errors[7][1]
    listed = rig.ask(eve.id, eve, "/schedules", "⏰").text
    assert listed.count("one of many") == 3 and "too late" not in listed


def test_a_firing_cut_by_kill_9_fires_again_after_the_restart(fresh: Callable[..., Rig]) -> None:
    rig = fresh(**RIG_SETTINGS)
    ann = rig.person("Ann")
    rig.api.add_rule(lambda body: FIRES in current_turn_text(body), Hang(), times=1)
    create(rig, ann.id, ann, "remind me despite a crash", ahead=3, text="stand up")
    seen = len(rig.api.requests)
    rig.api.wait_for_requests(seen + 1, timeout=30)  # the firing's model call, which hangs
    assert rig.requests_with(FIRES), "the firing turn had begun"
    rig.running().kill9()
    assert not firings(rig, ann.id)
    rig.start()
    fired = rig.bot.wait_for(lambda: next(iter(firings(rig, ann.id)), None), 30, "the reminder after the crash")
    assert "stand up" in fired.text
    wait_until(time.time() + 2)
    assert len(firings(rig, ann.id)) == 1, "fired once after the restart"
    exported = json.loads(run_vigil(["sessions", "export", f"tg:{ann.id}"], rig.env).stdout)
    turns = [t for g in exported["generations"] for t in g["turns"]]
    kinds = [(t["kind"], t["status"]) for t in turns if t["kind"] == "schedule"]
    # The cut turn had written nothing down (no tool round): the firing after the restart is the only one.
    assert kinds == [("schedule", "done")], kinds
    assert exported["session"]["schedules"] == [], "the one-time reminder is gone once it was answered"


def test_the_reminder_itself_arrives_when_the_model_call_fails(rig: Rig) -> None:
    fay = rig.person("Fay")
    rig.api.add_rule(lambda body: FIRES in current_turn_text(body) and "feed the cat" in current_turn_text(body),
                     ErrorReply(status=400, message="the model refused"))
    _, due = create(rig, fay.id, fay, "remind me about the cat", ahead=2, text="feed the cat")
    fired = rig.bot.wait_for(lambda: next((m for m in rig.bot.bot_messages(fay.id) if "⏰" in m.text), None), 20,
                             "the reminder's own text")
    assert fired.text.startswith("⏰ feed the cat"), fired.text
    assert time.time() >= due - 0.5
