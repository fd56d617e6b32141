"""The actor system end to end on a real LMDB store: sessions, the Supervisor, eviction, failure,
/stop, shutdown and recovery, and the session commands.

Each test builds a real `Runtime` (Supervisor + SessionActor actors + LmdbStore on tmp_path) with a
`ScriptedModel` and a `RecordingOutbox` from tests/fakes.py. Nothing sleeps in place of a
condition: tests wait on the outbox's or the model's Condition, on Events, or poll a predicate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from tests.fakes import (
    WAIT_S,
    Block,
    Crash,
    Custom,
    Harness,
    HarnessFactory,
    RecordingOutbox,
    Say,
    ScriptedModel,
    TextSink,
    UseTools,
    all_text,
    check_request,
    key_of,
    last_user_text,
    response,
    wait_until,
)
from vigil.actors.core.protocol import DeliveryFailed, Tick
from vigil.actors.session import SessionActor
from vigil.cancel import CancelToken
from vigil.control.cleanup import Cleanup
from vigil.ports import ModelRequest, ModelResponse
from vigil.records.schema import Message, Note
from vigil.store.store import LmdbStore, open_store


def inputs_of(turns: list[Any]) -> list[str]:
    return [item.text for turn in turns for item in turn.inputs]


@contextmanager
def stored(h: Harness) -> Iterator[LmdbStore]:
    """The data dir's store while no runtime runs on it (closed again afterwards)."""
    store = open_store(h.settings.data_dir)
    try:
        yield store
    finally:
        store.close()


# ------------------------------------------------------------------------------------ turns and mailboxes


def test_messages_during_a_turn_are_answered_together_in_one_follow_up(make: HarnessFactory) -> None:
    gate = threading.Event()
    model = ScriptedModel([Block(gate, text="first answer")])
    h = make(model=model)
    key = key_of(1)
    h.say(key, "first")
    assert model.wait_for(lambda m: m.in_flight == 1)
    for text in ("alpha", "bravo", "charlie"):
        h.say(key, text)
    h.settle()  # all three are in the actor's mailbox, behind the running turn
    control = h.runtime.control(key)
    assert control is not None and control.busy and control.status.state == "answering"
    gate.set()

    finished = h.outbox.wait_finished(key, 2)
    assert h.drain(key)
    assert model.calls == 2
    assert h.outbox.finished(key) == [("first answer", ""), ("echo: alpha\n\nbravo\n\ncharlie", "")]
    assert finished == h.outbox.finished(key)
    follow_up = model.requests[1]
    assert last_user_text(follow_up) == "alpha\n\nbravo\n\ncharlie"
    check_request(follow_up)
    assert "first" in all_text(follow_up) and "first answer" in all_text(follow_up)
    assert [len(t.inputs) for t in h.turns(key)] == [1, 3]
    assert [t.status for t in h.turns(key)] == ["done", "done"]


def test_sessions_answer_side_by_side(make: HarnessFactory) -> None:
    count = 5
    barrier = threading.Barrier(count)

    def meet(request: ModelRequest, on_text: TextSink, cancel: CancelToken) -> ModelResponse:
        barrier.wait(timeout=WAIT_S)  # passes only when all five calls are in flight at once
        text = f"echo: {last_user_text(request)}"
        on_text(text)
        return response(text, model=request.model)

    model = ScriptedModel(choose=lambda request: Custom(meet))
    h = make(model=model)
    secrets = {key_of(i): f"secret-{i}-{'xyz' * i}" for i in range(1, count + 1)}
    for key, secret in secrets.items():
        h.say(key, secret)

    for key, secret in secrets.items():
        assert h.outbox.wait_finished(key, 1) == [(f"echo: {secret}", "")]
    assert not barrier.broken
    assert model.max_in_flight == count
    for request in model.requests:
        text = all_text(request)
        mine = [s for s in secrets.values() if s in text]
        assert len(mine) == 1, f"a request carries another session's words: {mine}"


def test_global_cap_on_model_calls_in_flight(make: HarnessFactory) -> None:
    gate = threading.Event()
    model = ScriptedModel(choose=lambda request: Block(gate, text=f"done: {last_user_text(request)}"))
    h = make(model=model, max_concurrent_queries=2)
    keys = [key_of(i) for i in range(1, 6)]
    for key in keys:
        h.say(key, f"question of {key}")

    # Every session is answering, two calls run, three turns wait for a slot.
    assert wait_until(lambda: h.runtime.registry.busy_count() == 5 and h.runtime.slots._waiting == 3)
    assert model.in_flight == 2 and model.calls == 2
    gate.set()
    for key in keys:
        assert h.outbox.wait_finished(key, 1) == [(f"done: question of {key}", "")]
    assert model.calls == 5
    assert model.max_in_flight == 2


def test_a_tool_turn_runs_the_real_editor_in_the_sessions_directory(make: HarnessFactory) -> None:
    create = {"command": "create", "path": "notes/hello.txt", "file_text": "hi there\n"}
    model = ScriptedModel([UseTools((("str_replace_based_edit_tool", create),), text="Writing it."),
                           Say("Done: notes/hello.txt")])
    h = make(model=model)
    key = key_of(1)
    root = h.settings.workdir_root / "users" / "1"  # a private chat's own directory (user 7 is no admin)
    (root / "proj").mkdir(parents=True)
    h.command(key, "cd", "proj")
    h.outbox.wait_sent(key, 1)
    h.say(key, "make a file")
    assert h.outbox.wait_finished(key, 1) == [("Writing it.\n\nDone: notes/hello.txt", "")]
    assert (root / "proj" / "notes" / "hello.txt").read_text() == "hi there\n"
    [stream] = h.outbox.streams_of(key)
    assert ("progress", "create notes/hello.txt", "") in stream.events
    for request in model.requests:
        check_request(request)
        assert "str_replace_based_edit_tool" in [t["name"] for t in request.tools]
    [turn] = h.turns(key)
    assert [m.role for m in turn.messages] == ["assistant", "user", "assistant"]
    result = turn.messages[1].content[0]
    assert result["type"] == "tool_result" and "File created successfully" in result["content"]

    h.say(key, "thanks")
    h.outbox.wait_finished(key, 2)
    check_request(model.requests[-1])  # the stored tool exchange replays as valid history


# ------------------------------------------------------------------------------------------------ eviction


def test_idle_session_is_evicted_and_restored_with_its_history(make: HarnessFactory) -> None:
    h = make(idle_evict_s=0.3)
    key = key_of(1)
    h.say(key, "remember the kiwi")
    h.outbox.wait_finished(key, 1)
    assert wait_until(lambda: h.runtime.registry.live_count() == 0 and h.supervisor_value("evicted") == 1)
    assert h.supervisor_value("live") == {}

    h.say(key, "which fruit?")
    finished = h.outbox.wait_finished(key, 2)
    assert finished[1] == ("echo: which fruit?", "")
    assert h.supervisor_value("spawned") == 2
    second = h.model.requests[1]
    check_request(second)
    assert "remember the kiwi" in all_text(second) and "echo: remember the kiwi" in all_text(second)
    assert [t.seq for t in h.turns(key)] == [0, 1]


def gated_eviction() -> tuple[type[SessionActor], threading.Event, threading.Event]:
    """A SessionActor whose eviction waits for `gate` after announcing `entered`."""
    entered, gate = threading.Event(), threading.Event()

    class GatedEviction(SessionActor):
        def _on_evict(self) -> None:
            entered.set()
            gate.wait(WAIT_S)
            super()._on_evict()

    return GatedEviction, entered, gate


def test_message_arriving_during_eviction_is_held_and_answered_by_the_restored_actor(
        make: HarnessFactory) -> None:
    actor_class, entered, gate = gated_eviction()
    h = make(actor_class=actor_class, max_live_sessions=1)
    a, b = key_of(1), key_of(2)
    h.say(a, "a-one")
    h.outbox.wait_finished(a, 1)

    h.say(b, "b-one")  # over the cap: the Supervisor evicts the idle A
    assert entered.wait(WAIT_S)
    h.say(a, "a-two")  # A is saving: the Supervisor must hold this
    h.settle()
    held = h.supervisor_value("held")
    assert [m.text for m in held.get(a, [])] == ["a-two"]
    gate.set()

    assert h.outbox.wait_finished(a, 2)[1] == ("echo: a-two", "")
    assert h.outbox.wait_finished(b, 1) == [("echo: b-one", "")]
    assert h.drain(a) and h.drain(b)
    assert len(h.outbox.finished(a)) == 2
    request = next(r for r in h.model.requests if last_user_text(r) == "a-two")
    check_request(request)
    assert "a-one" in all_text(request) and "echo: a-one" in all_text(request)
    assert "b-one" not in all_text(request)
    assert [t.seq for t in h.turns(a)] == [0, 1]
    assert inputs_of(h.turns(a)) == ["a-one", "a-two"]
    assert h.supervisor_value("evicted") >= 1


def test_messages_racing_sweeps_and_the_cap_lose_and_repeat_nothing(make: HarnessFactory) -> None:
    # Every Tick evicts every idle session (idle_evict_s ~ 0), and the cap of one evicts on each spawn:
    # each message lands right behind a sweep, while its session is being evicted.
    h = make(max_live_sessions=1, idle_evict_s=0.001)
    keys = [key_of(1), key_of(2)]
    sent: dict[str, list[str]] = {k: [] for k in keys}

    def say(key: str, n: int) -> None:
        text = f"{key}-m{n}"
        sent[key].append(text)
        h.runtime.submit(Tick(now=time.time()))
        h.say(key, text)

    for n in range(8):
        for key in keys:
            say(key, n)
        for key in keys:
            h.outbox.wait_finished(key, n + 1)
    for n in range(8, 14):  # and a burst, without waiting for replies
        for key in keys:
            say(key, n)
    for key in keys:
        assert h.drain(key, timeout=10)

    for key in keys:
        turns = h.turns(key)
        assert inputs_of(turns) == sent[key], "every message answered exactly once, in order"
        assert [t.seq for t in turns] == list(range(len(turns))), "turns numbered without gaps"
        assert all(t.status == "done" for t in turns)
        assert len(h.outbox.finished(key)) == len(turns)
        last = next(r for r in reversed(h.model.requests) if key in last_user_text(r))
        check_request(last)
        text = all_text(last)
        assert all(t in text for t in sent[key]), "history continuous across evictions"
        other = keys[1 - keys.index(key)]
        assert other not in text
    assert h.supervisor_value("evicted") >= 8
    assert h.supervisor_value("spawned") >= 10


def test_lru_cap_keeps_at_most_max_live_sessions(make: HarnessFactory) -> None:
    h = make(max_live_sessions=3)
    keys = [key_of(i) for i in range(1, 11)]
    for key in keys:
        h.say(key, f"hello from {key}")
        h.outbox.wait_finished(key, 1)
        assert wait_until(lambda: h.runtime.registry.live_count() <= 3)
    assert wait_until(lambda: len(h.supervisor_value("live")) <= 3)
    assert list(h.supervisor_value("live")) == keys[-3:], "the least recently active went first"
    assert h.supervisor_value("evicted") == 7
    for key in keys:
        assert h.outbox.finished(key) == [(f"echo: hello from {key}", "")]
    assert h.runtime.store.session_count() == 10
    assert sorted(header.key for header in h.runtime.store.headers()) == sorted(keys)


def test_lru_cap_is_restored_after_a_burst(make: HarnessFactory) -> None:
    gate = threading.Event()
    model = ScriptedModel(choose=lambda request: Block(gate, text=f"echo: {last_user_text(request)}"))
    h = make(model=model, max_live_sessions=3)
    keys = [key_of(i) for i in range(1, 11)]
    for key in keys:
        h.say(key, f"hello from {key}")
    # Ten turns at once: a busy session cannot be evicted, so the cap is exceeded for now.
    assert model.wait_for(lambda m: m.in_flight == 10)
    gate.set()
    for key in keys:
        assert h.outbox.wait_finished(key, 1) == [(f"echo: hello from {key}", "")]
    for key in keys:
        assert h.drain(key)
    assert h.runtime.store.session_count() == 10
    # Quiescent now; the Supervisor ticks at least every second and should shed the excess.
    assert wait_until(lambda: h.runtime.registry.live_count() <= 3, timeout=2.5), (
        f"{h.runtime.registry.live_count()} sessions live with max_live_sessions=3")


# ------------------------------------------------------------------------------------ failure and respawn


def test_model_crash_is_reported_and_the_session_carries_on(make: HarnessFactory) -> None:
    model = ScriptedModel([Crash("adapter bug")])
    h = make(model=model)
    key = key_of(1)
    h.say(key, "first try")
    [(text, note)] = h.outbox.wait_finished(key, 1)
    assert text == ""
    assert note.startswith("⚠️") and "went wrong" in note
    assert h.turns(key)[0].status == "failed"

    h.say(key, "second try")
    assert h.outbox.wait_finished(key, 2)[1] == ("echo: second try", "")
    request = model.requests[1]
    check_request(request)
    assert "first try" in all_text(request)
    assert h.supervisor_value("respawned") == 0


def test_actor_failure_respawns_from_durable_state_without_losing_messages(make: HarnessFactory) -> None:
    outbox = RecordingOutbox()
    entered, gate = threading.Event(), threading.Event()
    armed = [True]

    def explode_once(key: str) -> None:
        if armed and armed.pop():
            entered.set()
            gate.wait(WAIT_S)
            raise RuntimeError("the channel exploded")

    outbox.stream_hook = explode_once
    h = make(outbox=outbox)
    key = key_of(1)
    h.say(key, "one")
    assert entered.wait(WAIT_S)  # the turn is open on disk; the actor is about to fail
    h.say(key, "two")
    h.say(key, "three")
    h.settle()
    gate.set()

    assert outbox.wait_for(lambda: any("went wrong" in t for t in outbox.sent(key)))
    assert wait_until(lambda: h.supervisor_value("respawned") == 1)
    assert outbox.wait_finished(key, 1) == [("echo: one", "")]  # the open turn, answered again
    # "two" and "three" were handed back to the Supervisor and replayed to the new actor: they are
    # answered (see the deterministic test below), never dropped.
    h.say(key, "four")
    assert outbox.wait_for(lambda: sum(len(t.inputs) for t in h.turns(key) if t.status == "done") == 4)
    assert h.drain(key)
    turns = h.turns(key)
    assert inputs_of(turns) == ["one", "two", "three", "four"]
    assert [t.seq for t in turns] == list(range(len(turns)))
    assert turns[0].attempts == 2 and all(t.status == "done" for t in turns)
    answered = [text for text, _ in outbox.finished(key)]
    assert answered.count("echo: one") == 1, answered
    assert len(answered) == len(turns) and h.model.calls == len(turns)
    header = h.runtime.store.header(key)
    assert header is not None and header.pending == () and header.open_turn is None


def test_respawn_answers_messages_queued_behind_the_failed_turn_deterministically(make: HarnessFactory) -> None:
    # The messages queued behind the failure reach the new actor's mailbox before its on_start
    # schedules RunTurn whenever on_start is slow; force that order with a gated on_start.
    started = threading.Event()

    class SlowStart(SessionActor):
        def on_start(self) -> None:
            if self.key in respawning:
                started.wait(WAIT_S)
            super().on_start()

    respawning: set[str] = set()
    outbox = RecordingOutbox()
    entered, gate = threading.Event(), threading.Event()

    def explode_once(key: str) -> None:
        if key not in respawning:
            respawning.add(key)
            entered.set()
            gate.wait(WAIT_S)
            raise RuntimeError("the channel exploded")

    outbox.stream_hook = explode_once
    h = make(outbox=outbox, actor_class=SlowStart)
    key = key_of(1)
    h.say(key, "one")
    assert entered.wait(WAIT_S)
    h.say(key, "two")
    h.settle()
    gate.set()
    assert wait_until(lambda: h.supervisor_value("respawned") == 1)
    h.settle()  # the backlog ("two") is in the new actor's mailbox
    started.set()
    assert outbox.wait_for(lambda: len(outbox.finished(key)) >= 2, timeout=2.0), outbox.finished(key)
    assert inputs_of(h.turns(key)) == ["one", "two"]


# ------------------------------------------------------------------------------------------------- /stop


def test_stop_cancels_a_call_blocked_before_its_first_byte(make: HarnessFactory) -> None:
    never = threading.Event()
    model = ScriptedModel([Block(never, honour_cancel=False)])
    h = make(model=model)
    key = key_of(1)
    h.say(key, "think very hard")
    assert model.wait_for(lambda m: m.in_flight == 1)

    started = time.monotonic()
    assert h.runtime.stop_turn(key) is True
    [(text, note)] = h.outbox.wait_finished(key, 1, timeout=2.0)
    assert time.monotonic() - started < 1.0
    assert (text, note) == ("", "⏹ stopped")
    [turn] = h.turns(key)
    assert turn.status == "stopped" and h.runtime.store.header(key).open_turn is None  # type: ignore[union-attr]
    # The abandoned call still holds its slot until it really ends: the cap stays honest.
    assert model.in_flight == 1 and h.runtime.slots.in_flight == 1
    assert h.runtime.stop_turn(key) is False

    h.say(key, "and now?")
    assert h.outbox.wait_finished(key, 2)[1] == ("echo: and now?", "")
    request = model.requests[1]
    check_request(request)
    assert "think very hard" in all_text(request)
    assert "[reply stopped by the user]" in all_text(request)
    assert h.runtime.stop_turn(key) is False
    assert h.runtime.stop_turn(key_of(999)) is False


# ---------------------------------------------------------------------------------- shutdown and restart


def test_shutdown_keeps_a_running_turn_open_and_the_next_start_answers_it_once(make: HarnessFactory) -> None:
    gate = threading.Event()
    model = ScriptedModel([Block(gate, partial="Let me think")])
    h = make(model=model)
    key = key_of(1)
    h.say(key, "a long question")
    assert model.wait_for(lambda m: m.in_flight == 1)
    h.shutdown(grace_s=0.2)

    [(text, note)] = h.outbox.finished(key)
    assert text == "Let me think" and "restarting" in note
    with stored(h) as store:
        header = store.header(key)
        assert header is not None and header.open_turn == 0 and header.pending == ()
        kept = store.turn(key, header.generation, 0)
        assert kept is not None and kept.status == "open" and kept.reply == "Let me think"

    second = ScriptedModel()
    h.start(second)
    assert h.outbox.wait_finished(key, 2)[1] == ("echo: a long question", "")
    assert h.drain(key)
    assert second.calls == 1 and len(h.outbox.finished(key)) == 2
    check_request(second.requests[0])
    assert last_user_text(second.requests[0]) == "a long question"
    [turn] = h.turns(key)
    assert (turn.status, turn.attempts, turn.superseded_reply) == ("done", 2, "Let me think")
    header = h.runtime.store.header(key)
    assert header is not None and header.open_turn is None and header.next_seq == 1


def queue_behind_a_turn_and_shut_down(h: Harness, key: str) -> None:
    """Block the model on \"one\", queue \"two\" and \"three\" behind it, shut down."""
    h.say(key, "one")
    assert h.model.wait_for(lambda m: m.in_flight == 1)
    h.say(key, "two")
    h.say(key, "three")
    h.settle()
    h.shutdown(grace_s=0.2)


def test_pending_messages_are_saved_at_shutdown(make: HarnessFactory) -> None:
    gate = threading.Event()
    h = make(model=ScriptedModel([Block(gate)]))
    key = key_of(1)
    queue_behind_a_turn_and_shut_down(h, key)
    with stored(h) as store:
        header = store.header(key)
        assert header is not None
        assert [item.text for item in header.pending] == ["two", "three"]
        assert header.open_turn == 0 and header.needs_recovery
        assert store.recovery_keys() == [key]


def test_pending_messages_saved_at_shutdown_are_answered_after_restart(make: HarnessFactory) -> None:
    gate = threading.Event()
    h = make(model=ScriptedModel([Block(gate)]))
    key = key_of(1)
    queue_behind_a_turn_and_shut_down(h, key)

    second = ScriptedModel()
    h.start(second)
    assert h.outbox.wait_for(lambda: len(h.outbox.finished(key)) >= 3, timeout=2.0), h.outbox.finished(key)
    assert inputs_of(h.turns(key)) == ["one", "two", "three"]
    assert second.calls == 2


def test_pending_messages_without_an_open_turn_are_answered_after_restart(make: HarnessFactory) -> None:
    # A crash that lost the open turn's record still leaves the pending inputs: they alone recover.
    gate = threading.Event()
    h = make(model=ScriptedModel([Block(gate)]))
    key = key_of(1)
    queue_behind_a_turn_and_shut_down(h, key)
    with stored(h) as store:
        header = store.header(key)
        assert header is not None
        # Mark the open turn final, as if it had completed just before the crash.
        turn = store.turn(key, header.generation, 0)
        assert turn is not None
        answer = Message(role="assistant", content=({"type": "text", "text": "old answer"},))
        store.commit(msgspec.structs.replace(header, open_turn=None),
                     msgspec.structs.replace(turn, status="done", reply="old answer", messages=(answer,)),
                     previous=header).result()

    second = ScriptedModel()
    h.start(second)
    assert h.outbox.wait_finished(key, 2)[1] == ("echo: two\n\nthree", "")
    assert h.drain(key)
    assert inputs_of(h.turns(key)) == ["one", "two", "three"]
    assert second.calls == 1


def test_a_turn_cut_short_by_two_restarts_is_given_up_with_a_message(make: HarnessFactory) -> None:
    gate = threading.Event()
    h = make(model=ScriptedModel([Block(gate)]))
    key = key_of(1)
    h.say(key, "doomed question")
    assert h.model.wait_for(lambda m: m.in_flight == 1)
    h.shutdown(grace_s=0.0)

    second = ScriptedModel([Block(gate)])
    h.start(second)  # answers it again (attempt 2) and is cut short again
    assert second.wait_for(lambda m: m.in_flight == 1)
    assert last_user_text(second.requests[0]) == "doomed question"
    h.shutdown(grace_s=0.0)

    third = ScriptedModel()
    h.start(third)
    assert h.outbox.wait_for(lambda: any("couldn't finish" in t for t in h.outbox.sent(key)))
    [turn] = h.turns(key)
    assert (turn.status, turn.attempts) == ("interrupted", 2)
    assert third.calls == 0
    h.say(key, "try again")
    assert h.outbox.wait_finished(key, 3)[-1] == ("echo: try again", "")
    request = third.requests[0]
    check_request(request)
    assert "[reply interrupted by a restart]" in all_text(request)


def test_an_actor_failing_on_every_attempt_gives_the_turn_up(make: HarnessFactory) -> None:
    outbox = RecordingOutbox()
    failing = threading.Event()
    failing.set()

    def explode(key: str) -> None:
        if failing.is_set():
            raise RuntimeError("the channel is down")

    outbox.stream_hook = explode
    h = make(outbox=outbox)
    key = key_of(1)
    h.say(key, "hello?")
    assert outbox.wait_for(lambda: any("couldn't finish" in t for t in outbox.sent(key)))
    assert h.supervisor_value("respawned") == 2
    assert sum("went wrong" in t for t in outbox.sent(key)) == 2
    [turn] = h.turns(key)
    assert (turn.status, turn.attempts) == ("interrupted", 2)
    assert h.model.calls == 0

    failing.clear()
    h.say(key, "better now?")
    assert outbox.wait_finished(key, 1) == [("echo: better now?", "")]
    assert h.supervisor_value("respawned") == 2


def test_a_message_held_during_eviction_survives_shutdown(make: HarnessFactory) -> None:
    actor_class, entered, gate = gated_eviction()
    h = make(actor_class=actor_class, max_live_sessions=1)
    a, b = key_of(1), key_of(2)
    h.say(a, "a-one")
    h.outbox.wait_finished(a, 1)
    h.say(b, "b-one")
    assert entered.wait(WAIT_S)
    h.say(a, "a-two")  # held by the Supervisor while A saves
    h.settle()
    assert a in h.supervisor_value("held")

    stopper = threading.Thread(target=h.shutdown, daemon=True)
    stopper.start()
    assert wait_until(lambda: h.supervisor_value("stopping"))
    gate.set()
    stopper.join(WAIT_S * 2)
    assert not stopper.is_alive()

    with stored(h) as store:
        header = store.header(a)
        assert header is not None
        answered = [i.text for t in store.turns(a, header.generation) for i in t.inputs]
    assert "a-two" in answered + [i.text for i in header.pending], "an accepted message was lost"


# ------------------------------------------------------------------------------------- durable before visible


def test_a_turn_is_durable_before_it_is_shown(make: HarnessFactory) -> None:
    outbox = RecordingOutbox()
    seen: list[tuple[str, str, str, str]] = []
    h = make(outbox=outbox, model=ScriptedModel([Say("the durable answer", deltas=4)]))

    def check(key: str, text: str, note: str) -> None:
        try:
            store = h.runtime.store  # read from the actor's own thread, before the user sees anything
            header = store.header(key)
            assert header is not None
            turn = store.turn(key, header.generation, header.next_seq - 1)
            assert turn is not None
            seen.append((turn.status, turn.reply, text, "open" if header.open_turn is not None else "closed"))
        except Exception as exc:
            seen.append(("error", repr(exc), text, ""))

    outbox.finish_hook = check
    key = key_of(1)
    h.say(key, "hello")
    outbox.wait_finished(key, 1)
    assert seen == [("done", "the durable answer", "the durable answer", "closed")]


def test_previews_are_checkpointed_before_they_are_shown(make: HarnessFactory) -> None:
    outbox = RecordingOutbox(interval=0.0)  # every delta is worth a preview
    seen: list[tuple[str, str, str]] = []
    h = make(outbox=outbox, model=ScriptedModel([Say("one two three four", deltas=4)]))

    def check(key: str, text: str) -> None:
        try:
            store = h.runtime.store
            header = store.header(key)
            assert header is not None and header.open_turn is not None
            turn = store.turn(key, header.generation, header.open_turn)
            assert turn is not None
            seen.append((turn.status, turn.reply, text))
        except Exception as exc:
            seen.append(("error", repr(exc), text))

    outbox.update_hook = check
    key = key_of(1)
    h.say(key, "count")
    assert outbox.wait_finished(key, 1) == [("one two three four", "")]
    assert seen, "no preview was shown"
    assert all(status == "open" and stored == shown for status, stored, shown in seen), seen
    assert [t for _, _, t in seen] == sorted({t for _, _, t in seen}, key=len)


# --------------------------------------------------------------------------------------------- commands


def test_new_starts_a_fresh_generation(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    h.say(key, "old topic")
    h.outbox.wait_finished(key, 1)
    h.command(key, "new")
    [reply] = h.outbox.wait_sent(key, 1)
    assert reply.startswith("🆕")
    header = h.runtime.store.header(key)
    assert header is not None and header.generation == 2 and header.next_seq == 0
    assert [g.generation for g in h.runtime.store.scan_conversations(key)[0]] == [1]

    h.say(key, "new topic")
    h.outbox.wait_finished(key, 2)
    request = h.model.requests[1]
    check_request(request)
    assert len(request.messages) == 1 and "old topic" not in all_text(request)
    assert [t.seq for t in h.turns(key)] == [0]


def test_cd_moves_inside_the_root_and_refuses_escapes(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    root = h.settings.workdir_root / "users" / "1"  # a private chat's own directory (user 7 is no admin)
    (root / "proj").mkdir(parents=True)
    h.command(key, "cd", "proj")
    assert h.outbox.wait_sent(key, 1)[0] == f"📁 {root / 'proj'}"
    assert h.runtime.store.header(key).cwd == str(root / "proj")  # type: ignore[union-attr]

    for n, escape in enumerate(("../..", "/etc", "../../../etc", "missing"), start=2):
        h.command(key, "cd", escape)
        answer = h.outbox.wait_sent(key, n)[-1]
        assert answer.startswith("⛔") and answer.endswith(f"The directory stays {root / 'proj'}"), answer
        assert h.runtime.store.header(key).cwd == str(root / "proj")  # type: ignore[union-attr]

    h.say(key, "where am I?")
    h.outbox.wait_finished(key, 1)
    assert f"Working directory: {root / 'proj'}" in h.model.requests[0].system[0]["text"]


def test_model_command_sets_the_model_of_the_next_request(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    h.command(key, "model", "claude-haiku-5-5")
    assert h.outbox.wait_sent(key, 1)[0].startswith("🧠 Model for this chat: claude-haiku-5-5")
    h.command(key, "model", "gpt-4")
    refusal = h.outbox.wait_sent(key, 2)[1]
    assert refusal.startswith("⛔") and "stays claude-haiku-5-5" in refusal
    h.say(key, "hi")
    h.outbox.wait_finished(key, 1)
    assert h.model.requests[0].model == "claude-haiku-5-5"
    assert h.turns(key)[0].model == "claude-haiku-5-5"


def test_notes_lists_and_clears(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    h.command(key, "notes")
    assert "No notes yet" in h.outbox.wait_sent(key, 1)[0]
    store = h.runtime.store
    store.add_note(key, Note(text="likes tea", at=time.time()), keep=10).result()
    store.add_note(key, Note(text="lives in Oslo", at=time.time() + 1), keep=10).result()
    h.command(key, "notes")
    listing = h.outbox.wait_sent(key, 2)[1]
    assert listing.index("lives in Oslo") < listing.index("likes tea")
    h.command(key, "notes", "clear")
    assert h.outbox.wait_sent(key, 3)[2] == "🗒 Notes cleared."
    assert store.notes(key) == []


def test_forget_asks_then_deletes(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    h.say(key, "private stuff")
    h.outbox.wait_finished(key, 1)
    h.command(key, "forget")
    h.outbox.wait_sent(key, 1)
    [prompt] = h.outbox.sent_replies(key)
    assert "/forget confirm" in prompt.text and prompt.buttons
    assert h.runtime.store.header(key) is not None

    h.command(key, "forget", "confirm")
    assert h.outbox.wait_sent(key, 2)[1].startswith("🗑 Forgotten")
    assert h.runtime.store.header(key) is None
    assert h.runtime.store.turns(key, 1) == []

    h.say(key, "fresh start")
    h.outbox.wait_finished(key, 2)
    request = h.model.requests[1]
    assert "private stuff" not in all_text(request)
    header = h.runtime.store.header(key)
    assert header is not None and header.next_seq == 1


def test_a_reply_the_channel_could_not_deliver_is_sent_again_before_the_next_turn(make: HarnessFactory) -> None:
    h = make()
    key = key_of(41)
    h.say(key, "first question")
    assert h.drain(key)
    # The channel's retries ran out for turn 0 (an outage): the session keeps it to send again.
    h.runtime.submit(DeliveryFailed(key=key, permanent=False, reason="network down", seq=0))
    assert h.drain(key)
    assert h.runtime.store.header(key).undelivered == (0,)  # type: ignore[union-attr]
    h.say(key, "second question")
    assert h.drain(key)
    assert h.outbox.wait_for(lambda: any("echo: first question" in r.text for r in h.outbox.sent_replies(key)))
    assert h.runtime.store.header(key).undelivered == ()  # type: ignore[union-attr]
    assert [t for t, _ in h.outbox.finished(key)][-1] == "echo: second question"


def test_an_undelivered_reply_survives_a_restart(make: HarnessFactory) -> None:
    h = make()
    key = key_of(42)
    h.say(key, "lost in transit")
    assert h.drain(key)
    h.shutdown()  # as `vigil run` does at SIGTERM: the outbox could not deliver turn 0 in time
    store = open_store(h.settings.data_dir)
    store.mark_undelivered(key, 0).result()
    store.close()
    h.start()
    assert h.outbox.wait_for(lambda: any("echo: lost in transit" in r.text for r in h.outbox.sent_replies(key)))


def test_cleanup_prunes_old_conversations_of_sessions_that_stay(make: HarnessFactory) -> None:
    h = make()
    key = key_of(43)
    h.say(key, "from the first conversation")
    assert h.drain(key)
    h.command(key, "new")
    h.say(key, "from the second conversation")
    assert h.drain(key)
    store = h.runtime.store
    assert store.generations(key) == [1, 2]
    cleanup = Cleanup(h.runtime, lambda caller: (store.headers(), []), store.header)
    assert cleanup.prune_generations((key,), before=time.time() + 1) == 1
    assert store.generations(key) == [2]
    assert store.scan_conversations(key) == ([], [])
    assert [t.inputs[0].text for t in h.turns(key)] == ["from the second conversation"]
    h.say(key, "and on it goes")  # the live session never held the pruned conversation
    assert h.drain(key)
    assert [t.inputs[0].text for t in h.turns(key)][-1] == "and on it goes"


def test_a_command_acts_after_the_messages_sent_before_it(make: HarnessFactory) -> None:
    h = make()
    key = key_of(44)
    h.say(key, "question for the old conversation")
    h.command(key, "new")
    h.say(key, "question for the new one")
    assert h.drain(key)
    store = h.runtime.store
    first = store.turns(key, 1)
    second = store.turns(key, 2)
    assert [t.inputs[0].text for t in first] == ["question for the old conversation"]
    assert [t.inputs[0].text for t in second] == ["question for the new one"]
