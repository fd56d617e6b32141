"""The web tools beneath the end-to-end tests: settings, prices, citations as links, history validity.

The history tests check what the Messages stand-in's validator says of the requests vigil builds,
so a history that would be refused fails here first.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.standins.messages_api import validate_request
from vigil.actors.tools.web import describe_web, web_specs
from vigil.adapters.telegram.render import markdown_to_html, split_for_telegram, utf16_len, visible_text
from vigil.config.settings import Settings, load_settings
from vigil.control.views import usage_report
from vigil.errors import SettingsError
from vigil.model.citations import reply_text
from vigil.model.history import normalize
from vigil.model.prices import cost_micros, to_usage
from vigil.model.server_blocks import kept_whole
from vigil.ports import TokenUsage
from vigil.records.schema import Usage
from vigil.store.store import UsageRow

TOOLS = [{"type": "web_search_20260318", "name": "web_search", "max_uses": 5}]


def _settings(tmp_path: Path, **variables: str) -> Settings:
    return load_settings({"HOME": str(tmp_path), **variables})


# ------------------------------------------------------------------------------------------ settings


def test_web_tools_are_on_by_default_and_a_subset_or_off_can_be_chosen(tmp_path: Path) -> None:
    assert _settings(tmp_path).web == ("search", "fetch")
    assert [s["name"] for s in web_specs(_settings(tmp_path))] == ["web_search", "web_fetch"]
    assert [s["name"] for s in web_specs(_settings(tmp_path, VIGIL_WEB=" Fetch "))] == ["web_fetch"]
    assert web_specs(_settings(tmp_path, VIGIL_WEB="off")) == ()
    limited = web_specs(_settings(tmp_path, VIGIL_WEB="search", VIGIL_WEB_MAX_USES="2"))
    assert limited == ({"type": "web_search_20260318", "name": "web_search", "max_uses": 2},)
    # What vigil offers is what the stand-in (as strict as the API) accepts.
    specs = list(web_specs(_settings(tmp_path)))
    assert validate_request({"model": "claude-sonnet-5-5", "max_tokens": 10, "tools": specs,
                             "messages": [{"role": "user", "content": "hi"}]}) is None


@pytest.mark.parametrize("value", ["serch", "search,browse", "on", ""])
def test_a_bad_web_setting_is_refused_with_what_to_write(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match=r"VIGIL_WEB=.*use search,fetch \(the default\), search, fetch or off"):
        _settings(tmp_path, VIGIL_WEB=value)


def test_the_progress_lines_say_what_runs() -> None:
    assert describe_web("web_search", {"query": "rain  in\nParis"}) == "🔎 searching: rain in Paris"
    assert describe_web("web_fetch", {"url": "https://example.org/a"}) == "🌐 reading: https://example.org/a"
    assert len(describe_web("web_search", {"query": "x" * 500})) < 140


# ------------------------------------------------------------------------------------------ prices


def test_a_search_costs_a_cent_on_top_of_its_tokens() -> None:
    plain = TokenUsage(input_tokens=1000, output_tokens=100)
    searched = TokenUsage(input_tokens=1000, output_tokens=100, web_search_requests=3)
    assert cost_micros("claude-sonnet-4-6", searched) - cost_micros("claude-sonnet-4-6", plain) == 30_000
    usage = to_usage("claude-sonnet-4-6", searched)
    assert usage.web_searches == 3 and (usage + usage).web_searches == 6
    assert (usage + usage).cost_micros == 2 * usage.cost_micros


def test_usage_shows_the_searches_and_their_cost() -> None:
    row = UsageRow(user_id=1, day="2026-11-20", key="tg:1", kind="chat",
                   usage=Usage(calls=2, input_tokens=100, cost_micros=21_000, web_searches=2))
    report = usage_report([row], {}, "2026-11-20", "2026-11-14", "2026-10-22", per_user=False)
    assert report.splitlines()[0] == "Today: 100 tokens · $0.0210 (2 calls) · 2 web searches $0.0200"


def test_old_usage_records_decode_with_no_searches() -> None:
    import msgspec

    old = msgspec.msgpack.encode({"type": "usage", "calls": 1, "cost_micros": 5})
    assert msgspec.msgpack.decode(old, type=Usage).web_searches == 0


# ------------------------------------------------------------------------------------------ citations


def _cited(text: str, *urls: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "citations": [
        {"type": "web_search_result_location", "url": u, "title": f"T {u}", "encrypted_index": "Eo1",
         "cited_text": "c"} for u in urls]}


def test_cited_text_is_followed_by_numbered_links_that_render_as_telegram_links() -> None:
    content = [{"type": "text", "text": "Found: "}, _cited("the sky is blue", "https://a.org/sky_(color)"),
               {"type": "text", "text": " and "}, _cited("grass is green", "https://b.org/g?x=1&y=2",
                                                           "https://a.org/sky_(color)"),
               {"type": "text", "text": "."}]
    text = reply_text(content)
    assert text == ("Found: the sky is blue [[1]](<https://a.org/sky_(color)>) and grass is green "
                    "[[2]](<https://b.org/g?x=1&y=2>)[[1]](<https://a.org/sky_(color)>).")
    html = markdown_to_html(text)
    assert '<a href="https://a.org/sky_(color)">[1]</a>' in html
    assert '<a href="https://b.org/g?x=1&amp;y=2">[2]</a>' in html
    assert visible_text(html) == "Found: the sky is blue [1] and grass is green [2][1]."


def test_a_citation_without_a_usable_url_adds_nothing() -> None:
    assert reply_text([_cited("words", "javascript:alert(1)", "https://a.org/x y")]) == "words"


def test_many_citations_still_split_into_messages_telegram_takes() -> None:
    long_url = "https://example.org/" + "p" * 300
    content = [_cited(f"fact number {i} " * 8, f"{long_url}{i}") for i in range(120)]
    chunks = split_for_telegram(reply_text(content))
    assert len(chunks) > 1
    for chunk in chunks:
        assert utf16_len(visible_text(chunk.html)) <= 4096 and chunk.html.count("<a ") == chunk.html.count("</a>")


# ------------------------------------------------------------------------------------------ history


def _search_pair(tool_id: str) -> list[dict[str, Any]]:
    return [{"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {"query": "q"}},
            {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": [
                {"type": "web_search_result", "url": "https://a.org", "title": "A", "encrypted_content": "Eq+/=",
                 "page_age": None}]}]


def test_complete_server_blocks_are_sent_back_exactly_and_need_no_tool_result() -> None:
    assistant = [*_search_pair("srvtoolu_1"), _cited("cited", "https://a.org")]
    messages = [{"role": "user", "content": [{"type": "text", "text": "look it up"}]},
                {"role": "assistant", "content": copy.deepcopy(assistant)},
                {"role": "user", "content": [{"type": "text", "text": "thanks"}]}]
    out = normalize(messages)
    assert json.dumps(out[1]["content"], sort_keys=True) == json.dumps(assistant, sort_keys=True)
    assert [m["role"] for m in out] == ["user", "assistant", "user"] and len(out[2]["content"]) == 1
    assert validate_request({"model": "claude-sonnet-5-5", "max_tokens": 10, "tools": TOOLS, "messages": out}) is None


def test_a_search_cut_before_its_result_is_dropped_so_the_next_request_is_accepted() -> None:
    cut = [*_search_pair("srvtoolu_1"), {"type": "text", "text": "then"},
           {"type": "server_tool_use", "id": "srvtoolu_2", "name": "web_search", "input": {"query": "more"}}]
    messages = [{"role": "user", "content": [{"type": "text", "text": "look it up"}]},
                {"role": "assistant", "content": cut},
                {"role": "assistant", "content": [{"type": "text", "text": "[reply stopped by the user]"}]},
                {"role": "user", "content": [{"type": "text", "text": "next"}]}]
    refused = validate_request({"model": "claude-sonnet-5-5", "max_tokens": 10, "tools": TOOLS,
                                "messages": [messages[0], {"role": "assistant", "content": cut}, messages[3]]})
    assert refused is not None and "srvtoolu_2" in refused, refused
    out = normalize(messages)
    assert [b.get("id") for b in out[1]["content"] if b["type"] == "server_tool_use"] == ["srvtoolu_1"]
    assert validate_request({"model": "claude-sonnet-5-5", "max_tokens": 10, "tools": TOOLS, "messages": out}) is None


def test_kept_whole_drops_unpaired_server_blocks_only() -> None:
    pair = _search_pair("srvtoolu_1")
    orphan = _search_pair("srvtoolu_9")[1]
    dangling = _search_pair("srvtoolu_3")[0]
    text = {"type": "text", "text": "x"}
    assert kept_whole([*pair, orphan, text, dangling]) == [*pair, text]
