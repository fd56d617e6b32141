"""End to end: Anthropic's server web tools through `vigil run`, the Bot API and Messages API stand-ins.

The stand-in plays the searches as the API does (tests/standins/messages_api/server_tools.py) and
refuses any later request whose server blocks changed by a byte, are unpaired, or dangle before the
end: the `rig` fixture fails a test whose requests it refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.rig import Rig
from tests.standins.messages_api import WebReply

pytestmark = pytest.mark.e2e


def _without_cache_control(block: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in block.items() if k != "cache_control"}, sort_keys=True, ensure_ascii=False)


def _server_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for m in body["messages"] if m["role"] == "assistant" for b in m["content"]
            if b.get("type") == "server_tool_use" or b.get("type", "").endswith("_tool_result")]


def test_a_search_answered_with_citations_shows_links_and_comes_back_unchanged(rig: Rig) -> None:
    wes = rig.person("Wes")
    sent = rig.say(wes.id, wes, "[[search=tallest tower]] how tall is it?")
    reply = rig.answer(wes.id, sent, "has the answer", timeout=15)
    first = rig.wait_request("how tall is it?")
    tools = {t["name"]: t for t in first.body["tools"]}
    assert tools["web_search"]["type"] == "web_search_20260318" and tools["web_search"]["max_uses"] == 5
    assert tools["web_fetch"]["type"] == "web_fetch_20260318"
    # The cited words, then a link to the page they came from.
    url = "https://en.wikipedia.org/wiki/tallest-tower"
    assert f'has the answer <a href="{url}">[1]</a>.' in reply.raw, reply.raw
    assert any(kind == "text_link" for kind, _, _ in reply.entities), reply.entities

    rig.ask(wes.id, wes, "thanks, and the second one?", "echo: thanks, and the second one?")
    later = rig.requests_with("thanks, and the second one?")[-1]
    blocks = _server_blocks(later.body)
    assert [b["type"] for b in blocks] == ["server_tool_use", "web_search_tool_result"]
    served = rig.api.served
    assert _without_cache_control(blocks[0]) == served[f"use:{blocks[0]['id']}"]
    assert _without_cache_control(blocks[1]) == served[f"result:{blocks[0]['id']}"]
    assert all(r["encrypted_content"] for r in blocks[1]["content"])
    cited = [b for m in later.body["messages"] for b in m["content"] if b.get("citations")]
    assert len(cited) == 1 and f"cite:{_without_cache_control(cited[0]['citations'][0])}" in served

    # What the search cost, in /usage and /status.
    usage = rig.ask(wes.id, wes, "/usage", "💰")
    today = next(line for line in usage.text.splitlines() if line.startswith("Today:"))
    assert re.search(r"\(2 calls\) · 1 web search \$0\.0100", today), today
    status = rig.ask(wes.id, wes, "/status", "📊 Session")
    assert "· 1 web search $0.0100" in status.text, status.text


def test_a_paused_turn_is_continued_into_one_reply(rig: Rig) -> None:
    pia = rig.person("Pia")
    sent = rig.say(pia.id, pia, "[[search=long research]][[pause]] dig deep")
    reply = rig.answer(pia.id, sent, "has the answer", timeout=15)
    asked = rig.requests_with("dig deep")
    assert len(asked) == 2, "pause_turn: the paused content was sent back once to go on"
    paused, continued = asked
    assert paused.body["messages"][-1]["role"] == "user"
    tail = continued.body["messages"][-1]
    assert tail["role"] == "assistant", "the paused assistant content comes back as is, last"
    assert [b["type"] for b in tail["content"]] == ["server_tool_use", "web_search_tool_result"]
    assert len([m for m in rig.replies(pia.id, sent) if "has the answer" in m.text]) == 1
    assert '<a href="https://en.wikipedia.org/wiki/long-research">[1]</a>' in reply.raw

    rig.ask(pia.id, pia, "good, next", "echo: good, next")
    history = rig.requests_with("good, next")[-1].body["messages"]
    assistant = [m for m in history if m["role"] == "assistant"]
    assert [b["type"] for b in assistant[-1]["content"]][:2] == ["server_tool_use", "web_search_tool_result"]


def test_stop_in_the_middle_of_a_search_leaves_a_history_the_api_accepts(rig: Rig) -> None:
    sol = rig.person("Sol")
    sent = rig.say(sol.id, sol, "[[search=endless query]][[search_hang]] find it")
    rig.bot.wait_for_draft(sol.id, "🔎 searching: endless query", timeout=20)
    rig.ask(sol.id, sol, "/stop", "Stopping")
    rig.answer(sol.id, sent, "⏹ stopped", timeout=10)

    rig.ask(sol.id, sol, "and now?", "echo: and now?")
    later = rig.requests_with("and now?")[-1]
    assert "find it" in later.all_text()
    assert _server_blocks(later.body) == [], "the search that never finished is not sent back"


def test_kill_9_in_the_middle_of_a_search_leaves_a_history_the_api_accepts(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    kit = rig.person("Kit")
    rig.api.add_rule(lambda body: "crash here" in json.dumps(body["messages"][-1]),
                     WebReply(searches=["doomed query"], hang_in_search=True), times=1)
    sent = rig.say(kit.id, kit, "[[search=doomed query]] crash here")
    rig.bot.wait_for_draft(kit.id, "🔎 searching: doomed query", timeout=30)
    rig.running().kill9()

    rig.start()
    rig.answer(kit.id, sent, "has the answer", timeout=20)  # answered again after the restart
    rig.ask(kit.id, kit, "still there?", "echo: still there?", timeout=15)
    later = rig.requests_with("still there?")[-1]
    assert [b["type"] for b in _server_blocks(later.body)] == ["server_tool_use", "web_search_tool_result"]
    assert not rig.api.errors, rig.api.errors


def test_web_off_offers_no_web_tool(fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_WEB="off")
    ola = rig.person("Ola")
    rig.ask(ola.id, ola, "[[search=anything]] are you online?", "tool web_search not offered", timeout=15)
    request = rig.requests_with("are you online?")[-1]
    assert not [t for t in request.body.get("tools", []) if str(t.get("type", "")).startswith("web_")]
    assert not rig.api.errors
