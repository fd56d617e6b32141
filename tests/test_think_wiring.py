"""Thinking as vigil wires it, beneath the end-to-end tests: which turns ask for it, what a cut thinking call is
charged, the setting, and the quote Telegram shows (actors/turns/think.py, actors/engine/runner.py,
adapters/telegram/send/thought.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from tests.test_turn_runner import REQUEST, RecordingDisplay
from vigil.actors.engine.runner import THINKING_LINE, TurnRunner
from vigil.actors.engine.slots import QuerySlots
from vigil.actors.turns.think import DISABLED, asked, level_of, not_asked
from vigil.adapters.telegram.render import TELEGRAM_TEXT_LIMIT, Chunk, split_for_telegram, utf16_len
from vigil.adapters.telegram.send.thought import MAX_THOUGHT, thought_chunk, with_thought
from vigil.cancel import CancelToken
from vigil.config.settings import SettingsError, load_settings
from vigil.model.prices import output_estimate
from vigil.ports import ModelRequest, ModelResponse, ThinkingSink, TokenUsage, UsageSink
from vigil.records.schema import Message, SessionHeader, Target

THINKING = {"type": "thinking", "thinking": "hmm", "signature": "sig"}


def settings(tmp_path: Path, **env: str) -> object:
    return load_settings({"HOME": str(tmp_path), "VIGIL_DATA_DIR": str(tmp_path / "data"), **env})


def header(**fields: object) -> SessionHeader:
    return SessionHeader(key="tg:1", incarnation=1, created_at=1.0, target=Target(channel="tg", chat_id=1),
                         cwd="/", model="m", **fields)  # type: ignore[arg-type]


def test_vigil_thinking_is_a_closed_set_and_unset_leaves_it_to_the_model(tmp_path: Path) -> None:
    assert load_settings({"HOME": str(tmp_path)}).thinking == ""
    assert load_settings({"HOME": str(tmp_path), "VIGIL_THINKING": " High "}).thinking == "high"
    with pytest.raises(SettingsError) as refused:
        load_settings({"HOME": str(tmp_path), "VIGIL_THINKING": "max"})
    assert str(refused.value) == "VIGIL_THINKING='max': must be one of off, auto, low, medium, high"


def test_a_chats_level_over_the_default_and_which_turns_ask(tmp_path: Path) -> None:
    unset, low = load_settings({"HOME": str(tmp_path)}), load_settings({"HOME": str(tmp_path), "VIGIL_THINKING": "low"})
    assert level_of(header(), unset) is None and level_of(header(), low) == "low"
    assert level_of(header(thinking="off"), low) == "off"
    assert asked(header(), unset, 4096) == (None, 4096)  # nothing sent: the model's default
    assert asked(header(thinking="auto", think_show=True), unset, 4096)[0] == {"type": "adaptive",
                                                                                "display": "summarized"}
    # Heartbeats and compaction never ask; a chat that chose a level (any) tells the model not to think there.
    assert not_asked(header(), unset) is None
    assert not_asked(header(), low) == DISABLED and not_asked(header(thinking="off"), unset) == DISABLED


def test_a_resumed_turn_that_began_without_thinking_goes_on_without_it(tmp_path: Path) -> None:
    auto = load_settings({"HOME": str(tmp_path), "VIGIL_THINKING": "auto"})
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "recall", "input": {"query": "x"}}
    result = Message(role="user", content=({"type": "tool_result", "tool_use_id": "toolu_1", "content": "-"},))
    began_plain = (Message(role="assistant", content=(tool_use,)), result)
    began_thinking = (Message(role="assistant", content=(THINKING, tool_use)), result)
    assert asked(header(), auto, 4096, began_plain) == (DISABLED, 4096)
    assert asked(header(), auto, 4096, began_thinking)[0] == {"type": "adaptive"}


class ThinkingThenHang:
    """A ModelPort that thinks (as the SDK reports it) and then hangs, past /stop, until `released`."""

    def __init__(self, thought: str) -> None:
        self.thought = thought
        self.thinking = threading.Event()
        self.released = threading.Event()

    def stream(self, request: ModelRequest, on_text: Callable[[str], None], cancel: CancelToken,
               on_usage: UsageSink | None = None, on_server_tool: object = None,
               on_thinking: ThinkingSink | None = None) -> ModelResponse:
        assert on_thinking is not None and on_usage is not None
        on_usage(TokenUsage(input_tokens=100, output_tokens=1))
        on_thinking("start", "")
        for at in range(0, len(self.thought), 50):
            on_thinking("text", self.thought[at:at + 50])
        self.thinking.set()
        self.released.wait(10)  # a call stuck in the network: the turn walks away from it
        return ModelResponse(content=(), stop_reason="cancelled", usage=TokenUsage(), model=request.model)


def test_the_thinking_line_shows_and_a_call_cut_while_thinking_is_charged_its_thinking() -> None:
    model = ThinkingThenHang("x" * 7000)
    runner = TurnRunner(model, QuerySlots(2), max_rounds=3)
    display = RecordingDisplay()
    cancel = CancelToken()
    try:
        threading.Thread(target=lambda: (model.thinking.wait(5), cancel.cancel("stopped")), daemon=True).start()
        outcome = runner.run(REQUEST, cancel, display)
    finally:
        model.released.set()
        runner.close()
    assert display.lines == [THINKING_LINE] and display.texts == []
    assert outcome.status == "stopped" and outcome.reply == "" and outcome.thinking == ""
    [(_, usage)] = outcome.calls
    assert usage.output_tokens >= output_estimate(7000)  # thinking tokens are output tokens


def test_the_quote_goes_in_the_answers_first_message_when_it_fits_else_before_it() -> None:
    chunks = split_for_telegram("**answer**")
    [merged] = with_thought(chunks, "I weighed <both> & chose")
    assert merged.html.startswith("<blockquote expandable>💭 I weighed &lt;both&gt; &amp; chose</blockquote>\n")
    assert merged.html.endswith(chunks[0].html) and merged.plain.startswith("💭 I weighed")
    long = split_for_telegram("word " * 1500)
    quote, *rest = with_thought(long, "a thought")
    assert quote == thought_chunk("a thought") and rest == long
    assert with_thought(long, "  ") == long
    cut = thought_chunk("é🙂" * 4000)
    assert cut is not None and utf16_len(cut.plain) <= MAX_THOUGHT + 3 and cut.plain.endswith("…")
    assert all(utf16_len(c.plain) <= TELEGRAM_TEXT_LIMIT for c in with_thought(long, "🙂" * 4000))
    assert with_thought([], "only thought") == [Chunk(html=thought_chunk("only thought").html,  # type: ignore[union-attr]
                                                      plain="💭 only thought")]


def test_the_header_fields_decode_from_records_written_without_them() -> None:
    old = msgspec.json.encode({"type": "session", "key": "tg:1", "incarnation": 1, "created_at": 1.0,
                               "target": {"channel": "tg", "chat_id": 1}, "cwd": "/", "model": "m"})
    decoded = msgspec.json.decode(old, type=SessionHeader)
    assert decoded.thinking == "" and decoded.think_show is False
