"""Claude working in a chat's directory, end to end: `vigil run`, the jailed editor, opt-in bash."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import VigilProcess, run_vigil, vigil_env
from tests.standins.bot_api import BotAPI
from tests.standins.messages_api import MessagesAPI, RecordedRequest

pytestmark = pytest.mark.e2e

ANN = 111
EDITOR = "str_replace_based_edit_tool"
SECRET = "root:x:0:0:the-secret-outside-the-root"


def tool(name: str, **arguments: Any) -> str:
    return f"[[tool={name} {json.dumps(arguments)}]]"


def tool_results(request: RecordedRequest) -> list[dict[str, Any]]:
    last = request.body["messages"][-1]["content"]
    return [b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"]


def chat_dir(env: dict[str, str]) -> Path:
    """Ann's private chat's own directory under the work root (she is no admin: her tools stay there)."""
    return Path(env["VIGIL_WORKDIR_ROOT"]) / "users" / str(ANN)


def result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return str(content)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[BotAPI, MessagesAPI, dict[str, str], Path]]:
    with MessagesAPI() as api, BotAPI() as tg:
        tg.add_private_chat(tg.add_user(ANN, "Ann"))
        env = vigil_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=api.base_url,
                        TELEGRAM_BOT_TOKEN=tg.token, VIGIL_TELEGRAM_BASE_URL=tg.base_url,
                        VIGIL_ALLOWED_USERS=str(ANN), VIGIL_MESSAGES_PER_MINUTE="1000")
        root = chat_dir(env)
        (root / "p1").mkdir(parents=True)
        (root / "p1" / "hello.txt").write_text("hello from p1\nsecond line\n")
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "passwd").write_text(SECRET + "\n")
        (root / "p1" / "innocent.txt").symlink_to(outside / "passwd")
        yield tg, api, env, outside


def start(tg: BotAPI, env: dict[str, str], **extra: str) -> VigilProcess:
    vigil = VigilProcess(["run"], {**env, **extra})
    tg.wait_for(lambda: tg.commands or vigil.process.poll() is not None, timeout=30, message="vigil to start")
    assert vigil.process.poll() is None, vigil.err.text
    return vigil


def ask(tg: BotAPI, text: str, expect: str, timeout: float = 20) -> str:
    before = len(tg.bot_messages(ANN))
    tg.send_text(ANN, ANN, text)
    return tg.wait_for(lambda: next((m.text for m in tg.bot_messages(ANN)[before:] if expect in m.text), None),
                       timeout=timeout, message=f"a reply containing {expect!r}")


def test_the_model_views_a_file_in_the_chats_directory(world: tuple[BotAPI, MessagesAPI, dict[str, str], Path]
                                                       ) -> None:
    tg, api, env, _ = world
    with start(tg, env) as vigil:
        ask(tg, "/cd p1", "📁")
        reply = ask(tg, tool(EDITOR, command="view", path="hello.txt"), "second line")
        assert "hello from p1" in reply and "🔧" not in reply
        results = tool_results(api.requests[-1])
        assert len(results) == 1 and "hello from p1" in result_text(results[0])
        assert not results[0].get("is_error")
        # The progress line was shown while the tool ran (a private chat: in the reply's draft), and the
        # final reply, sent for good, does not carry it.
        assert [d for d in tg.drafts(ANN) if "🔧 view hello.txt" in d.text], "a progress line named the tool call"
        vigil.terminate()
    assert not api.errors


def test_escapes_are_refused_and_nothing_outside_reaches_the_model(
        world: tuple[BotAPI, MessagesAPI, dict[str, str], Path]) -> None:
    tg, api, env, outside = world
    attempts = [str(outside / "passwd"), "../../../../../../" + str(outside / "passwd").lstrip("/"),
                "innocent.txt", "/etc/passwd", "../../../etc/passwd"]
    with start(tg, env) as vigil:
        ask(tg, "/cd p1", "📁")
        for path in attempts:
            ask(tg, tool(EDITOR, command="view", path=path), "tool results")
            result = tool_results(api.requests[-1])[0]
            assert result.get("is_error") is True, path
            assert "escapes the working root" in result_text(result), path
        ask(tg, tool(EDITOR, command="create", path="../../planted.txt", file_text="x"), "tool results")
        assert tool_results(api.requests[-1])[0].get("is_error") is True
        vigil.terminate()
    assert not (chat_dir(env).parent / "planted.txt").exists()
    assert not (Path(env["VIGIL_WORKDIR_ROOT"]).parent / "planted.txt").exists()
    assert all(SECRET not in r.all_text() and "root:x:0:0:root" not in r.all_text() for r in api.requests)
    assert not api.errors


def test_create_then_view_round_trips(world: tuple[BotAPI, MessagesAPI, dict[str, str], Path]) -> None:
    tg, api, env, _ = world
    with start(tg, env) as vigil:
        ask(tg, "/cd p1", "📁")
        two_rounds = (tool(EDITOR, command="create", path="notes/plan.md", file_text="# Plan\n- ship it\n")
                      + tool(EDITOR, command="view", path="notes/plan.md"))
        reply = ask(tg, two_rounds, "ship it")
        assert "Plan" in reply
        vigil.terminate()
    assert (chat_dir(env) / "p1" / "notes" / "plan.md").read_text() == "# Plan\n- ship it\n"
    assert not api.errors


def test_bash_runs_in_the_chats_directory_only_when_enabled(
        world: tuple[BotAPI, MessagesAPI, dict[str, str], Path]) -> None:
    tg, api, env, _ = world
    with start(tg, env) as vigil:
        reply = ask(tg, tool("bash", command="pwd"), "not offered")
        assert "bash" in reply
        assert "bash" not in {t.get("name") for t in api.requests[-1].body.get("tools", [])}
        vigil.terminate()
    with start(tg, env, VIGIL_ENABLE_BASH="1") as vigil:
        ask(tg, "/cd p1", "📁")
        ask(tg, tool("bash", command="pwd"), "tool results")
        assert result_text(tool_results(api.requests[-1])[0]).strip() == str(chat_dir(env) / "p1")
        ask(tg, tool("bash", command="echo hi-$((6*7))"), "tool results")
        assert result_text(tool_results(api.requests[-1])[0]).strip() == "hi-42"
        ask(tg, tool("bash", command="env"), "tool results")
        environment = result_text(tool_results(api.requests[-1])[0])
        assert "test-key" not in environment and env["TELEGRAM_BOT_TOKEN"] not in environment
        vigil.terminate()
    assert not api.errors


def test_stop_ends_a_tool_loop_at_once_and_the_history_stays_valid(
        world: tuple[BotAPI, MessagesAPI, dict[str, str], Path]) -> None:
    tg, api, env, _ = world
    with start(tg, env, VIGIL_ENABLE_BASH="1") as vigil:
        marker = chat_dir(env) / "started"
        tg.send_text(ANN, ANN, tool("bash", command=f"touch {marker}; sleep 60") + tool("bash", command="echo never"))
        tg.wait_for(lambda: marker.exists(), timeout=20, message="the long command to start")
        tg.send_text(ANN, ANN, "/stop")
        stopped = tg.wait_for(lambda: next((m for m in tg.bot_messages(ANN) if "stopped" in m.text), None),
                              timeout=10, message="the turn to stop")
        assert stopped is not None
        reply = ask(tg, "are you still there?", "echo: are you still there?")
        assert reply
        history = api.requests[-1].body["messages"]
        results = [b for m in history if isinstance(m["content"], list) for b in m["content"]
                   if b.get("type") == "tool_result"]
        assert results and all(r.get("is_error") for r in results), "the cut call was answered as cancelled"
        vigil.terminate()
    assert not api.errors


def test_kill_9_in_the_middle_of_a_tool_loop_restores_a_valid_history(
        world: tuple[BotAPI, MessagesAPI, dict[str, str], Path]) -> None:
    tg, api, env, _ = world
    root = chat_dir(env)
    marker = root / "began"
    with start(tg, env, VIGIL_ENABLE_BASH="1") as vigil:
        tg.send_text(ANN, ANN, tool(EDITOR, command="create", path="a.txt", file_text="one")
                     + tool("bash", command=f"touch {marker}; sleep 60"))
        tg.wait_for(lambda: marker.exists(), timeout=20, message="the second tool round to start")
        vigil.kill9()
    exported = json.loads(run_vigil(["sessions", "export", f"tg:{ANN}"], env).stdout)
    turn = exported["generations"][0]["turns"][0]
    assert turn["status"] == "open"
    assert any(b.get("type") == "tool_result" for m in turn["messages"] for b in m["content"]), \
        "the finished tool round was stored before the next began"
    marker.unlink()
    with start(tg, env) as vigil:
        # Bash is off now: the re-run turn gets "not offered" for it and still ends; then a new message works.
        tg.wait_for(lambda: any("tool" in m.text for m in tg.bot_messages(ANN)), timeout=30,
                    message="the interrupted turn to be answered again")
        ask(tg, "and now?", "echo: and now?")
        vigil.terminate()
    assert not api.errors, "every request after the crash was valid"
    assert os.path.exists(root / "a.txt")
