"""Thinking end to end: /think, VIGIL_THINKING, thinking blocks through tool loops, /stop and kill -9, what is shown.

The Messages stand-in thinks when asked (or by a model's default), signs every thinking block, and
refuses a continuation that drops or changes one (tests/standins/messages_api/thinking.py): the rig
fixture fails a test whose requests it refused. The shared vigil here defaults to VIGIL_THINKING=low.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.procs import run_vigil, vigil_env
from tests.rig import BOT, Rig
from tests.standins.messages_api import Hang, MessagesAPI, RecordedRequest
from tests.standins.messages_api.content import current_turn_text

pytestmark = pytest.mark.e2e

RIG_SETTINGS = {"VIGIL_THINKING": "low"}
THOUGHT = "Let me think it through before answering plainly."  # the stand-in's thinking of a first round
LOOP = ' '.join(['[[tool=recall {"query": "anything"}]]'] * 3)  # three rounds of tool calls, then the answer


def turn_requests(rig: Rig, words: str) -> list[RecordedRequest]:
    return [r for r in rig.requests_with(words) if not r.is_summary]


def assistant_messages(request: RecordedRequest) -> list[list[dict[str, Any]]]:
    return [m["content"] for m in request.body["messages"] if m["role"] == "assistant"]


def tool_rounds(body: dict[str, Any]) -> int:
    """Tool-result messages after the user message that began the current turn (what the stand-in counts)."""
    count = 0
    for message in reversed(body["messages"]):
        blocks = message["content"] if isinstance(message["content"], list) else []
        if message["role"] == "user" and blocks and all(b.get("type") == "tool_result" for b in blocks):
            count += 1
        elif message["role"] == "user":
            break
    return count


def test_the_default_level_and_think_set_show_and_refuse(rig: Rig) -> None:
    vera = rig.person("Vera")
    rig.ask(vera.id, vera, "first words", "echo: first words")
    body = turn_requests(rig, "first words")[-1].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}  # VIGIL_THINKING=low
    assert body["max_tokens"] == 4096 + 2048  # the budget on top of the answer's own room
    assert "low (VIGIL_THINKING's default)" in rig.ask(vera.id, vera, "/think", "💭 Thinking in this chat").text

    assert "Done. 💭 Thinking in this chat: off" in rig.ask(vera.id, vera, "/think off", "Done.").text
    rig.ask(vera.id, vera, "second words", "echo: second words")
    assert turn_requests(rig, "second words")[-1].body["thinking"] == {"type": "disabled"}
    refusal = rig.ask(vera.id, vera, "/think hard", "⛔").text
    assert refusal == "⛔ 'hard' is not a thinking level: /think off, auto, low, medium or high; /think show or " \
                      "/think show off."
    rig.ask(vera.id, vera, "/think high", "Done.")
    rig.ask(vera.id, vera, "third words", "echo: third words")
    body = turn_requests(rig, "third words")[-1].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 24576} and body["max_tokens"] == 4096 + 24576
    assert "low (VIGIL_THINKING's default)" in rig.ask(vera.id, vera, "/think default", "Done.").text


def test_a_groups_thinking_is_a_setting_its_members_cannot_change(rig: Rig) -> None:
    group = rig.group("Thinkers")
    wim = rig.person("Wim")
    rig.ask(group.id, wim, f"@{BOT} hello all", "echo:")
    refusal = rig.ask(group.id, wim, "/think high", "⛔").text
    assert refusal == ("⛔ Only this group's admins or a vigil admin can change how Claude thinks here "
                       "(/think off|auto|low|medium|high|show) here.")
    assert "💭 Thinking in this chat: low" in rig.ask(group.id, wim, "/think", "💭").text  # reading is everyone's


def test_three_tool_rounds_with_thinking_come_back_byte_for_byte_and_the_next_turn_is_accepted(rig: Rig) -> None:
    """The issue's done-when: with /think auto a three-round tool loop completes, every thinking block (a
    redacted one too) sent back as served (the stand-in refuses anything else), and the history stays valid."""
    xena = rig.person("Xena")
    rig.ask(xena.id, xena, "/think auto", "Done.")
    rig.ask(xena.id, xena, f"loop please [[redacted_thinking]] {LOOP}", "tool results:", timeout=20)
    requests = turn_requests(rig, "loop please")
    assert [tool_rounds(r.body) for r in requests] == [0, 1, 2, 3]
    assert all(r.body["thinking"] == {"type": "adaptive"} for r in requests)
    last = assistant_messages(requests[-1])[-3:]
    for content in last:
        assert [b["type"] for b in content] == ["redacted_thinking", "thinking", "tool_use"]
        assert content[1]["signature"]
    # Each round's blocks come back unchanged in every later request of the turn.
    for earlier, later in itertools.pairwise(requests[1:]):
        assert assistant_messages(later)[:len(assistant_messages(earlier))] == assistant_messages(earlier)

    rig.ask(xena.id, xena, "and now something else", "echo: and now something else")
    history = turn_requests(rig, "and now something else")[-1]
    assert any(b.get("type") == "redacted_thinking" for m in assistant_messages(history) for b in m)
    assert "Round 3" not in json.dumps(rig.exported(xena)["generations"][0]["turns"][-2]["reply"])


def test_stop_in_the_middle_of_a_thinking_tool_loop_leaves_a_history_the_api_accepts(rig: Rig) -> None:
    yuri = rig.person("Yuri")
    rig.ask(yuri.id, yuri, "/think auto", "Done.")
    rig.api.add_rule(lambda b: "stoppable loop" in current_turn_text(b) and tool_rounds(b) == 1, Hang(), times=1)
    sent = rig.say(yuri.id, yuri, f"stoppable loop {LOOP}")
    rig.bot.wait_for(lambda: next((r for r in turn_requests(rig, "stoppable loop") if tool_rounds(r.body) == 1),
                                  None), 10, "the second round's request")
    rig.ask(yuri.id, yuri, "/stop", "Stopping")
    rig.answer(yuri.id, sent, "stopped")
    rig.ask(yuri.id, yuri, "after the stop", "echo: after the stop")


def test_a_cut_while_thinking_leaves_a_history_the_api_accepts(rig: Rig) -> None:
    zoe = rig.person("Zoe")
    rig.ask(zoe.id, zoe, "/think medium", "Done.")
    rig.ask(zoe.id, zoe, "cut me [[think_drop=20]]", "⚠️")
    rig.ask(zoe.id, zoe, "after the cut", "echo: after the cut")


def test_the_thinking_line_shows_while_claude_thinks_and_never_stays(rig: Rig) -> None:
    ann = rig.person("Anouk")
    sent = rig.say(ann.id, ann, "ponder slowly [[think_slow=2]]")
    draft = rig.bot.wait_for_draft(ann.id, "💭 thinking…")
    assert draft.text == "💭 thinking…"
    reply = rig.answer(ann.id, sent, "echo: ponder slowly")
    assert "💭" not in reply.text and all(e[0] != "expandable_blockquote" for e in reply.entities)


def test_think_show_puts_the_summary_above_the_answer_in_an_expandable_quote_and_nowhere_else(rig: Rig) -> None:
    bea = rig.person("Bea")
    assert "shown above each answer" in rig.ask(bea.id, bea, "/think show", "Done.").text
    reply = rig.ask(bea.id, bea, "show your work", "echo: show your work")
    assert turn_requests(rig, "show your work")[-1].body["thinking"]["display"] == "summarized"
    assert reply.text.startswith("💭 The user wrote «show your work». " + THOUGHT), reply.text
    quote = next(e for e in reply.entities if e[0] == "expandable_blockquote")
    assert quote[1] == 0 and "echo: show your work" not in reply.text[:quote[2]]
    stored = rig.exported(bea)["generations"][0]["turns"][-1]
    assert THOUGHT not in stored["reply"] and stored["reply"] == "echo: show your work"
    assert "not shown" in rig.ask(bea.id, bea, "/think show off", "Done.").text
    plain = rig.ask(bea.id, bea, "quietly now", "echo: quietly now")
    assert "💭" not in plain.text


def test_the_console_shows_the_summary_plainly_above_the_answer(tmp_path: Path, messages_api: MessagesAPI) -> None:
    env = vigil_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=messages_api.base_url)
    done = run_vigil(["chat"], env, stdin="/think auto\n/think show\nconsider this\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    thought, answer = out.index("💭 The user wrote «consider this»"), out.index("echo: consider this")
    assert thought < answer and THOUGHT in out[thought:answer]
    assert not messages_api.errors


def test_kill_9_in_the_middle_of_a_thinking_tool_loop_and_a_restart_leave_an_accepted_history(fresh: Any) -> None:
    rig: Rig = fresh(VIGIL_THINKING="auto")
    kim = rig.person("Kim")
    rig.api.add_rule(lambda b: "crash loop" in current_turn_text(b) and tool_rounds(b) == 2, Hang(), times=1)
    rig.say(kim.id, kim, f"crash loop {LOOP}")
    rig.bot.wait_for(lambda: next((r for r in turn_requests(rig, "crash loop") if tool_rounds(r.body) == 2), None),
                     10, "the third round's request")
    rig.running().kill9()
    rig.start()
    rig.bot.wait_for_bot_text(kim.id, "tool results:", timeout=20)
    resumed = [r for r in turn_requests(rig, "crash loop") if tool_rounds(r.body) == 3]
    assert resumed, "the turn went on from its stored rounds"
    assert [b["type"] for b in assistant_messages(resumed[-1])[-3][:1]] == ["thinking"]
    rig.ask(kim.id, kim, "after the crash", "echo: after the crash")
    assert not rig.api.errors, rig.api.errors
