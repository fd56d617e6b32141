"""When schedules fall due: parsing `at` times and recurrence rules, next times, the floor, ids.

Pure functions of text, a time zone and a wall-clock time, like actors/timing/beats.py for
heartbeats: no session, store or actor in reach, so the rules are tested without threads.

A recurrence is an RFC 5545 RRULE (python-dateutil's `rrule`) or a cron expression (`croniter`),
evaluated in the chat's time zone as wall-clock time, so "every day at 9" stays at 9 across DST; on
the nights the clocks change both kinds follow RFC 5545 (see `Recurrence`): once per intended time.
Every next time is computed from the rule, never by adding an interval, so nothing drifts; after
downtime the rule is asked for its next time after *now*, so a missed firing fires once, not once
per occurrence missed. Errors are `ValueError`s whose text is written for the model to read.
"""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter  # type: ignore[import-untyped]
from dateutil.rrule import rrule, rrulestr

from vigil.durations import format_duration

ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: ids are read and typed by people
ID_LENGTH = 6
FLOOR_SAMPLES = 50  # occurrences looked at when checking a rule against the shortest interval
MAX_RULE_CHARS = 300
CHANGE_WINDOW = dt.timedelta(hours=3)  # wider than any zone's change of its clocks (at most 2 h)


def new_id(taken: set[str]) -> str:
    while True:
        made = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
        if made not in taken:
            return made


def parse_at(text: str, tz: ZoneInfo) -> float:
    """An ISO 8601 time as epoch seconds; one without an offset is read in the chat's time zone."""
    cleaned = text.strip()
    if cleaned.endswith(("z", "Z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"{text[:60]!r} is not an ISO 8601 time; use e.g. 2025-06-01T09:30:00+02:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


@dataclass(frozen=True)
class Recurrence:
    """A parsed rule with its first time: asks for the occurrences after a given time.

    A rule names wall-clock times in its zone; each becomes an instant by RFC 5545's rule for the nights
    the clocks change: an ambiguous time (clocks going back) is its first occurrence, so a rule fires
    once, not once per pass through the hour; a time that does not exist (clocks going forward) moves
    forward by the length of the gap (01:30 in a gap from 01:00 to 02:00 fires at 02:30). Both kinds of
    rule ask only their library for the wall-clock times and leave the instants to that one rule (croniter
    with aware times fired twice on the night clocks go back and at the gap's end on the other).
    """

    text: str
    kind: str  # "rrule" or "cron"
    tz: ZoneInfo
    start: dt.datetime  # aware, in `tz`: the rule's DTSTART (cron: where it is read from)
    _rule: rrule | None = None

    def after(self, at: float) -> float | None:
        """The first occurrence strictly after `at` (epoch seconds), or None if the rule has ended."""
        near = self.near_change(at)
        # Near a change of the clocks, a wall-clock time before `at`'s own may fall after it (a gap moves
        # it forward) and one after it may fall before another (two wall times, one instant): look around.
        cursor = self._wall(at) - (CHANGE_WINDOW if near else dt.timedelta())
        best: float | None = None
        best_wall = cursor
        while (found := self._next_wall(cursor)) is not None:
            moment = self.instant(found)
            if moment > at and (best is None or moment < best):
                best, best_wall = moment, found
            if best is not None and (found >= best_wall + CHANGE_WINDOW or not self.near_change(best)):
                break
            cursor = found
        return best

    def first(self) -> float | None:
        """The first occurrence at or after the start."""
        return self.after(self.start.timestamp() - 0.001)

    def instant(self, wall: dt.datetime) -> float:
        """A wall-clock time of the zone as epoch seconds, by RFC 5545 (see the class): zoneinfo's fold=0 reads
        an ambiguous time as the first and a missing one with the offset before the gap, i.e. moved forward."""
        return wall.replace(tzinfo=self.tz, fold=0).timestamp()

    def near_change(self, at: float) -> bool:
        """Whether the zone's clocks change within CHANGE_WINDOW of `at`."""
        window = CHANGE_WINDOW.total_seconds()
        return (dt.datetime.fromtimestamp(at - window, self.tz).utcoffset()
                != dt.datetime.fromtimestamp(at + window, self.tz).utcoffset())

    def _wall(self, at: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(at, self.tz).replace(tzinfo=None, fold=0)

    def _next_wall(self, wall: dt.datetime) -> dt.datetime | None:
        """The rule's first wall-clock time after `wall` (naive, in the zone)."""
        if self._rule is not None:
            # DTSTART is in `tz`: dateutil yields wall-clock times in it, compared by their wall-clock values.
            found = self._rule.after(wall.replace(tzinfo=self.tz), inc=False)
            return found.replace(tzinfo=None, fold=0) if found is not None else None
        # croniter reads from the later of its start and `wall`: a first time given with `at` is honoured.
        base = max(wall, self.start.replace(tzinfo=None, fold=0) - dt.timedelta(seconds=1))
        found_cron: dt.datetime = croniter(self.text, base).get_next(dt.datetime)
        return found_cron

    def shortest_gap(self) -> float | None:
        """The shortest time between the first `FLOOR_SAMPLES` occurrences (None: fewer than two)."""
        times: list[float] = []
        current = self.first()
        while current is not None and len(times) < FLOOR_SAMPLES:
            times.append(current)
            current = self.after(current)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        return min(gaps) if gaps else None


def is_rrule(text: str) -> bool:
    return "FREQ=" in text.upper()


def parse_rule(text: str, tz: ZoneInfo, start: float) -> Recurrence:
    """An RRULE (`FREQ=...`, optionally after `RRULE:`) or a cron expression, read from `start` in `tz`."""
    cleaned = " ".join(text.split())
    if not cleaned:
        raise ValueError("'every' is empty: give an RRULE like FREQ=DAILY;BYHOUR=9 or a cron expression like 0 9 * * *")
    if len(cleaned) > MAX_RULE_CHARS:
        raise ValueError(f"the rule is longer than {MAX_RULE_CHARS} characters")
    begin = dt.datetime.fromtimestamp(start, tz)
    if is_rrule(cleaned):
        upper = cleaned.upper()
        if any(word in upper for word in ("DTSTART", "RDATE", "EXDATE", "EXRULE")) or "\n" in text.strip():
            raise ValueError("give one RRULE line only (FREQ=...); pass the first time as 'at', not DTSTART")
        try:
            parsed = rrulestr(cleaned, dtstart=begin)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"{cleaned!r} is not a valid RRULE ({exc})") from None
        if not isinstance(parsed, rrule):
            raise ValueError("give one RRULE (FREQ=...), not a set of rules")
        return Recurrence(text=cleaned.removeprefix("RRULE:"), kind="rrule", tz=tz, start=begin, _rule=parsed)
    fields = cleaned.split()
    if not cleaned.startswith("@") and len(fields) not in (5, 6):
        raise ValueError(f"{cleaned!r} is neither an RRULE (FREQ=...) nor a cron expression "
                         "(5 fields: minute hour day month weekday, e.g. '30 8 * * 1-5'; a 6th is seconds)")
    try:
        croniter(cleaned, begin).get_next(dt.datetime)
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{cleaned!r} is not a valid cron expression ({exc})") from None
    return Recurrence(text=cleaned, kind="cron", tz=tz, start=begin)


def check_floor(rule: Recurrence, floor_s: float) -> None:
    """Refuse a rule that fires more often than `floor_s` (the heartbeat's shortest interval)."""
    gap = rule.shortest_gap()
    if gap is not None and gap < floor_s - 0.5:
        raise ValueError(f"{rule.text!r} fires every {format_duration(gap)} at times; the shortest interval "
                         f"allowed is {format_duration(floor_s)}")


def describe_rule(text: str) -> str:
    return f"every {text}" if text else "once"


def local_time(at: float, tz: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(at, tz).strftime("%a %Y-%m-%d %H:%M:%S")
