"""MCP servers end to end: `vigil run` against the stand-ins and real MCP servers written with the SDK.

One vigil (per test worker) with a config of four servers: `box`, the stdio toolbox (tests/mcp_servers/
toolbox.py: a read-only tool, a writing one, an image, a slow one, one that leaks its credential); `far`,
a streamable HTTP server behind a bearer token (remote.py, in a process of its own); `twenty` and `many`,
stdio servers of 20 and 200 tools (many_tools.py), for deferral. In `ask` mode, as a new chat is.

Each test has chats of its own; a server is off in every chat until a vigil admin (Ada) turns it on
there. What the model does is steered by directives in the users' words (`[[tool=NAME {...}]]`); what
vigil sent the model is read from the Messages API stand-in, which holds every request to the API's
rules (tool names, `defer_loading`, tool search blocks sent back unchanged).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.mcp_servers import script
from tests.rig import BOT, Rig, make_rig, running
from tests.standins.bot_api import Chat, Message, User
from tests.standins.messages_api import RecordedRequest, ToolCall, ToolUseReply
from tests.test_approve_e2e import prompt_after, tap
from tests.test_mcp_remote import TOKEN, Remote, serve
from tests.test_tools_e2e import result_text, tool

pytestmark = pytest.mark.e2e

SECRET = "box-credential-0123456789abcdef"
BOX_TOOLS = 12
SKILL_DESCRIPTION = "Keeps meeting notes tidy. Use it when the user asks to file or format notes."
SKILL = f"""---
name: notes-helper
description: {SKILL_DESCRIPTION}
license: MIT
---
# Notes helper

Run scripts/hello.sh first; then file the notes under notes/ by date.
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """This module's one vigil (conftest's `rig` hands it to each test and checks it after): the four servers
    configured (none on by default) and a skills directory."""
    tmp = tmp_path_factory.mktemp("mcp")
    box, far_dir, skills = tmp / "box", tmp / "far", tmp / "skills"
    for path in (box, far_dir, skills):
        path.mkdir()
    remote: Remote = serve(far_dir, "http")
    toolbox, many = script("toolbox"), script("many_tools")
    config = {"mcpServers": {
        "box": {"command": toolbox[0], "args": toolbox[1:], "env": {"MCP_TEST_DIR": str(box),
                                                                    "MCP_TEST_SECRET": SECRET}},
        "far": {"type": "http", "url": remote.url, "headers": {"Authorization": f"Bearer {TOKEN}"}},
        "twenty": {"command": many[0], "args": many[1:], "env": {"MCP_TEST_TOOLS": "20"}},
        "many": {"command": many[0], "args": many[1:]},
    }}
    (tmp / "mcp.json").write_text(json.dumps(config))
    helper = skills / "notes-helper"
    (helper / "scripts").mkdir(parents=True)
    (helper / "SKILL.md").write_text(SKILL)
    (helper / "scripts" / "hello.sh").write_text("echo hello from the skill\n")
    (skills / "broken").mkdir()
    (skills / "broken" / "SKILL.md").write_text("---\ndescription: no name here\n---\nBody.\n")
    try:
        with running(make_rig(tmp, VIGIL_MCP_CONFIG=str(tmp / "mcp.json"), VIGIL_SKILLS_DIR=str(skills),
                              VIGIL_TOOL_MODE="ask", VIGIL_ENABLE_BASH="1", VIGIL_MCP_TIMEOUT="30s")) as rig:
            yield rig
    finally:
        remote.stop()


def box_dir(rig: Rig) -> Path:
    return rig.tmp / "box"


def team(rig: Rig, title: str, *servers: str) -> tuple[Chat, User]:
    """A group with a member (returned) in which Ada, a vigil admin, turned `servers` on."""
    group = rig.group(title)
    member = rig.person(f"M{abs(group.id) % 100000}")
    if servers:
        done = rig.ask(group.id, rig.admin, f"/mcp on {' '.join(servers)}", "✅ On in this chat", timeout=30)
        assert all(f"• {name} · running" in done.text for name in servers), done.text
    return group, member


def call(tool: str, /, **arguments: Any) -> str:
    """The directive that makes the stand-in's model call MCP tool `mcp__<name>` (`box__read_note`)."""
    return f"[[tool=mcp__{tool} {json.dumps(arguments)}]]"


def say(rig: Rig, group: Chat, user: User, text: str) -> Message:
    return rig.say(group.id, user, f"@{BOT} {text}")


def results_in(rig: Rig, marker: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The tool_result blocks of the first request of the turn holding `marker` that carries any."""
    def found() -> RecordedRequest | None:
        return next((r for r in rig.requests_with(marker)
                     if any(b.get("type") == "tool_result" for b in r.body["messages"][-1]["content"])), None)

    request = rig.bot.wait_for(found, timeout, f"the tool results of {marker!r}")
    return [b for b in request.body["messages"][-1]["content"] if b.get("type") == "tool_result"]


def turn_results(rig: Rig, marker: str) -> list[dict[str, Any]]:
    """Every tool_result of the turn holding `marker`, round after round, from its latest request."""
    messages = rig.requests_with(marker)[-1].body["messages"]
    start = max(i for i, m in enumerate(messages) if m["role"] == "user" and marker in json.dumps(m["content"]))
    return [b for m in messages[start:] if m["role"] == "user" and isinstance(m["content"], list)
            for b in m["content"] if b.get("type") == "tool_result"]


def exported(rig: Rig, group: Chat) -> bytes:
    """`/export` in a group: the JSON document it sends back."""
    before = len([d for d in rig.bot.documents if d.chat_id == group.id])
    rig.say(group.id, rig.admin, "/export")
    return rig.bot.wait_for(lambda: next(iter([d for d in rig.bot.documents if d.chat_id == group.id][before:]),
                                         None), 10, "the exported document").content


def offered(request: RecordedRequest) -> list[str]:
    return [str(t.get("name")) for t in request.body.get("tools", [])]


# ------------------------------------------------------------------------------------------------ turning on, calling


def test_a_vigil_admins_mcp_on_makes_the_servers_tools_callable(rig: Rig) -> None:
    group, mia = team(rig, "Tools team")
    before = say(rig, group, mia, "first " + call("box__read_note", name="a"))
    assert "tool mcp__box__read_note not offered" in rig.answer(group.id, before, "not offered", timeout=30).text
    assert not [n for n in offered(rig.requests_with("first")[-1]) if n.startswith("mcp__")]

    on = rig.ask(group.id, rig.admin, "/mcp on box far", "✅ On in this chat", timeout=30).text
    assert "• box · running · 12 tools" in on and "• far · running · 2 tools" in on
    (box_dir(rig) / "note-a").write_text("the note a")
    sent = say(rig, group, mia, "second " + call("box__read_note", name="a") + call("far__echo", text="hi"))
    rig.answer(group.id, sent, "tool results", timeout=30)
    assert not [m for m in rig.replies(group.id, sent) if "🔐" in m.text], "read-only tools run without asking"
    [read] = results_in(rig, "second")
    assert result_text(read) == "the note a" and not read.get("is_error")
    request = rig.requests_with("second")[0]
    names = offered(request)
    assert {"mcp__box__read_note", "mcp__box__write_note", "mcp__far__echo", "mcp__far__remember"} <= set(names)
    mcp = [n for n in names if n.startswith("mcp__")]
    assert names[-len(mcp):] == sorted(mcp), "vigil's own tools first, then the MCP tools in a stable order"


def test_in_ask_mode_a_writing_tool_asks_first_and_runs_only_after_allow(rig: Rig) -> None:
    group, ned = team(rig, "Writers", "box", "far")
    sent = say(rig, group, ned, "write it " + call("box__write_note", name="w1", text="allowed text"))
    prompt = prompt_after(rig, group.id, sent)
    assert "the tool 'write_note' of the MCP server 'box'" in prompt.text and "Only " in prompt.text
    assert '"name": "w1"' in prompt.text and '"text": "allowed text"' in prompt.text, "the arguments in full"
    assert not (box_dir(rig) / "note-w1").exists(), "nothing ran before the tap"
    assert tap(rig, group.id, ned, prompt, "Allow").answer_text == "Allowed."
    rig.answer(group.id, sent, "tool results", timeout=30)
    assert (box_dir(rig) / "note-w1").read_text() == "allowed text"
    [result] = results_in(rig, "write it")
    assert result_text(result) == "wrote note w1" and not result.get("is_error")

    denied = say(rig, group, ned, "remember it " + call("far__remember", value="denied value"))
    prompt = prompt_after(rig, group.id, denied)
    assert "the tool 'remember' of the MCP server 'far'" in prompt.text and "denied value" in prompt.text
    assert tap(rig, group.id, ned, prompt, "Deny").answer_text == "Denied."
    rig.answer(group.id, denied, "tool results", timeout=30)
    [result] = results_in(rig, "remember it")
    assert result["is_error"] is True and "declined it" in result_text(result)
    assert not (rig.tmp / "far" / "remembered").exists()


def test_long_arguments_go_whole_in_a_file_before_the_prompt(rig: Rig) -> None:
    group, ora = team(rig, "Long writers", "box")
    text = "\n".join(f"line {i} of a long note" for i in range(400))
    sent = say(rig, group, ora, "long one " + call("box__write_note", name="long", text=text))
    prompt = prompt_after(rig, group.id, sent)
    assert "arguments.json just above" in prompt.text
    document = next(d for d in rig.bot.documents if d.chat_id == group.id and d.filename == "arguments.json")
    assert json.loads(document.content) == {"name": "long", "text": text}
    tap(rig, group.id, ora, prompt, "Deny")
    rig.answer(group.id, sent, "tool results", timeout=30)
    assert not (box_dir(rig) / "note-long").exists()


def test_readonly_offers_only_read_only_tools_and_auto_runs_every_tool(rig: Rig) -> None:
    group, pia = team(rig, "Modes", "box")
    assert "Mode for this chat: readonly" in rig.ask(group.id, rig.admin, "/mode readonly", "Done.").text
    sent = say(rig, group, pia, "in readonly " + call("box__write_note", name="ro", text="x"))
    assert "tool mcp__box__write_note not offered" in rig.answer(group.id, sent, "not offered", timeout=30).text
    names = offered(rig.requests_with("in readonly")[-1])
    assert "mcp__box__read_note" in names and "mcp__box__picture" in names
    assert "mcp__box__write_note" not in names and "mcp__box__crash" not in names
    read = say(rig, group, pia, "read in readonly " + call("box__read_note", name="ro"))
    rig.answer(group.id, read, "tool results", timeout=30)
    assert result_text(results_in(rig, "read in readonly")[0]) == "no note ro"

    assert "Mode for this chat: auto" in rig.ask(group.id, rig.admin, "/mode auto", "Done.").text
    sent = say(rig, group, pia, "in auto " + call("box__write_note", name="auto", text="unasked"))
    rig.answer(group.id, sent, "tool results", timeout=30)
    assert (box_dir(rig) / "note-auto").read_text() == "unasked"
    assert not [m for m in rig.replies(group.id, sent) if "🔐" in m.text]


def test_a_heartbeat_runs_read_only_tools_and_refuses_one_that_would_ask(rig: Rig) -> None:
    group, quin = team(rig, "Beats", "box")
    (box_dir(rig) / "note-beat").write_text("beat note")
    rig.ask(group.id, quin, f"@{BOT} hello beats", "echo", timeout=30)

    def beat(body: dict[str, Any]) -> bool:
        return "send_message" in str(body.get("tools")) and "hello beats" in str(body.get("messages"))

    calls = [ToolCall("mcp__box__read_note", {"name": "beat"}),
             ToolCall("mcp__box__write_note", {"name": "from-beat", "text": "unattended"})]
    rig.api.add_rule(beat, ToolUseReply(calls), times=1)
    sent = rig.say(group.id, rig.admin, "/heartbeat test")
    rig.answer(group.id, sent, "Test beat", timeout=30)
    answered = next(r for r in list(rig.api.requests) if beat(r.body) and r.body["messages"][-1]["role"] == "user"
                    and any(b.get("type") == "tool_result" for b in r.body["messages"][-1]["content"]))
    read, write = [b for b in answered.body["messages"][-1]["content"] if b.get("type") == "tool_result"]
    assert result_text(read) == "beat note" and not read.get("is_error")
    assert write["is_error"] is True and "nobody is here to give" in result_text(write)
    assert not (box_dir(rig) / "note-from-beat").exists()
    assert not [m for m in rig.replies(group.id, sent) if "🔐" in m.text]


# ------------------------------------------------------------------------------------------------ stopping, dying


def clear(rig: Rig, *names: str) -> None:
    for name in names:
        (box_dir(rig) / name).unlink(missing_ok=True)


def test_stop_during_a_slow_call_cancels_it_at_the_server_and_the_chat_answers_at_once(rig: Rig) -> None:
    clear(rig, "slow-started", "slow-cancelled", "slow-finished", "release")
    group, rex = team(rig, "Slow", "box")
    sent = say(rig, group, rex, "wait for it " + call("box__slow"))
    rig.bot.wait_for(lambda: (box_dir(rig) / "slow-started").exists() or None, 30, "the slow tool to start")
    rig.ask(group.id, rex, "/stop", "Stopping", timeout=10)
    rig.answer(group.id, sent, "stopped", timeout=10)
    rig.bot.wait_for(lambda: (box_dir(rig) / "slow-cancelled").exists() or None, 15,
                     "the server to see the cancellation")
    assert not (box_dir(rig) / "slow-finished").exists()
    rig.ask(group.id, rex, f"@{BOT} are you there", "echo", timeout=10)
    [result] = tool_results_of(rig, "wait for it")
    assert result["is_error"] is True and "cancelled: the user stopped this turn" in result_text(result)


def tool_results_of(rig: Rig, marker: str) -> list[dict[str, Any]]:
    """The tool results of the turn holding `marker` as the next turn's request replays them."""
    for request in reversed(list(rig.api.requests)):
        for index, message in enumerate(request.body["messages"]):
            texts = [b.get("text", "") for b in message["content"] if isinstance(b, dict)] \
                if isinstance(message["content"], list) else [message["content"]]
            if message["role"] == "user" and any(marker in t for t in texts):
                following = request.body["messages"][index + 2:index + 3]
                if following:
                    return [b for b in following[0]["content"] if b.get("type") == "tool_result"]
    raise AssertionError(f"no replayed tool results after {marker!r}")


def test_a_server_killed_mid_call_answers_that_call_with_an_error_and_the_next_call_restarts_it(rig: Rig) -> None:
    clear(rig, "slow-started", "slow-cancelled", "slow-finished", "release")
    group, sal = team(rig, "Killers", "box")
    starts = len((box_dir(rig) / "starts").read_text().splitlines())
    sent = say(rig, group, sal, "kill it " + call("box__slow") + call("box__read_note", name="after"))
    started = rig.bot.wait_for(lambda: (box_dir(rig) / "slow-started").exists() or None, 30, "the slow tool")
    assert started
    os.kill(int((box_dir(rig) / "slow-started").read_text()), signal.SIGKILL)
    reply = rig.answer(group.id, sent, "tool results", timeout=30)
    slow, after = turn_results(rig, "kill it")
    assert slow["is_error"] is True and "stopped during the call" in result_text(slow)
    assert "started again at the next call" in result_text(slow)
    assert result_text(after) == "no note after" and not after.get("is_error"), "the next call restarted it"
    assert len((box_dir(rig) / "starts").read_text().splitlines()) == starts + 1
    assert "no note after" in reply.text


# ------------------------------------------------------------------------------------------------ who, what is shown

REFUSED = ("⛔ Only a vigil admin (VIGIL_ADMIN_USERS) can turn MCP servers on or off (/mcp on|off NAME) here, "
           "since that acts with the operator's own credentials.")


def test_mcp_on_by_anyone_but_a_vigil_admin_is_refused_in_a_private_chat_and_in_a_group(rig: Rig) -> None:
    tia = rig.person("Tia")
    assert rig.ask(tia.id, tia, "/mcp on box", "⛔").text == REFUSED
    group, uma = team(rig, "Refusals")
    rig.bot.promote(group.id, uma.id)  # the group's own Telegram admin, not a vigil admin
    assert rig.ask(group.id, uma, "/mcp on box", "⛔").text == REFUSED
    assert rig.ask(group.id, tia, "/mcp off box", "⛔").text == REFUSED
    sent = rig.say(tia.id, tia, call("box__read_note", name="x"))
    assert "not offered" in rig.answer(tia.id, sent, "not offered", timeout=30).text
    listing = rig.ask(group.id, uma, "/mcp", "🔌").text
    assert "No MCP server is on in this chat." in listing
    menu = {c["command"]: c["description"] for c in rig.bot.commands}
    assert "mcp" in menu and "skills" in menu, "in Telegram's command menu"
    assert "/mcp [on|off NAME]" in rig.ask(tia.id, tia, "/help", "Commands:").text
    assert "Off here: box, far, twenty, many (a vigil admin can turn one on here with /mcp on NAME)." in listing


def test_mcp_shows_state_and_tools_and_no_secret_reaches_the_model_the_log_or_an_export(rig: Rig) -> None:
    group, val = team(rig, "Secrets", "box", "far")
    listing = rig.ask(group.id, val, "/mcp", "🔌 MCP servers on in this chat").text
    assert f"• box · running · {BOX_TOOLS} tools — stdio: " in listing
    assert "read-only: " in listing and "read_note" in listing
    assert "may change things (asks first in ask mode): " in listing and "write_note" in listing
    assert "• far · running · 2 tools — http: http://127.0.0.1:" in listing
    assert "Off here: twenty, many" in listing
    sent = say(rig, group, val, "leak it " + call("box__leak"))
    rig.answer(group.id, sent, "tool results", timeout=30)
    [result] = results_in(rig, "leak it")
    assert result_text(result) == "the secret is [redacted]"
    rig.ask(group.id, val, f"@{BOT} and then", "echo", timeout=30)
    everything = [listing, json.dumps([r.body for r in rig.api.requests]), rig.running().err.text,
                  exported(rig, group).decode()]
    for where in everything:
        for secret in (SECRET, TOKEN):
            assert secret not in where
    assert "Bearer" not in listing


def test_an_image_a_tool_returns_reaches_the_model_and_is_stored_once_by_reference(rig: Rig) -> None:
    group, wes = team(rig, "Pictures", "box")
    sent = say(rig, group, wes, "a picture " + call("box__picture", kind="png"))
    rig.answer(group.id, sent, "tool results", timeout=30)
    [image] = next(r for r in rig.requests_with("a picture") if r.images()).images()
    assert image.startswith(b"\x89PNG")
    stored = list((Path(rig.env["VIGIL_DATA_DIR"]) / "media").rglob("*"))
    assert any(p.is_file() and p.read_bytes() == image for p in stored), "the bytes live in the media store"
    rig.ask(group.id, wes, f"@{BOT} what was in it", "echo", timeout=30)
    assert image in rig.requests_with("what was in it")[-1].images(), "the next turn carries it again"
    document = json.loads(exported(rig, group))
    turns = json.dumps(document["generations"])
    assert "vigil_attachment" in turns and "iVBOR" not in turns, "the turn names the image, never holds it"


# ------------------------------------------------------------------------------------------------ skills


def test_a_skill_is_listed_described_to_claude_and_readable_by_the_editor_and_in_the_sandbox(rig: Rig) -> None:
    yan = rig.person("Yan")
    shown = rig.ask(yan.id, yan, "/skills", "🧩").text
    assert f"• notes-helper — {SKILL_DESCRIPTION}" in shown
    assert "Left out:\n• broken: the front matter has no name" in shown
    sent = rig.say(yan.id, yan, "use the skill " + tool("str_replace_based_edit_tool", command="view",
                                                         path="/skills/notes-helper/SKILL.md"))
    rig.answer(yan.id, sent, "tool results", timeout=30)
    request = rig.requests_with("use the skill")[0]
    system = request.body["system"][0]["text"]
    assert f"- notes-helper: {SKILL_DESCRIPTION}" in system and "/skills/<name>/SKILL.md" in system
    assert "Run scripts/hello.sh first" not in system, "only names and descriptions go in the prompt"
    [viewed] = results_in(rig, "use the skill")
    assert "Run scripts/hello.sh first" in result_text(viewed) and not viewed.get("is_error")

    rig.ask(yan.id, yan, "/mode auto", "Done.")
    sent = rig.say(yan.id, yan, "in the sandbox " + tool("bash", command="cat /skills/notes-helper/SKILL.md; "
                                                         "bash /skills/notes-helper/scripts/hello.sh")
                   + tool("bash", command="touch /skills/notes-helper/mine || echo refused")
                   + tool("str_replace_based_edit_tool", command="create", path="/skills/notes-helper/x.md",
                          file_text="x"))
    rig.answer(yan.id, sent, "tool results", timeout=60)
    cat, touch, create = turn_results(rig, "in the sandbox")
    assert "Run scripts/hello.sh first" in result_text(cat) and "hello from the skill" in result_text(cat)
    assert "Read-only file system" in result_text(touch) and "refused" in result_text(touch)
    assert create["is_error"] is True and "/skills is read-only" in result_text(create)
    assert sorted(p.name for p in (rig.tmp / "skills" / "notes-helper").iterdir()) == ["SKILL.md", "scripts"]


def test_a_skill_added_while_vigil_runs_is_listed_at_once(rig: Rig) -> None:
    zoe = rig.person("Zoe")
    folder = rig.tmp / "skills" / "late-comer"
    folder.mkdir()
    (folder / "SKILL.md").write_text("---\nname: late-comer\ndescription: Arrived after the start.\n---\nHi.\n")
    try:
        assert "• late-comer — Arrived after the start." in rig.ask(zoe.id, zoe, "/skills", "🧩").text
        rig.ask(zoe.id, zoe, "tell me", "echo", timeout=30)
        assert "- late-comer: Arrived after the start." in rig.requests_with("tell me")[-1].body["system"][0]["text"]
    finally:
        (folder / "SKILL.md").unlink()
        folder.rmdir()


# ------------------------------------------------------------------------------------------------ many tools


def first_input(rig: Rig, marker: str) -> int:
    request = rig.bot.wait_for(lambda: next((r for r in rig.requests_with(marker) if r.usage), None), 30,
                               f"the answered request of {marker!r}")
    return request.input_total


def test_200_mcp_tools_cost_about_what_20_cost(rig: Rig) -> None:
    figures = {}
    for servers, label in (((), "zero"), (("twenty",), "twenty"), (("many",), "many")):
        group, member = team(rig, f"Count {label}", *servers)
        rig.ask(group.id, member, f"@{BOT} how much with {label}", "echo", timeout=30)
        request = rig.requests_with(f"how much with {label}")[0]
        tools = request.body["tools"]
        figures[label] = (first_input(rig, f"how much with {label}"), len([t for t in tools if
                                                                          str(t.get("name")).startswith("mcp__")]))
    # For scale: the same request with all 200 sent in full (the stand-in's count_tokens counts it as sent).
    body = rig.requests_with("how much with many")[0].body
    eager: list[Any] = [{k: v for k, v in t.items() if k != "defer_loading"} for t in body["tools"]
             if t.get("type") != "tool_search_tool_bm25_20251119"]
    with anthropic.Anthropic(api_key="test-key", base_url=rig.api.base_url, max_retries=0) as claude:
        full = claude.messages.count_tokens(model=body["model"], system=body["system"], messages=body["messages"],
                                            tools=eager).input_tokens
    print(f"\ninput tokens of a request through vigil: 0 MCP tools {figures['zero'][0]}, 20 tools "
          f"{figures['twenty'][0]}, 200 tools (180 deferred) {figures['many'][0]}; 200 sent in full would be {full}")
    assert full > 5 * figures["twenty"][0]
    assert [count for _, count in figures.values()] == [0, 20, 200]
    zero, twenty, many = (tokens for tokens, _ in figures.values())
    assert twenty > zero + 1000, "20 tool definitions cost their share"
    assert many <= twenty * 1.1, "180 more tools behind the tool search tool cost about nothing"


def test_claude_finds_a_deferred_tool_calls_it_and_the_search_goes_back_unchanged(rig: Rig) -> None:
    group, abe = team(rig, "Searchers", "many")
    wanted = "mcp__many__calendar_action_184"
    sent = say(rig, group, abe, f"find it [[tool_search=calendar records]] [[tool={wanted} {{\"query\": \"team\"}}]]")
    reply = rig.answer(group.id, sent, "tool results", timeout=30)
    assert "calendar 184: team (10, False)" in reply.text
    first, second = rig.requests_with("find it")[:2]
    deferred = [t["name"] for t in first.body["tools"] if t.get("defer_loading")]
    assert wanted in deferred and len(deferred) == 180
    assert first.body["tools"] == second.body["tools"], "the same tools at every call: the cache keeps hitting"
    assert first.body["tools"][-1] == {"type": "tool_search_tool_bm25_20251119", "name": "tool_search_tool_bm25"}
    answer = second.body["messages"][-2]["content"]
    assert [b["type"] for b in answer][:2] == ["server_tool_use", "tool_search_tool_result"]
    rig.ask(group.id, abe, f"@{BOT} next turn", "echo", timeout=30)  # the search is history, sent as it came
    off = rig.ask(group.id, rig.admin, "/mcp off many", "✅ Off in this chat").text
    assert "On here now: none." in off
    rig.ask(group.id, abe, f"@{BOT} without the server", "echo", timeout=30)
    later = rig.requests_with("without the server")[-1]
    assert not [t for t in later.body.get("tools", []) if str(t.get("name")).startswith("mcp__")]
    assert "tool_search_tool_result" not in json.dumps(later.body["messages"]), \
        "a search naming tools no longer offered is left out (the API would refuse the request)"


def test_a_tool_search_cut_by_stop_is_dropped_and_the_chat_goes_on(rig: Rig) -> None:
    group, bo = team(rig, "Cut searchers", "many")
    sent = say(rig, group, bo, "search forever [[tool_search=invoice]] [[search_hang]]")
    rig.bot.wait_for(lambda: rig.requests_with("search forever") or None, 30, "the search request")
    rig.ask(group.id, bo, "/stop", "Stopping", timeout=10)
    rig.answer(group.id, sent, "stopped", timeout=15)
    rig.ask(group.id, bo, f"@{BOT} after the cut", "echo", timeout=30)
    assert "server_tool_use" not in json.dumps(rig.requests_with("after the cut")[-1].body["messages"])



def test_the_chats_servers_survive_a_restart(rig: Rig) -> None:
    group, cal = team(rig, "Kept", "far")
    rig.stop()
    rig.start()
    listing = rig.ask(group.id, cal, "/mcp", "🔌").text
    assert "• far · not started" in listing and "Off here: box, twenty, many" in listing
    sent = say(rig, group, cal, "after the restart " + call("far__echo", text="still here"))
    rig.answer(group.id, sent, "tool results", timeout=30)
    assert result_text(results_in(rig, "after the restart")[0]) == "remote echo: still here"
