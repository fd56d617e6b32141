"""Beneath the end-to-end tests: prices of unknown models, the Allowance, the runner's checks, cleanup offers."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.fakes import ScriptedModel, UseTools, make_settings
from vigil.actors.engine.meter import Meter
from vigil.actors.engine.runner import SilentDisplay, ToolSet, TurnRunner
from vigil.actors.engine.slots import QuerySlots
from vigil.cancel import CancelToken
from vigil.control.offers import EXPIRED, NOT_YOURS, Offer, Offers
from vigil.model.history import normalize
from vigil.model.prices import price_for, to_usage
from vigil.policy.budget import Allowance, call_guard
from vigil.ports import ModelRequest, TokenUsage
from vigil.tools.outcome import ToolOutcome

TOOL_CALL = UseTools(calls=(("note", {"text": "x"}),))


def test_known_models_and_their_snapshots_are_priced_exactly() -> None:
    assert price_for("claude-opus-4-5") == (price_for("claude-opus-4-5-20251101")[0], True)
    assert price_for("claude-haiku-4-5-20251001")[1]
    assert not to_usage("claude-sonnet-4-6", TokenUsage(input_tokens=1)).estimated_calls


def test_an_unknown_model_costs_its_familys_top_price() -> None:
    opus, known = price_for("claude-opus-9-9")
    assert not known and (opus.input, opus.output) == (15.0, 75.0)  # claude-opus-4, the dearest Opus
    haiku, _ = price_for("claude-haiku-7")
    assert (haiku.input, haiku.output) == (1.0, 5.0)  # not the cheaper haiku-5-5
    nameless, known = price_for("claude-unheard-of-1")
    assert not known and (nameless.input, nameless.output) == (15.0, 75.0)  # the table's dearest
    usage = to_usage("claude-opus-9-9", TokenUsage(input_tokens=1000, output_tokens=100))
    assert usage.estimated_calls == 1 and usage.cost_micros == 1000 * 15 + 100 * 75


def allowance(tmp_path: Path, spent: dict[int, int], **overrides: object) -> tuple[Allowance, list[float]]:
    settings = make_settings(tmp_path, admin_users=frozenset({99}), **overrides)
    now = [1_000_000.0]
    return Allowance(settings, lambda user, day: spent.get(user, 0), clock=lambda: now[0]), now


def test_the_budget_counts_what_the_running_turn_has_not_written_yet(tmp_path: Path) -> None:
    spent = {5: 600_000}
    gate, _ = allowance(tmp_path, spent, daily_budget_usd=1.0)
    assert gate.before_call(5, pending_micros=399_999, counted=True).allowed
    refused = gate.before_call(5, pending_micros=400_000, counted=True)
    assert not refused.allowed and refused.reply and "daily budget" in refused.reply
    assert gate.before_call(99, pending_micros=10**9).allowed  # an admin
    assert gate.before_call(0, pending_micros=10**9).allowed  # the operator (console)


def test_calls_and_messages_share_one_rate_window(tmp_path: Path) -> None:
    gate, now = allowance(tmp_path, {}, messages_per_minute=3)
    assert gate.admit_message(5).allowed
    assert gate.before_call(5, counted=True).allowed  # the message's own call: paid when it was admitted
    assert gate.before_call(5).allowed and gate.before_call(5).allowed  # two tool rounds
    refused = gate.before_call(5)
    assert not refused.allowed and refused.retry_in > 0
    assert not gate.admit_message(5).allowed
    now[0] += 61
    assert gate.admit_message(5).allowed


def test_a_tool_loop_over_the_rate_limit_waits_and_stop_ends_the_wait(tmp_path: Path) -> None:
    gate, _ = allowance(tmp_path, {}, messages_per_minute=1)
    assert gate.admit_message(5).allowed
    cancel = CancelToken()
    waits: list[str] = []
    may_call = call_guard(gate, 5, cancel, first_counted=True, on_wait=waits.append)
    assert may_call(0, 0) is None
    stopper = threading.Timer(0.2, cancel.cancel)
    stopper.start()
    assert may_call(1, 0) is None  # waited for room until /stop; the runner then ends the turn
    assert cancel.cancelled and waits and "rate limit" in waits[0]
    assert call_guard(gate, 5)(1, 0) is not None  # without a cancel token (a heartbeat) it is refused


def test_the_runner_asks_before_every_call_and_leaves_a_valid_exchange(tmp_path: Path) -> None:
    model = ScriptedModel([TOOL_CALL, TOOL_CALL, TOOL_CALL])
    runner = TurnRunner(model, QuerySlots(2), max_rounds=10)
    asked: list[tuple[int, int]] = []

    def may_call(round_no: int, micros: int) -> str | None:
        asked.append((round_no, micros))
        return "💸 out of money" if round_no == 2 else None

    tools = ToolSet(specs=({"name": "note", "input_schema": {"type": "object"}},),
                    run=lambda name, args, cancel: ToolOutcome(content="ok"), describe=lambda name, args: name)
    meter = Meter()
    request = ModelRequest(model="claude-sonnet-4-6", max_tokens=100, system=(),
                           messages=({"role": "user", "content": [{"type": "text", "text": "go"}]},))
    try:
        outcome = runner.run(request, CancelToken(), SilentDisplay(), tools, may_call=may_call, meter=meter)
    finally:
        runner.close()
    assert model.calls == 2 and [r for r, _ in asked] == [0, 1, 2]
    assert asked[0][1] == 0 and asked[2][1] > asked[1][1] > 0  # what the turn spent so far, growing
    assert outcome.status == "failed" and outcome.error_kind == "limit" and "out of money" in outcome.note
    assert len(outcome.calls) == 2 and meter.usage().calls == 2
    exchange = [{"role": m.role, "content": list(m.content)} for m in outcome.messages]
    assert exchange[-1]["role"] == "user"  # the last round's tool results: every tool_use answered
    full = [request.messages[0], *exchange]
    assert normalize(full) == full


# ------------------------------------------------------------------------------------------------ cleanup offers


def test_a_cleanup_offer_is_for_its_asker_once_and_expires() -> None:
    now = [1000.0]
    offers = Offers(ttl_s=600, clock=lambda: now[0])
    offer = Offer(asker=5, chat_key="tg:-1", age_s=60, sessions=(), prune=(), prune_before=0, created_at=now[0])
    token = offers.put(offer)
    assert offers.take(token, 6, "tg:-1") == (None, NOT_YOURS)  # another member
    assert offers.take(token, 5, "tg:5") == (None, NOT_YOURS)  # the asker, from another chat
    assert offers.take("86400", 5, "tg:-1") == (None, EXPIRED)  # an age-only button of an earlier vigil
    assert offers.take(token, 5, "tg:-1") == (offer, "")
    assert offers.take(token, 5, "tg:-1") == (None, EXPIRED)  # one press acts once
    late = offers.put(offer)
    now[0] += 601
    assert offers.take(late, 5, "tg:-1") == (None, EXPIRED)
