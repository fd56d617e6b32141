"""Heartbeats end to end: `vigil run` against the Bot API and Messages API stand-ins."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import VigilProcess, run_vigil, vigil_env
from tests.standins.bot_api import BotAPI
from tests.standins.messages_api import MessagesAPI, RecordedRequest, Responder, ToolCall, ToolUseReply

pytestmark = pytest.mark.e2e

ANN, BOB = 111, 222


def is_beat(body: dict[str, Any]) -> bool:
    """A heartbeat's first request: it offers send_message and does not end with tool results."""
    tools = {t.get("name") for t in body.get("tools", [])}
    last = body["messages"][-1]["content"]
    answered = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
    return "send_message" in tools and not answered


def beat_requests(api: MessagesAPI) -> list[RecordedRequest]:
    return [r for r in api.requests if is_beat(r.body)]


def speaking(texts: Callable[[], str]) -> Callable[[dict[str, Any]], Responder]:
    def respond(body: dict[str, Any]) -> Responder:
        return ToolUseReply(calls=[ToolCall("send_message", {"text": texts()})],
                            text="closing thoughts that must never be shown")
    return respond


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[BotAPI, MessagesAPI, dict[str, str]]]:
    with MessagesAPI() as api, BotAPI() as tg:
        for user, name in ((ANN, "Ann"), (BOB, "Bob")):
            tg.add_private_chat(tg.add_user(user, name))
        env = vigil_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=api.base_url,
                        TELEGRAM_BOT_TOKEN=tg.token, VIGIL_TELEGRAM_BASE_URL=tg.base_url,
                        VIGIL_ALLOWED_USERS=f"{ANN},{BOB}", VIGIL_HEARTBEAT_MIN_INTERVAL="1s")
        yield tg, api, env


def start(tg: BotAPI, env: dict[str, str], **extra: str) -> VigilProcess:
    vigil = VigilProcess(["run"], {**env, **extra})
    tg.wait_for(lambda: tg.commands or vigil.process.poll() is not None, timeout=30, message="vigil to start")
    assert vigil.process.poll() is None, vigil.err.text
    return vigil


def said(tg: BotAPI, chat: int, needle: str) -> list[str]:
    return [m.text for m in tg.bot_messages(chat) if needle in m.text]


def command(tg: BotAPI, chat: int, text: str, expect: str) -> str:
    before = len(tg.bot_messages(chat))
    tg.send_text(chat, chat, text)
    return tg.wait_for(lambda: next((m.text for m in tg.bot_messages(chat)[before:] if expect in m.text), None),
                       timeout=15, message=f"reply to {text!r}")


def test_beats_arrive_at_their_interval_and_only_what_is_sent_shows(
        world: tuple[BotAPI, MessagesAPI, dict[str, str]]) -> None:
    tg, api, env = world
    numbers = itertools.count(1)
    api.add_rule(is_beat, speaking(lambda: f"check-in number {next(numbers)}"))
    with start(tg, env) as vigil:
        assert "Heartbeat off" in command(tg, ANN, "/heartbeat status", "Heartbeat"), "new sessions start off"
        command(tg, ANN, "/heartbeat every 2s", "Heartbeat on")
        started = time.monotonic()
        tg.wait_for(lambda: len(said(tg, ANN, "check-in number")) >= 3, timeout=20, message="three beats")
        elapsed = time.monotonic() - started
        assert elapsed >= 4, "beats wait their interval"
        assert elapsed < 12
        assert not said(tg, ANN, "closing thoughts"), "a beat's own text is never shown"
        assert not said(tg, BOB, "check-in"), "only the chat that turned it on hears it"
        assert not tg.chat_actions or all(chat != ANN for chat, _, _ in tg.chat_actions[-3:])
        vigil.terminate()
    assert not api.errors


def test_silence_when_the_model_calls_nothing(world: tuple[BotAPI, MessagesAPI, dict[str, str]]) -> None:
    tg, api, env = world
    with start(tg, env) as vigil:
        command(tg, ANN, "/heartbeat every 1s", "Heartbeat on")
        before = len(tg.bot_messages(ANN))
        tg.wait_for(lambda: len(beat_requests(api)) >= 3, timeout=20, message="three beats")
        assert len(tg.bot_messages(ANN)) == before, "silent beats send nothing"
        status = command(tg, ANN, "/heartbeat status", "Last beat")
        assert "stayed silent" in status
        vigil.terminate()


def test_beats_go_on_through_idle_eviction_and_resume_after_kill_9(
        world: tuple[BotAPI, MessagesAPI, dict[str, str]]) -> None:
    tg, api, env = world
    numbers = itertools.count(1)
    api.add_rule(is_beat, speaking(lambda: f"beat {next(numbers)}"))
    with start(tg, env, VIGIL_IDLE_EVICT="2s", VIGIL_LOG_LEVEL="debug") as vigil:
        command(tg, ANN, "/heartbeat every 2s", "Heartbeat on")
        vigil.err.wait_for(lambda t: '"supervisor.evicted"' in t and '"tg:111"' in t, timeout=20,
                           what="the session to be evicted for idleness")
        count = len(said(tg, ANN, "beat "))
        tg.wait_for(lambda: len(said(tg, ANN, "beat ")) >= count + 2, timeout=20, message="beats after eviction")
        vigil.kill9()
    count = len(said(tg, ANN, "beat "))
    with start(tg, env) as vigil:
        tg.wait_for(lambda: len(said(tg, ANN, "beat ")) >= count + 2, timeout=30,
                    message="beats to resume after kill -9, with no user message")
        command(tg, ANN, "/heartbeat off", "Heartbeat off")
        silenced = len(said(tg, ANN, "beat "))
        requests = len(beat_requests(api))
        time.sleep(6)  # proving an absence takes time: three intervals in which nothing may arrive
        assert len(said(tg, ANN, "beat ")) == silenced
        assert len(beat_requests(api)) <= requests + 1  # at most one already in flight when /heartbeat off came
        vigil.terminate()


def test_an_identical_message_is_not_sent_twice_in_a_day(world: tuple[BotAPI, MessagesAPI, dict[str, str]]) -> None:
    tg, api, env = world
    api.add_rule(is_beat, speaking(lambda: "Remember the dentist at 3 pm."))
    with start(tg, env) as vigil:
        command(tg, ANN, "/heartbeat every 1s", "Heartbeat on")
        tg.wait_for(lambda: len(beat_requests(api)) >= 3, timeout=20, message="three beats")
        assert len(said(tg, ANN, "dentist")) == 1
        vigil.terminate()


def test_active_hours_are_honoured(world: tuple[BotAPI, MessagesAPI, dict[str, str]]) -> None:
    tg, api, env = world
    api.add_rule(is_beat, speaking(lambda: f"beat at {time.time()}"))
    closed_from = (time.gmtime().tm_hour + 2) % 24
    closed_until = (closed_from + 1) % 24
    with start(tg, env) as vigil:
        command(tg, ANN, "/heartbeat tz UTC", "time zone")
        command(tg, ANN, f"/heartbeat hours {closed_from:02d}-{closed_until:02d}", "active")
        status = command(tg, ANN, "/heartbeat every 1s", "Heartbeat on")
        assert f"{closed_from:02d}:00" in status, status
        # The next beat is when the window opens, an hour or more away: none now.
        for _ in range(3):
            assert "Next beat" in command(tg, ANN, "/heartbeat status", "Next beat")
        assert not said(tg, ANN, "beat at")
        assert not beat_requests(api)
        vigil.terminate()


def test_a_blocked_chat_turns_its_heartbeat_off(world: tuple[BotAPI, MessagesAPI, dict[str, str]]) -> None:
    tg, api, env = world
    api.add_rule(is_beat, speaking(lambda: f"hello {time.time()}"))
    with start(tg, env) as vigil:
        command(tg, ANN, "/heartbeat every 1s", "Heartbeat on")
        tg.wait_for(lambda: said(tg, ANN, "hello "), timeout=20)
        tg.block(ANN)
        vigil.err.wait_for(lambda t: "heartbeat.disabled_undeliverable" in t, timeout=20,
                           what="the heartbeat to be turned off")
        requests = len(beat_requests(api))
        tg.unblock(ANN)
        status = command(tg, ANN, "/heartbeat status", "Heartbeat")
        assert "Heartbeat off" in status and "can't be reached" in status
        assert len(beat_requests(api)) <= requests + 1
        vigil.terminate()


def test_heartbeat_test_reports_what_the_model_decided(world: tuple[BotAPI, MessagesAPI, dict[str, str]]) -> None:
    tg, api, env = world
    with start(tg, env) as vigil:
        assert "stayed silent" in command(tg, ANN, "/heartbeat test", "Test beat")
        api.add_rule(is_beat, speaking(lambda: "Your build finished."))
        report = command(tg, ANN, "/heartbeat test", "Test beat")
        assert "chose to speak" in report and "Your build finished." in report
        assert said(tg, ANN, "Your build finished.")[0] == "Your build finished."
        usage = command(tg, ANN, "/usage", "Usage")
        assert "heartbeats" in usage
        assert "heartbeats $" in command(tg, ANN, "/status", "Session")
        vigil.terminate()


def test_a_beat_costs_a_bounded_context_however_long_the_history(
        world: tuple[BotAPI, MessagesAPI, dict[str, str]], tmp_path: Path) -> None:
    tg, api, env = world
    with start(tg, env, VIGIL_MESSAGES_PER_MINUTE="1000") as vigil:
        for i in range(50):
            tg.send_text(ANN, ANN, f"message {i}: " + "words " * 60)
            tg.wait_for_bot_text(ANN, f"echo: message {i}:", timeout=15)
        command(tg, ANN, "/heartbeat test", "Test beat")
        vigil.terminate()
    chat = next(r for r in api.requests if not is_beat(r.body) and "message 49:" in r.last_user_text())
    beat = beat_requests(api)[-1]
    chat_size, beat_size = len(json.dumps(chat.body)), len(json.dumps(beat.body))
    beat_turns = sum(1 for m in beat.body["messages"] if m["role"] == "user")
    assert beat_turns <= 13, "a beat sees at most the last 12 turns and its prompt"
    assert beat_size < chat_size / 3
    exported = json.loads(run_vigil(["sessions", "export", f"tg:{ANN}"], env).stdout)
    usage = exported["session"]["heartbeat_usage"]
    total = usage["input_tokens"] + usage["cache_read_tokens"] + usage["cache_write_tokens"]
    print(f"\nheartbeat with 50 turns of history: {total} input tokens "
          f"(uncached {usage['input_tokens']}, cache read {usage['cache_read_tokens']}, "
          f"cache write {usage['cache_write_tokens']}), {usage['output_tokens']} output; "
          f"the chat turn's request was {chat_size} bytes, the beat's {beat_size}")
    assert total < 4000
