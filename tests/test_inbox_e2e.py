"""No received message lost: `vigil run` killed with SIGKILL while messages wait, then started again.

The rig is tests/test_telegram_e2e.py's (real PTB and anthropic SDK against the loopback stand-ins);
the console test runs `vigil chat` the same way.
The test process opens the same LMDB store read-side to see when vigil holds a message durably:
that, not a sleep, is the moment to kill.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.procs import VigilProcess, run_vigil, vigil_env
from tests.rig import Rig
from tests.standins.messages_api import MessagesAPI, TextReply
from vigil.store.store import LmdbStore, open_store

pytestmark = pytest.mark.e2e


@pytest.fixture
def rig(fresh: Callable[..., Rig]) -> Rig:
    """A vigil of the test's own: each test kills it."""
    return fresh()


@pytest.fixture
def store(rig: Rig) -> Iterator[LmdbStore]:
    """The store vigil runs on, opened by the test process too (LMDB is made for several processes)."""
    opened = open_store(Path(rig.env["VIGIL_DATA_DIR"]))
    try:
        yield opened
    finally:
        opened.close()


def inbox_texts(store: LmdbStore, key: str) -> list[str]:
    return [entry.text for _, entry in store.inbox() if entry.key == key]


def test_messages_sent_during_a_long_turn_are_answered_after_kill_9(rig: Rig, store: LmdbStore) -> None:
    kim = rig.person("Kim")
    key = f"tg:{kim.id}"
    rig.api.add_rule(lambda body: "the long question" in json.dumps(body["messages"][-1]),
                     TextReply("a slow answer", delay=8), times=1)
    rig.say(kim.id, kim, "the long question")
    rig.wait_request("the long question")
    words = ["apple", "banana", "cherry"]
    later = [rig.say(kim.id, kim, f"meanwhile {word}") for word in words]
    # vigil has them (on disk) while the first turn still runs: now it dies.
    rig.bot.wait_for(lambda: inbox_texts(store, key) == [f"meanwhile {w}" for w in words], 10,
                     "the three messages in vigil's inbox")
    assert not rig.replies(kim.id, later[0]), "the long turn was still running"
    rig.running().kill9()

    rig.start()
    for word in words:
        rig.answer(kim.id, later[0], f"meanwhile {word}", timeout=20)
    rig.answer(kim.id, later[0], "echo: the long question", timeout=20)
    rig.bot.wait_for(lambda: not inbox_texts(store, key), 10, "the inbox emptied")
    for word in words:
        asked = [r for r in rig.api.requests if f"meanwhile {word}" in r.last_user_text()]
        shown = [m for m in rig.bot.bot_messages(kim.id) if f"meanwhile {word}" in m.text]
        assert (len(asked), len(shown)) == (1, 1), f"{word!r} was answered {len(asked)} times, shown {len(shown)}"
    assert not rig.api.errors


def test_a_new_queued_behind_a_long_turn_survives_kill_9_in_its_place(rig: Rig, store: LmdbStore) -> None:
    max_ = rig.person("Max")
    key = f"tg:{max_.id}"
    rig.api.add_rule(lambda body: "a slow topic" in json.dumps(body["messages"][-1]),
                     TextReply("a slow answer", delay=8), times=1)
    rig.say(max_.id, max_, "a slow topic")
    rig.wait_request("a slow topic")
    before = rig.say(max_.id, max_, "one more on the old topic")
    rig.say(max_.id, max_, "/new")
    after = rig.say(max_.id, max_, "a fresh topic")
    rig.bot.wait_for(lambda: [(e.kind, e.command, e.text) for _, e in store.inbox() if e.key == key] == [
        ("text", "", "one more on the old topic"), ("command", "new", ""), ("text", "", "a fresh topic")], 10,
        "the messages and the command in vigil's inbox")
    rig.running().kill9()

    rig.start()
    old = rig.answer(max_.id, before, "echo: one more on the old topic", timeout=20)
    fresh = rig.answer(max_.id, before, "Fresh conversation started", timeout=20)
    new = rig.answer(max_.id, after, "echo: a fresh topic", timeout=20)
    assert old.message_id < fresh.message_id < new.message_id
    asked = [r for r in rig.api.requests if "a fresh topic" in r.last_user_text()]
    assert len(asked) == 1
    assert "old topic" not in asked[0].all_text(), "the fresh topic was asked in the old conversation"
    assert len([r for r in rig.api.requests if "one more on the old topic" in r.last_user_text()]) == 1
    assert not rig.api.errors


def test_a_question_killed_in_its_first_quarter_second_is_answered_after_the_restart(
        rig: Rig, store: LmdbStore) -> None:
    lou = rig.person("Lou")
    key = f"tg:{lou.id}"
    rig.api.add_rule(lambda body: "before the quick death" in json.dumps(body["messages"][-1]),
                     TextReply("never shown", delay=30), times=1)
    sent = rig.say(lou.id, lou, "ask me before the quick death")
    # Kill the moment vigil holds it durably: well inside the quarter second before an open turn is written.
    deadline = time.monotonic() + 10
    while not inbox_texts(store, key):
        assert time.monotonic() < deadline, "vigil never took the message into its inbox"
        time.sleep(0.002)
    rig.running().kill9()
    stored = store.header(key)
    assert stored is None or stored.open_turn is None, "too late: the turn was already written as open"
    assert inbox_texts(store, key) == ["ask me before the quick death"]
    assert not rig.replies(lou.id, sent)

    rig.api.clear_rules()
    rig.start()
    rig.answer(lou.id, sent, "echo: ask me before the quick death", timeout=20)
    assert len([r for r in rig.api.requests if "quick death" in r.last_user_text()]) <= 2  # the killed call, once more
    assert len(rig.replies(lou.id, sent)) == 1
    rig.bot.wait_for(lambda: not inbox_texts(store, key), 10, "the inbox emptied")
    assert not rig.api.errors


def test_lines_typed_during_a_long_console_turn_survive_kill_9_and_stay_with_their_session(tmp_path: Path) -> None:
    with MessagesAPI() as api:
        env = vigil_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=api.base_url)
        api.add_rule(lambda body: "a long think" in json.dumps(body["messages"][-1]), TextReply("slow", delay=8),
                     times=1)
        with VigilProcess(["chat"], env) as chat:
            chat.send("a long think")
            api.wait_for_requests(1)
            chat.send("typed meanwhile")
            chat.send("and this too")
            store = open_store(Path(env["VIGIL_DATA_DIR"]))
            try:
                deadline = time.monotonic() + 10
                while inbox_texts(store, "console:default") != ["typed meanwhile", "and this too"]:
                    assert time.monotonic() < deadline, "the lines never reached vigil's inbox"
                    time.sleep(0.01)
            finally:
                store.close()
            chat.kill9()
        # Another console session started meanwhile leaves them alone ...
        other = run_vigil(["chat", "--session", "other"], env, stdin="hello from other\n")
        assert other.returncode == 0, other.stderr
        assert "meanwhile" not in other.stdout
        assert not [r for r in api.requests if "meanwhile" in r.last_user_text()]
        # ... the session they were typed into answers them (and the question cut short).
        again = run_vigil(["chat"], env, stdin="")
        assert again.returncode == 0, again.stderr
        assert "echo: a long think" in again.stdout
        assert "echo: typed meanwhile\n\nand this too" in again.stdout
        assert len([r for r in api.requests if "typed meanwhile" in r.last_user_text()]) == 1
        assert not api.errors
