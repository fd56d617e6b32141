"""MCP in vigil's turns, beneath the end-to-end tests: the rules one at a time.

A real Runtime on fakes (scripted model, recording outbox, real LMDB) with a real stdio server for the chat
boundary (a model that names a tool of a server that is off in its chat gets nothing run, even when that
server runs for another chat); the risk rule, the approval prompt, the request's tool search results and
files, the role rule's new need; and the model port keeping a tool search whole in a reply cut short,
through the real SDK and the Messages API stand-in.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import HarnessFactory, ScriptedModel, UseTools, key_of
from tests.mcp_servers import script
from tests.standins.messages_api import MessagesAPI
from tests.test_mcp_config import env
from tests.test_mcp_manager import wait_until
from vigil.actors.engine.runner import tool_result
from vigil.actors.tools.approval_prompt import prompt_reply
from vigil.actors.tools.mcp import searches_fit
from vigil.actors.turns.refused_files import RefusedFiles
from vigil.cancel import CancelToken
from vigil.config.settings import load_settings
from vigil.mcp.config import parse_config
from vigil.mcp.manager import McpManager
from vigil.mcp.tools import McpTool
from vigil.media.files import MediaStore
from vigil.model.anthropic_model import AnthropicModel
from vigil.model.attached import materialize, ref_block
from vigil.model.history import estimate_tokens
from vigil.ops.check import CheckWarning, _mcp
from vigil.policy.roles import Place, Roles
from vigil.policy.tool_mode import risk_of
from vigil.ports import ModelError, ModelRequest
from vigil.records.schema import Attachment
from vigil.tools.outcome import ToolOutcome

ADMIN = 99
WRITE = "mcp__box__write_note"


def box_config(tmp_path: Path) -> Path:
    box = tmp_path / "box"
    box.mkdir(exist_ok=True)
    argv = script("toolbox")
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"box": {"command": argv[0], "args": argv[1:],
                                                       "env": {"MCP_TEST_DIR": str(box)}}}}))
    return path


# ------------------------------------------------------------------------------------------------ the chat boundary


def test_a_tool_of_a_server_off_in_this_chat_is_refused_without_running_even_in_auto(make: HarnessFactory,
                                                                                     tmp_path: Path) -> None:
    call = UseTools(((WRITE, {"name": "smuggled", "text": "x"}),))
    h = make(model=ScriptedModel([call]), mcp_config=box_config(tmp_path), admin_users=frozenset({ADMIN}))
    other, mine = key_of(2), key_of(1)
    h.command(other, "mcp", "on box", user_id=ADMIN)  # the server runs, for another chat
    assert h.outbox.wait_for(lambda: any("✅ On in this chat: box" in t for t in h.outbox.sent(other)))
    h.say(mine, "write it")
    assert h.model.wait_for(lambda m: len(m.requests) >= 2)
    [result] = [b for b in h.model.requests[1].messages[-1]["content"] if b.get("type") == "tool_result"]
    assert result["is_error"] is True and "not a tool of any MCP server that is on in this chat" in result["content"]
    assert not (tmp_path / "box" / "note-smuggled").exists()
    assert not [t for t in h.model.requests[0].tools if str(t.get("name")).startswith("mcp__")]
    assert [t["name"] for t in h.model.requests[1].tools] == [t["name"] for t in h.model.requests[0].tools]


def test_mcp_on_is_the_vigil_admins_even_on_the_sessions_side(make: HarnessFactory, tmp_path: Path) -> None:
    h = make(mcp_config=box_config(tmp_path), admin_users=frozenset({ADMIN}))
    h.command(key_of(3), "mcp", "on box", user_id=7)  # as if queued before VIGIL_ADMIN_USERS changed
    assert h.outbox.wait_for(lambda: any(t.startswith("⛔ Only a vigil admin (VIGIL_ADMIN_USERS) can turn MCP")
                                         for t in h.outbox.sent(key_of(3))))
    h.command(key_of(3), "mcp", "on nothere", user_id=ADMIN)
    assert h.outbox.wait_for(lambda: any("No MCP server is called nothere (configured: box)" in t
                                         for t in h.outbox.sent(key_of(3))))
    header = h.runtime.store.header(key_of(3))
    assert header is None or header.mcp_on == (), "nothing was turned on"


# ------------------------------------------------------------------------------------------------ rules


TOOL = McpTool(name=WRITE, server="box", tool="write_note", description="Write a note.", input_schema={},
               read_only=False)


def test_the_risk_of_an_mcp_call_is_its_servers_annotation() -> None:
    assert risk_of(WRITE, {}) == "mcp"
    assert risk_of(WRITE, {}, read_only=True) == "safe"
    assert risk_of("bash", {"command": "ls"}, read_only=True) == "command", "the hint is for MCP tools only"


def test_the_prompt_names_server_and_tool_and_every_argument() -> None:
    arguments = {"name": "n", "text": "a <b> & c\nsecond line", "nested": {"deep": [1, 2, 3]}}
    reply = prompt_reply(WRITE, arguments, "Ann", 600, "tok", mcp=TOOL)
    assert reply.text.startswith("🔐 Claude wants to use the tool 'write_note' of the MCP server 'box' "
                                 "(Write a note.) with these arguments:")
    assert json.dumps(arguments, ensure_ascii=False, indent=2, sort_keys=True) in reply.text
    assert reply.document is None and reply.buttons
    long = {"text": "x" * 5000}
    reply = prompt_reply(WRITE, long, "Ann", 600, "tok", mcp=TOOL)
    assert reply.document is not None and reply.document.filename == "arguments.json"
    assert json.loads(reply.document.content) == long and "arguments.json just above" in reply.text


def test_a_vigil_admin_need_is_the_vigil_admins_wherever_asked(tmp_path: Path) -> None:
    settings = load_settings(env(tmp_path, VIGIL_ADMIN_USERS=str(ADMIN)))
    roles = Roles(settings)
    private, group, console = Place("tg:5", 5, "private"), Place("tg:-9", -9, "group"), Place("console:x", 0, "")
    assert not roles.command(private, 5, "mcp", "on box").allowed, "a private chat's owner is not enough"
    assert roles.command(private, 5, "mcp", "").allowed and roles.command(group, 5, "skills", "").allowed
    assert not roles.check(group, 5, "vigil admin", "x").allowed
    assert roles.command(group, ADMIN, "mcp", "off box").allowed and roles.command(console, 0, "mcp", "on b").allowed


def test_a_list_content_tool_result() -> None:
    blocks = ({"type": "text", "text": "t"}, {"type": "image", "source": {}})
    assert tool_result("id", ToolOutcome("t", blocks=blocks))["content"] == [dict(b) for b in blocks]
    assert tool_result("id", ToolOutcome(""))["content"] == "(no output)"


# ------------------------------------------------------------------------------------------------ requests


def search_pair(tool_id: str, *names: str) -> list[dict[str, Any]]:
    return [{"type": "server_tool_use", "id": tool_id, "name": "tool_search_tool_bm25", "input": {"query": "q"}},
            {"type": "tool_search_tool_result", "tool_use_id": tool_id,
             "content": {"type": "tool_search_tool_search_result",
                         "tool_references": [{"type": "tool_reference", "tool_name": n} for n in names]}}]


def test_a_search_naming_a_tool_no_longer_offered_is_left_out_and_the_rest_kept() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": [*search_pair("srvtoolu_a", "mcp__x__gone"),
                                                  {"type": "text", "text": "found"}]},
                {"role": "user", "content": [{"type": "text", "text": "again"}]},
                {"role": "assistant", "content": search_pair("srvtoolu_b", "mcp__x__gone")},
                {"role": "user", "content": [{"type": "text", "text": "and"}]},
                {"role": "assistant", "content": search_pair("srvtoolu_c", "mcp__x__here")}]
    specs = [{"name": "mcp__x__here"}]
    fitted = searches_fit(messages, specs)
    assert fitted[1]["content"] == [{"type": "text", "text": "found"}]
    assert fitted[3]["content"] == [{"type": "text", "text": "(searched for tools that are no longer offered here)"}]
    assert fitted[5] is messages[5] and fitted[0] is messages[0]
    assert searches_fit(messages[:1] + messages[5:], specs) == messages[:1] + messages[5:]


def test_an_image_in_a_tool_result_is_read_in_counted_as_an_image_and_named_when_gone(tmp_path: Path) -> None:
    media = MediaStore(tmp_path / "media")
    image = Attachment(kind="image", digest=media.put(b"\x89PNG-bytes"), media_type="image/png", size=10)
    gone = Attachment(kind="image", digest="b" * 64, media_type="image/png", size=10)
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": "t1",
                              "content": [{"type": "text", "text": "here"}, ref_block(image), ref_block(gone)]}
    messages: list[dict[str, Any]] = [{"role": "user", "content": [result]}]
    out = materialize(messages, media)
    text, shown, missing = out[0]["content"][0]["content"]
    assert text == {"type": "text", "text": "here"}
    assert shown == {"type": "image",
                     "source": {"type": "base64", "media_type": "image/png", "data": "iVBORy1ieXRlcw=="}}
    assert missing == {"type": "text", "text": "[image no longer available]"}
    assert messages[0]["content"][0]["content"][1]["type"] == "vigil_attachment", "the stored form is untouched"
    assert "sent earlier" in json.dumps(materialize(messages, None)), "a heartbeat names it, never carries it"
    assert estimate_tokens(messages) >= 2 * 1600 and estimate_tokens(out) >= 1600


# ------------------------------------------------------------------------------------------------ the model port


def test_a_tool_search_is_kept_whole_in_a_reply_cut_short(messages_api: MessagesAPI, monkeypatch: Any) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", messages_api.base_url)
    tools: list[dict[str, Any]] = [{"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
             {"name": "mcp__x__find", "description": "Finds invoices.", "defer_loading": True,
              "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}},
             {"type": "tool_search_tool_bm25_20251119", "name": "tool_search_tool_bm25"}]
    model = AnthropicModel(timeout_s=30, max_retries=0)
    cancel = CancelToken()

    def cut(text: str) -> None:
        cancel.cancel("stopped")  # /stop after the first words, the search done before them

    request = ModelRequest(model="claude-sonnet-5-5", max_tokens=500, system=(),
                           messages=({"role": "user", "content": [{"type": "text", "text":
                                     "[[tool_search=invoices]] [[slow=2]] " + "words " * 40}]},), tools=tuple(tools))
    response = model.stream(request, cut, cancel)
    assert response.stop_reason == "cancelled"
    assert [b["type"] for b in response.content][:2] == ["server_tool_use", "tool_search_tool_result"]
    assert response.content[1]["content"]["tool_references"] == [{"type": "tool_reference",
                                                                   "tool_name": "mcp__x__find"}]

    hung = CancelToken()
    request = ModelRequest(model="claude-sonnet-5-5", max_tokens=500, system=(), tools=tuple(tools),
                           messages=({"role": "user", "content": [{"type": "text", "text":
                                     "[[tool_search=invoices]] [[search_hang]]"}]},))
    threading.Timer(0.5, hung.cancel).start()
    # A read blocked on a server that sends nothing ends at the time limit (the turn runner walks away at once).
    response = AnthropicModel(timeout_s=2, max_retries=0).stream(request, lambda text: None, hung)
    assert response.stop_reason == "cancelled" and response.content == (), "a search cut in the middle is dropped"
    assert not messages_api.errors


def test_check_starts_each_server_and_says_which_failed(tmp_path: Path) -> None:
    config = box_config(tmp_path)
    settings = load_settings(env(tmp_path, VIGIL_MCP_CONFIG=str(config)))
    assert _mcp(settings) == "1 server(s): box (running, 12 tools)"
    broken = json.loads(config.read_text())
    broken["mcpServers"]["gone"] = {"command": "/nonexistent/server"}
    broken["mcpServers"]["bad"] = {"url": "ftp://x"}
    config.write_text(json.dumps(broken))
    with pytest.raises(CheckWarning) as warned:
        _mcp(load_settings(env(tmp_path, VIGIL_MCP_CONFIG=str(config))))
    assert "gone (failed" in str(warned.value) and "MCP server 'bad': url must be an http" in str(warned.value)


def test_an_image_a_tool_returned_that_the_api_refuses_is_named_and_left_out_from_then_on(tmp_path: Path) -> None:
    media = MediaStore(tmp_path / "media")
    image = Attachment(kind="image", digest=media.put(b"\x89PNG-not-really"), media_type="image/png", size=15)
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "look"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "mcp__box__picture", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": [{"type": "text", "text": "a picture"}, ref_block(image)]}]}]
    refusals = RefusedFiles(messages, media)
    assert refusals.request_messages()[2]["content"][0]["content"][1]["type"] == "image"
    error = ModelError("refused", "bad_request", detail="messages.2.content.0.content.1.image.source.base64.data: "
                                                        "Could not process image")
    mended = refusals.on_refused(error)
    assert mended is not None
    assert mended[2]["content"][0]["content"][1] == {
        "type": "text", "text": "[image: the model service could not read it, so it is left out]"}
    assert [a.digest for a, _ in refusals.refused(True)] == [image.digest]


def test_a_server_that_hangs_while_starting_holds_up_one_listing_not_every_turn(tmp_path: Path) -> None:
    hang = tmp_path / "hang.py"
    hang.write_text("import time\ntime.sleep(600)\n")  # never answers `initialize`
    config = parse_config({"mcpServers": {"stuck": {"command": sys.executable, "args": [str(hang)]}}})
    manager = McpManager(config, timeout_s=2, backoff=(0.0, 600.0))
    try:
        assert manager.tools(["stuck"], wait=False) == ()  # first use: waited for, until the time limit
        (status,) = manager.status()
        assert status.state == "failed" and "did not start within 2 s" in status.detail
        assert manager.tools(["stuck"], wait=False) == ()  # tried before: started again, not waited for
        wait_until(lambda: manager.status()[0].state == "starting", 1.5, "the start under way after the listing")
        assert manager.tools(["stuck"], wait=False) == (), "a start under way is not begun twice"
        wait_until(lambda: manager.status()[0].state == "failed", 10, "the second start to time out")
        assert (manager.status()[0].retry_in_s or 0) > 500, "the next try waits its backoff"
    finally:
        manager.close()
