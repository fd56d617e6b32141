"""TurnRunner and QuerySlots (actors/engine/runner.py) on their own: the tool loop, the round limit,
cancellation (during a tool, during a blocked call, while waiting for a slot) and model errors.

The model is a `ScriptedModel` from tests/fakes.py; tools and the display are recording doubles.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import vigil.actors.engine.runner
from tests.fakes import (
    Block,
    Crash,
    Fail,
    Say,
    ScriptedModel,
    UseTools,
    check_messages,
    check_request,
    wait_until,
)
from vigil.actors.engine.runner import CANCELLED, ToolSet, TurnOutcome, TurnRunner
from vigil.actors.engine.slots import QuerySlots
from vigil.cancel import CancelToken
from vigil.ports import ModelRequest
from vigil.records.schema import Message
from vigil.tools.outcome import ToolOutcome

REQUEST = ModelRequest(model="claude-test-1", max_tokens=256, system=({"type": "text", "text": "be brief"},),
                       messages=({"role": "user", "content": [{"type": "text", "text": "do the thing"}]},))
PROBE_SPEC = {"name": "probe", "description": "records its input",
              "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}


class RecordingDisplay:
    """A TurnDisplay that remembers what it was shown."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.lines: list[str] = []
        self.keepalives = 0

    def text(self, full: str) -> None:
        self.texts.append(full)

    def progress(self, line: str) -> None:
        self.lines.append(line)

    def keepalive(self) -> None:
        self.keepalives += 1


class RecordingTools:
    """A ToolSet offering `probe`; `during(name, input, cancel)` runs inside each call."""

    def __init__(self, during: Any = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.during = during

    def run(self, name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
        self.calls.append((name, tool_input))
        if self.during is not None:
            self.during(name, tool_input, cancel)
        return ToolOutcome(f"probe saw {tool_input.get('n')}")

    def describe(self, name: str, tool_input: dict[str, Any]) -> str:
        return f"{name} #{tool_input.get('n')}"

    @property
    def toolset(self) -> ToolSet:
        return ToolSet(specs=(PROBE_SPEC,), run=self.run, describe=self.describe)


class Rig:
    def __init__(self, model: ScriptedModel, limit: int = 4, max_rounds: int = 5) -> None:
        self.model = model
        self.slots = QuerySlots(limit)
        self.runner = TurnRunner(model, self.slots, max_rounds)
        self.display = RecordingDisplay()
        self.rounds: list[tuple[tuple[Message, ...], str]] = []

    def run(self, tools: RecordingTools | None = None, cancel: CancelToken | None = None) -> TurnOutcome:
        return self.runner.run(REQUEST, cancel or CancelToken(), self.display,
                               tools.toolset if tools is not None else None,
                               lambda messages, text: self.rounds.append((messages, text)))

    def run_in_thread(self, cancel: CancelToken, tools: RecordingTools | None = None
                      ) -> tuple[threading.Thread, list[TurnOutcome]]:
        out: list[TurnOutcome] = []
        thread = threading.Thread(target=lambda: out.append(self.run(tools, cancel)), daemon=True)
        thread.start()
        return thread, out


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.model.close()
        rig.runner.close()


def rig(rigs: list[Rig], model: ScriptedModel, **kwargs: Any) -> Rig:
    made = Rig(model, **kwargs)
    rigs.append(made)
    return made


def exchange(outcome: TurnOutcome) -> list[dict[str, Any]]:
    """The request's user message followed by the turn's exchange, as API messages."""
    return [*REQUEST.messages, *({"role": m.role, "content": list(m.content)} for m in outcome.messages)]


def tool_results(message: Message) -> list[dict[str, Any]]:
    return [b for b in message.content if b.get("type") == "tool_result"]


# ------------------------------------------------------------------------------------------- tool loop


def test_tool_loop_pairs_every_tool_use_with_its_result(rigs: list[Rig]) -> None:
    model = ScriptedModel([UseTools((("probe", {"n": 1}),)),
                           UseTools((("probe", {"n": 2}), ("probe", {"n": 3})), text="working on it"),
                           Say("all done")])
    r = rig(rigs, model)
    tools = RecordingTools()
    outcome = r.run(tools)

    assert (outcome.status, outcome.note, outcome.error_kind) == ("done", "", "")
    assert outcome.reply == "working on it\n\nall done"
    assert [m.role for m in outcome.messages] == ["assistant", "user", "assistant", "user", "assistant"]
    check_messages(exchange(outcome))
    for use, answer in ((outcome.messages[0], outcome.messages[1]), (outcome.messages[2], outcome.messages[3])):
        ids = [b["id"] for b in use.content if b.get("type") == "tool_use"]
        assert [b["tool_use_id"] for b in tool_results(answer)] == ids
    assert [b["content"] for b in tool_results(outcome.messages[3])] == ["probe saw 2", "probe saw 3"]
    assert tools.calls == [("probe", {"n": 1}), ("probe", {"n": 2}), ("probe", {"n": 3})]
    assert r.display.lines == ["probe #1", "probe #2", "probe #3"]
    assert len(outcome.calls) == 3 and all(model_name == "claude-test-1" for model_name, _ in outcome.calls)

    assert model.calls == 3
    for request in model.requests:
        check_request(request)
        assert request.tools == (PROBE_SPEC,)
    assert [len(request.messages) for request in model.requests] == [1, 3, 5]
    last = model.requests[2].messages[-1]["content"][-1]
    assert last.get("cache_control") == {"type": "ephemeral"}, "the growing exchange carries the cache point"
    assert [len(messages) for messages, _ in r.rounds] == [2, 4], "on_round after each round of tools"


def test_round_limit_answers_the_last_tool_use_with_an_error(rigs: list[Rig]) -> None:
    model = ScriptedModel(choose=lambda request: UseTools((("probe", {"n": len(request.messages)}),)))
    r = rig(rigs, model, max_rounds=2)
    tools = RecordingTools()
    outcome = r.run(tools)

    assert model.calls == 3 and len(tools.calls) == 2
    assert outcome.status == "done"
    assert outcome.note == "stopped after 2 tool rounds"
    check_messages(exchange(outcome))
    [limit] = tool_results(outcome.messages[-1])
    assert limit["is_error"] is True and limit["content"].startswith("not run: the limit of 2 tool rounds")
    assert limit["tool_use_id"] == outcome.messages[-2].content[-1]["id"]


def test_cancel_during_a_tool_cancels_the_remaining_tools(rigs: list[Rig]) -> None:
    model = ScriptedModel([UseTools((("probe", {"n": 1}), ("probe", {"n": 2}), ("probe", {"n": 3})))])
    r = rig(rigs, model)
    tools = RecordingTools(during=lambda name, tool_input, cancel: cancel.cancel("stopped"))
    outcome = r.run(tools)

    assert (outcome.status, outcome.note) == ("stopped", "stopped")
    assert tools.calls == [("probe", {"n": 1})]
    assert model.calls == 1
    check_messages(exchange(outcome))
    results = tool_results(outcome.messages[-1])
    assert [b["content"] for b in results] == ["probe saw 1", CANCELLED.content, CANCELLED.content]
    assert [b.get("is_error", False) for b in results] == [False, True, True]
    assert len(r.rounds) == 1, "the finished round is checkpointed before stopping"


def test_length_limit_is_noted(rigs: list[Rig]) -> None:
    r = rig(rigs, ScriptedModel([Say("cut sho", stop_reason="max_tokens")]))
    outcome = r.run(RecordingTools())
    assert (outcome.status, outcome.reply, outcome.note) == ("done", "cut sho", "the reply hit the length limit")


# ----------------------------------------------------------------------------------------- model errors


def test_model_error_keeps_the_partial_exchange(rigs: list[Rig]) -> None:
    model = ScriptedModel([UseTools((("probe", {"n": 1}),), text="looking"),
                           Fail("The model is overloaded; try again soon.", "overloaded", partial="half an ans")])
    r = rig(rigs, model)
    outcome = r.run(RecordingTools())

    assert (outcome.status, outcome.error_kind) == ("failed", "overloaded")
    assert outcome.note == "The model is overloaded; try again soon."
    assert outcome.reply.startswith("looking\n\nhalf an ans")
    assert [m.role for m in outcome.messages] == ["assistant", "user", "assistant"]
    assert outcome.messages[-1].content == ({"type": "text", "text": "half an ans"},)
    assert len(outcome.calls) == 2, "the partial call's usage is counted"
    check_messages(exchange(outcome))


@pytest.mark.parametrize("scripts", [
    [Fail("Overloaded.", "overloaded", partial="half an ans")],
    [UseTools((("probe", {"n": 1}),), text="looking"), Fail("Overloaded.", "overloaded", partial="half an ans")],
], ids=["first-round", "after-a-tool-round"])
def test_model_error_shows_the_partial_reply_once(rigs: list[Rig], scripts: list[Any]) -> None:
    r = rig(rigs, ScriptedModel(scripts))
    outcome = r.run(RecordingTools())
    expected = "half an ans" if len(scripts) == 1 else "looking\n\nhalf an ans"
    assert outcome.reply == expected
    assert r.display.texts[-1] == expected


def test_unexpected_model_exception_becomes_an_internal_failure(rigs: list[Rig]) -> None:
    r = rig(rigs, ScriptedModel([Crash("kaboom")]))
    outcome = r.run()
    assert (outcome.status, outcome.error_kind, outcome.reply, outcome.messages) == ("failed", "internal", "", ())
    assert "went wrong inside vigil" in outcome.note
    assert "kaboom" not in outcome.note
    assert r.slots.in_flight == 0


# ------------------------------------------------------------------------------------ cancel and slots


def test_cancel_walks_away_from_a_call_blocked_before_its_first_byte(rigs: list[Rig]) -> None:
    never = threading.Event()
    model = ScriptedModel([Block(never, honour_cancel=False, partial="so far", text=" and later")])
    r = rig(rigs, model, limit=1)
    cancel = CancelToken()
    thread, out = r.run_in_thread(cancel)
    assert model.wait_for(lambda m: m.in_flight == 1)
    assert cancel.cancel("stopped")
    thread.join(1.0)
    assert not thread.is_alive(), "run() must return at once, whatever the call does"
    [outcome] = out
    assert (outcome.status, outcome.reply) == ("stopped", "so far")
    assert outcome.messages == (Message(role="assistant", content=({"type": "text", "text": "so far"},)),)
    assert r.slots.in_flight == 1, "the abandoned call keeps its slot until it really ends"

    never.set()
    assert model.wait_for(lambda m: m.completed == 1)
    assert wait_until(lambda: r.slots.in_flight == 0)
    assert all("and later" not in text for text in r.display.texts), "nothing is shown after the walk-away"


def test_cancel_while_waiting_for_a_slot_returns_promptly(rigs: list[Rig]) -> None:
    model = ScriptedModel()
    r = rig(rigs, model, limit=1)
    holder = CancelToken()
    assert r.slots.acquire(holder)  # the only slot is taken
    cancel = CancelToken()
    thread, out = r.run_in_thread(cancel)
    assert wait_until(lambda: r.slots._waiting == 1)
    cancel.cancel("stopped")
    thread.join(1.0)
    assert not thread.is_alive()
    [outcome] = out
    assert (outcome.status, outcome.messages, outcome.reply) == ("stopped", (), "")
    assert model.calls == 0
    assert r.slots.in_flight == 1
    r.slots.release()
    assert r.run().status == "done", "the slot is usable again"


def test_slots_are_handed_on_when_released(rigs: list[Rig]) -> None:
    gate = threading.Event()
    model = ScriptedModel(choose=lambda request: Block(gate, text="ok"))
    r = rig(rigs, model, limit=2)
    runs = [r.run_in_thread(CancelToken()) for _ in range(5)]
    assert model.wait_for(lambda m: m.in_flight == 2)
    assert wait_until(lambda: r.slots._waiting == 3)
    gate.set()
    for thread, out in runs:
        thread.join(5.0)
        assert out and out[0].status == "done"
    assert model.calls == 5 and model.max_in_flight == 2
    assert r.slots.in_flight == 0


def test_keepalive_while_a_call_is_slow(rigs: list[Rig], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vigil.actors.engine.runner, "KEEPALIVE_S", 0.02)
    gate = threading.Event()
    r = rig(rigs, ScriptedModel([Block(gate, text="finally")]))
    thread, out = r.run_in_thread(CancelToken())
    assert wait_until(lambda: r.display.keepalives >= 3)
    gate.set()
    thread.join(5.0)
    assert out[0].reply == "finally"
