"""A session's schedules: creating, listing, cancelling and advancing them, and re-arming the timer.

Used by the `schedule` tool (actors/tools/schedule.py), `/schedules` (actors/commands/schedules.py)
and the firing turn (actors/turns/schedule.py). Schedules live in the session header (`schedules`),
so each change is one durable header commit, and the timer is re-armed from the header
(vigil/records/wake.py) right after it: the store's index and the timer say the same thing.
"""

from __future__ import annotations

import datetime as dt
import math

import msgspec

from vigil.actors.core.state import Session
from vigil.actors.timing.beats import zone_of
from vigil.actors.timing.rules import Recurrence, check_floor, describe_rule, local_time, new_id, parse_at, parse_rule
from vigil.records.schema import Schedule
from vigil.records.wake import wake_at

MAX_TEXT_CHARS = 500


class ScheduleError(ValueError):
    """A schedule that can't be made or found; the text says why, for the model or the user."""


def rearm(session: Session) -> None:
    """Tell the timer when this session next needs waking (a beat or a schedule), or never."""
    session.deps.schedule_heartbeat(session.key, wake_at(session.header) if session.header is not None else None)


def save(session: Session, schedules: tuple[Schedule, ...]) -> bool:
    """Replace the schedules, durably, and re-arm the timer; False (nothing changed) if the store refused."""
    assert session.header is not None
    before = session.header
    session.header = msgspec.structs.replace(before, schedules=schedules)
    if not session.commit(wait=True):
        session.header = msgspec.structs.replace(session.header, schedules=before.schedules)
        return False
    rearm(session)
    return True


def recurrence_of(schedule: Schedule) -> Recurrence | None:
    if not schedule.rule:
        return None
    return parse_rule(schedule.rule, zone_of(schedule.tz), schedule.start_at or schedule.created_at)


def create(session: Session, text: str, at: str, every: str, owner: int, owner_name: str) -> Schedule:
    """A new schedule from the tool's input, checked and saved; ScheduleError says what is wrong."""
    assert session.header is not None
    header = session.header
    settings = session.deps.settings
    now = session.deps.clock()
    text = text.strip()
    if not text:
        raise ScheduleError("'text' is empty: say what the reminder or task is")
    if len(text) > MAX_TEXT_CHARS:
        raise ScheduleError(f"'text' is longer than {MAX_TEXT_CHARS} characters; shorten it")
    if len(header.schedules) >= settings.max_schedules:
        raise ScheduleError(f"this chat already has {len(header.schedules)} schedules, the most allowed "
                            f"({settings.max_schedules}); cancel one first (ids: "
                            f"{', '.join(s.id for s in header.schedules)})")
    if not at.strip() and not every.strip():
        raise ScheduleError("give 'at' (an ISO 8601 time) for a one-time reminder, or 'every' (an RRULE or a "
                            "cron expression) for a recurring one")
    tz_name = header.heartbeat.tz
    tz = zone_of(tz_name)
    try:
        start = parse_at(at, tz) if at.strip() else None
    except ValueError as exc:
        raise ScheduleError(str(exc)) from None
    if start is not None and start <= now:
        raise ScheduleError(f"{at.strip()[:60]} is in the past: it is now {local_time(now, tz)} in {tz_name}")
    rule = ""
    if every.strip():
        # Rules count in whole seconds (an RRULE drops a DTSTART's fraction): a first time of 09:00:00.6
        # starts at 09:00:01, not at 09:00:00 (then in the past, and the first firing would be skipped).
        begin = float(math.ceil(start)) if start is not None else _minute(now, tz)
        try:
            recurrence = parse_rule(every, tz, begin)
            check_floor(recurrence, settings.heartbeat_min_interval_s)
        except ValueError as exc:
            raise ScheduleError(str(exc)) from None
        first = recurrence.first() if start is not None else recurrence.after(now)
        if first is None or first <= now:
            raise ScheduleError(f"{recurrence.text!r} never fires after now ({local_time(now, tz)} in {tz_name})")
        rule, next_at = recurrence.text, first
        start = begin
    else:
        assert start is not None
        next_at = start
    made = Schedule(id=new_id({s.id for s in header.schedules}), text=text, next_at=next_at, rule=rule,
                    tz=tz_name, start_at=start, owner=owner, owner_name=owner_name, created_at=now)
    if not save(session, (*header.schedules, made)):
        raise ScheduleError("not saved: the store refused the write; try again")
    session.log.info("schedule.created", id=made.id, rule=rule or "once", next_at=next_at, owner=owner)
    return made


def _minute(now: float, tz: dt.tzinfo) -> float:
    """`now` cut to the minute: a rule without a first time fires on whole minutes (RRULE's default seconds)."""
    return dt.datetime.fromtimestamp(now, tz).replace(second=0, microsecond=0).timestamp()


def find(session: Session, schedule_id: str) -> Schedule | None:
    wanted = schedule_id.strip().lower()
    header = session.header
    return next((s for s in header.schedules if s.id == wanted), None) if header is not None else None


def cancel(session: Session, schedule_id: str) -> Schedule:
    """Remove a schedule, durably; ScheduleError if there is none by that id or the store refused."""
    found = find(session, schedule_id)
    if found is None:
        ids = ", ".join(s.id for s in session.header.schedules) if session.header is not None else ""
        raise ScheduleError(f"no schedule {schedule_id.strip()[:20]!r} in this chat"
                            + (f" (its schedules: {ids})" if ids else " (it has none)"))
    assert session.header is not None
    if not save(session, tuple(s for s in session.header.schedules if s.id != found.id)):
        raise ScheduleError("not cancelled: the store refused the write; try again")
    session.log.info("schedule.cancelled", id=found.id)
    return found


def advanced(schedule: Schedule, fired_at: float) -> Schedule | None:
    """The schedule after a firing at `fired_at`: a one-shot is done (None); a recurrence moves to its next
    time after the later of its due time and now, so a firing missed during downtime fires once, not as a burst."""
    recurrence = recurrence_of(schedule)
    if recurrence is None:
        return None
    after = max(fired_at, schedule.next_at)
    following = recurrence.after(after)
    if following is None:
        return None
    # A rule without COUNT reads the same from any of its own occurrences: starting it from the one just
    # due keeps dateutil from walking every occurrence since the first to find the next. Not on a night the
    # clocks change: a time moved forward out of a gap is not the rule's own (FREQ=DAILY would take its hour).
    restart = "COUNT=" not in schedule.rule.upper() and not recurrence.near_change(schedule.next_at)
    start = schedule.next_at if restart else schedule.start_at
    return msgspec.structs.replace(schedule, next_at=following, start_at=start, fired=schedule.fired + 1,
                                   last_fired_at=fired_at)


def describe(schedule: Schedule) -> str:
    tz = zone_of(schedule.tz)
    return (f"{schedule.id} · next {local_time(schedule.next_at, tz)} ({schedule.tz}) · "
            f"{describe_rule(schedule.rule)} · {schedule.text}")


def listing(session: Session) -> str:
    """The chat's schedules, for the model (and the command), with the time now in the chat's zone."""
    assert session.header is not None
    tz_name = session.header.heartbeat.tz
    now = local_time(session.deps.clock(), zone_of(tz_name))
    schedules = sorted(session.header.schedules, key=lambda s: s.next_at)
    if not schedules:
        return f"It is now {now} ({tz_name}). This chat has no schedules."
    lines = [f"It is now {now} ({tz_name}). This chat's schedules ({len(schedules)}):"]
    lines += [f"- {describe(s)}" for s in schedules]
    return "\n".join(lines)
