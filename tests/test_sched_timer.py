"""The timer under schedules: a session re-arms it more than once per wake-up (the heartbeat part, then the
schedule part), with the same due time; that must not hold the due key back until the safety retry."""

from __future__ import annotations

import threading

from vigil.actors.protocol import HeartbeatDue
from vigil.actors.timer import CATCH_UP_SPREAD_S, HeartbeatTimer


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_due_time_set_twice_fires_at_once_and_once() -> None:
    fired: list[HeartbeatDue] = []
    arrived = threading.Condition()

    def deliver(due: HeartbeatDue) -> None:
        with arrived:
            fired.append(due)
            arrived.notify_all()

    clock = Clock(1000.0)
    timer = HeartbeatTimer(deliver, clock=clock)
    timer.start()
    try:
        timer.schedule("tg:1", 999.0)
        timer.schedule("tg:1", 999.0)  # the same time again, as a wake-up's two parts both re-arm
        with arrived:
            assert arrived.wait_for(lambda: len(fired) >= 1, timeout=5), "delivered at once, not after the retry"
        assert [f.key for f in fired] == ["tg:1"]
    finally:
        timer.stop()


def test_a_lone_overdue_wake_at_start_up_is_not_spread_out() -> None:
    clock = Clock(10_000.0)
    timer = HeartbeatTimer(lambda due: None, clock=clock)
    timer.load([("tg:reminder", 9_990.0)])
    due = timer.due_of("tg:reminder")
    assert due is not None and clock.now <= due <= clock.now + 0.2 < clock.now + CATCH_UP_SPREAD_S
