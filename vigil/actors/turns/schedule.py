"""A schedule firing: a turn of its own (kind "schedule") whose reply always reaches the chat.

Unlike a heartbeat it is never silent. The model is told the reminder's (or task's) text and that it
fires now, with the chat's history and the user turn's tools, and its final reply is sent like any
reply: committed durably first, sent with the turn's seq, so a reply the channel could not deliver is
kept in the header's `undelivered` and sent again (actors/core/recovery.py). If the model can't be asked
(the owner's budget, an outage, a failed call, an empty reply), the chat still gets "⏰ <text>".

The schedule moves on (or, a one-shot, goes) in the same commit as the final turn: a crash during
the turn leaves it due on disk, so the next start fires it again, once (a cut turn is only written
down as interrupted: recovery answers user turns again, not these). The owner, who asked for the
schedule, pays, within their budget and rate limit (vigil.policy.budget), as a heartbeat's owner does.
"""

from __future__ import annotations

import datetime as dt
import time

import msgspec

from vigil.actors.core.state import Session, usage_of
from vigil.actors.engine.meter import Meter
from vigil.actors.engine.runner import TurnOutcome
from vigil.actors.timing.beats import zone_of
from vigil.actors.timing.schedules import advanced
from vigil.actors.tools import user_turn_tools
from vigil.actors.tools.approval_gate import gate_for
from vigil.actors.turns.user import build_request
from vigil.cancel import CancelToken
from vigil.durations import format_duration
from vigil.policy.budget import call_guard
from vigil.ports import Outbox, Reply
from vigil.records.schema import Input, Message, Schedule, Target, Turn

LATE_S = 60.0  # a firing this much after its time says it is late (vigil was down, or busy)

PROMPT = """[Scheduled {what}, set by {who} on {created}: this is not a message typed just now.]
It is {now} ({tz}).{late} It fires now (due {due}): «{text}»
Do what it says, now, in this chat: a reminder, remind them of it in a short message; a task, carry it out \
and report. Your reply is sent to the chat."""


class TypingDisplay:
    """A firing's reply is sent whole at the end; meanwhile the chat sees that something is being written."""

    def __init__(self, outbox: Outbox, target: Target) -> None:
        self._outbox = outbox
        self._target = target

    def text(self, full: str) -> None:
        return None

    def progress(self, line: str) -> None:
        return None

    def keepalive(self) -> None:
        self._outbox.typing(self._target)


def fire_due(session: Session, now: float) -> int:
    """Fire every schedule due by `now`, earliest first (each once); how many fired."""
    if session.header is None or session.header.unreachable:
        return 0  # paused: nobody would get the reply (actors/timing/unreachable.py)
    due = [s.id for s in sorted(session.header.schedules, key=lambda s: s.next_at) if s.next_at <= now]
    fired = 0
    for schedule_id in due:
        if session.deps.registry.shutting_down.is_set() or session.header is None:
            break  # still due on disk: the next start fires it
        schedule = next((s for s in session.header.schedules if s.id == schedule_id), None)
        if schedule is not None:  # a firing before may have cancelled it (the model has the tool)
            fire(session, schedule)
            fired += 1
    return fired


def prompt_of(schedule: Schedule, now: float) -> str:
    tz = zone_of(schedule.tz)
    created = dt.datetime.fromtimestamp(schedule.created_at, tz).strftime("%Y-%m-%d %H:%M")
    due = dt.datetime.fromtimestamp(schedule.next_at, tz).strftime("%Y-%m-%d %H:%M:%S")
    late = (f" It is {format_duration(now - schedule.next_at)} late: vigil was not running at its time."
            if now - schedule.next_at > LATE_S else "")
    what = f"recurring task ({schedule.rule})" if schedule.rule else "reminder"
    who = schedule.owner_name or (f"user {schedule.owner}" if schedule.owner else "someone in this chat")
    return PROMPT.format(what=what, who=who, created=created, tz=schedule.tz, late=late, text=schedule.text, due=due,
                         now=dt.datetime.fromtimestamp(now, tz).strftime("%A %Y-%m-%d %H:%M"))


def fire(session: Session, schedule: Schedule) -> None:
    """One firing: the turn, the schedule moved on in its final commit, the reply sent."""
    assert session.header is not None
    now = session.deps.clock()
    header = session.header
    target = header.target
    turn = Turn(seq=header.next_seq, kind="schedule", started_at=now, prompt=prompt_of(schedule, now),
                model=header.model, inputs=(Input(text=schedule.text, at=now, user_id=schedule.owner,
                                                  user_name=schedule.owner_name),))
    session.header = msgspec.structs.replace(header, open_turn=turn.seq, next_seq=header.next_seq + 1,
                                             turns_total=header.turns_total + 1, last_turn_at=now)
    session.log.info("schedule.firing", id=schedule.id, seq=turn.seq, late_s=round(now - schedule.next_at, 1))
    started = time.monotonic()
    outcome = _run(session, turn, schedule)
    reply, note = _presentable(schedule, outcome)
    assert session.header is not None
    usage = usage_of(outcome.calls)
    final = msgspec.structs.replace(turn, status=outcome.status, messages=outcome.messages, reply=reply, note=note,
                                    ended_at=session.deps.clock(), usage=usage)
    # The schedule as it is now (the turn's own tool calls may have changed the list), moved on.
    kept = []
    for item in session.header.schedules:
        if item.id != schedule.id:
            kept.append(item)
        elif (moved := advanced(item, now)) is not None:
            kept.append(moved)
    session.header = msgspec.structs.replace(session.header, open_turn=None, usage=session.header.usage + usage,
                                             schedules=tuple(kept))
    session.commit(final, session.usage_entries(schedule.owner, "chat", usage), wait=True)
    if session.window is not None and session.window.upto == final.seq:
        session.window.add(final)
    outbox = session.deps.outbox(target)
    if outbox is not None:
        text = f"{reply}\n\n_{note}_" if note else reply
        outbox.send(session.key, target, Reply(text=text, markdown=True), ref=final.seq)
    session.deps.metrics.turn("schedule", outcome.status, time.monotonic() - started)
    session.deps.metrics.schedule("fired" if outcome.status == "done" else "failed")  # failed: the fallback spoke
    session.log.info("schedule.fired", id=schedule.id, status=outcome.status, input_tokens=usage.input_tokens,
                     output_tokens=usage.output_tokens)


def _run(session: Session, turn: Turn, schedule: Schedule) -> TurnOutcome:
    """The model's turn; never raises: a failure of any kind is an outcome that the fallback answers."""
    assert session.header is not None
    outbox = session.deps.outbox(session.header.target)
    cancel = CancelToken()
    meter = Meter()
    live = {"turn": turn}

    def write_open(messages: tuple[Message, ...], text: str) -> None:
        # Tool rounds are written down (and charged, should vigil die) as a user turn's are.
        live["turn"] = msgspec.structs.replace(live["turn"], messages=messages, reply=text, usage=meter.usage())
        session.commit(live["turn"], wait=True)

    session.control.begin("answering", cancel)
    try:
        if outbox is None or session.deps.registry.shutting_down.is_set():
            return TurnOutcome(messages=(), reply="", status="failed", note="vigil is shutting down")
        outbox.typing(session.header.target)
        request = build_request(session, turn)
        may_call = call_guard(session.deps.allowance, schedule.owner, cancel)
        return session.deps.runner.run(request, cancel, TypingDisplay(outbox, session.header.target),
                                       # nobody is there to press Allow: in ask mode risky calls are refused
                                       gate_for(session, user_turn_tools(session), turn),
                                       on_round=write_open, on_tool=write_open,
                                       may_call=may_call, meter=meter)
    except Exception as exc:  # the reminder must still arrive: the fallback below says it
        session.log.error("schedule.turn_failed", id=schedule.id, error=repr(exc))
        return TurnOutcome(messages=live["turn"].messages, reply="", status="failed",
                           note="something went wrong inside vigil", calls=meter.calls)
    finally:
        session.control.end()
        session.turn_ended_at = session.deps.clock()


def _presentable(schedule: Schedule, outcome: TurnOutcome) -> tuple[str, str]:
    """The reply and its note: the model's words, or the reminder itself when there are none to send."""
    said = outcome.reply.strip()
    if outcome.status == "done" and said:
        return outcome.reply, (f"⚠️ {outcome.note}" if outcome.note else "")
    fallback = f"⏰ {schedule.text}"
    if said:
        fallback = f"{fallback}\n\n{outcome.reply}"
    why = outcome.note if outcome.status != "done" else "Claude had nothing to add"
    if outcome.status == "stopped":
        why = "Claude's turn was stopped"
    return fallback, f"(scheduled {'task' if schedule.rule else 'reminder'}; {why})" if why else ""
