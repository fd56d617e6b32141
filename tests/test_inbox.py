"""The durable inbox (vigil/intake/inbox.py, the store's `inbox` sub-database): no received message is lost.

Store tests run on real LMDB; the crash between receiving a message and a session taking it up is a
real `kill -9` of a second process. Runtime tests use the real actors on a real store (tests/fakes.py);
the end-to-end kill -9 of `vigil run` with messages in flight is in tests/test_inbox_e2e.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.fakes import CHANNEL, WAIT_S, Block, HarnessFactory, ScriptedModel, key_of, last_user_text, wait_until
from tests.procs import run_vigil, vigil_env
from vigil.actors.core.protocol import SessionCommand, UserText
from vigil.intake.inbox import entry_of, message_of
from vigil.ports import Store
from vigil.ports import WriteFuture as PortFuture
from vigil.records.schema import InboxEntry, Input, SessionHeader, Target, encode
from vigil.store.engine.writer import WriteFuture
from vigil.store.store import LmdbStore, SessionGone, open_store

REPO = Path(__file__).resolve().parents[1]
WAIT = 20.0


def entry(text: str, key: str = "tg:1", **fields: Any) -> InboxEntry:
    channel, chat = key.split(":")[0], int(key.split(":")[1])
    return InboxEntry(key=key, target=Target(channel=channel, chat_id=chat), at=1_700_000_000.0, user_id=chat,
                      user_name="Tess", text=text, **fields)


def header(key: str = "tg:1", incarnation: int = 7, **fields: Any) -> SessionHeader:
    return SessionHeader(key=key, incarnation=incarnation, created_at=1_700_000_000.0,
                         target=Target(channel="tg", chat_id=int(key.split(":")[1])), cwd="/srv", model="m",
                         **fields)


def done(future: PortFuture | None) -> Any:
    assert future is not None
    return future.result(timeout=WAIT)


def hold_writer(store: LmdbStore) -> tuple[WriteFuture, threading.Event]:
    """Occupy the writer until the returned event is set, so the writes queued meanwhile form one batch."""
    started, release = threading.Event(), threading.Event()

    def hold(txn: object) -> None:
        started.set()
        release.wait(WAIT)

    blocker = store.writer.submit(hold)
    assert started.wait(WAIT), "the writer took the holding write"
    return blocker, release


def texts(store: Store, key: str | None = None) -> list[str]:
    return [e.text for _, e in store.inbox() if key is None or e.key == key]


# ----------------------------------------------------------------------------- the store


def test_a_received_message_waits_until_the_commit_that_holds_it(store: LmdbStore) -> None:
    done(store.receive(5, entry("hello")))
    assert store.inbox() == [(5, entry("hello"))]
    assert (store.inbox_count(), store.inbox_count("tg:1"), store.inbox_count("tg:2")) == (1, 1, 0)
    pending = header(pending=(Input(text="hello", at=1_700_000_000.0, user_id=1),))
    done(store.commit(pending, create=True, consumed=(5,)))
    assert store.inbox() == []
    stored = store.header("tg:1")
    assert stored is not None and [i.text for i in stored.pending] == ["hello"]


def test_received_and_taken_up_in_one_batch(store: LmdbStore) -> None:
    blocker, release = hold_writer(store)
    commits = store.writer.commits
    received = store.receive(1, entry("quick"))
    committed = store.commit(header(), create=True, consumed=(1,))
    release.set()
    done(blocker)
    done(committed)
    assert received.done()
    assert store.writer.commits == commits + 2  # the blocker's, then one for both
    assert store.inbox() == []


RECEIVER = r"""
import sys, time
from pathlib import Path
from vigil.ports import Store
from vigil.records.schema import InboxEntry, Target
from vigil.store.store import open_store
store = open_store(Path(sys.argv[1]))
future = None
for arrival, text in enumerate(sys.argv[2:], start=1):
    future = store.receive(arrival, InboxEntry(key="tg:1", target=Target(channel="tg", chat_id=1), text=text))
future.result(timeout=20)
print("received", flush=True)
time.sleep(60)
"""


def test_a_kill_9_after_receiving_keeps_the_messages_for_the_next_start(data_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", RECEIVER, str(data_dir), "one", "two", "three"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "received", process.stderr.read() if process.stderr else ""
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=WAIT)
    store = open_store(data_dir)
    try:
        assert [(arrival, e.text) for arrival, e in store.inbox()] == [(1, "one"), (2, "two"), (3, "three")]
        # The session takes up "one" and "two" (then the process dies again), "three" later.
        done(store.commit(header(pending=(Input(text="one", at=1.0), Input(text="two", at=2.0))), create=True,
                          consumed=(1, 2)))
    finally:
        store.close()
    store = open_store(data_dir)
    try:
        assert texts(store) == ["three"]
        stored = store.header("tg:1")
        assert stored is not None and [i.text for i in stored.pending] == ["one", "two"]
    finally:
        store.close()


def test_a_refused_commit_leaves_the_inbox_as_it_was(store: LmdbStore) -> None:
    done(store.commit(header(incarnation=1), create=True))
    done(store.delete_session("tg:1"))  # by cleanup, say, while the session held a message in memory
    done(store.receive(9, entry("still here")))
    with pytest.raises(SessionGone):
        done(store.commit(header(incarnation=1), consumed=(9,)))
    assert texts(store) == ["still here"]
    # The session starts afresh with the message: now it leaves the inbox.
    done(store.commit(header(incarnation=2), create=True, consumed=(9,)))
    assert texts(store) == []


def test_a_refused_commit_in_a_batch_takes_nothing_out_of_the_inbox(store: LmdbStore) -> None:
    done(store.receive(3, entry("other chat", key="tg:2")))
    blocker, release = hold_writer(store)
    received = store.receive(4, entry("gone chat"))
    refused = store.commit(header(), consumed=(4,))  # tg:1 was never created: refused
    accepted = store.commit(header("tg:2"), create=True, consumed=(3,))
    release.set()
    done(blocker)
    done(received)
    done(accepted)
    with pytest.raises(SessionGone):
        done(refused)
    assert texts(store) == ["gone chat"]


def test_deleting_a_session_deletes_its_inbox_and_no_other(store: LmdbStore) -> None:
    for arrival, key in enumerate(("tg:1", "tg:10", "tg:1:5", "tg:1", "tg:2"), start=1):
        done(store.receive(arrival, entry(f"{key} #{arrival}", key=key)))
    done(store.commit(header(), create=True))
    done(store.delete_session("tg:1"))
    assert texts(store) == ["tg:10 #2", "tg:1:5 #3", "tg:2 #5"]


def test_a_session_deleting_itself_keeps_the_messages_queued_behind(store: LmdbStore) -> None:
    for arrival in (10, 20, 30):
        done(store.receive(arrival, entry(f"#{arrival}")))
    done(store.commit(header(), create=True))
    done(store.delete_session("tg:1", inbox_upto=20))  # /forget was message 20; 30 came after it
    assert texts(store) == ["#30"]


def test_an_unreadable_inbox_record_is_skipped_and_kept(store: LmdbStore) -> None:
    newer = encode(msgspec.structs.replace(entry("from the future"), schema=2))
    done(store.writer.submit(lambda txn: txn.put(b"tg:1\x00" + (1).to_bytes(8, "big"), newer,
                                                  db=store._lmdb.db(b"inbox"))))
    done(store.receive(2, entry("fine", key="tg:2")))
    assert texts(store) == ["fine"]
    assert store.inbox_count() == 2


def test_messages_convert_to_records_and_back() -> None:
    target = Target(channel="tg", chat_id=5, thread_id=3)
    text = UserText(key="tg:5:3", target=target, sender=_sender(), text="hi", at=2.5, message_id=8,
                    chat_title="T", chat_type="supergroup")
    command = SessionCommand(key="tg:5:3", target=target, sender=_sender(), name="model", args="claude-x",
                             chat_title="T", chat_type="supergroup")
    assert message_of(11, entry_of(text)) == msgspec.structs.replace(text, inbox_id=11)
    assert message_of(12, entry_of(command)) == msgspec.structs.replace(command, inbox_id=12)


def _sender() -> Any:
    from vigil.actors.core.protocol import Sender

    return Sender(user_id=5, name="Tess Ng", username="tess")


# ----------------------------------------------------------------------------- the runtime


def test_messages_behind_a_turn_wait_in_the_inbox_until_the_follow_up_holds_them(make: HarnessFactory) -> None:
    gate = threading.Event()
    model = ScriptedModel([Block(gate, text="first answer")])
    h = make(model=model)
    key = key_of(1)
    h.say(key, "first")
    assert model.wait_for(lambda m: m.in_flight == 1)
    futures = [h.runtime.submit(UserText(key=key, target=Target(channel=CHANNEL, chat_id=1), sender=_sender(),
                                         text=text, at=1.0)) for text in ("alpha", "bravo", "charlie")]
    for future in futures:
        done(future)  # durable now, while the session is still busy with "first"
    store = h.runtime.store
    assert [t for t in texts(store, key) if t != "first"] == ["alpha", "bravo", "charlie"]
    gate.set()
    assert h.drain(key)
    assert texts(store) == []
    assert [last_user_text(r) for r in model.requests][-1].count("alpha") == 1


def test_what_a_crash_left_in_the_inbox_is_answered_once_in_order(make: HarnessFactory) -> None:
    h = make(start=False)
    a, b = key_of(1), key_of(2)
    left = [(a, "one", ""), (b, "for b", ""), (a, "", "model claude-other-1"), (a, "two", "")]
    store = open_store(h.settings.data_dir)
    for arrival, (key, text, command) in enumerate(left, start=100):
        name, _, args = command.partition(" ")
        done(store.receive(arrival, entry(text or args, key=key, kind="command" if command else "text",
                                          command=name)))
    store.close()
    model = ScriptedModel()
    h.start(model)
    assert h.drain(a) and h.drain(b)
    asked = [(r.model, last_user_text(r)) for r in model.requests]
    assert sorted(asked) == sorted([(h.settings.model, "one"), (h.settings.model, "for b"),
                                    ("claude-other-1", "two")])
    assert [t for _, t in asked if t != "for b"] == ["one", "two"]
    assert h.runtime.store.inbox() == []
    h.restart(ScriptedModel())
    assert h.drain(a)
    assert h.model.calls == 0, "a message was answered again after the restart"


def test_a_command_that_only_replies_leaves_the_inbox(make: HarnessFactory) -> None:
    h = make()
    key = key_of(3)
    h.command(key, "notes")
    assert wait_until(lambda: any("No notes yet" in text for text in h.outbox.sent(key)), WAIT_S)
    assert h.drain(key)
    assert wait_until(lambda: h.runtime.store.inbox_count() == 0, WAIT_S)


# ----------------------------------------------------------------------------- vigil sessions ...


@pytest.mark.e2e
def test_sessions_show_list_and_delete_know_the_inbox(tmp_path: Path) -> None:
    env = vigil_env(tmp_path)
    store = open_store(Path(env["VIGIL_DATA_DIR"]))
    try:
        done(store.commit(header("tg:1"), create=True))
        for arrival, key in enumerate(("tg:1", "tg:1", "tg:2"), start=1):
            done(store.receive(arrival, entry(f"waiting {arrival}", key=key)))
    finally:
        store.close()
    shown = run_vigil(["sessions", "show", "tg:1"], env)
    assert shown.returncode == 0, shown.stderr
    assert "inbox       2 received message(s)" in shown.stdout
    listed = run_vigil(["sessions", "list"], env)
    assert listed.returncode == 0, listed.stderr
    assert "tg:1" in listed.stdout and "tg:2" not in listed.stdout and "1 session(s)" in listed.stdout
    only_inbox = run_vigil(["sessions", "show", "tg:2"], env)
    assert only_inbox.returncode == 1 and "1 received message(s) wait for it" in only_inbox.stderr
    for key in ("tg:2", "tg:1"):
        deleted = run_vigil(["sessions", "delete", key, "--yes"], env)
        assert deleted.returncode == 0, deleted.stderr
    store = open_store(Path(env["VIGIL_DATA_DIR"]))
    try:
        assert store.inbox() == [] and store.header("tg:1") is None
    finally:
        store.close()
