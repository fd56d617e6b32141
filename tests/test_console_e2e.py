"""End to end on the console: `vigil chat` as a subprocess against the Messages API stand-in."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.procs import VigilProcess, run_vigil, vigil_env
from tests.standins.messages_api import MessagesAPI, filler_text
from vigil.records.schema import SessionHeader, Target
from vigil.store.store import open_store

pytestmark = pytest.mark.e2e


def chat_env(tmp_path: Path, messages_api: MessagesAPI, **extra: str) -> dict[str, str]:
    return vigil_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=messages_api.base_url, **extra)


def texts(request_body: dict[str, object]) -> list[str]:
    out = []
    for message in request_body["messages"]:  # type: ignore[attr-defined]
        for block in message["content"]:
            if block.get("type") == "text":
                out.append(block["text"])
    return out


def test_a_second_process_continues_the_conversation(tmp_path: Path, messages_api: MessagesAPI) -> None:
    env = chat_env(tmp_path, messages_api)
    first = run_vigil(["chat"], env, stdin="my favourite fruit is the quince\n")
    assert first.returncode == 0, first.stderr
    assert "echo: my favourite fruit is the quince" in first.stdout

    second = run_vigil(["chat"], env, stdin="what is my favourite fruit?\n")
    assert second.returncode == 0, second.stderr
    assert "echo: what is my favourite fruit?" in second.stdout
    history = texts(messages_api.requests[-1].body)
    assert history[:2] == ["my favourite fruit is the quince", "echo: my favourite fruit is the quince"]
    assert history[-1] == "what is my favourite fruit?"
    assert (Path(env["VIGIL_DATA_DIR"]) / "data.mdb").is_file()
    assert not messages_api.errors


def test_sessions_are_separate_by_name(tmp_path: Path, messages_api: MessagesAPI) -> None:
    env = chat_env(tmp_path, messages_api)
    assert run_vigil(["chat", "--session", "alpha"], env, stdin="alpha secret\n").returncode == 0
    assert run_vigil(["chat", "--session", "beta"], env, stdin="beta hello\n").returncode == 0
    assert "alpha secret" not in messages_api.requests[-1].all_text()
    listing = run_vigil(["sessions", "list"], env)
    assert "console:alpha" in listing.stdout and "console:beta" in listing.stdout


def test_kill_9_right_after_a_reply_loses_nothing(tmp_path: Path, messages_api: MessagesAPI) -> None:
    env = chat_env(tmp_path, messages_api)
    with VigilProcess(["chat"], env) as vigil:
        vigil.send("remember the number 4711")
        vigil.out.wait_for(lambda t: "echo: remember the number 4711\n" in t, what="the reply")
        vigil.kill9()

    shown = run_vigil(["sessions", "show", "console:default"], env)
    assert "remember the number 4711" in shown.stdout
    assert "echo: remember the number 4711" in shown.stdout

    again = run_vigil(["chat"], env, stdin="and now?\n")
    assert again.returncode == 0, again.stderr
    history = texts(messages_api.requests[-1].body)
    assert history[:2] == ["remember the number 4711", "echo: remember the number 4711"]


def test_kill_9_mid_reply_keeps_what_was_shown_and_answers_again(tmp_path: Path, messages_api: MessagesAPI) -> None:
    env = chat_env(tmp_path, messages_api)
    with VigilProcess(["chat"], env) as vigil:
        vigil.send("[[len=400]][[slow=4]] tell me a long story")
        shown = vigil.out.wait_for(lambda t: len(t) > 40, what="part of the streamed reply")
        vigil.kill9()
    partial = shown.strip()
    exported = run_vigil(["sessions", "export", "console:default"], env)
    turn = json.loads(exported.stdout)["generations"][0]["turns"][0]
    assert turn["status"] == "open"
    assert partial[:30] in turn["reply"], "what the user saw was durable before it was shown"

    # The next start answers the interrupted message again, without being asked.
    again = run_vigil(["chat"], env, stdin="")
    assert again.returncode == 0, again.stderr
    assert len(again.stdout.strip()) >= 400
    exported = json.loads(run_vigil(["sessions", "export", "console:default"], env).stdout)
    turn = exported["generations"][0]["turns"][0]
    assert turn["status"] == "done" and turn["attempts"] == 2
    assert partial[:30] in turn["superseded_reply"]


def fail_then_recover(env: dict[str, str], first: str, words: str) -> str:
    """Send a line that makes the model fail, wait for the sentence, then a normal line."""
    with VigilProcess(["chat"], env) as vigil:
        vigil.send(first)
        vigil.out.wait_for(lambda t: words in t.lower(), what=f"a sentence with {words!r}")
        vigil.send("then this")
        vigil.out.wait_for(lambda t: "echo: then this" in t, what="the next reply")
        vigil.close_stdin()
        assert vigil.wait() == 0
        output = vigil.out.wait_closed() + vigil.err.wait_closed()
    assert "Traceback" not in output
    return output


def test_a_model_failure_is_one_sentence_and_the_next_line_works(tmp_path: Path, messages_api: MessagesAPI) -> None:
    env = chat_env(tmp_path, messages_api, VIGIL_MODEL_MAX_RETRIES="0")
    output = fail_then_recover(env, "[[error=529]] please", "overloaded")
    assert "⚠️ The model service is overloaded right now; please try again shortly." in output
    assert not messages_api.errors, "every request stayed valid after the failure"


@pytest.mark.parametrize("directive, words", [
    ("[[error=401]]", "api key"),
    ("[[error=429]]", "rate-limiting"),
    ("[[error=500]]", "had an error"),
    ("[[drop=30]]", "broke off"),
    ("[[stream_error=overloaded]]", "overloaded"),
])
def test_each_model_failure_reads_plainly(tmp_path: Path, messages_api: MessagesAPI, directive: str,
                                          words: str) -> None:
    env = chat_env(tmp_path, messages_api, VIGIL_MODEL_MAX_RETRIES="0")
    fail_then_recover(env, f"{directive} hi", words)
    assert not messages_api.errors


def test_an_answer_cut_mid_stream_keeps_what_was_shown_as_the_history(tmp_path: Path,
                                                                      messages_api: MessagesAPI) -> None:
    """The part of an answer shown before the cut is what the next request carries, and the user is told
    it broke off (not that the service was unreachable: it answered, then stopped)."""
    env = chat_env(tmp_path, messages_api, VIGIL_MODEL_MAX_RETRIES="0")
    output = fail_then_recover(env, "[[drop=30]] hi", "broke off")
    shown = "echo: [[drop=30]] hi p1 alpha "
    assert len(shown) == 30
    assert shown.strip() in output
    assert "couldn't reach" not in output
    cut = messages_api.requests[-1].body["messages"]
    assistant = [b["text"] for m in cut if m["role"] == "assistant" for b in m["content"] if b["type"] == "text"]
    assert assistant[0] == shown, "the history holds exactly the part that was shown"


def test_a_model_service_that_refuses_connections_reads_as_unreachable(tmp_path: Path,
                                                                        messages_api: MessagesAPI) -> None:
    with socket.socket() as probe:  # a port nobody listens on: the connection is refused at once
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = vigil_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=closed, VIGIL_MODEL_MAX_RETRIES="0")
    result = run_vigil(["chat"], env, stdin="hello?\n")
    assert result.returncode == 0, result.stderr
    assert "⚠️ I couldn't reach the model service (network error); please try again." in result.stdout
    assert "broke off" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_hanging_model_times_out_plainly(tmp_path: Path, messages_api: MessagesAPI) -> None:
    env = chat_env(tmp_path, messages_api, VIGIL_MODEL_MAX_RETRIES="0", VIGIL_MODEL_TIMEOUT="1s")
    fail_then_recover(env, "[[hang]] hello", "took too long")


def test_console_commands(tmp_path: Path, messages_api: MessagesAPI) -> None:
    env = chat_env(tmp_path, messages_api)
    work = Path(env["VIGIL_WORKDIR_ROOT"])
    (work / "p1").mkdir()
    result = run_vigil(["chat"], env, stdin="/pwd\n/cd p1\n/cd ../..\n/pwd\nhello\n/status\n/help\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"📁 {work}\n" in out
    assert f"📁 {work / 'p1'}" in out
    assert "escapes the working root" in out
    assert "Model: claude-sonnet-5-5" in out
    assert "/heartbeat" in out
    assert f"Working directory: {work / 'p1'}" in messages_api.requests[-1].body["system"][0]["text"]


def test_the_console_counts_as_an_admin(tmp_path: Path, messages_api: MessagesAPI) -> None:
    """The operator's console moves its workspace anywhere under the root, as an admin's chat may.

    Its session is stored as a pre-workspace vigil left it, in a subdirectory: such a session is
    confined to that directory, so only an admin's /cd gets it out.
    """
    env = chat_env(tmp_path, messages_api)
    work = Path(env["VIGIL_WORKDIR_ROOT"]).resolve()
    (work / "old" / "place").mkdir(parents=True)
    (work / "projects" / "y").mkdir(parents=True)
    store = open_store(Path(env["VIGIL_DATA_DIR"]))
    try:
        store.commit(SessionHeader(key="console:default", incarnation=1, created_at=1.0,
                                   target=Target(channel="console"), cwd=str(work / "old" / "place"),
                                   model="claude-sonnet-5-5", chat_type="console"), create=True).result()
    finally:
        store.close()
    create = {"command": "create", "path": "made.txt", "file_text": "by the operator\n"}
    with VigilProcess(["chat"], env) as vigil:
        vigil.send("/cd ../../projects")
        vigil.out.wait_for(lambda t: f"📁 {work / 'projects'} " in t, what="the cd out of the old place")
        vigil.send("/cd y")
        vigil.out.wait_for(lambda t: f"📁 {work / 'projects' / 'y'}\n" in t, what="the cd into the project")
        vigil.send(f"[[tool=str_replace_based_edit_tool {json.dumps(create)}]] write it")
        vigil.out.wait_for(lambda t: "tool results" in t, what="the tool result")
        vigil.close_stdin()
        assert vigil.wait() == 0, vigil.err.text
    assert "⛔" not in vigil.out.text
    assert (work / "projects" / "y" / "made.txt").read_text() == "by the operator\n"
    assert not messages_api.errors


def test_a_full_map_grows_instead_of_failing(tmp_path: Path, messages_api: MessagesAPI) -> None:
    env = chat_env(tmp_path, messages_api, VIGIL_STORE_MAP_MB="1", VIGIL_LOG_LEVEL="info")
    turns = 60
    ending = filler_text(12000)[-40:]

    def replies_reach(count: int) -> Callable[[str], bool]:
        return lambda text: text.count(ending) >= count

    with VigilProcess(["chat"], env) as vigil:
        for i in range(turns):
            vigil.send(f"[[len=12000]] long reply {i}")
            vigil.out.wait_for(replies_reach(i + 1), timeout=30, what=f"reply {i + 1}")
        vigil.close_stdin()
        assert vigil.wait() == 0
        output = vigil.out.wait_closed() + vigil.err.wait_closed()
    assert "Traceback" not in output
    assert '"store.map_grown"' in output
    assert (Path(env["VIGIL_DATA_DIR"]) / "data.mdb").stat().st_size > 1024 * 1024
    shown = run_vigil(["sessions", "show", "console:default", "--turns", str(turns)], env)
    assert f"long reply {turns - 1}" in shown.stdout and "long reply 0" in shown.stdout


def test_cleanup_from_the_shell_prunes_old_conversations_and_keeps_active_sessions(
        tmp_path: Path, messages_api: MessagesAPI) -> None:
    env = chat_env(tmp_path, messages_api)
    assert run_vigil(["chat"], env, stdin="from the first conversation\n/new\n").returncode == 0
    started = time.monotonic()
    time.sleep(2.2)  # the first conversation must be older than the cutoff below; only time makes it so
    assert run_vigil(["chat"], env, stdin="from the second conversation\n").returncode == 0
    cleaned = run_vigil(["sessions", "cleanup", "--older-than", f"{time.monotonic() - started - 0.5:.1f}s",
                         "--yes"], env)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "deleted 0 session(s) and 1 earlier conversation(s)" in cleaned.stdout
    exported = json.loads(run_vigil(["sessions", "export", "console:default"], env).stdout)
    assert [g["generation"] for g in exported["generations"]] == [2]
    assert exported["conversations"] == []
