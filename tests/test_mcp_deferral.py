"""Many MCP tools without a big prompt (vigil/mcp/deferral.py), through the real anthropic SDK and the
Messages API stand-in, with 200 real tools listed from a real server (tests/mcp_servers/many_tools.py).

The stand-in holds deferral to the API's rules (tests/standins/messages_api/tool_search.py): requests are
built with the SDK's param types and answers read with its stream accumulator. What a request with 0,
20 and 200 MCP tools costs in input tokens is printed (`pytest -s`) and bounded here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import (
    MessageParam,
    ToolParam,
    ToolSearchToolBm25_20251119Param,
    ToolSearchToolResultBlock,
    ToolSearchToolSearchResultBlock,
    ToolTextEditor20250728Param,
    ToolUnionParam,
)

from tests.mcp_servers import script
from tests.standins.messages_api import MessagesAPI
from vigil.mcp.config import parse_config
from vigil.mcp.deferral import TOOL_SEARCH_NAME, TOOL_SEARCH_TYPE, tool_specs
from vigil.mcp.manager import McpManager
from vigil.mcp.tools import McpTool

MODEL = "claude-sonnet-5-5"
EDITOR: ToolTextEditor20250728Param = {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}


@pytest.fixture(scope="module")
def many() -> Iterator[tuple[McpTool, ...]]:
    argv = script("many_tools")
    manager = McpManager(parse_config({"mcpServers": {"many": {"command": argv[0], "args": argv[1:]}}}))
    try:
        tools = manager.tools(["many"])
        assert len(tools) == 200
        yield tools
    finally:
        manager.close()


def sdk_tools(specs: list[dict[str, Any]]) -> list[ToolUnionParam]:
    """vigil's tool definitions as the SDK's param types, beside the editor (always sent in full)."""
    tools: list[ToolUnionParam] = [EDITOR]
    for spec in specs:
        if spec.get("type") == TOOL_SEARCH_TYPE:
            search: ToolSearchToolBm25_20251119Param = {"type": TOOL_SEARCH_TYPE, "name": TOOL_SEARCH_NAME}
            tools.append(search)
            continue
        tool: ToolParam = {"name": spec["name"], "input_schema": spec["input_schema"],
                           "description": spec["description"]}
        if spec.get("defer_loading"):
            tool["defer_loading"] = True
        tools.append(tool)
    return tools


def input_tokens(claude: anthropic.Anthropic, tools: list[ToolUnionParam]) -> int:
    message = claude.messages.create(model=MODEL, max_tokens=100, tools=tools,
                                     messages=[{"role": "user", "content": "What is on my calendar?"}])
    return message.usage.input_tokens


def test_specs_defer_all_but_the_first_tools_in_a_stable_order(many: tuple[McpTool, ...]) -> None:
    specs = tool_specs(list(reversed(many)), 20)
    assert specs == tool_specs(many, 20)
    assert [s["name"] for s in specs[:20]] == sorted(t.name for t in many)[:20]
    assert all("defer_loading" not in s for s in specs[:20])
    assert all(s["defer_loading"] is True for s in specs[20:200])
    assert specs[200] == {"type": "tool_search_tool_bm25_20251119", "name": "tool_search_tool_bm25"}
    assert tool_specs(many[:20], 20) == [t.spec() for t in sorted(many[:20], key=lambda t: t.name)]
    assert tool_specs((), 20) == []


def test_200_tools_cost_about_what_20_cost(claude: anthropic.Anthropic, messages_api: MessagesAPI,
                                           many: tuple[McpTool, ...]) -> None:
    none = input_tokens(claude, sdk_tools([]))
    twenty = input_tokens(claude, sdk_tools(tool_specs(many[:20], 20)))
    deferred = input_tokens(claude, sdk_tools(tool_specs(many, 20)))
    eager = input_tokens(claude, sdk_tools(tool_specs(many, 200)))
    print(f"\ninput tokens: 0 MCP tools {none}, 20 tools {twenty}, 200 tools (180 deferred) {deferred}, "
          f"200 tools all sent in full {eager}")
    assert messages_api.errors == []
    assert deferred <= 1.25 * twenty
    assert eager > 5 * twenty


def test_the_model_searches_then_calls_a_deferred_tool(claude: anthropic.Anthropic, messages_api: MessagesAPI,
                                                       many: tuple[McpTool, ...]) -> None:
    tools = sdk_tools(tool_specs(many, 20))
    wanted = "mcp__many__invoice_action_009"
    assert wanted not in [t.name for t in sorted(many, key=lambda t: t.name)[:20]]
    ask = f'[[tool_search=invoice records]] [[tool={wanted} {{"query": "unpaid"}}]]'
    messages: list[MessageParam] = [{"role": "user", "content": ask}]
    with claude.messages.stream(model=MODEL, max_tokens=500, tools=tools, messages=messages) as stream:
        answer = stream.get_final_message()
    kinds = [b.type for b in answer.content]
    assert kinds == ["server_tool_use", "tool_search_tool_result", "tool_use"], kinds
    use, result, call = answer.content
    assert use.type == "server_tool_use" and use.name == "tool_search_tool_bm25" and use.input == {
        "query": "invoice records"}
    assert isinstance(result, ToolSearchToolResultBlock)
    assert isinstance(result.content, ToolSearchToolSearchResultBlock)
    found = [r.tool_name for r in result.content.tool_references]
    assert wanted in found and all(name.startswith("mcp__many__invoice_") for name in found)
    assert call.type == "tool_use" and call.name == wanted and answer.stop_reason == "tool_use"

    # The answer goes back as it came (server blocks unchanged), with the tool's result.
    messages += [{"role": "assistant", "content": answer.content},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                               "content": "invoice 9: unpaid"}]}]
    final = claude.messages.create(model=MODEL, max_tokens=500, tools=tools, messages=messages)
    assert final.content[0].type == "text" and "invoice 9: unpaid" in final.content[0].text
    assert messages_api.errors == []


def test_a_deferred_tool_is_unknown_until_found(claude: anthropic.Anthropic, many: tuple[McpTool, ...]) -> None:
    message = claude.messages.create(
        model=MODEL, max_tokens=100, tools=sdk_tools(tool_specs(many, 20)),
        messages=[{"role": "user", "content": '[[tool=mcp__many__invoice_action_009 {"query": "x"}]]'}])
    assert message.content[0].type == "text"
    assert message.content[0].text == "tool mcp__many__invoice_action_009 not offered"


def refusal(claude: anthropic.Anthropic, tools: list[ToolUnionParam],
            messages: list[MessageParam] | None = None) -> str:
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model=MODEL, max_tokens=100, tools=tools,
                               messages=messages or [{"role": "user", "content": "hi"}])
    return str(refused.value)


def test_the_api_rules_on_names_and_deferral(claude: anthropic.Anthropic, many: tuple[McpTool, ...]) -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {}}
    long_name: ToolParam = {"name": "m" * 65, "input_schema": schema}
    assert "String should match pattern '^[a-zA-Z0-9_-]{1,64}$'" in refusal(claude, [long_name])
    dotted: ToolParam = {"name": "mcp__x__get.item", "input_schema": schema}
    assert "String should match pattern" in refusal(claude, [dotted])
    without_search = [t for t in sdk_tools(tool_specs(many, 20)) if t.get("type") != TOOL_SEARCH_TYPE]
    assert "require a tool search tool" in refusal(claude, without_search)
    deferred_search: ToolSearchToolBm25_20251119Param = {"type": TOOL_SEARCH_TYPE, "name": TOOL_SEARCH_NAME,
                                                         "defer_loading": True}
    all_deferred: list[ToolUnionParam] = [{"name": "a", "input_schema": schema, "defer_loading": True},
                                          deferred_search]
    assert "the tool search tool cannot have defer_loading set to true" in refusal(claude, all_deferred)
    nothing_eager: list[ToolUnionParam] = [{"name": "a", "input_schema": schema, "defer_loading": True}]
    assert "require a tool search tool" in refusal(claude, nothing_eager)
    reference: list[MessageParam] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "search", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "tool_reference", "tool_name": "nowhere"}]}]}]
    search_tool: ToolParam = {"name": "search", "input_schema": schema}
    assert "Tool reference 'nowhere' has no corresponding tool definition" in refusal(claude, [search_tool], reference)


def test_a_real_call_of_a_found_tool(tmp_path: Path, many: tuple[McpTool, ...]) -> None:
    # The listed schema is what the server takes: a call with the model's input shape runs.
    argv = script("many_tools")
    manager = McpManager(parse_config({"mcpServers": {"many": {"command": argv[0], "args": argv[1:]}}}))
    try:
        manager.tools(["many"])
        outcome = manager.call("mcp__many__invoice_action_009", {"query": "unpaid"})
        assert not outcome.is_error and outcome.text.startswith("invoice 9: unpaid (10, False)")
    finally:
        manager.close()
