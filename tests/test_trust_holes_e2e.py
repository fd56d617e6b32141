"""Issue 10 items 6 and 8, end to end: `vigil run` against the Bot API and Messages API stand-ins.

- a corrupt record beside healthy sessions: it harms its own session only, listings name it, and
  `vigil sessions delete` brings the chat back (damaged with raw py-lmdb puts from this process while
  vigil runs, as another program or a newer vigil would);
- an admin in a group sees that group's sessions only; everyone's appear in the admin's private chat;
- `/heartbeat tz` with names that are not zones gets a message, not a crashed session;
- a turn resumed after kill -9 does not run again the tool calls whose results were stored.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import lmdb
import msgspec
import pytest

from tests.procs import run_vigil
from tests.rig import BOT, Rig

pytestmark = pytest.mark.e2e

BROKEN = "This chat's stored session can't be used"
GARBAGE = b"\xc1\xc1 not a record \xff"


def raw_put(rig: Rig, key: str, value: bytes) -> None:
    """Overwrite a session header with raw bytes, from this process, while vigil runs."""
    env = lmdb.open(rig.env["VIGIL_DATA_DIR"], max_dbs=16, map_size=1 << 30)
    try:
        with env.begin(write=True) as txn:
            txn.put(key.encode(), value, db=env.open_db(b"sessions", txn=txn))
    finally:
        env.close()


def header_from_the_future(rig: Rig, key: str) -> bytes:
    """The session's own header, re-tagged as a type that only a later vigil knows."""
    env = lmdb.open(rig.env["VIGIL_DATA_DIR"], max_dbs=16, map_size=1 << 30, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            raw = txn.get(key.encode(), db=env.open_db(b"sessions", txn=txn, create=False))
    finally:
        env.close()
    assert raw is not None
    record = msgspec.msgpack.decode(raw)
    record["type"] = "session_v7"
    return msgspec.msgpack.encode(record)


def test_a_corrupt_record_beside_healthy_sessions(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    amy, bob, dan = rig.person("Amy"), rig.person("Bob"), rig.person("Dan")
    for person in (amy, bob, dan):
        rig.ask(person.id, person, f"hello, I am {person.first_name}", f"echo: hello, I am {person.first_name}")
    raw_put(rig, f"tg:{amy.id}", GARBAGE)
    raw_put(rig, f"tg:{dan.id}", header_from_the_future(rig, f"tg:{dan.id}"))

    # Found on a read before the turn: Amy is told, plainly; nothing reaches the model.
    said = rig.say(amy.id, amy, "are you there, vigil?")
    told = rig.answer(amy.id, said, BROKEN)
    assert "damaged" in told.text and f"vigil sessions delete tg:{amy.id}" in told.text, told.text
    # Found at commit time (a command writes at once): Dan is told too, and the setting is not claimed.
    said = rig.say(dan.id, dan, "/model claude-haiku-5-5")
    told = rig.answer(dan.id, said, BROKEN)
    assert "written by a newer vigil" in told.text, told.text
    assert not rig.requests_with("are you there, vigil?")
    # The writer lives: Bob talks, and keeps talking.
    rig.ask(bob.id, bob, "still fine here?", "echo: still fine here?")
    rig.ask(bob.id, bob, "and again?", "echo: and again?")
    assert not any("Model for this chat: claude-haiku-5-5" in m.text for m in rig.bot.bot_messages(dan.id))

    named = (f"2 sessions could not be read: tg:{amy.id} (damaged), tg:{dan.id} (written by a newer vigil)")
    listing = rig.sessions_list()
    assert named in listing and f"tg:{bob.id} " in listing, listing
    sessions = rig.ask(rig.admin.id, rig.admin, "/sessions", "🗂")
    assert named in sessions.text and "All sessions (1)" in sessions.text, sessions.text
    usage = rig.ask(rig.admin.id, rig.admin, "/usage", "💰")
    assert named in usage.text and f"tg:{bob.id}" not in named, usage.text
    own = rig.ask(amy.id, amy, "/sessions", "🗂")
    assert f"1 session could not be read: tg:{amy.id} (damaged)" in own.text, own.text
    status = rig.ask(amy.id, amy, "/status", "📊")
    assert "could not be read" in status.text, status.text

    # A restart with the bad records in place: start-up goes on, each chat is where it was.
    rig.stop()
    rig.start()
    said = rig.say(dan.id, dan, "after the restart?")
    assert "written by a newer vigil" in rig.answer(dan.id, said, BROKEN).text
    rig.ask(bob.id, bob, "after the restart, Bob", "echo: after the restart, Bob")

    deleted = run_vigil(["sessions", "delete", f"tg:{amy.id}", "--yes"], rig.env, timeout=30)
    assert deleted.returncode == 0, deleted.stderr
    assert f"tg:{amy.id}" not in rig.sessions_list()
    # Deleted, Amy's chat starts afresh (her old words are gone with the record).
    rig.ask(amy.id, amy, "a fresh start?", "echo: a fresh start?")
    assert "hello, I am Amy" not in rig.requests_with("a fresh start?")[-1].all_text()
    assert f"1 session could not be read: tg:{dan.id}" in rig.sessions_list()
    assert not rig.api.errors


def test_an_admin_in_a_group_sees_that_group_only(fresh: Callable[..., Rig]) -> None:
    rig = fresh()
    gus, hal = rig.person("Gus"), rig.person("Hal")
    ours, theirs = rig.group("Our group"), rig.group("Their group")
    rig.ask(ours.id, gus, f"@{BOT} in our group", "in our group")
    rig.ask(theirs.id, hal, f"@{BOT} secret elsewhere", "secret elsewhere")
    rig.ask(hal.id, hal, "hal in private", "echo: hal in private")
    admin = rig.admin

    listing = rig.ask(ours.id, admin, "/sessions", "🗂")
    assert f"tg:{ours.id}" in listing.text, listing.text
    for other in (theirs.id, hal.id, gus.id):
        assert f"tg:{other}" not in listing.text, listing.text
    assert "This group's sessions (1)" in listing.text

    usage = rig.ask(ours.id, admin, "/usage", "💰")
    assert "this group" in usage.text and f"tg:{ours.id}" in usage.text, usage.text
    assert f"tg:{theirs.id}" not in usage.text and f"tg:{hal.id}" not in usage.text, usage.text
    assert "Per user" not in usage.text, "per-user spending of everyone is not for a group"

    time.sleep(1.2)  # real idle time: every session must be idle for longer than 1 s to be a candidate
    prompt = rig.ask(ours.id, admin, "/sessions cleanup 1s", "🧹", timeout=15)
    assert f"tg:{ours.id}" in prompt.text, prompt.text
    assert f"tg:{theirs.id}" not in prompt.text and f"tg:{hal.id}" not in prompt.text, prompt.text

    # In the admin's private chat: everyone's sessions.
    everything = rig.ask(admin.id, admin, "/sessions", "🗂")
    total = re.search(r"All sessions \((\d+)\)", everything.text)
    assert total and int(total.group(1)) == 3, everything.text
    assert "Per user" in rig.ask(admin.id, admin, "/usage", "💰").text


@pytest.mark.parametrize("zone", ["America", "../../etc/passwd", '""', "Europe/Nowhere"])
def test_a_zone_that_is_not_one_gets_a_message(pooled: Callable[..., Rig], zone: str) -> None:
    rig = pooled()
    logged_before = len(rig.running().err.lines)  # the service is shared: its log before this test is others'
    tia = rig.person("Tia")
    refused = rig.ask(tia.id, tia, f"/heartbeat tz {zone}", "is not a time zone")
    assert "Example: /heartbeat tz Europe/Lisbon" in refused.text
    rig.ask(tia.id, tia, "still here?", "echo: still here?")
    rig.ask(tia.id, tia, "/heartbeat tz Europe/Lisbon", "Heartbeat time zone: Europe/Lisbon")
    logged = "".join(rig.running().err.lines[logged_before:])
    assert "crashed" not in logged and "session.failed" not in logged


def tool(name: str, **arguments: object) -> str:
    return f"[[tool={name} {json.dumps(arguments)}]]"


def test_a_resumed_turn_does_not_run_stored_tool_calls_again(fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_ENABLE_BASH="1")
    ivy = rig.person("Ivy")
    root = Path(rig.env["VIGIL_WORKDIR_ROOT"])

    def made(name: str) -> Path | None:  # in the chat's directory, wherever under the root that is
        return next(root.rglob(name), None)

    rig.say(ivy.id, ivy, tool("bash", command="echo ran >> ledger") + tool("bash", command="touch began; sleep 60"))
    rig.bot.wait_for(lambda: made("began"), 30, "the second tool call to begin")
    rig.running().kill9()
    ledger = made("ledger")
    assert ledger is not None and ledger.read_text() == "ran\n"

    rig.start()
    # The stand-in answers tool results by quoting them: the cut call's says what happened to it.
    rig.bot.wait_for_bot_text(ivy.id, "vigil restarted while this tool call was running", timeout=30)
    assert ledger.read_text() == "ran\n", "a tool call whose result was stored ran again"
    resumed = rig.requests_with("sleep 60")[-1].body["messages"]
    results = [b for m in resumed if isinstance(m["content"], list) for b in m["content"]
               if b.get("type") == "tool_result"]
    assert len(results) == 2 and not results[0].get("is_error") and results[1].get("is_error"), results
    rig.ask(ivy.id, ivy, "and now?", "echo: and now?")
    assert not rig.api.errors
