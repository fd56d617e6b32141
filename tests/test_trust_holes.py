"""The smaller holes of issue 10, in-process on a real Runtime and real LMDB (tests/fakes.py's harness).

- a command whose write failed says so, and its change does not take effect;
- a stored time zone that is not one cannot crash a session;
- heartbeat turns honour shutdown: a beat running is cut, none starts once shutting down;
- a resumed turn continues from its stored tool rounds (the unit below the kill -9 e2e test);
- files vigil creates are for the service user only.

"A store that refuses" is a writer whose every write fails with StoreError, as on a full disk.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.fakes import Block, Harness, HarnessFactory, Say, ScriptedModel, key_of, wait_until
from tests.procs import run_vigil, vigil_env
from tests.standins.messages_api import MessagesAPI
from vigil.actors.core.protocol import HeartbeatDue
from vigil.actors.engine.runner import RESTARTED_BEFORE_IT_BEGAN, RESTARTED_WHILE_RUNNING, resume_exchange
from vigil.records.schema import Message, Note
from vigil.store.engine.lmdb_env import StoreError
from vigil.store.engine.writer import WriteFuture
from vigil.store.store import LmdbStore, open_store


def refuse_writes(monkeypatch: pytest.MonkeyPatch, store: Any) -> None:
    """From now on every write fails, as on a full disk (reads still work)."""
    def refused(*args: Any, **kwargs: Any) -> WriteFuture:
        future = WriteFuture()
        future.set_exception(StoreError("the store could not save ([Errno 28] No space left on device)"))
        return future

    monkeypatch.setattr(store.writer, "submit_record", refused)
    monkeypatch.setattr(store.writer, "submit", refused)


def stored_header(h: Harness, key: str) -> Any:
    header = h.runtime.store.header(key)
    assert header is not None
    return header


# ------------------------------------------------------------------------------------ 8d: failed writes


def test_a_command_whose_write_failed_says_so_and_changes_nothing(make: HarnessFactory,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    h = make()
    key = key_of(1)
    h.say(key, "hello")
    h.outbox.wait_finished(key, 1)
    (Path(stored_header(h, key).workspace) / "proj").mkdir()  # a chat's /cd stays in its own directory
    store = h.runtime.store
    store.add_note(key, Note(text="keep me", at=time.time()), keep=10).result()
    before = stored_header(h, key)

    refuse_writes(monkeypatch, store)
    commands = [("cd", "proj"), ("model", "claude-haiku-5-5"), ("notes", "clear"), ("forget", "confirm"),
                ("heartbeat", "on"), ("heartbeat", "every 2h"), ("heartbeat", "hours 08-22"),
                ("heartbeat", "tz Europe/Lisbon")]
    for n, (name, args) in enumerate(commands, start=1):
        h.command(key, name, args)
        answer = h.outbox.wait_sent(key, n)[-1]
        assert answer.startswith("⚠️") and "could not be saved" in answer, (name, args, answer)
    monkeypatch.undo()

    # Nothing happened, on disk or in the live session.
    assert stored_header(h, key) == before
    assert [n.text for n in store.notes(key)] == ["keep me"]
    h.command(key, "heartbeat", "status")
    status = h.outbox.wait_sent(key, len(commands) + 1)[-1]
    assert "Heartbeat off" in status and "Time zone: UTC" in status, status
    h.say(key, "still the same?")
    h.outbox.wait_finished(key, 2)
    request = h.model.requests[-1]
    assert request.model == before.model
    assert f"Working directory: {before.cwd}" in request.system[0]["text"]
    assert "hello" in str(request.messages), "the history was not forgotten"


# ------------------------------------------------------------------------------------ 8c: a stored bad tz


@pytest.mark.parametrize("zone", ["America", "../../etc/passwd", "", "Europe/Nowhere", "zone.tab"])
def test_a_stored_zone_that_is_not_one_cannot_crash_the_session(make: HarnessFactory, zone: str) -> None:
    h = make()
    key = key_of(1)
    h.say(key, "hello")
    h.outbox.wait_finished(key, 1)
    # Active hours that hold now and for two hours on (a bad zone is read as UTC): the beat must run.
    hour = time.gmtime().tm_hour
    h.command(key, "heartbeat", f"hours {hour:02d}-{(hour + 2) % 24 or 24:02d}")
    h.outbox.wait_sent(key, 1)
    h.shutdown()
    with _stored(h) as store:  # as an older vigil, which did not check names, could have stored it
        header = store.header(key)
        assert header is not None
        bad = msgspec.structs.replace(header, heartbeat=msgspec.structs.replace(
            header.heartbeat, tz=zone, enabled=True, owner=7, next_due=time.time()))
        store.commit(bad, previous=header).result()
    h.start()
    h.command(key, "heartbeat", "status")
    assert "Heartbeat on" in h.outbox.wait_sent(key, 2)[-1]
    h.runtime.submit(HeartbeatDue(key=key, due=time.time()))
    # The beat ran under the bad zone (it may also have been fired by the timer at start, and this
    # one then skipped as too soon after it: either way a beat ran and the session lives).
    assert wait_until(lambda: stored_header(h, key).heartbeat.last_beat_at > 0), stored_header(h, key).heartbeat
    assert stored_header(h, key).heartbeat.last_decision in (
        "stayed silent", "skipped: the last beat was less than an interval ago"), stored_header(h, key).heartbeat
    h.command(key, "heartbeat", "hours 09-21")
    assert "09:00–21:00" in h.outbox.wait_sent(key, 3)[-1]
    h.say(key, "still alive?")
    h.outbox.wait_finished(key, 2)


class _stored:
    def __init__(self, h: Harness) -> None:
        self.h = h

    def __enter__(self) -> LmdbStore:
        self.store = open_store(self.h.settings.data_dir)
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


# ------------------------------------------------------------------------------------ 8e: beats and shutdown


def is_beat(request: Any) -> bool:
    return any(t["name"] == "send_message" for t in request.tools)


def test_a_beat_running_at_shutdown_is_cut_and_due_again_after_the_restart(make: HarnessFactory) -> None:
    release = threading.Event()
    h = make(model=ScriptedModel(choose=lambda r: Block(release) if is_beat(r) else Say("ok")))
    key = key_of(1)
    h.command(key, "heartbeat", "on")
    h.outbox.wait_sent(key, 1)
    due = stored_header(h, key).heartbeat.next_due
    h.runtime.submit(HeartbeatDue(key=key, due=time.time()))
    assert h.model.wait_for(lambda m: m.in_flight == 1), "the beat's model call began"
    started = time.monotonic()
    h.shutdown(grace_s=0.0)
    assert time.monotonic() - started < 5, "shutdown waited for the beat"
    with _stored(h) as store:
        beat = store.header(key).heartbeat  # type: ignore[union-attr]
    assert beat.last_decision == "cut short: vigil was shutting down", beat
    assert beat.next_due == due and beat.last_beat_at == 0.0, "a cut beat stays due: the next start runs it"
    assert beat.enabled


def test_no_beat_starts_once_shutting_down(make: HarnessFactory) -> None:
    release = threading.Event()
    h = make(model=ScriptedModel(choose=lambda r: Say("quiet") if is_beat(r) else Block(release)))
    key = key_of(1)
    h.command(key, "heartbeat", "on")
    h.outbox.wait_sent(key, 1)
    h.say(key, "a long question")
    assert h.model.wait_for(lambda m: m.in_flight == 1), "the user turn runs"
    # Queued behind the running turn, due after it ends: it would run as soon as the turn is cut.
    h.runtime.submit(HeartbeatDue(key=key, due=time.time() + 3600))
    h.settle()
    h.shutdown(grace_s=0.0)
    assert not [r for r in h.model.requests if is_beat(r)], "a beat called the model during shutdown"


# ------------------------------------------------------------------------------------ 8a: resuming tool rounds


def tool_use(*ids: str) -> Message:
    return Message(role="assistant", content=tuple({"type": "tool_use", "id": i, "name": "bash", "input": {}}
                                                   for i in ids))


def results(*ids: str) -> Message:
    return Message(role="user", content=tuple({"type": "tool_result", "tool_use_id": i, "content": f"did {i}"}
                                              for i in ids))


def contents(message: Message) -> list[tuple[str, str]]:
    return [(b["tool_use_id"], b["content"]) for b in message.content]


def test_resume_keeps_stored_results_and_answers_the_rest_without_running_them() -> None:
    # Crashed during b (a stored, b maybe begun, c never): only b can have had an effect.
    stored = (tool_use("x"), results("x"), tool_use("a", "b", "c"), results("a"))
    resumed = resume_exchange(stored)
    assert resumed[:3] == stored[:3]
    assert contents(resumed[3]) == [("a", "did a"), ("b", RESTARTED_WHILE_RUNNING.content),
                                    ("c", RESTARTED_BEFORE_IT_BEGAN.content)]
    # Crashed before the first result of a round was stored.
    assert contents(resume_exchange((tool_use("a", "b"),))[-1]) == [
        ("a", RESTARTED_WHILE_RUNNING.content), ("b", RESTARTED_BEFORE_IT_BEGAN.content)]
    # Crashed while the model wrote after a complete round: continue from the results; old text goes.
    text = Message(role="assistant", content=({"type": "text", "text": "half an ans"},))
    assert resume_exchange((tool_use("a"), results("a"), text)) == (tool_use("a"), results("a"))
    assert resume_exchange((text,)) == ()


# ------------------------------------------------------------------------------------ 8f: file modes


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.e2e
def test_files_vigil_creates_are_for_the_service_user_only(tmp_path: Path) -> None:
    previous = os.umask(0o002)  # a permissive umask, as a login shell may have: vigil must not depend on it
    try:
        with MessagesAPI() as api:
            env = vigil_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=api.base_url)
            data = Path(env["VIGIL_DATA_DIR"])
            chat = run_vigil(["chat"], env, stdin="a private conversation\n")
            assert chat.returncode == 0, chat.stderr
            export = tmp_path / "exported.json"
            export.write_text("an older file, world-readable")
            export.chmod(0o644)
            done = run_vigil(["sessions", "export", "console:default", "-o", str(export)], env)
            assert done.returncode == 0, done.stderr
            fresh_export = tmp_path / "fresh.json"
            assert run_vigil(["sessions", "export", "console:default", "-o", str(fresh_export)], env).returncode == 0
    finally:
        os.umask(previous)
    assert mode(data) == 0o700
    assert mode(data / "data.mdb") == 0o600 and mode(data / "lock.mdb") == 0o600
    locks = list(data.glob("*.lock"))
    assert locks and all(mode(lock) == 0o600 for lock in locks), [(lock, oct(mode(lock))) for lock in locks]
    assert mode(export) == 0o600 and mode(fresh_export) == 0o600
    assert "a private conversation" in export.read_text()


def test_an_older_store_is_made_private_when_opened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    open_store(data).close()
    data.chmod(0o755)
    (data / "data.mdb").chmod(0o644)
    open_store(data).close()
    assert mode(data) == 0o700 and mode(data / "data.mdb") == 0o600
