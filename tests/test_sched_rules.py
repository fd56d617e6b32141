"""Schedules without a session: parsing times and rules, next times, the floor, firing after downtime."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from msgspec.structs import replace

from vigil.actors.timing.rules import check_floor, new_id, parse_at, parse_rule
from vigil.actors.timing.schedules import advanced
from vigil.records.schema import Schedule, SessionHeader, Target, decode_header, encode
from vigil.records.wake import wake_at

LISBON = ZoneInfo("Europe/Lisbon")


def at(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0,
       tz: ZoneInfo = LISBON) -> float:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp()


def test_an_iso_time_with_an_offset_or_z_and_without_one_in_the_chat_zone() -> None:
    assert parse_at("2026-06-01T09:30:00+02:00", LISBON) == at(2026, 6, 1, 8, 30)  # Lisbon is +01:00 in June
    assert parse_at("2026-06-01T07:30:00Z", LISBON) == at(2026, 6, 1, 8, 30)
    assert parse_at("2026-06-01T08:30", LISBON) == at(2026, 6, 1, 8, 30)
    for bad in ("tomorrow at 9", "2026-13-01T00:00:00", ""):
        with pytest.raises(ValueError, match="ISO 8601"):
            parse_at(bad, LISBON)


def test_an_rrule_is_wall_clock_time_in_the_zone_across_dst() -> None:
    # Lisbon moves to summer time on 2026-03-29: 09:00 stays 09:00 local, an hour earlier in UTC.
    rule = parse_rule("RRULE:FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0", LISBON, at(2026, 3, 27, 12))
    first = rule.first()
    assert first is not None and first == at(2026, 3, 28, 9)
    assert rule.after(first) == at(2026, 3, 29, 9)
    assert rule.after(first) == first + 23 * 3600


def test_a_cron_expression_in_the_zone() -> None:
    rule = parse_rule("30 8 * * 1-5", LISBON, at(2026, 11, 20, 9))  # a Friday, after 08:30
    assert rule.kind == "cron"
    assert rule.after(at(2026, 11, 20, 9)) == at(2026, 11, 23, 8, 30)  # Monday
    seconds = parse_rule("* * * * * */3", LISBON, at(2026, 11, 20, 9))
    assert seconds.after(at(2026, 11, 20, 9)) == at(2026, 11, 20, 9, 0, 3)


@pytest.mark.parametrize("text", ["FREQ=SOMETIMES", "RRULE:FREQ=DAILY;BYHOUR=25", "61 * * * *", "0 9 * *",
                                  "every day", "DTSTART:20260101T000000\nRRULE:FREQ=DAILY", "",
                                  "FREQ=DAILY;UNTIL=20260401T000000"])
def test_malformed_rules_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_rule(text, LISBON, at(2026, 3, 1, 12))
    assert len(str(refused.value)) > 20, "the refusal says what is wrong"


def test_rules_more_often_than_the_floor_are_refused() -> None:
    for text in ("FREQ=MINUTELY", "*/2 * * * *", "FREQ=HOURLY;BYMINUTE=0,1"):
        with pytest.raises(ValueError, match="shortest interval allowed is 5m"):
            check_floor(parse_rule(text, LISBON, at(2026, 3, 1, 12)), 300)
    for text in ("FREQ=MINUTELY;INTERVAL=5", "*/5 * * * *", "FREQ=DAILY"):
        check_floor(parse_rule(text, LISBON, at(2026, 3, 1, 12)), 300)


def schedule(rule: str, next_at: float, start: float, **more: object) -> Schedule:
    return Schedule(id="abc234", text="stand up", next_at=next_at, rule=rule, tz="Europe/Lisbon",
                    start_at=start, created_at=start, **more)  # type: ignore[arg-type]


def test_a_firing_missed_during_downtime_fires_once_then_the_rule_goes_on_from_now() -> None:
    start = at(2026, 3, 1, 9)
    hourly = schedule("FREQ=HOURLY", next_at=start, start=start)
    back = at(2026, 3, 1, 15, 20)  # six occurrences missed
    moved = advanced(hourly, back)
    assert moved is not None and moved.next_at == at(2026, 3, 1, 16), "the next one after now, not 10:00"
    assert moved.fired == 1 and moved.last_fired_at == back
    # Reading the rule from the occurrence just due finds the same times as reading it from the first.
    assert advanced(moved, at(2026, 3, 1, 16)).next_at == at(2026, 3, 1, 17)  # type: ignore[union-attr]


def test_a_one_shot_is_done_and_a_counted_rule_ends() -> None:
    assert advanced(schedule("", next_at=at(2026, 3, 1, 9), start=at(2026, 3, 1, 9)), at(2026, 3, 1, 9)) is None
    twice = schedule("FREQ=DAILY;COUNT=2", next_at=at(2026, 3, 1, 9), start=at(2026, 3, 1, 9))
    second = advanced(twice, at(2026, 3, 1, 9))
    assert second is not None and second.next_at == at(2026, 3, 2, 9)
    assert advanced(second, at(2026, 3, 2, 9)) is None


def test_the_timer_index_holds_the_earliest_of_beat_and_schedules() -> None:
    header = SessionHeader(key="tg:1", incarnation=1, created_at=0, target=Target(channel="tg", chat_id=1),
                           cwd="/", model="m")
    assert wake_at(header) is None
    soon = schedule("", next_at=100.0, start=100.0)
    with_one = replace(header, schedules=(soon,))
    assert wake_at(with_one) == 100.0
    beating = replace(with_one, heartbeat=replace(header.heartbeat, enabled=True, next_due=50.0))
    assert wake_at(beating) == 50.0
    paused = replace(beating, heartbeat=replace(beating.heartbeat, paused_at=40.0))
    assert wake_at(paused) == 100.0, "a paused heartbeat wakes nobody; schedules still do"
    assert decode_header(encode(paused)) == paused, "schedules and the pause are stored in the header"


def test_ids_are_short_and_unique_in_the_chat() -> None:
    taken = {new_id(set()) for _ in range(50)}
    made = new_id(taken)
    assert len(made) == 6 and made not in taken



def test_a_first_time_with_a_fraction_of_a_second_is_the_first_firing() -> None:
    start = at(2026, 3, 1, 9) + 0.6
    rule = parse_rule("FREQ=SECONDLY;INTERVAL=3", LISBON, float(int(start) + 1))
    assert rule.first() == at(2026, 3, 1, 9, 0, 1)
