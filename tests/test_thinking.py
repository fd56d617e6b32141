"""Thinking through the model port: the real anthropic SDK over HTTP against the Messages API stand-in,
which signs what it thinks and refuses a continuation that does not bring it back unchanged.

A three-round tool loop with thinking on, every block sent back byte for byte; redacted thinking; a
reply stopped (or broken off) while it was still thinking, then the next turn built by vigil's own
history code; the progress the port reports while Claude thinks; thinking tokens counted once; and
each level of `/think` as a request the stand-in (and so the API's rules) accepts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.standins.messages_api import MessagesAPI, validate_request
from vigil.cancel import CancelToken
from vigil.model.anthropic_model import AnthropicModel
from vigil.model.history import join, normalized_turn
from vigil.model.thinking import LEVELS, MAX_OUTPUT_TOKENS, ThinkingLevel, kept_thinking, thinking_request
from vigil.ports import ModelError, ModelRequest, ModelResponse, ThinkingPhase
from vigil.records.schema import Input, Message, Turn

MODEL = "claude-sonnet-5-5"
LOOKUP = {"name": "lookup", "description": "Look a word up.",
          "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}}}


@pytest.fixture
def port(messages_api: MessagesAPI, monkeypatch: pytest.MonkeyPatch) -> AnthropicModel:
    monkeypatch.setenv("ANTHROPIC_API_KEY", messages_api.api_key)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", messages_api.base_url)
    return AnthropicModel(timeout_s=20, max_retries=0)


class Seen:
    """What the port reported while it streamed: text deltas and thinking events."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.thinking: list[tuple[ThinkingPhase, str]] = []

    def on_text(self, delta: str) -> None:
        self.text.append(delta)

    def on_thinking(self, phase: ThinkingPhase, text: str) -> None:
        self.thinking.append((phase, text))


def ask(port: AnthropicModel, messages: list[dict[str, Any]], seen: Seen | None = None,
        cancel: CancelToken | None = None, thinking: dict[str, Any] | None = None) -> ModelResponse:
    seen = seen or Seen()
    request = ModelRequest(model=MODEL, max_tokens=20480, system=({"type": "text", "text": "Be brief."},),
                           messages=tuple(messages), tools=(LOOKUP,),
                           thinking=thinking if thinking is not None else {"type": "adaptive"})
    return port.stream(request, seen.on_text, cancel or CancelToken(), on_thinking=seen.on_thinking)


def results(content: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": b["id"], "content": "found"}
                                        for b in content if b["type"] == "tool_use"]}


def loop(port: AnthropicModel, text: str, seen: Seen) -> list[dict[str, Any]]:
    """Run a tool loop to its end as the turn runner does; the messages after the user's."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    while True:
        response = ask(port, messages, seen)
        messages.append({"role": "assistant", "content": list(response.content)})
        if response.stop_reason != "tool_use":
            return messages[1:]
        messages.append(results(response.content))


def test_a_three_round_tool_loop_sends_every_thinking_block_back_byte_for_byte(
        port: AnthropicModel, messages_api: MessagesAPI) -> None:
    seen = Seen()
    words = " ".join(f'[[tool=lookup {{"word": "w{n}"}}]]' for n in range(3))
    exchange = loop(port, f"look up three words {words}", seen)
    assert not messages_api.errors, messages_api.errors
    answers = [m for m in exchange if m["role"] == "assistant"]
    assert len(answers) == 4 and len(messages_api.requests) == 4
    served = messages_api.served
    for answer in answers:
        first = answer["content"][0]
        assert first["type"] == "thinking" and first["signature"]  # every round starts with it
        uses = [b for b in answer["content"] if b["type"] == "tool_use"]
        for use in uses:  # exactly what the stand-in streamed with that tool call, as JSON
            streamed = [json.loads(block) for block in json.loads(served[f"think:{use['id']}"])]
            assert streamed == [b for b in answer["content"] if b["type"] == "thinking"]
    # Each later request carried every earlier answer as it came, the thinking blocks included.
    for n, recorded in enumerate(messages_api.requests[1:], 1):
        sent = [m for m in recorded.body["messages"] if m["role"] == "assistant"]
        assert sent == answers[:n]
    # The progress the display gets: a block opening, its summary in pieces, the block closing, per round.
    assert [phase for phase, _ in seen.thinking].count("start") == 4
    assert [phase for phase, _ in seen.thinking].count("end") == 4
    summary = "".join(text for phase, text in seen.thinking if phase == "text")
    assert summary == "".join(a["content"][0]["thinking"] for a in answers)
    assert "".join(seen.text).endswith(answers[-1]["content"][-1]["text"])


def test_redacted_thinking_goes_back_unchanged(port: AnthropicModel, messages_api: MessagesAPI) -> None:
    exchange = loop(port, '[[redacted_thinking]] [[tool=lookup {"word": "x"}]] look it up', Seen())
    assert not messages_api.errors, messages_api.errors
    first = exchange[0]["content"]
    assert [b["type"] for b in first[:2]] == ["redacted_thinking", "thinking"] and first[0]["data"]
    assert messages_api.requests[1].body["messages"][1]["content"][0] == first[0]


def test_a_reply_stopped_while_thinking_leaves_a_history_the_api_takes(
        port: AnthropicModel, messages_api: MessagesAPI) -> None:
    """/stop in the middle of round two's thinking: the next turn, built by vigil's history code, is taken."""
    text = '[[tool=lookup {"word": "a"}]] [[tool=lookup {"word": "b"}]] two lookups'
    user = {"role": "user", "content": [{"type": "text", "text": text}]}
    first = ask(port, [user])
    stop = CancelToken()

    class Stopping(Seen):
        def on_thinking(self, phase: ThinkingPhase, text: str) -> None:
            if phase == "text":  # /stop while Claude thinks
                stop.cancel()

    seen = Stopping()
    cut = ask(port, [user, {"role": "assistant", "content": list(first.content)}, results(first.content)],
              seen, stop)
    assert cut.stop_reason == "cancelled"
    assert cut.content == ()  # its thinking had no signature yet: dropped, and nothing else had come
    assert cut.usage.output_tokens >= 5  # the first 16 characters of thinking arrived: output, charged
    turn = Turn(seq=0, status="stopped", started_at=1.0, inputs=(Input(text=text, at=1.0),),
                messages=(Message(role="assistant", content=first.content),
                          Message(role="user", content=tuple(results(first.content)["content"])),
                          *((Message(role="assistant", content=cut.content),) if cut.content else ())))
    later = Turn(seq=1, status="open", started_at=2.0, inputs=(Input(text="and now?", at=2.0),))
    messages = join([normalized_turn(turn), normalized_turn(later)])
    answer = ask(port, messages)
    assert not messages_api.errors, messages_api.errors
    assert answer.content[0]["type"] == "thinking" and answer.stop_reason == "end_turn"


def test_a_stream_broken_while_thinking_keeps_nothing_the_api_would_refuse(
        port: AnthropicModel, messages_api: MessagesAPI) -> None:
    user = {"role": "user", "content": [{"type": "text", "text": "[[think_drop=20]] think, then break"}]}
    with pytest.raises(ModelError) as broken:
        ask(port, [user])
    assert broken.value.kind == "dropped"
    partial = broken.value.partial
    assert partial is not None and partial.content == ()
    assert partial.usage.output_tokens >= 5  # twenty characters of thinking arrived: output, charged
    again = ask(port, [user, {"role": "assistant", "content": [{"type": "text", "text": "[reply failed]"}]},
                       {"role": "user", "content": [{"type": "text", "text": "try once more"}]}])
    assert again.content[0]["type"] == "thinking"
    assert not messages_api.errors, messages_api.errors


def test_thinking_tokens_are_the_apis_output_tokens_counted_once(
        port: AnthropicModel, messages_api: MessagesAPI) -> None:
    response = ask(port, [{"role": "user", "content": [{"type": "text", "text": "[[reply=ok]] hi"}]}])
    thought = response.content[0]["thinking"]
    assert response.content[1] == {"type": "text", "text": "ok"}
    # The stand-in bills thinking and answer together as output, as the API does; the port takes its figure.
    assert response.usage.output_tokens == -(-(len(thought) + len("ok")) // 4)


@pytest.mark.parametrize("level", [None, *LEVELS])
@pytest.mark.parametrize("max_tokens", [256, 4096, 16000, MAX_OUTPUT_TOKENS, 64000])
def test_every_level_makes_a_request_the_api_takes(level: ThinkingLevel | None, max_tokens: int) -> None:
    thinking, limit = thinking_request(level, max_tokens, show=True)
    body: dict[str, Any] = {"model": MODEL, "max_tokens": limit,
                            "messages": [{"role": "user", "content": "hello"}]}
    if thinking is not None:
        body["thinking"] = thinking
    assert validate_request(body) is None
    assert limit >= max_tokens  # the answer never loses room to thinking
    if level is None:
        assert thinking is None and limit == max_tokens
    elif thinking is not None and thinking["type"] == "enabled":
        assert 1024 <= thinking["budget_tokens"] < limit <= max(MAX_OUTPUT_TOKENS, max_tokens)
        assert thinking["display"] == "summarized"
    budgets = [thinking_request(lv, 4096)[0] for lv in ("low", "medium", "high")]
    assert [b["budget_tokens"] for b in budgets if b] == sorted(b["budget_tokens"] for b in budgets if b)


def test_unsigned_and_trailing_thinking_never_stay() -> None:
    signed = {"type": "thinking", "thinking": "a", "signature": "sig"}
    unsigned = {"type": "thinking", "thinking": "b", "signature": ""}
    bare = {"type": "thinking", "thinking": "c"}
    redacted = {"type": "redacted_thinking", "data": "xyz"}
    text = {"type": "text", "text": "hello"}
    assert kept_thinking([signed, text, unsigned]) == [signed, text]
    assert kept_thinking([redacted, signed, bare]) == []
    assert kept_thinking([redacted, signed, text]) == [redacted, signed, text]
