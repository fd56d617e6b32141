"""Schedules on the nights the clocks change: once per intended local time, cron and RRULE alike.

RFC 5545's rule, which vigil follows for both kinds: an ambiguous local time (clocks going back) is its
first occurrence; a local time that does not exist (clocks going forward) moves forward by the length of
the gap. Lisbon changes at 01:00 UTC: on 2026-03-29 local 01:00-01:59 does not exist (01:00 WET is
02:00 WEST), on 2026-10-25 local 01:00-01:59 happens twice (WEST, then WET). Berlin skips 02:00-02:59.

Each schedule is carried from firing to firing as the timer and `advanced` carry it (fired at its time),
through a week around each change.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from vigil.actors.timing.rules import parse_rule
from vigil.actors.timing.schedules import advanced
from vigil.records.schema import Schedule

LISBON = ZoneInfo("Europe/Lisbon")
BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.UTC


def moment(year: int, month: int, day: int, hour: int, minute: int = 0, tz: dt.tzinfo = UTC) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()


def firings(rule: str, tz: ZoneInfo, created: float, until: float) -> list[float]:
    """Every firing from `created` (the rule's start) to `until`, the schedule advanced after each as the firing
    turn does."""
    name = tz.key
    recurrence = parse_rule(rule, tz, created)
    first = recurrence.first()
    assert first is not None
    schedule: Schedule | None = Schedule(id="dst123", text="t", next_at=first, rule=recurrence.text, tz=name,
                                         start_at=created, created_at=created)
    fired: list[float] = []
    while schedule is not None and schedule.next_at < until:
        fired.append(schedule.next_at)
        schedule = advanced(schedule, schedule.next_at + 2.0)  # the firing turn ends a moment after its time
    return fired


def local(times: list[float], tz: ZoneInfo) -> list[str]:
    return [dt.datetime.fromtimestamp(t, tz).strftime("%m-%d %H:%M%z") for t in times]


@pytest.mark.parametrize("rule", ["30 1 * * *", "FREQ=DAILY;BYHOUR=1;BYMINUTE=30"])
def test_01_30_in_lisbon_fires_once_a_day_through_both_2026_changes(rule: str) -> None:
    spring = firings(rule, LISBON, moment(2026, 3, 26, 12), moment(2026, 3, 31, 12))
    assert local(spring, LISBON) == ["03-27 01:30+0000", "03-28 01:30+0000",
                                     "03-29 02:30+0100",  # 01:30 does not exist: forward by the hour's gap
                                     "03-30 01:30+0100", "03-31 01:30+0100"]
    autumn = firings(rule, LISBON, moment(2026, 10, 22, 12), moment(2026, 10, 27, 12))
    assert local(autumn, LISBON) == ["10-23 01:30+0100", "10-24 01:30+0100",
                                     "10-25 01:30+0100",  # 01:30 comes twice: the first, once
                                     "10-26 01:30+0000", "10-27 01:30+0000"]
    assert spring[2] == moment(2026, 3, 29, 1, 30) and autumn[2] == moment(2026, 10, 25, 0, 30)


def test_cron_and_rrule_give_the_same_times_on_both_nights() -> None:
    for start, until in ((moment(2026, 3, 26, 12), moment(2026, 4, 1, 12)),
                         (moment(2026, 10, 22, 12), moment(2026, 10, 28, 12))):
        assert (firings("30 1 * * *", LISBON, start, until)
                == firings("FREQ=DAILY;BYHOUR=1;BYMINUTE=30", LISBON, start, until))


@pytest.mark.parametrize("rule", ["30 2 * * *", "FREQ=DAILY;BYHOUR=2;BYMINUTE=30"])
def test_02_30_on_the_spring_forward_night(rule: str) -> None:
    # In Lisbon 02:30 exists that night (the gap is 01:00-01:59): it fires at 02:30 summer time, once.
    lisbon = firings(rule, LISBON, moment(2026, 3, 28, 12), moment(2026, 3, 30, 12))
    assert local(lisbon, LISBON) == ["03-29 02:30+0100", "03-30 02:30+0100"]
    # In Berlin 02:30 does not exist that night: forward by the gap, to 03:30 summer time.
    berlin = firings(rule, BERLIN, moment(2026, 3, 28, 12), moment(2026, 3, 30, 12))
    assert local(berlin, BERLIN) == ["03-29 03:30+0200", "03-30 02:30+0200"]
    # And on the night clocks go back, Berlin's 02:30 comes twice: the first only.
    autumn = firings(rule, BERLIN, moment(2026, 10, 24, 12), moment(2026, 10, 26, 12))
    assert local(autumn, BERLIN) == ["10-25 02:30+0200", "10-26 02:30+0100"]


@pytest.mark.parametrize("rule", ["0,30 * * * *", "FREQ=HOURLY;BYMINUTE=0,30"])
def test_a_half_hourly_rule_fires_once_per_local_time_across_either_change(rule: str) -> None:
    spring = firings(rule, LISBON, moment(2026, 3, 28, 23, 31), moment(2026, 3, 29, 3))
    # 01:00 and 01:30 do not exist: moved forward by the gap they are 02:00 and 02:30, which the rule names
    # too; each moment fires once, every half hour.
    assert local(spring, LISBON) == ["03-29 00:00+0000", "03-29 00:30+0000", "03-29 02:00+0100",
                                     "03-29 02:30+0100", "03-29 03:00+0100", "03-29 03:30+0100"]
    autumn = firings(rule, LISBON, moment(2026, 10, 24, 22, 1), moment(2026, 10, 25, 3))
    # 01:00 and 01:30 come twice: the first of each only, then 02:00 after the repeated hour.
    assert local(autumn, LISBON) == ["10-24 23:30+0100", "10-25 00:00+0100", "10-25 00:30+0100",
                                     "10-25 01:00+0100", "10-25 01:30+0100", "10-25 02:00+0000",
                                     "10-25 02:30+0000"]


def test_a_rule_made_during_the_repeated_hour_starts_tomorrow() -> None:
    # 01:15 the second time (WET) on 2026-10-25: today's 01:30 was the first pass, already gone.
    second_pass = moment(2026, 10, 25, 1, 15)
    for rule in ("30 1 * * *", "FREQ=DAILY;BYHOUR=1;BYMINUTE=30"):
        assert parse_rule(rule, LISBON, second_pass).after(second_pass) == moment(2026, 10, 26, 1, 30)


def test_a_daily_rule_that_takes_its_hour_from_its_start_keeps_it_after_a_gap() -> None:
    # FREQ=DAILY alone fires at its first time's hour; the night that hour is missing it fires an hour later,
    # and the next day it is back at its own hour (the rule is not restarted from the moved time).
    start = dt.datetime(2026, 3, 27, 1, 30, tzinfo=LISBON).timestamp()
    fired = firings("FREQ=DAILY", LISBON, start, moment(2026, 3, 31, 12))
    assert local(fired, LISBON) == ["03-27 01:30+0000", "03-28 01:30+0000", "03-29 02:30+0100",
                                    "03-30 01:30+0100", "03-31 01:30+0100"]
