"""Heartbeat scheduling without a model: active hours, next due times, dedupe, and the timer thread."""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vigil.actors.core.protocol import HeartbeatDue
from vigil.actors.timer import CATCH_UP_SPREAD_S, HeartbeatTimer
from vigil.actors.timing.beats import in_active_hours, message_digest, next_due, next_window_start
from vigil.actors.timing.beats import parse_hours as _hours
from vigil.records.schema import Heartbeat

LISBON = ZoneInfo("Europe/Lisbon")


def at(year: int, month: int, day: int, hour: int, minute: int = 0, tz: ZoneInfo = LISBON) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()


def beat(**changes: object) -> Heartbeat:
    fields: dict[str, object] = {"enabled": True, "interval_s": 1800, "tz": "Europe/Lisbon", **changes}
    return Heartbeat(**fields)  # type: ignore[arg-type]


def test_any_hour_without_a_window() -> None:
    assert in_active_hours(beat(), at(2026, 11, 21, 3))


def test_daytime_window_in_the_users_time_zone() -> None:
    window = beat(active_from=8, active_until=22)
    assert not in_active_hours(window, at(2026, 11, 21, 7, 59))
    assert in_active_hours(window, at(2026, 11, 21, 8, 0))
    assert in_active_hours(window, at(2026, 11, 21, 21, 59))
    assert not in_active_hours(window, at(2026, 11, 21, 22, 0))
    # The same instant is 23:00 in Tokyo: outside a Tokyo 08-22 window even though Lisbon is inside it.
    tokyo = beat(active_from=8, active_until=22, tz="Asia/Tokyo")
    assert not in_active_hours(tokyo, at(2026, 11, 21, 14))


def test_a_window_across_midnight() -> None:
    night = beat(active_from=22, active_until=6)
    assert in_active_hours(night, at(2026, 11, 21, 23))
    assert in_active_hours(night, at(2026, 11, 22, 5, 59))
    assert not in_active_hours(night, at(2026, 11, 22, 6))


def test_outside_the_window_the_next_beat_waits_for_it_to_open() -> None:
    window = beat(active_from=8, active_until=22)
    late = at(2026, 11, 21, 23, 30)
    assert next_window_start(window, late) == at(2026, 11, 22, 8)
    assert next_due(window, at(2026, 11, 21, 21, 50)) == at(2026, 11, 22, 8)
    assert next_due(window, at(2026, 11, 21, 12)) == at(2026, 11, 21, 12, 30)


def test_window_opening_respects_daylight_saving() -> None:
    # Europe/Lisbon moves from UTC+1 to UTC+0 on 2026-10-25; 08:00 local is 08:00 UTC afterwards.
    window = beat(active_from=8, active_until=22)
    assert next_window_start(window, at(2026, 10, 24, 23)) == at(2026, 10, 25, 8)
    assert dt.datetime.fromtimestamp(at(2026, 10, 25, 8), dt.UTC).hour == 8


@pytest.mark.parametrize("text, expected", [("08-22", (8, 22)), ("8 to 22", (8, 22)), ("22-6", (22, 6)),
                                            ("23-00", (23, 0)), ("23-24", (23, 0)), ("0-24", (0, 0))])
def test_hours_parse(text: str, expected: tuple[int, int]) -> None:
    if expected == (0, 0):
        with pytest.raises(ValueError):
            _hours(text)
    else:
        assert _hours(text) == expected


@pytest.mark.parametrize("text", ["8", "25-3", "a-b", "9-9", "0-00", ""])
def test_bad_hours_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        _hours(text)


def test_the_same_message_is_recognised_whatever_its_spacing_and_case() -> None:
    assert message_digest("Don't forget  the dentist") == message_digest("don't forget the dentist ")
    assert message_digest("dentist at 3") != message_digest("dentist at 4")


def test_a_window_the_clocks_skip_opens_the_next_day() -> None:
    """Lisbon's clocks go from 01:00 to 02:00 on 2064-03-30: a 1-2 window has no instant that day."""
    window = beat(active_from=1, active_until=2)
    due = next_due(window, 2973979800)  # 2064-03-29 01:30 local
    assert in_active_hours(window, due)
    assert dt.datetime.fromtimestamp(due, ZoneInfo("Europe/Lisbon")).isoformat() == "2064-03-31T01:00:00+01:00"


@given(st.floats(min_value=0, max_value=4e9), st.integers(0, 23), st.integers(1, 23))
@example(now=2973979800, start=1, length=1)
def test_next_due_is_never_in_the_past_and_always_in_hours(now: float, start: int, length: int) -> None:
    window = beat(active_from=start, active_until=(start + length) % 24)
    due = next_due(window, now)
    assert due >= now + window.interval_s - 1e-6
    assert in_active_hours(window, due)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A timer's delivery target that records what fired and lets a test wait for it."""

    def __init__(self) -> None:
        self.fired: list[HeartbeatDue] = []
        self.arrived = threading.Condition()

    def __call__(self, due: HeartbeatDue) -> None:
        with self.arrived:
            self.fired.append(due)
            self.arrived.notify_all()

    def wait_for(self, count: int) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.fired) >= count, timeout=5)


def test_timer_fires_in_due_order_and_only_what_is_due() -> None:
    recorder = Recorder()
    fired = recorder.fired
    clock = Clock(1000.0)
    timer = HeartbeatTimer(recorder, clock=clock)
    timer.start()
    try:
        timer.schedule("tg:2", 999.0)
        timer.schedule("tg:1", 998.0)
        timer.schedule("tg:3", 5000.0)
        assert recorder.wait_for(2)
        assert [f.key for f in fired] == ["tg:1", "tg:2"]
        # After firing, a key is re-armed for a safety retry, far enough away not to double a beat.
        assert (timer.due_of("tg:1") or 0) > clock.now + 60
        timer.schedule("tg:3", None)
        assert timer.due_of("tg:3") is None
    finally:
        timer.stop()
    assert len(fired) == 2


def test_overdue_beats_fire_once_spread_out_after_a_restart() -> None:
    clock = Clock(10_000.0)
    timer = HeartbeatTimer(lambda due: None, clock=clock)
    loaded = timer.load([(f"tg:{i}", 100.0 + i) for i in range(50)] + [("tg:later", 20_000.0)])
    assert loaded == 51
    dues = [timer.due_of(f"tg:{i}") or 0 for i in range(50)]
    assert all(clock.now <= d <= clock.now + CATCH_UP_SPREAD_S for d in dues)
    assert len(set(dues)) > 1, "not all at the same instant"
    assert timer.due_of("tg:later") == 20_000.0


# A session re-arms the timer more than once per wake-up (the heartbeat part, then the schedule part), with
# the same due time; that must not hold the due key back until the safety retry.


def test_a_due_time_set_twice_fires_at_once_and_once() -> None:
    recorder = Recorder()
    timer = HeartbeatTimer(recorder, clock=Clock(1000.0))
    timer.start()
    try:
        timer.schedule("tg:1", 999.0)
        timer.schedule("tg:1", 999.0)  # the same time again, as a wake-up's two parts both re-arm
        assert recorder.wait_for(1), "delivered at once, not after the retry"
        assert [f.key for f in recorder.fired] == ["tg:1"]
    finally:
        timer.stop()


def test_a_lone_overdue_wake_at_start_up_is_not_spread_out() -> None:
    clock = Clock(10_000.0)
    timer = HeartbeatTimer(lambda due: None, clock=clock)
    timer.load([("tg:reminder", 9_990.0)])
    due = timer.due_of("tg:reminder")
    assert due is not None and clock.now <= due <= clock.now + 0.2 < clock.now + CATCH_UP_SPREAD_S
