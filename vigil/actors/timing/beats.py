"""When heartbeats fall due: active hours, time zones, next due times, and message digests.

Pure functions of a `Heartbeat` and a wall-clock time, with no session or actor in reach,
so the schedule is tested (and reasoned about) without threads, a store or a model.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vigil.records.schema import Heartbeat


def parse_zone(name: str) -> ZoneInfo | None:
    """The time zone of an IANA name, or None: also for a tzdata directory ("America", which raises
    IsADirectoryError), a data file ("zone.tab"), paths that climb out ("../../etc/passwd") and ""."""
    if not name or len(name) > 64 or name.startswith(("/", ".")):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def zone_of(name: str) -> ZoneInfo:
    """A stored zone, never failing: one stored before this vigil checked names as it does falls back to UTC."""
    return parse_zone(name) or ZoneInfo("UTC")


def in_active_hours(beat: Heartbeat, now: float) -> bool:
    if beat.active_from is None or beat.active_until is None or beat.active_from == beat.active_until:
        return True
    hour = dt.datetime.fromtimestamp(now, zone_of(beat.tz)).hour
    start, end = beat.active_from, beat.active_until
    return start <= hour < end if start < end else (hour >= start or hour < end)


def next_window_start(beat: Heartbeat, now: float) -> float:
    """When the active hours next begin (now, if they already have)."""
    if in_active_hours(beat, now) or beat.active_from is None:
        return now
    local = dt.datetime.fromtimestamp(now, zone_of(beat.tz))
    opening = local.replace(hour=beat.active_from, minute=0, second=0, microsecond=0)
    if opening <= local:
        opening += dt.timedelta(days=1)
    # The night clocks go forward, an opening hour inside the gap resolves to the first wall time after it,
    # which may already be past a one-hour window (1-2 in Lisbon has no instant that day): try the next day.
    while not in_active_hours(beat, opening.timestamp()):
        opening += dt.timedelta(days=1)
    return opening.timestamp()


def next_due(beat: Heartbeat, now: float) -> float:
    return next_window_start(beat, now + beat.interval_s)


def message_digest(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).casefold().encode()).hexdigest()[:32]


def parse_hours(text: str) -> tuple[int, int] | None:
    """The active-hours window of "HH-HH" (ValueError says what is wrong with any other text)."""
    cleaned = text.replace("to", "-").replace("–", "-").replace(" ", "")
    start, sep, end = cleaned.partition("-")
    if not sep or not start.isdigit() or not end.isdigit():
        raise ValueError("use HH-HH, like 08-22")
    first, last = int(start), int(end)
    # "23-00" and "23-24" both mean until midnight.
    if not (0 <= first <= 23 and 0 <= last <= 24) or first == last % 24:
        raise ValueError("hours run 0-24 and the window can't be empty")
    return first, last % 24
