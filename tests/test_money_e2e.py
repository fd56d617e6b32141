"""Money, end to end: every model call counts against the user's rate limit and daily budget.

`vigil run` against the Bot API and Messages API stand-ins (the rig of test_telegram_e2e). The
attacks: `/heartbeat test` over and over once the budget or the rate limit is reached, a tool loop
that crosses the budget halfway, `/stop` (and `kill -9`) in the middle of a streamed reply to pay
nothing, a model missing from the price table to be charged the cheap rate.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.procs import run_vigil
from tests.rig import Rig, squash
from tests.standins.bot_api import User
from tests.standins.messages_api import filler_text

pytestmark = pytest.mark.e2e

NOTE_ONE = '[[tool=save_note {"text": "first note of the loop"}]]'
NOTE_TWO = '[[tool=save_note {"text": "second note of the loop"}]]'
NOTE_THREE = '[[tool=save_note {"text": "third note of the loop"}]]'


def beat_requests(rig: Rig) -> int:
    """Model requests of heartbeat turns (only they offer the send_message tool)."""
    return sum(1 for r in list(rig.api.requests)
               if any(t.get("name") == "send_message" for t in r.body.get("tools") or []))


def stored_header(rig: Rig, key: str) -> dict[str, Any]:
    result = run_vigil(["sessions", "list", "--json"], rig.env, timeout=30)
    assert result.returncode == 0, result.stderr
    headers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return next(h for h in headers if h["key"] == key)


def open_turn_charged(rig: Rig, key: str) -> bool:
    """Whether the session's stored open turn carries the input and some output of its call so far."""
    result = run_vigil(["sessions", "export", key], rig.env, timeout=30)
    if result.returncode != 0:
        return False
    turns = [t for g in json.loads(result.stdout)["generations"] for t in g["turns"] if t["status"] == "open"]
    return any(t["usage"]["input_tokens"] > 0 and t["usage"]["output_tokens"] > 0 for t in turns)


def usage_today(rig: Rig, user: User) -> tuple[str, int]:
    """(the /usage text, today's calls) as the user sees them."""
    usage = rig.ask(user.id, user, "/usage", "💰")
    today = re.search(r"Today: \S+ tokens · \$\d+\.\d+ \((\d+) calls\)", usage.text)
    assert today, usage.text
    return usage.text, int(today.group(1))


# ------------------------------------------------------------------------------------------------
# the budget and the rate limit against /heartbeat test
# ------------------------------------------------------------------------------------------------


def test_heartbeat_test_is_not_free_once_the_budget_is_spent(fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_DAILY_BUDGET_USD="0.000001")
    bea = rig.person("Bea")
    rig.ask(bea.id, bea, "the first is answered", "echo: the first is answered")
    requests = len(rig.api.requests)
    for _ in range(3):
        refusal = rig.ask(bea.id, bea, "/heartbeat test", "🫀 Test beat")
        assert "not run" in refusal.text and "daily budget" in refusal.text, refusal.text
        assert "00:00 UTC" in refusal.text, refusal.text
    assert len(rig.api.requests) == requests, "a beat over the budget reached the model"
    assert beat_requests(rig) == 0

    # The admin is not limited: the same command runs the beat.
    admin = rig.admin
    rig.ask(admin.id, admin, "/heartbeat test", "🫀 Test beat: the model", timeout=15)
    assert beat_requests(rig) == 1


def test_heartbeat_test_counts_against_the_rate_limit(fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_MESSAGES_PER_MINUTE="3")
    rae = rig.person("Rae")
    rig.ask(rae.id, rae, "one message", "echo: one message")
    for _ in range(2):  # two beats fit in the minute with the message: three model calls
        rig.ask(rae.id, rae, "/heartbeat test", "🫀 Test beat: the model", timeout=15)
    assert beat_requests(rig) == 2
    requests = len(rig.api.requests)
    refusal = rig.ask(rae.id, rae, "/heartbeat test", "🫀 Test beat")
    assert "not run" in refusal.text and re.search(r"try again in \d+s", refusal.text), refusal.text
    assert len(rig.api.requests) == requests, "a beat over the rate limit reached the model"
    # The window the beats filled is the one messages use too.
    walrus = rig.say(rae.id, rae, "one more walrus")
    rig.answer(rae.id, walrus, "try again in")
    assert not rig.requests_with("walrus")


# ------------------------------------------------------------------------------------------------
# a tool loop that crosses the budget
# ------------------------------------------------------------------------------------------------


def test_a_tool_loop_stops_at_the_budget_with_a_valid_history(fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_DAILY_BUDGET_USD="0.000001")
    tom = rig.person("Tom")
    key = f"tg:{tom.id}"
    sent = rig.say(tom.id, tom, f"{NOTE_ONE}{NOTE_TWO}{NOTE_THREE} loop of notes")
    note = rig.answer(tom.id, sent, "daily budget", timeout=15)
    assert "⚠️" in note.text, note.text
    # One call was made (the budget was not spent before it); the next round was refused before its call.
    assert len(rig.requests_with("loop of notes")) == 1
    notes = rig.ask(tom.id, tom, "/notes", "🗒")
    assert "first note of the loop" in notes.text and "second note" not in notes.text, notes.text
    shown = stored_header(rig, key)["usage"]
    assert shown["calls"] == 1 and shown["input_tokens"] > 0, shown

    # With money again (a new budget, after a restart) the conversation goes on, its history valid:
    # the stand-in refuses any request whose tool_use is not answered.
    rig.stop()
    rig.env["VIGIL_DAILY_BUDGET_USD"] = "5"
    rig.start()
    rig.ask(tom.id, tom, "after the budget", "echo: after the budget", timeout=15)
    history = rig.requests_with("after the budget")[-1]
    assert "first note of the loop" in history.all_text()
    assert not rig.api.errors, rig.api.errors


# ------------------------------------------------------------------------------------------------
# a call cut short is charged for what it consumed
# ------------------------------------------------------------------------------------------------


def _tokens(text: str) -> float:
    number = float(text.rstrip("kM"))
    return number * (1000 if text.endswith("k") else 1_000_000 if text.endswith("M") else 1)


def test_stop_mid_stream_is_charged_for_input_and_output_so_far(pooled: Callable[..., Rig]) -> None:
    rig = pooled()
    sid = rig.person("Sid")
    key = f"tg:{sid.id}"
    sent = rig.say(sid.id, sid, "[[len=2400]][[slow=6]] a long slow story to stop")
    rig.bot.wait_for_draft(sid.id, "alpha", timeout=8)
    rig.ask(sid.id, sid, "/stop", "Stopping")
    stopped = rig.answer(sid.id, sent, "⏹ stopped")
    shown = len(stopped.text.replace("⏹ stopped", "").strip())
    assert 0 < shown < 2400

    usage = stored_header(rig, key)["usage"]
    assert usage["calls"] == 1, usage
    assert usage["input_tokens"] > 0, f"the input of the stopped call was not charged: {usage}"
    # The API reports output only at the end; what streamed before /stop is charged (≥ 1 token per 4 chars).
    assert usage["output_tokens"] >= shown // 4 > 1, f"the output so far was not charged: {usage}, {shown} chars"
    assert usage["cost_micros"] > 0
    text, calls = usage_today(rig, sid)
    assert calls == 1 and "$0.0000 (" not in text, text
    show = run_vigil(["sessions", "show", key], rig.env, timeout=30)
    line = next(x for x in show.stdout.splitlines() if x.startswith("usage"))
    words = line.split()
    assert _tokens(words[1]) > 0 and _tokens(words[4]) > 1, line


def test_a_turn_cut_by_kill_9_is_charged_after_the_restart(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    kim = rig.person("Kim")
    key = f"tg:{kim.id}"
    sent = rig.say(kim.id, kim, "[[len=2400]][[slow=8]] a story cut by a crash")
    # The reply streams (as a draft: a private chat); the open turn, with its usage so far, is on disk.
    rig.bot.wait_for_draft(kim.id, "alpha", timeout=8)
    deadline = time.monotonic() + 8
    while not open_turn_charged(rig, key):
        assert time.monotonic() < deadline, "the streaming turn was not written down with its usage"
    rig.running().kill9()
    rig.start()
    # The turn is answered again after the restart (its final commit comes before the whole reply shows);
    # both calls are paid for: the one the crash cut, on recovery, and the one that answered.
    story = squash(filler_text(2400))
    rig.bot.wait_for(lambda: any(squash(m.text) == story for m in rig.replies(kim.id, sent)), 30,
                     "the whole story, answered again")
    usage = stored_header(rig, key)["usage"]
    assert usage["calls"] == 2, f"the call cut by kill -9 was not charged: {usage}"
    _, calls = usage_today(rig, kim)
    assert calls == 2


# ------------------------------------------------------------------------------------------------
# a model missing from the price table
# ------------------------------------------------------------------------------------------------


def test_an_unknown_model_is_charged_at_its_familys_top_price_and_marked(pooled: Callable[..., Rig]) -> None:
    rig = pooled()
    logged_before = len(rig.running().err.lines)  # the service is shared: its log before this test is others'
    una = rig.person("Una")
    key = f"tg:{una.id}"
    rig.ask(una.id, una, "/model claude-opus-9-9", "🧠")
    rig.ask(una.id, una, "price me", "echo: price me")
    rig.ask(una.id, una, "price me again", "echo: price me again")
    usage = stored_header(rig, key)["usage"]
    assert usage["estimated_calls"] == 2, usage
    # Opus's dearest row (claude-opus-4: $15 in, $75 out per MTok, cache writes 1.25x, reads 0.1x).
    expected = (usage["input_tokens"] * 15 + usage["output_tokens"] * 75
                + usage["cache_write_tokens"] * 15 * 1.25 + usage["cache_read_tokens"] * 15 * 0.1)
    assert abs(usage["cost_micros"] - expected) <= 2, (usage, expected)
    text, _ = usage_today(rig, una)
    assert "≈ 2 estimated" in text and "price table" in text, text
    warnings = [line for line in rig.running().err.lines[logged_before:] if '"model.unpriced"' in line]
    assert len(warnings) == 1 and "claude-opus-9-9" in warnings[0], warnings
