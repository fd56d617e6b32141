"""The Messages stand-in's web tools, through the real anthropic SDK: played as the API plays them,
and as strict about what comes back."""

from __future__ import annotations

import copy
from typing import Any

import anthropic
import pytest

from tests.standins.messages_api import MessagesAPI, WebReply

MODEL = "claude-sonnet-5-5"
TOOLS: list[Any] = [{"type": "web_search_20260318", "name": "web_search", "max_uses": 5},
                    {"type": "web_fetch_20260318", "name": "web_fetch", "max_uses": 5}]


def _ask(claude: anthropic.Anthropic, messages: list[dict[str, Any]], tools: list[Any] = TOOLS) -> Any:
    with claude.messages.stream(model=MODEL, max_tokens=500, messages=messages, tools=tools) as stream:  # type: ignore[arg-type]
        return stream.get_final_message()


def _first_turn(claude: anthropic.Anthropic) -> list[dict[str, Any]]:
    question = {"role": "user", "content": "[[search=moon distance]][[fetch=https://example.org/moon]] how far?"}
    reply = _ask(claude, [question])
    assert reply.stop_reason == "end_turn" and reply.usage.server_tool_use.web_search_requests == 1
    assert reply.usage.server_tool_use.web_fetch_requests == 1
    content = [b.to_dict(mode="json") for b in reply.content]
    return [question, {"role": "assistant", "content": content}, {"role": "user", "content": "and the sun?"}]


def test_a_search_streams_as_the_api_does_and_comes_back_accepted(claude: anthropic.Anthropic,
                                                                 messages_api: MessagesAPI) -> None:
    messages = _first_turn(claude)
    kinds = [b["type"] for b in messages[1]["content"]]
    assert kinds[:4] == ["server_tool_use", "web_search_tool_result", "server_tool_use", "web_fetch_tool_result"]
    cited = [b for b in messages[1]["content"] if b.get("citations")]
    assert cited and cited[0]["citations"][0]["encrypted_index"]
    assert all(r["encrypted_content"] for r in messages[1]["content"][1]["content"])
    assert _ask(claude, messages).content[0].text == "echo: and the sun?"
    assert messages_api.errors == []


@pytest.mark.parametrize("change", ["encrypted_content", "query", "citation", "drop_result", "orphan_result"])
def test_a_server_block_changed_or_unpaired_is_refused(claude: anthropic.Anthropic, change: str) -> None:
    messages = copy.deepcopy(_first_turn(claude))
    blocks = messages[1]["content"]
    if change == "encrypted_content":
        blocks[1]["content"][0]["encrypted_content"] += "A"
    elif change == "query":
        blocks[0]["input"]["query"] += " "
    elif change == "citation":
        next(b for b in blocks if b.get("citations"))["citations"][0]["encrypted_index"] = "Eoforged"
    elif change == "drop_result":
        del blocks[1]
    else:
        del blocks[0]
    with pytest.raises(anthropic.BadRequestError):
        _ask(claude, messages)


def test_a_dangling_server_tool_use_is_accepted_only_at_the_very_end(claude: anthropic.Anthropic,
                                                                     messages_api: MessagesAPI) -> None:
    messages_api.add_rule(lambda body: "pause please" in str(body["messages"][0]),
                          WebReply(searches=["tides"], pause=True), times=2)
    question = {"role": "user", "content": "pause please"}
    paused = _ask(claude, [question])
    assert paused.stop_reason == "pause_turn"
    content = [b.to_dict(mode="json") for b in paused.content]
    # Sent back last, as is: the turn goes on (the continuation cites what the paused part found).
    going_on = _ask(claude, [question, {"role": "assistant", "content": content}])
    assert going_on.stop_reason == "end_turn" and any(getattr(b, "citations", None) for b in going_on.content)
    # A call without its result is fine at the very end, refused before it.
    dangling = content[:1]
    assert _ask(claude, [question, {"role": "assistant", "content": dangling}]).stop_reason == "end_turn"
    with pytest.raises(anthropic.BadRequestError, match="without their result blocks"):
        _ask(claude, [question, {"role": "assistant", "content": dangling}, {"role": "user", "content": "next"}])


@pytest.mark.parametrize("tool", [
    {"type": "web_search_20990101", "name": "web_search"},
    {"type": "web_search_20260318"},
    {"type": "web_search_20260318", "name": "web_search", "max_uses": 0},
    {"type": "web_fetch_20260318", "name": "web_fetch", "user_location": {"type": "approximate"}},
    {"type": "web_search_20260318", "name": "web_search", "allowed_domains": ["a.org"], "blocked_domains": ["b.org"]},
])
def test_a_web_tool_it_does_not_know_or_with_bad_fields_is_refused(claude: anthropic.Anthropic,
                                                                   tool: dict[str, Any]) -> None:
    with pytest.raises(anthropic.BadRequestError):
        _ask(claude, [{"role": "user", "content": "hi"}], tools=[tool])
