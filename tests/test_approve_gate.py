"""Permission modes and approvals on a real Runtime over fakes (scripted model, recording outbox, real LMDB).

The whole path through Telegram and bash is in tests/test_approve_e2e.py; here the gate's rules, one
at a time, with the real editor: what each mode lets run, who may answer, timeout, /stop, /new, a
heartbeat, the records written before a tool runs, and the recovery rules of `resume_exchange`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.fakes import (
    Harness,
    HarnessFactory,
    Say,
    ScriptedModel,
    UseTools,
    check_request,
    key_of,
    make_settings,
)
from vigil.actors.core.protocol import Sender
from vigil.actors.engine.runner import resume_exchange
from vigil.actors.tools.approval_prompt import prompt_reply, what
from vigil.commands import parse_command
from vigil.config.settings import SettingsError, load_settings
from vigil.control.caller import Caller
from vigil.control.dispatch import Control
from vigil.policy.tool_mode import effective_mode
from vigil.ports import ModelRequest, Reply
from vigil.records.schema import Message, SessionHeader, Target
from vigil.tools.approvals import GONE, Decision, PendingApprovals, button_data, parse_button

EDITOR = "str_replace_based_edit_tool"
CREATE = {"command": "create", "path": "made.txt", "file_text": "made by claude\n"}
KEY = key_of(1)
TESS = 7


def workspace(h: Harness) -> Path:
    return h.settings.workdir_root / "users" / "1"


def prompts(h: Harness, key: str = KEY) -> list[Reply]:
    return [r for r in h.outbox.sent_replies(key) if r.buttons]


def wait_prompt(h: Harness, count: int = 1, key: str = KEY) -> tuple[Reply, str]:
    """The `count`-th approval prompt of the chat, and its token."""
    assert h.outbox.wait_for(lambda: len(prompts(h, key)) >= count), h.outbox.sent(key)
    prompt = prompts(h, key)[count - 1]
    parsed = parse_button(prompt.buttons[0][0].data)
    assert parsed is not None
    return prompt, parsed[0]


def press(h: Harness, token: str, choice: str, user_id: int = TESS, admin: bool = False) -> Any:
    return h.runtime.deps.approvals.press(token, choice, user_id, "Someone", admin, KEY)  # type: ignore[arg-type]


def results(request: ModelRequest) -> list[dict[str, Any]]:
    return [b for b in request.messages[-1]["content"] if b.get("type") == "tool_result"]


def asking(make: HarnessFactory, *scripts: Any, **settings: Any) -> Harness:
    return make(model=ScriptedModel(list(scripts)), tool_mode="ask", **settings)


# ------------------------------------------------------------------------------------------------ ask


def test_a_file_change_waits_for_allow_then_runs_once_with_its_decision_on_disk(make: HarnessFactory) -> None:
    h = asking(make, UseTools(((EDITOR, CREATE),)), Say("done"))
    h.say(KEY, "make a file")
    prompt, token = wait_prompt(h)
    assert "create (or overwrite) made.txt" in prompt.text and "+ made by claude" in prompt.text
    assert "Only Tess" in prompt.text and "10m" in prompt.text
    header = h.runtime.store.header(KEY)
    assert header is not None and [(a.state, a.scope) for a in header.approvals] == [("asked", "call")]
    assert not (workspace(h) / "made.txt").exists()  # nothing ran while it waits
    assert h.runtime.control(KEY) is not None and h.runtime.control(KEY).busy  # type: ignore[union-attr]

    assert press(h, token, "allow").decided
    assert h.outbox.wait_finished(KEY, 1) == [("done", "")]
    assert (workspace(h) / "made.txt").read_text() == "made by claude\n"
    [result] = results(h.model.requests[-1])
    assert "File created successfully" in result["content"] and not result.get("is_error")
    header = h.runtime.store.header(KEY)
    assert header is not None and [a.state for a in header.approvals] == ["allowed"]
    assert header.approvals[0].tool_use_id == h.turns(KEY)[0].messages[0].content[-1]["id"]
    assert press(h, token, "allow").answer == GONE  # a second tap does nothing
    for request in h.model.requests:
        check_request(request)


def test_deny_returns_a_declined_result_and_claude_goes_on(make: HarnessFactory) -> None:
    h = asking(make, UseTools(((EDITOR, CREATE),)), Say("understood"))
    h.say(KEY, "make a file")
    _, token = wait_prompt(h)
    assert press(h, token, "deny").decided
    assert h.outbox.wait_finished(KEY, 1) == [("understood", "")]
    [result] = results(h.model.requests[-1])
    assert result["is_error"] is True and result["content"].startswith("declined: Someone declined it")
    assert not (workspace(h) / "made.txt").exists()


def test_only_the_asker_or_an_admin_may_answer(make: HarnessFactory) -> None:
    h = asking(make, UseTools(((EDITOR, CREATE),)), Say("done"), UseTools(((EDITOR, CREATE),)), Say("again"))
    h.say(KEY, "make a file")
    _, token = wait_prompt(h)
    refused = press(h, token, "allow", user_id=99)
    assert not refused.decided and refused.answer.startswith("Only Tess")
    assert not (workspace(h) / "made.txt").exists() and h.runtime.deps.approvals.waiting(KEY) is not None
    assert press(h, token, "deny", user_id=99).answer.startswith("Only Tess")  # a Deny is an answer too
    assert press(h, token, "allow", user_id=99, admin=True).decided
    assert h.outbox.wait_finished(KEY, 1) == [("done", "")]
    assert (workspace(h) / "made.txt").exists()


def test_allow_for_this_turn_covers_the_rest_of_the_turn_only(make: HarnessFactory) -> None:
    second = {"command": "create", "path": "second.txt", "file_text": "2\n"}
    h = asking(make, UseTools(((EDITOR, CREATE),)), UseTools(((EDITOR, second),)), Say("both"),
               UseTools(((EDITOR, {**second, "path": "third.txt"}),)), Say("third"))
    h.say(KEY, "two files")
    _, token = wait_prompt(h)
    assert press(h, token, "turn").decided
    assert h.outbox.wait_finished(KEY, 1) == [("both", "")]
    assert (workspace(h) / "second.txt").exists() and len(prompts(h)) == 1
    h.say(KEY, "and a third")  # a new turn asks again
    _, token = wait_prompt(h, 2)
    assert not (workspace(h) / "third.txt").exists()
    press(h, token, "allow")
    assert h.outbox.wait_finished(KEY, 2)[1] == ("third", "")


def test_no_answer_within_the_timeout_is_a_deny(make: HarnessFactory) -> None:
    h = asking(make, UseTools(((EDITOR, CREATE),)), Say("ok"), approval_timeout_s=0.3)
    h.say(KEY, "make a file")
    _, token = wait_prompt(h)
    assert h.outbox.wait_finished(KEY, 1) == [("ok", "")]
    [result] = results(h.model.requests[-1])
    assert result["is_error"] is True and "nobody approved it within" in result["content"]
    late = press(h, token, "allow")
    assert not late.decided and late.answer == GONE and "nobody answered in time" in late.verdict
    assert not (workspace(h) / "made.txt").exists()


def test_a_waiting_prompt_holds_no_model_slot_and_other_chats_go_on(make: HarnessFactory) -> None:
    h = asking(make, UseTools(((EDITOR, CREATE),)), max_concurrent_queries=1)
    h.say(KEY, "make a file")
    _, token = wait_prompt(h)
    other = key_of(2)
    h.say(other, "meanwhile")
    assert h.outbox.wait_finished(other, 1) == [("echo: meanwhile", "")]
    assert h.runtime.slots.in_flight == 0
    press(h, token, "deny")
    h.outbox.wait_finished(KEY, 1)


def caller(key: str = KEY, user_id: int = TESS) -> Caller:
    return Caller(key=key, target=Target(channel="test", chat_id=1), sender=Sender(user_id=user_id, name="Tess"),
                  admin=False, chat_type="private")


def test_stop_answers_at_once_while_a_prompt_waits_and_means_deny(make: HarnessFactory) -> None:
    h = asking(make, UseTools(((EDITOR, CREATE),)), Say("never asked"))
    h.say(KEY, "make a file")
    wait_prompt(h)
    control = Control(h.runtime)
    status = control.handle(parse_command("/status"), caller())  # type: ignore[arg-type]
    assert status is not None and "waiting for an approval" in status.text and "Mode: ask" in status.text
    stopped = control.handle(parse_command("/stop"), caller())  # type: ignore[arg-type]
    assert stopped is not None and "Stopping" in stopped.text
    [(_, note)] = h.outbox.wait_finished(KEY, 1)
    assert note == "⏹ stopped" and len(h.model.requests) == 1  # stopped: no further model call
    [turn] = h.turns(KEY)
    [result] = turn.messages[-1].content
    assert result["is_error"] is True and "stopped the turn" in result["content"]
    assert not (workspace(h) / "made.txt").exists()


def test_new_denies_the_waiting_prompt_then_starts_afresh(make: HarnessFactory) -> None:
    h = asking(make, UseTools(((EDITOR, CREATE),)), Say("fine"))
    h.say(KEY, "make a file")
    wait_prompt(h)
    assert Control(h.runtime).handle(parse_command("/new"), caller()) is None  # type: ignore[arg-type]
    assert h.outbox.wait_finished(KEY, 1) == [("fine", "")]
    [result] = results(h.model.requests[-1])
    assert "started a new conversation" in result["content"]
    assert h.outbox.wait_for(lambda: any("Fresh conversation" in s for s in h.outbox.sent(KEY)))
    assert not (workspace(h) / "made.txt").exists()


# ------------------------------------------------------------------------------------------------ other modes


def test_readonly_offers_no_bash_views_and_refuses_changes(make: HarnessFactory) -> None:
    h = make(model=ScriptedModel([UseTools(((EDITOR, CREATE),)), Say("refused"),
                                  UseTools(((EDITOR, {"command": "view", "path": "."}),)), Say("seen")]),
             tool_mode="readonly")
    h.say(KEY, "make a file")
    h.outbox.wait_finished(KEY, 1)
    [result] = results(h.model.requests[-1])
    assert result["is_error"] is True and "read-only mode" in result["content"]
    assert not (workspace(h) / "made.txt").exists() and not prompts(h)
    h.say(KEY, "look")
    h.outbox.wait_finished(KEY, 2)
    assert not results(h.model.requests[-1])[0].get("is_error")
    for request in h.model.requests:
        assert "bash" not in [t["name"] for t in request.tools]
        assert "Permission mode: read-only" in request.system[0]["text"]


def test_the_mode_command_shows_sets_and_refuses_nonsense(make: HarnessFactory) -> None:
    h = make(model=ScriptedModel([UseTools(((EDITOR, CREATE),)), Say("made")]))  # the rig's default: auto
    h.command(KEY, "mode")
    assert "Mode for this chat: auto (the default)" in h.outbox.wait_sent(KEY, 1)[0]
    h.command(KEY, "mode", "sometimes")
    assert "is not a mode" in h.outbox.wait_sent(KEY, 2)[1]
    h.command(KEY, "mode", "ask")
    assert "Done. 🔐 Mode for this chat: ask:" in h.outbox.wait_sent(KEY, 3)[2]
    header = h.runtime.store.header(KEY)
    assert header is not None and header.tool_mode == "ask"
    h.say(KEY, "make a file")
    _, token = wait_prompt(h)
    assert "Permission mode: ask" in h.model.requests[0].system[0]["text"]
    press(h, token, "allow")
    h.outbox.wait_finished(KEY, 1)


def test_on_the_console_ask_means_auto_and_readonly_stays(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, tool_mode="ask")
    console = SessionHeader(key="console:x", incarnation=1, created_at=1.0, target=Target(channel="console"),
                            cwd="/", model="m")
    assert effective_mode(console, settings) == "auto"
    assert effective_mode(msgspec.structs.replace(console, tool_mode="readonly"), settings) == "readonly"
    assert effective_mode(msgspec.structs.replace(console, key="tg:1"), settings) == "ask"


def test_auto_runs_everything_unasked(make: HarnessFactory) -> None:
    h = make(model=ScriptedModel([UseTools(((EDITOR, CREATE),)), Say("made")]), tool_mode="auto")
    h.say(KEY, "make a file")
    assert h.outbox.wait_finished(KEY, 1) == [("made", "")]
    assert (workspace(h) / "made.txt").exists() and not prompts(h)
    assert "Permission mode: auto" in h.model.requests[0].system[0]["text"]


def test_a_heartbeat_in_ask_mode_never_waits_its_risky_calls_are_refused(make: HarnessFactory) -> None:
    h = asking(make, Say("hello"))
    h.say(KEY, "hi")
    h.outbox.wait_finished(KEY, 1)
    h.model.push(UseTools((("bash", {"command": "touch beat-ran"}), (EDITOR, CREATE))), Say("nothing to say"))
    h.command(KEY, "heartbeat", "test")
    assert h.outbox.wait_for(lambda: any("Test beat" in s for s in h.outbox.sent(KEY)), timeout=10)
    refused = results(h.model.requests[-1])
    assert len(refused) == 2 and all(r["is_error"] and "nobody is here to give" in r["content"] for r in refused)
    assert not prompts(h) and not (workspace(h) / "made.txt").exists()


# ------------------------------------------------------------------------------------------------ durability


def call(call_id: str, command: str = "echo x") -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": "bash", "input": {"command": command}}


def result(call_id: str, text: str = "x") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": text}


ROUND = (Message(role="assistant", content=(call("a"), call("b"))),)


def test_a_call_that_waited_for_approval_leaves_its_round_open_for_the_resumed_turn() -> None:
    assert resume_exchange(ROUND, frozenset({"a"})) == ROUND
    partial = (*ROUND, Message(role="user", content=(result("a"),)))
    assert resume_exchange(partial, frozenset({"b"})) == partial


def test_a_call_allowed_but_without_a_result_is_answered_interrupted_never_run_again() -> None:
    [_, answered] = resume_exchange(ROUND, frozenset())
    first, second = answered.content
    assert first["tool_use_id"] == "a" and first["content"].startswith("interrupted")
    assert second["tool_use_id"] == "b" and second["content"].startswith("not run")
    # Only the first unanswered call can have begun: a later "asked" one does not reopen the round.
    assert resume_exchange(ROUND, frozenset({"b"}))[-1].role == "user"


# ------------------------------------------------------------------------------------------------ pieces


def test_buttons_fit_telegram_and_parse_back() -> None:
    approvals = PendingApprovals()
    pending = approvals.open("tg:-5", 1, "Ann")
    for choice in ("allow", "turn", "deny"):
        data = button_data(pending.token, choice)
        assert len(data.encode()) <= 64 and parse_button(data) == (pending.token, choice)
    assert parse_button("ap:x:q") is None and parse_button("forget:1:tg:1") is None
    assert approvals.press(pending.token, "allow", 1, "Ann", False, "tg:-6").answer.startswith("That button")
    assert approvals.withdraw("tg:-5", "/new") == 1
    assert approvals.press(pending.token, "allow", 1, "Ann", False, "tg:-5").verdict.startswith("❌ Denied: a new")


def test_the_prompt_shows_everything_it_asks_about_or_carries_it_whole_in_a_file_before_it() -> None:
    # What fits one message is shown whole: a 3,000-character command (it was cut at 2,000).
    command = "echo " + "y" * 2995
    fits = prompt_reply("bash", {"command": command}, "Ann", 600, "tok")
    assert fits.document is None and command in fits.text and fits.buttons
    assert what("bash", {"command": "rm -rf \x1b[2J /tmp/x"}).endswith("rm -rf ?[2J /tmp/x")
    # A longer one, or a diff longer than a message (it was cut at 8 lines a side), goes whole in a file.
    long = "\n".join(f"line {i} " + "x" * 300 for i in range(20))
    change = prompt_reply(EDITOR, {"command": "str_replace", "path": "a.py", "old_str": "<b>old</b>", "new_str": long},
                          "Ann", 600, "tok")
    assert change.document is not None and change.document.filename == "change.diff"
    assert change.document.content.decode() == "- <b>old</b>\n" + "\n".join(f"+ {line}" for line in long.splitlines())
    assert "- <b>old</b>" in change.text and "+ line 0" in change.text and "20 lines" not in change.text
    assert "21 lines" in change.text and "change.diff just above" in change.text and change.buttons
    assert len(change.text) < 3500 and max(len(line) for line in change.text.splitlines()) < 170
    huge = prompt_reply("bash", {"command": "y" * 9000 + "\x1b[2J; rm -rf ~"}, "Ann", 600, "tok")
    assert huge.document is not None and huge.document.content.endswith(b"\x1b[2J; rm -rf ~"), "the exact bytes"


def test_the_settings_read_the_mode_and_the_timeout(tmp_path: Path) -> None:
    base = {"HOME": str(tmp_path), "VIGIL_WORKDIR_ROOT": str(tmp_path)}
    defaults = load_settings({**base, "VIGIL_DATA_DIR": str(tmp_path.parent / "d")})
    assert (defaults.tool_mode, defaults.approval_timeout_s) == ("ask", 600.0)
    chosen = load_settings({**base, "VIGIL_DATA_DIR": str(tmp_path.parent / "d"), "VIGIL_TOOL_MODE": "ReadOnly",
                            "VIGIL_APPROVAL_TIMEOUT": "90s"})
    assert (chosen.tool_mode, chosen.approval_timeout_s) == ("readonly", 90.0)
    with pytest.raises(SettingsError, match="VIGIL_TOOL_MODE"):
        load_settings({**base, "VIGIL_TOOL_MODE": "yolo"})



def test_a_stop_overrides_a_tap_that_came_in_the_same_instant() -> None:
    approvals = PendingApprovals()
    pending = approvals.open("tg:1", 1, "Ann")
    assert approvals.press(pending.token, "allow", 1, "Ann", False, "tg:1").decided
    settled = approvals.settle(pending, Decision("deny", reason="stopped"), force=True)
    assert settled.choice == "deny" and pending.decision == settled
    assert approvals.press(pending.token, "allow", 1, "Ann", False, "tg:1").verdict == "⏹ Denied: the turn was stopped"


def test_a_scheduled_task_in_ask_mode_never_waits_its_risky_calls_are_refused(make: HarnessFactory) -> None:
    import datetime as dt

    at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat(timespec="seconds")
    h = asking(make, UseTools((("schedule", {"action": "create", "at": at, "text": "tidy the notes"}),)), Say("set"))
    h.say(KEY, "remind me")
    h.outbox.wait_finished(KEY, 1)
    h.model.push(UseTools((("bash", {"command": "touch task-ran"}), (EDITOR, CREATE))), Say("tidied nothing"))
    assert h.outbox.wait_for(lambda: any("tidied nothing" in s for s in h.outbox.sent(KEY)), timeout=15)
    refused = results(h.model.requests[-1])
    assert len(refused) == 2 and all(r["is_error"] and "nobody is here to give" in r["content"] for r in refused)
    assert not prompts(h) and not (workspace(h) / "made.txt").exists()


def test_a_prompt_that_closes_without_a_press_is_closed_by_its_adapter_and_a_pressed_one_is_not() -> None:
    approvals = PendingApprovals()
    closed: list[tuple[str, str]] = []

    def closer(name: str) -> Any:
        return lambda line: closed.append((name, line))

    timed_out = approvals.open("tg:1", 7, "Ann")
    approvals.posted(timed_out.token, closer("timed out"))
    approvals.settle(timed_out, Decision("deny", reason="timeout"))
    pressed = approvals.open("tg:1", 7, "Ann")
    approvals.posted(pressed.token, closer("pressed"))
    assert approvals.press(pressed.token, "allow", 7, "Ann", False, "tg:1").decided
    approvals.settle(pressed, Decision("deny", reason="timeout"))
    withdrawn = approvals.open("tg:2", 7, "Ann")
    approvals.posted(withdrawn.token, closer("withdrawn"))
    approvals.withdraw("tg:2", "/new")
    early = approvals.open("tg:3", 7, "Ann")
    approvals.settle(early, Decision("deny", reason="stopped"), force=True)
    approvals.posted(early.token, closer("closed before it was posted"))
    assert closed == [("timed out", "⌛ Denied: nobody answered in time"),
                      ("withdrawn", "❌ Denied: a new conversation was started"),
                      ("closed before it was posted", "⏹ Denied: the turn was stopped")]
