"""Compaction end to end: `vigil run` with a small history window, the real SDK and PTB on the stand-ins.

With VIGIL_HISTORY_TOKENS=2000 and replies of 800 characters (~240 tokens a turn), the window
overflows at the tenth turn and folds the five oldest into a summary; four more turns fit after it
before the next compaction. The Messages stand-in recognises the summarisation call by its system
prompt and answers `summary: ` with the users' lines of its transcript, so a test can see which
turns a summary covers and that an earlier summary was folded in.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.rig import Rig
from tests.standins.bot_api import Message, User
from tests.standins.messages_api import ErrorReply, RecordedRequest, is_summary_request

pytestmark = pytest.mark.e2e

RIG_SETTINGS = {"VIGIL_HISTORY_TOKENS": "2000"}
SUMMARY_LEAD = "[Summary of the conversation so far:"
COMPACTED = "🗜 Compacted"


def turn(rig: Rig, user: User, n: int) -> Message:
    """One turn of the long conversation: the reply is 800 characters of filler."""
    sent = rig.say(user.id, user, f"{user.first_name} topic {n} [[len=800]]")
    rig.answer(user.id, sent, "p1 alpha", timeout=15)
    return sent


def summary_requests(rig: Rig, user: User) -> list[RecordedRequest]:
    return [r for r in list(rig.api.requests) if r.is_summary and f"{user.first_name} topic" in r.last_user_text()]


def request_of(rig: Rig, user: User, n: int) -> RecordedRequest:
    return rig.requests_with(f"{user.first_name} topic {n} ")[-1]


def history_text(request: RecordedRequest) -> str:
    """The text of every message of a request (the history and the current turn)."""
    return "\n".join(b["text"] for m in request.body["messages"] for b in m["content"]
                     if isinstance(b, dict) and b.get("type") == "text")


def notices(rig: Rig, user: User, needle: str) -> list[str]:
    return [m.text for m in rig.bot.bot_messages(user.id) if needle in m.text]


def test_a_long_conversation_is_compacted_once_with_the_summary_in_the_next_requests_and_export_keeps_every_turn(
        rig: Rig) -> None:
    """The issue's done-when: one announcement, the summary in the request, every turn in /export."""
    lena = rig.person("Lena")
    for n in range(10):
        turn(rig, lena, n)
    [summary_call] = summary_requests(rig, lena)
    [told] = rig.bot.wait_for(lambda: notices(rig, lena, COMPACTED) or None, 10, "the announcement")
    folded = int(told.split()[2])  # "🗜 Compacted N earlier turns ..."
    assert told == f"🗜 Compacted {folded} earlier turns into a summary; /export still has them all."
    assert 3 <= folded <= 6  # the window slid to ~60% of 2000 tokens: about half its turns left
    transcript = summary_call.last_user_text()
    assert all(f"Lena topic {n} " in transcript for n in range(folded))
    assert f"Lena topic {folded} " not in transcript  # the turns that stay in the window are not summarised

    tenth = history_text(request_of(rig, lena, 9))
    assert SUMMARY_LEAD in tenth and "summary: Lena topic 0 | Lena topic 1" in tenth
    assert f"Lena topic {folded - 1} [[" not in tenth  # the folded turns themselves left the window
    assert f"Lena topic {folded} [[len=800]]" in tenth

    turn(rig, lena, 10)
    eleventh = history_text(request_of(rig, lena, 10))
    assert SUMMARY_LEAD in eleventh and "summary: Lena topic 0 | Lena topic 1" in eleventh
    assert len(summary_requests(rig, lena)) == 1
    assert len(notices(rig, lena, COMPACTED)) == 1

    exported = rig.exported(lena)
    [generation] = exported["generations"]
    assert [t["inputs"][0]["text"] for t in generation["turns"]] == [f"Lena topic {n} [[len=800]]" for n in range(11)]
    [summary] = generation["summaries"]
    assert summary["upto"] == folded and summary["folded"] == folded
    assert summary["text"].startswith("summary: Lena topic 0") and summary["usage"]["calls"] == 1


def test_a_second_compaction_folds_the_first_summary_in(rig: Rig) -> None:
    omar = rig.person("Omar")
    for n in range(14):
        turn(rig, omar, n)
    first, second = summary_requests(rig, omar)
    assert "<earlier_summary>" not in first.last_user_text()
    folded = second.last_user_text()
    assert "<earlier_summary>\nsummary: Omar topic 0 | Omar topic 1" in folded
    assert "Omar topic 5 [[" in folded and "Omar topic 0 [[" not in folded  # only the new turns, as turns
    latest = history_text(request_of(rig, omar, 13))
    assert "summary: (summary: Omar topic 0 | Omar topic 1 | Omar topic 2 | Omar topic 3" in latest
    assert latest.count(SUMMARY_LEAD) == 1  # the newest summary only: the first lives on inside it
    assert len(notices(rig, omar, COMPACTED)) == 2


def test_compact_on_demand_folds_all_but_the_newest_turns(rig: Rig) -> None:
    pia = rig.person("Pia")
    rig.ask(pia.id, pia, "/compact", "Nothing to compact: this chat has no conversation yet")
    turn(rig, pia, 0)
    reply = rig.ask(pia.id, pia, "/compact", "Nothing to compact")
    assert "Claude sees 1 turn of this conversation" in reply.text
    for n in range(1, 3):
        turn(rig, pia, n)
    rig.ask(pia.id, pia, "/compact", "🗜 Compacted 1 earlier turn into a summary")
    [call] = summary_requests(rig, pia)
    assert "Pia topic 0 " in call.last_user_text() and "Pia topic 1 " not in call.last_user_text()
    turn(rig, pia, 3)
    after = history_text(request_of(rig, pia, 3))
    assert SUMMARY_LEAD in after and "summary: Pia topic 0" in after and "Pia topic 0 [[" not in after
    assert "Pia topic 1 [[" in after and "Pia topic 2 [[" in after
    rig.ask(pia.id, pia, "/compact", "🗜 Compacted 1 earlier turn")  # topic 1; the summary of topic 0 folded in
    again = summary_requests(rig, pia)[-1].last_user_text()
    assert "<earlier_summary>\nsummary: Pia topic 0" in again and "Pia topic 1 " in again
    assert "Pia topic 2 " not in again


def test_a_failed_summary_drops_the_turns_and_tells_the_chat(rig: Rig) -> None:
    quinn = rig.person("Quinn")
    rig.api.add_rule(lambda b: is_summary_request(b) and "Quinn topic" in json.dumps(b["messages"]),
                     ErrorReply(500, retry_after_ms=10))
    for n in range(10):
        turn(rig, quinn, n)
    failed = rig.bot.wait_for(lambda: notices(rig, quinn, "couldn't summarise") or None, 10, "the failure notice")
    assert len(failed) == 1 and "left Claude's view" in failed[0] and "/export" in failed[0], failed
    dropped = int(failed[0].split("the oldest ")[1].split()[0])
    assert notices(rig, quinn, COMPACTED) == []
    tenth = history_text(request_of(rig, quinn, 9))
    assert SUMMARY_LEAD not in tenth
    assert f"Quinn topic {dropped - 1} [[" not in tenth and f"Quinn topic {dropped} [[" in tenth
    exported = rig.exported(quinn)
    assert len(exported["generations"][0]["turns"]) == 10
    assert exported["generations"][0]["summaries"] == []


def test_a_restart_keeps_the_summary_without_summarising_again(fresh: Any) -> None:
    rig: Rig = fresh(VIGIL_HISTORY_TOKENS="2000")
    rosa = rig.person("Rosa")
    for n in range(10):
        turn(rig, rosa, n)
    assert len(summary_requests(rig, rosa)) == 1
    rig.stop()
    rig.start()
    turn(rig, rosa, 10)
    after = history_text(request_of(rig, rosa, 10))
    assert SUMMARY_LEAD in after and "summary: Rosa topic 0 | Rosa topic 1" in after
    assert "Rosa topic 9 [[" in after and "Rosa topic 0 [[" not in after
    assert len(summary_requests(rig, rosa)) == 1
    assert len(notices(rig, rosa, COMPACTED)) == 1
