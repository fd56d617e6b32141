"""Retention through `vigil run` (issue 15.3): exactly what is older goes, at start-up and in the background.

Sessions are made for real (messages, photos, /new, /pin through the Bot API stand-in), then, with
vigil stopped, moved back in time in the store (tests/ops_aging.py): some just older than the
retention, some just newer. vigil is started again with `VIGIL_RETENTION` and the store is read from
another process (`vigil sessions list|stats`), as an operator would. The background test uses a short
retention: a pass runs every tenth of it (at least every second), as it runs daily for `180d`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.ops_aging import DAY, age_media, age_session, stats, stored_keys
from tests.rig import Rig
from tests.standins.bot_api import User
from tests.standins.images import make_jpeg
from vigil.media.files import digest_of
from vigil.policy.expiry import activity
from vigil.store.store import open_store

pytestmark = pytest.mark.e2e

RETENTION = 30 * DAY
HOUR = 3600.0
SLOW = 40.0  # a reply's timeout: the test machine is shared and sometimes very slow


def photo(rig: Rig, user: User, data: bytes, caption: str) -> None:
    sent = rig.bot.send_photo(user.id, user.id, data, caption=caption)
    rig.answer(user.id, sent, "echo:", timeout=SLOW)


def media_file(rig: Rig, data: bytes) -> Path:
    digest = digest_of(data)
    return rig.tmp / "data" / "media" / digest[:2] / digest


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_retention_at_start_up_deletes_exactly_what_is_older_and_keeps_pinned_sessions(
        fresh: Callable[..., Rig], capsys: pytest.CaptureFixture[str]) -> None:
    rig = fresh()
    alice, bob, dora, erin = (rig.person(n) for n in ("Alice", "Bob", "Dora", "Erin"))
    frank, gail, hugo = (rig.person(n) for n in ("Frank", "Gail", "Hugo"))
    only_alice, shared, only_frank_before = (make_jpeg(64, 48, level=n) for n in (10, 20, 30))
    rig.ask(alice.id, alice, "alice talks", "echo: alice talks", timeout=SLOW)
    photo(rig, alice, only_alice, "alice's own picture")
    rig.ask(bob.id, bob, "bob talks", "echo: bob talks", timeout=SLOW)
    photo(rig, bob, shared, "bob's copy of the shared picture")
    photo(rig, dora, shared, "dora's copy of the shared picture")
    for user in (frank, gail, hugo, erin):
        name = user.first_name.lower()
        rig.ask(user.id, user, f"{name} first conversation", f"echo: {name} first conversation", timeout=SLOW)
        if user is frank:
            photo(rig, frank, only_frank_before, "frank's picture from before /new")
        rig.ask(user.id, user, "/new", "Fresh conversation", timeout=SLOW)
        rig.ask(user.id, user, f"{name} second conversation", f"echo: {name} second conversation", timeout=SLOW)
    rig.ask(erin.id, erin, "/pin", "Pinned", timeout=SLOW)
    rig.stop()

    now = time.time()
    old, young = now - RETENTION - HOUR, now - RETENTION + HOUR
    store = open_store(rig.tmp / "data")
    try:
        age_session(store, f"tg:{alice.id}", old, filler_turns=300)
        age_session(store, f"tg:{dora.id}", old)
        age_session(store, f"tg:{bob.id}", young)
        age_session(store, f"tg:{erin.id}", now - 400 * DAY, past={1: now - 500 * DAY})  # pinned: kept whole
        age_session(store, f"tg:{frank.id}", now, past={1: old})
        age_session(store, f"tg:{gail.id}", now, past={1: young})
        # Hugo's first conversation is recent, but vigil died while deleting it: retention finishes the deletion.
        age_session(store, f"tg:{hugo.id}", now, past={1: young}, interrupted=frozenset({1}))
        turns_of = {key: sum(len(store.turns(key, g)) for g in store.generations(key))
                    for key in (f"tg:{alice.id}", f"tg:{dora.id}")}
        first_of = {key: len(store.turns(key, 1)) for key in (f"tg:{frank.id}", f"tg:{hugo.id}")}
    finally:
        store.close()
    age_media(rig.tmp / "data" / "media")
    everyone = stored_keys(rig.env)
    before = stats(rig.env)

    rig.env["VIGIL_RETENTION"] = "30d"
    vigil = rig.start()
    vigil.err.wait_for(lambda t: '"retention.pass"' in t, timeout=30, what="the start-up retention pass")
    assert '"sessions": 2' in vigil.err.text or '"sessions":2' in vigil.err.text, vigil.err.text[-2000:]

    gone = {f"tg:{alice.id}", f"tg:{dora.id}"}
    assert stored_keys(rig.env) == everyone - gone
    wait_until(lambda: not media_file(rig, only_alice).exists() and not media_file(rig, only_frank_before).exists(),
               20, "the files only deleted records named to be swept")
    assert media_file(rig, shared).exists(), "Bob's record still names the shared picture"

    after = stats(rig.env)
    deleted_turns = sum(turns_of.values()) + sum(first_of.values())
    assert after["turns"] == before["turns"] - deleted_turns
    assert after["sessions"] == before["sessions"] - 2
    assert after["usage_rows"] == before["usage_rows"], "usage (the money history) is kept"
    assert after["live_pages"] < before["live_pages"] and after["free_pages"] > before["free_pages"]
    with capsys.disabled():
        print(f"\nstore before retention: {before['file_bytes']} bytes, {before['live_pages']} live / "
              f"{before['free_pages']} free pages, {before['turns']} turns, {before['bytes_per_turn']} B/turn, "
              f"{before['media_files']} media files\nstore after retention:  {after['file_bytes']} bytes, "
              f"{after['live_pages']} live / {after['free_pages']} free pages, {after['turns']} turns, "
              f"{after['bytes_per_turn']} B/turn, {after['media_files']} media files")

    # What stays still serves: each request carries what was kept, and not what went.
    for user, kept, went in ((bob, ["bob talks"], []),
                             (frank, ["frank second conversation"], ["frank first conversation"]),
                             (gail, ["gail second conversation"], []),
                             (hugo, ["hugo second conversation"], ["hugo first conversation"]),
                             (erin, ["erin second conversation"], [])):
        name = user.first_name.lower()
        rig.ask(user.id, user, f"{name} is back", f"echo: {name} is back", timeout=SLOW)
        sent = str(rig.wait_request(f"{name} is back", SLOW).body["messages"])
        assert all(text in sent for text in kept), (name, sent)
        assert not any(text in sent for text in went), (name, sent)
    store = open_store(rig.tmp / "data")  # read beside the running service, as `vigil sessions` does
    try:
        assert {u.id: store.generations(f"tg:{u.id}") for u in (erin, frank, gail, hugo)} == {
            erin.id: [1, 2], frank.id: [2], gail.id: [1, 2], hugo.id: [2]}
    finally:
        store.close()


class Watch:
    """Reads sessions from beside the service (as `vigil sessions` does), every 0.1 s, on a thread of its own:
    each is seen until it goes, and one seen gone must have been idle longer than the retention then."""

    def __init__(self, rig: Rig, keys: list[str], retention: float) -> None:
        self.store = open_store(rig.tmp / "data")
        self.keys, self.retention = keys, retention
        self.seen: dict[str, float] = {}
        self.gone: set[str] = set()
        self.early: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            for key in self.keys:
                header = self.store.header(key)
                now = time.time()
                if header is not None:
                    self.seen[key] = activity(header)
                elif key in self.seen and key not in self.gone:
                    self.gone.add(key)
                    if now - self.seen[key] <= self.retention:
                        self.early.append(f"{key} went {now - self.seen[key]:.1f}s after its last activity")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.store.close()


def test_retention_in_the_background_deletes_sessions_as_they_age_and_never_a_pinned_one(
        fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_RETENTION="6s")  # a pass every second (a tenth of it, at least 1 s)
    alice, bob, carol = rig.person("Alice"), rig.person("Bob"), rig.person("Carol")
    mortal = [f"tg:{alice.id}", f"tg:{bob.id}"]
    watch = Watch(rig, [*mortal, f"tg:{carol.id}"], retention=6.0)
    try:
        rig.ask(alice.id, alice, "alice says hi", "echo: alice says hi", timeout=SLOW)
        rig.ask(carol.id, carol, "carol says hi", "echo: carol says hi", timeout=SLOW)
        rig.ask(carol.id, carol, "/pin", "Pinned", timeout=SLOW)
        rig.ask(bob.id, bob, "bob says hi", "echo: bob says hi", timeout=SLOW)
        wait_until(lambda: watch.gone == set(mortal), 40, "Alice's and Bob's sessions to age out")
        assert watch.early == [], "never deleted before it is older than the retention"
        assert watch.store.has_session(f"tg:{carol.id}"), "a pinned session is kept whatever its age"
    finally:
        watch.close()
    assert rig.running().err.text.count('"retention.pass"') >= 3, "passes ran in the background"
    # A deleted chat talks again: a fresh session, answered as usual.
    rig.ask(alice.id, alice, "alice again", "echo: alice again", timeout=SLOW)
    assert "alice says hi" not in str(rig.wait_request("alice again", SLOW).body["messages"])
