"""Heartbeats, the session part: a session's own check-ins, at its own rhythm, and /heartbeat.

Cheap checks come before any model call: heartbeats off, a turn running when the beat fell due
(or messages waiting), outside the active hours, the last beat less than an interval ago. Then
the beat turn runs (actors/turns/heartbeat.py). The schedule's arithmetic is in
actors/timing/beats.py; the process-wide timer that tells sessions a beat is due in actors/timer.py.
A chat that can't be reached turns its heartbeat off.
"""

from __future__ import annotations

import datetime as dt
import time

from vigil.actors.core.protocol import DeliveryFailed, HeartbeatDue, SessionCommand
from vigil.actors.core.state import Session
from vigil.actors.timing.beats import in_active_hours, next_due, next_window_start, parse_hours, parse_zone, zone_of
from vigil.actors.timing.idle_pause import status_line
from vigil.actors.timing.schedules import rearm
from vigil.actors.turns.heartbeat import run_beat
from vigil.durations import DurationError, format_duration, parse_duration
from vigil.records.schema import Heartbeat


def reschedule(session: Session) -> None:
    rearm(session)  # the beat's time, or a schedule's if one is sooner (vigil/records/wake.py)


def on_delivery_failed(session: Session, message: DeliveryFailed) -> None:
    """A chat that can't be reached at all gets no more beats (each would fail the same way)."""
    if message.permanent and session.header is not None and session.header.heartbeat.enabled:
        session.set_beat(enabled=False, disabled_reason=f"the chat can't be reached ({message.reason[:80]})")
        session.commit(wait=True)
        reschedule(session)
        session.log.warning("heartbeat.disabled_undeliverable", reason=message.reason)


def on_due(session: Session, message: HeartbeatDue) -> None:
    if session.deps.registry.shutting_down.is_set():
        return  # the schedule is on disk: the next start beats when due, nothing is lost by waiting
    header = session.header
    if header is None or not header.heartbeat.enabled:
        reschedule(session)
        return
    now = session.deps.clock()
    beat = header.heartbeat
    skip = _skip_reason(session, beat, message, now)
    if skip is not None:
        session.set_beat(next_due=next_due(beat, now) if skip != "outside active hours"
                         else next_window_start(beat, now), last_decision=f"skipped: {skip}")
        session.commit(wait=True)
        reschedule(session)
        session.log.info("heartbeat.skipped", reason=skip)
        session.deps.metrics.heartbeat_skipped(skip)
        return
    run_beat(session, now, reschedule=True)
    reschedule(session)


def _skip_reason(session: Session, beat: Heartbeat, message: HeartbeatDue, now: float) -> str | None:
    if message.due < session.turn_ended_at:  # it fell due while a turn was running
        return "a turn was running"
    if session.has_work():
        return "messages waiting"
    if not in_active_hours(beat, now):
        return "outside active hours"
    if beat.last_beat_at and now - beat.last_beat_at < beat.interval_s * 0.9:
        return "the last beat was less than an interval ago"
    return None  # the owner's budget and rate limit are checked before each of the beat's model calls


# ---------------------------------------------------------------------- /heartbeat

def cmd_heartbeat(session: Session, message: SessionCommand) -> None:
    header = session.ensure_header(message.target, message.chat_title, message.chat_type)
    words = message.args.split()
    verb = words[0].lower() if words else "status"
    rest = " ".join(words[1:])
    settings = session.deps.settings
    now = session.deps.clock()
    beat = header.heartbeat
    if verb == "status":
        session.reply(message.target, heartbeat_status(session, now))
        return
    if verb == "on":
        beat = session.set_beat(enabled=True, owner=message.sender.user_id, disabled_reason="",
                                next_due=next_due(beat, now), paused_at=0.0, active_since=now)
        text = f"🫀 Heartbeat on: every {format_duration(beat.interval_s)}, next {_when(session, beat.next_due)}."
    elif verb == "off":
        session.set_beat(enabled=False, disabled_reason="")
        text = "🫀 Heartbeat off."
    elif verb == "every":
        try:
            interval = parse_duration(rest)
        except DurationError as exc:
            session.reply(message.target, f"⛔ {exc}. Example: /heartbeat every 30m")
            return
        if interval < settings.heartbeat_min_interval_s:
            session.reply(message.target, f"⛔ {format_duration(interval)} is too often; the shortest interval "
                                          f"is {format_duration(settings.heartbeat_min_interval_s)}.")
            return
        beat = session.set_beat(enabled=True, interval_s=interval, owner=message.sender.user_id,
                                disabled_reason="", paused_at=0.0, active_since=now)
        beat = session.set_beat(next_due=next_due(beat, now))
        text = f"🫀 Heartbeat on: every {format_duration(interval)}, next {_when(session, beat.next_due)}."
    elif verb == "hours":
        if rest.strip().lower() in ("off", "always", "any", "all"):
            beat = session.set_beat(active_from=None, active_until=None)
            text = "🫀 Heartbeat active at any hour."
        else:
            try:
                window = parse_hours(rest)
            except ValueError as exc:
                session.reply(message.target, f"⛔ {rest!r}: {exc}. Example: /heartbeat hours 08-22")
                return
            assert window is not None
            beat = session.set_beat(active_from=window[0], active_until=window[1])
            text = f"🫀 Heartbeat active {window[0]:02d}:00–{window[1]:02d}:00 ({beat.tz})."
        if beat.enabled:
            beat = session.set_beat(next_due=next_window_start(beat, max(now, beat.next_due)))
    elif verb == "tz":
        if parse_zone(rest.strip()) is None:
            shown = rest.strip()[:64]
            session.reply(message.target, f"⛔ {shown!r} is not a time zone. Example: /heartbeat tz Europe/Lisbon")
            return
        beat = session.set_beat(tz=rest.strip())
        text = f"🫀 Heartbeat time zone: {beat.tz} (it is {_local(session, now)} there)."
    elif verb == "test":
        _heartbeat_test(session, message, now)
        return
    else:
        session.reply(message.target, "Usage: /heartbeat [on|off|every DUR|hours HH-HH|tz ZONE|test|status]")
        return
    if not session.commit(wait=True):
        session.header = header  # not saved, so not in effect
        session.reply(message.target, "⚠️ The heartbeat setting could not be saved; please try again.")
        return
    reschedule(session)
    session.reply(message.target, text)


def _heartbeat_test(session: Session, message: SessionCommand, now: float) -> None:
    if session.header is None or session.has_work():
        session.reply(message.target, "🫀 Not now: messages are waiting to be answered.")
        return
    if session.deps.registry.shutting_down.is_set():
        session.reply(message.target, "🫀 Not now: vigil is restarting.")
        return
    if not session.header.heartbeat.owner:
        session.set_beat(owner=message.sender.user_id)
    result = run_beat(session, now)
    reschedule(session)
    if result.refusal:
        session.reply(message.target, f"🫀 Test beat not run: {result.refusal}")
    elif result.sent:
        quoted = "\n".join(f"«{text[:300]}»" for text in result.sent)
        session.reply(message.target, f"🫀 Test beat: the model chose to speak:\n{quoted}")
    else:
        decision = session.header.heartbeat.last_decision if session.header else ""
        session.reply(message.target, f"🫀 Test beat: the model {decision or 'stayed silent'}.")


def heartbeat_status(session: Session, now: float) -> str:
    assert session.header is not None
    beat = session.header.heartbeat
    hours = (f"{beat.active_from:02d}:00–{beat.active_until:02d}:00" if beat.active_from is not None
             and beat.active_until is not None else "any hour")
    lines = [f"🫀 Heartbeat {'on' if beat.enabled else 'off'}"
             + (f" ({beat.disabled_reason})" if beat.disabled_reason and not beat.enabled else ""),
             f"Interval: {format_duration(beat.interval_s)} · Active: {hours} · Time zone: {beat.tz} "
             f"(now {_local(session, now)})"]
    if paused := status_line(session):
        lines.append(paused)
    elif beat.enabled:
        lines.append(f"Next beat: {_when(session, beat.next_due)}")
    if beat.last_beat_at:
        said = f": «{beat.last_message[:200]}»" if beat.last_message and beat.last_decision.startswith(
            "spoke") else ""
        lines.append(f"Last beat: {_when(session, beat.last_beat_at)} — {beat.last_decision}{said}")
    usage = session.header.heartbeat_usage
    lines.append(f"Heartbeat cost so far: {usage.calls} calls, ${usage.cost_usd:.4f}")
    return "\n".join(lines)


def _local(session: Session, at: float) -> str:
    tz = session.header.heartbeat.tz if session.header else "UTC"
    return dt.datetime.fromtimestamp(at, zone_of(tz)).strftime("%H:%M")


def _when(session: Session, at: float) -> str:
    delta = at - time.time()
    relative = f"in {format_duration(delta)}" if delta > 0 else f"{format_duration(-delta)} ago"
    return f"{_local(session, at)} ({relative})"


COMMANDS = {"heartbeat": cmd_heartbeat}
