"""The Messages API stand-in's thinking, driven by the real anthropic SDK: what it streams builds the SDK's
own ThinkingBlock and RedactedThinkingBlock, and what it refuses is what the API refuses.

The rules, from the API's documentation and its error messages: a thinking block must come back with
its signature, unchanged; with thinking on, the assistant turn being continued must start with one;
thinking off, none in a final assistant message; no final assistant message ending with one; budget of
at least 1,024 and below max_tokens; no forced tool choice and no sampling parameters with thinking.
"""

from __future__ import annotations

import copy
from typing import Any

import anthropic
import pytest
from anthropic.types import RedactedThinkingBlock, TextBlock, ThinkingBlock, ToolUseBlock

from tests.standins.messages_api import MessagesAPI

MODEL = "claude-sonnet-5-5"
TOOL: anthropic.types.ToolParam = {"name": "lookup", "description": "Look up.",
                                   "input_schema": {"type": "object", "properties": {}}}
ON: anthropic.types.ThinkingConfigParam = {"type": "adaptive"}


def create(claude: anthropic.Anthropic, messages: list[dict[str, Any]], **extra: Any) -> anthropic.types.Message:
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 4096, "messages": messages, "tools": [TOOL],
                              "thinking": ON, **extra}
    if kwargs["thinking"] is None:
        del kwargs["thinking"]
    message: anthropic.types.Message = claude.messages.create(**kwargs)
    return message


def first_round(claude: anthropic.Anthropic, text: str = '[[tool=lookup {}]] go') -> list[dict[str, Any]]:
    """A turn through its first tool call, as the next request carries it (the blocks as the SDK dumps them)."""
    with claude.messages.stream(model=MODEL, max_tokens=4096, tools=[TOOL], thinking=ON,
                                messages=[{"role": "user", "content": text}]) as stream:
        message = stream.get_final_message()
    assert isinstance(message.content[-1], ToolUseBlock)
    return [{"role": "user", "content": text},
            {"role": "assistant", "content": [b.to_dict(mode="json") for b in message.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": message.content[-1].id,
                                          "content": "found"}]}]


def refused(claude: anthropic.Anthropic, messages: list[dict[str, Any]], **extra: Any) -> str:
    with pytest.raises(anthropic.BadRequestError) as error:
        create(claude, messages, **extra)
    return str(error.value)


def test_streamed_thinking_builds_the_sdks_own_blocks(claude: anthropic.Anthropic, messages_api: MessagesAPI) -> None:
    with claude.messages.stream(model=MODEL, max_tokens=4096, thinking=ON,
                                messages=[{"role": "user", "content": "[[redacted_thinking]] [[reply=fine]]"}]
                                ) as stream:
        events = [event.type for event in stream]
        message = stream.get_final_message()
    redacted, thinking, text = message.content
    assert isinstance(redacted, RedactedThinkingBlock) and redacted.data
    assert isinstance(thinking, ThinkingBlock) and thinking.thinking and thinking.signature
    assert isinstance(text, TextBlock) and text.text == "fine"
    assert "thinking" in events and "signature" in events  # the SDK's own derived events fired
    whole = create(claude, [{"role": "user", "content": "[[reply=fine]]"}])  # not streamed: the same shape
    assert isinstance(whole.content[0], ThinkingBlock) and whole.content[0].signature
    assert not messages_api.errors


def test_a_continuation_with_the_thinking_as_served_is_taken(claude: anthropic.Anthropic,
                                                               messages_api: MessagesAPI) -> None:
    answer = create(claude, first_round(claude))
    assert isinstance(answer.content[0], ThinkingBlock)
    assert not messages_api.errors


def test_thinking_changed_dropped_or_moved_is_refused(claude: anthropic.Anthropic) -> None:
    messages = first_round(claude, '[[redacted_thinking]] [[tool=lookup {}]] go')
    blocks = messages[1]["content"]
    assert [b["type"] for b in blocks] == ["redacted_thinking", "thinking", "tool_use"]

    changed = copy.deepcopy(messages)
    changed[1]["content"][1]["thinking"] += " "
    assert "messages.1.content.1: Invalid `signature` in `thinking` block" in refused(claude, changed)
    resigned = copy.deepcopy(messages)
    resigned[1]["content"][1]["signature"] = resigned[1]["content"][1]["signature"][:-4] + "AAA="
    assert "Invalid `signature`" in refused(claude, resigned)
    unsigned = copy.deepcopy(messages)
    del unsigned[1]["content"][1]["signature"]
    assert "thinking.signature: Field required" in refused(claude, unsigned)
    forged = copy.deepcopy(messages)
    forged[1]["content"][0]["data"] = "AAAA" + forged[1]["content"][0]["data"][4:]
    assert "Invalid `data` in `redacted_thinking` block" in refused(claude, forged)

    dropped = copy.deepcopy(messages)
    dropped[1]["content"] = dropped[1]["content"][2:]
    assert "Expected `thinking` or `redacted_thinking`, but found `tool_use`" in refused(claude, dropped)
    one_dropped = copy.deepcopy(messages)
    del one_dropped[1]["content"][0]
    assert "passed back unmodified and in their original order" in refused(claude, one_dropped)
    swapped = copy.deepcopy(messages)
    swapped[1]["content"][:2] = swapped[1]["content"][1::-1]
    assert "original order" in refused(claude, swapped)
    in_user = copy.deepcopy(messages)
    in_user[2]["content"].append(in_user[1]["content"][1])
    assert "`thinking` blocks can only be in `assistant` messages" in refused(claude, in_user)


def test_thinking_off_or_misplaced_at_the_end_is_refused(claude: anthropic.Anthropic) -> None:
    messages = first_round(claude)
    thinking = messages[1]["content"][0]
    prefill = [messages[0], {"role": "assistant", "content": [thinking]}]
    assert "The final block in an assistant message cannot be `thinking`" in refused(claude, prefill)
    off = [messages[0], {"role": "assistant", "content": [thinking, {"type": "text", "text": "so"}]}]
    assert "When thinking is disabled, an `assistant` message in the final position cannot contain `thinking`" \
        in refused(claude, off, thinking={"type": "disabled"})
    # Earlier turns' thinking is fine with thinking off (the API ignores it), as is a new turn after it.
    later = [*messages, {"role": "assistant", "content": [{"type": "text", "text": "done"}]},
             {"role": "user", "content": "next"}]
    assert create(claude, later, thinking={"type": "disabled"}).content[0].type == "text"


SETTINGS_REFUSED: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({"type": "enabled", "budget_tokens": 1000}, {}, "greater than or equal to 1024"),
    ({"type": "enabled", "budget_tokens": 4096}, {}, "`max_tokens` must be greater than `thinking.budget_tokens`"),
    ({"type": "adaptive", "budget_tokens": 2048}, {}, "thinking.adaptive.budget_tokens: Extra inputs"),
    ({"type": "adaptive", "display": "full"}, {}, "thinking.adaptive.display: Input should be"),
    ({"type": "adaptive"}, {"tool_choice": {"type": "any"}}, "Thinking may not be enabled when tool_choice forces"),
    ({"type": "adaptive"}, {"extra_body": {"temperature": 1.0}}, "temperature: Extra inputs are not permitted"),
    ({"type": "enabled", "budget_tokens": 2048}, {"extra_body": {"top_k": 5}}, "top_k: Extra inputs are not permitted"),
]


def test_thinking_settings_the_api_refuses(claude: anthropic.Anthropic) -> None:
    for thinking, extra, message in SETTINGS_REFUSED:
        said = refused(claude, [{"role": "user", "content": "hi"}], thinking=thinking, **extra)
        assert message in said, (thinking, extra, said)


def test_a_model_that_thinks_by_default_and_display_omitted(claude: anthropic.Anthropic,
                                                            messages_api: MessagesAPI) -> None:
    plain = create(claude, [{"role": "user", "content": "[[reply=a]]"}], thinking=None)
    assert plain.content[0].type == "text"
    messages_api.think_by_default(MODEL)
    thinks = create(claude, [{"role": "user", "content": "[[reply=a]]"}], thinking=None)
    assert isinstance(thinks.content[0], ThinkingBlock)
    assert create(claude, [{"role": "user", "content": "[[reply=a]]"}],
                  thinking={"type": "disabled"}).content[0].type == "text"
    omitted = create(claude, [{"role": "user", "content": '[[tool=lookup {}]] x'}],
                     thinking={"type": "adaptive", "display": "omitted"})
    block = omitted.content[0]
    assert isinstance(block, ThinkingBlock) and block.thinking == "" and block.signature
    assert isinstance(omitted.content[-1], ToolUseBlock)
    again = create(claude, [{"role": "user", "content": '[[tool=lookup {}]] x'},
                            {"role": "assistant", "content": [b.to_dict(mode="json") for b in omitted.content]},
                            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": omitted.content[-1].id,
                                                          "content": "ok"}]}],
                   thinking={"type": "adaptive", "display": "omitted"})
    assert again.stop_reason == "end_turn"
    assert not messages_api.errors
