"""The heartbeat turn: one check-in of the model on a chat, silent unless worth it.

A beat turn sees a bounded tail of the history and the notes, and has two tools: `send_message`
(the only way anything reaches the chat) and `save_note`. No call means silence; its closing text
is never shown. Each of its model calls is paid by the heartbeat's owner: over their budget or
rate limit it is not made (vigil.policy.budget). What a beat says is committed durably before it is
sent (actors/tools/send_message.py), and kept in the history; silent beats leave only their
decision and their cost.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from vigil.actors.core.state import Session, is_group, usage_of
from vigil.actors.engine.meter import Meter
from vigil.actors.engine.runner import SilentDisplay
from vigil.actors.timing.beats import next_due, zone_of
from vigil.actors.tools import beat_tools
from vigil.actors.tools.approval_gate import gate_for
from vigil.actors.tools.send_message import BeatSends
from vigil.actors.turns.think import not_asked
from vigil.cancel import CancelToken
from vigil.durations import format_duration
from vigil.model.attached import materialize
from vigil.model.history import estimate_tokens, join, normalized_turn
from vigil.model.prompt import system_blocks
from vigil.policy.budget import call_guard
from vigil.ports import ModelRequest
from vigil.records.schema import SessionHeader

BEAT_MAX_ROUNDS = 4
BEAT_MAX_OUTPUT_TOKENS = 1024
BEAT_HISTORY_TOKENS = 6000

BEAT_PROMPT = """[Scheduled check-in — this is not a message from the user.]
It is {now} ({tz}). You are checking in on this chat on your own, as you do every {interval}.
Look at the recent conversation and your notes. If something is genuinely worth saying now — a reminder that \
is due, a follow-up you promised, something time-sensitive — call send_message with it. Otherwise call nothing: \
silence is the right default, and small talk or "just checking in" is not worth a message. You may update your \
notes with save_note. Text you write outside send_message is never shown to anyone."""


@dataclass(frozen=True)
class BeatResult:
    """What a beat sent (empty: it stayed silent), or why it was not run (the owner's limits)."""

    sent: list[str]
    refusal: str = ""


def beat_history(session: Session, header: SessionHeader) -> list[dict[str, Any]]:
    """The newest turns only, bounded in count and tokens: a beat never pays for the whole history."""
    count = session.deps.settings.heartbeat_history_turns
    if count == 0:
        return []
    # Files the chat shared are named, not carried: a beat runs every half hour and should not pay for
    # the photos of the conversation each time.
    parts = [materialize(normalized_turn(t, is_group(header)), None)
             for t in session.deps.store.last_turns(session.key, header.generation, count) if t.final]
    while parts and estimate_tokens(join(parts)) > BEAT_HISTORY_TOKENS:
        parts.pop(0)
    return join(parts)


def beat_prompt(header: SessionHeader, now: float) -> str:
    beat = header.heartbeat
    local = dt.datetime.fromtimestamp(now, zone_of(beat.tz))
    return BEAT_PROMPT.format(now=local.strftime("%A %Y-%m-%d %H:%M"), tz=beat.tz,
                              interval=format_duration(beat.interval_s))


def run_beat(session: Session, now: float, reschedule: bool = False) -> BeatResult:
    """One beat turn. `reschedule` sets the next due time."""
    assert session.header is not None
    header = session.header
    prompt = beat_prompt(header, now)
    history = beat_history(session, header)
    sends = BeatSends(session, prompt, now, Meter())
    # A beat never waits for a button (actors/tools/approval_gate.py).
    tools = gate_for(session, beat_tools(session, sends))
    request = ModelRequest(
        model=header.model, max_tokens=min(BEAT_MAX_OUTPUT_TOKENS, session.deps.settings.max_output_tokens),
        system=system_blocks(header, session.notes(), [t["name"] for t in tools.specs]),
        messages=tuple(join([history, [{"role": "user", "content": [{"type": "text", "text": prompt}]}]])),
        thinking=not_asked(header, session.deps.settings))  # a check-in does not think (actors/turns/think.py)
    cancel = CancelToken()
    # The owner pays (as for the cost below); over their budget or rate limit a beat is not run, not delayed.
    may_call = call_guard(session.deps.allowance, header.heartbeat.owner)
    session.control.begin("heartbeat", cancel)
    started = time.monotonic()
    try:
        # Shutdown cancels the tokens of the turns it finds running; a beat that began just after
        # that must not run (and pay for) a model call the shutdown would then wait for.
        if session.deps.registry.shutting_down.is_set():
            cancel.cancel("shutdown")
            return BeatResult(sent=[])
        outcome = session.deps.runner.run(request, cancel, SilentDisplay(), tools, max_rounds=BEAT_MAX_ROUNDS,
                                          may_call=may_call, meter=sends.meter)
    finally:
        session.control.end()
    sent = list(sends.sent)
    usage = usage_of(outcome.calls)
    assert session.header is not None
    refusal = outcome.note if outcome.error_kind == "limit" and not outcome.calls else ""
    if refusal:
        session.set_beat(last_decision=f"skipped: {refusal}",
                         next_due=next_due(session.header.heartbeat, now) if reschedule
                         else session.header.heartbeat.next_due)
        session.commit(wait=True)
        session.log.info("heartbeat.refused", reason=refusal)
        session.deps.metrics.heartbeat_skipped("limit")
        return BeatResult(sent=[], refusal=refusal)
    cut = cancel.reason == "shutdown"
    decision = ("cut short: vigil was shutting down" if cut
                else f"spoke ({len(sent)} message{'s' if len(sent) > 1 else ''})" if sent
                else "failed: " + outcome.note if outcome.status == "failed" else "stayed silent")
    beat = session.header.heartbeat
    # A beat cut by shutdown, having said nothing, keeps its due time: the next start runs it again.
    spent = sent or not cut
    session.set_beat(last_beat_at=now if spent else beat.last_beat_at, last_decision=decision,
                     last_message=sent[-1] if sent else beat.last_message,
                     next_due=next_due(beat, now) if reschedule and spent else beat.next_due)
    session.header = msgspec.structs.replace(session.header,
                                             heartbeat_usage=session.header.heartbeat_usage + usage)
    turn = None
    if sends.turn is not None:
        turn = msgspec.structs.replace(sends.turn, status="stopped" if cut else "done",
                                       note="cut short by a restart" if cut else "", messages=outcome.messages,
                                       reply="\n\n".join(sent), ended_at=session.deps.clock(), usage=usage)
        session.header = msgspec.structs.replace(session.header, open_turn=None)
    session.commit(turn, session.usage_entries(beat.owner, "heartbeat", usage), wait=True)
    if turn is not None and session.window is not None and session.window.upto == turn.seq:
        session.window.add(turn)
    metrics = session.deps.metrics
    metrics.turn("heartbeat", "stopped" if cut else outcome.status, time.monotonic() - started)
    metrics.heartbeat_fired("cut" if cut else "spoke" if sent else "failed" if outcome.status == "failed" else "silent")
    session.log.info("heartbeat.done", decision=decision, input_tokens=usage.input_tokens,
                     cache_read=usage.cache_read_tokens, output_tokens=usage.output_tokens)
    return BeatResult(sent=sent)
