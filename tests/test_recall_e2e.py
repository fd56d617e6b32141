"""Recall end to end: `vigil run` on the stand-ins; Claude's `recall` tool, `/search`, and what deletes and restores do.

What the model was given is read from the Messages stand-in's recorded requests (the tool_result of a
`recall` call), what people saw from the Bot API stand-in; whether words are still in the index is asked
of the index file itself (a contentless FTS5 table still answers MATCH for terms it holds).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.procs import run_vigil, vigil_env
from tests.rig import BOT, Rig
from tests.standins.bot_api import SentMessage, User
from vigil.lock import ProcessLock
from vigil.recall.index import REBUILD_LOCK

pytestmark = pytest.mark.e2e

FACT = "the greenhouse lease with Mr Okonkwo runs until March and costs 212 pounds a month"


def buttons(message: SentMessage) -> list[dict[str, Any]]:
    return [b for row in (message.reply_markup or {}).get("inline_keyboard", []) for b in row]


def recall_results(rig: Rig, words: str) -> list[str]:
    """The contents of the tool_results vigil sent back after `recall` calls, in requests of turns saying `words`."""
    found: list[str] = []
    for request in rig.requests_with(words):
        found += [json.dumps(block.get("content"), ensure_ascii=False)
                  for message in request.body["messages"] if message["role"] == "user"
                  for block in message["content"] if isinstance(block, dict) and block.get("type") == "tool_result"]
    return found


def wait_result(rig: Rig, words: str, needle: str) -> str:
    return rig.bot.wait_for(lambda: next((r for r in recall_results(rig, words) if needle in r), None), 15,
                            f"a recall result with {needle!r}")


def indexed(data_dir: Path, word: str) -> int:
    """Passages the recall index holds with `word` (any chat): read from the file, as another reader would;
    -1 while there is no index file (or no table in it yet)."""
    path = data_dir / "recall.sqlite3"
    if not path.exists():
        return -1
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM fts WHERE fts MATCH ?", (f'"{word}"',)).fetchone()[0])
    except sqlite3.OperationalError:
        return -1
    finally:
        db.close()


def wait_indexed(rig: Rig, word: str, count: int = 1) -> None:
    """A turn is searchable within about a second of its commit (the indexer's own thread): wait for it."""
    rig.bot.wait_for(lambda: indexed(data_dir(rig), word) == count or None, 10, f"{word!r} indexed")


def search(rig: Rig, chat_id: int, user: User, words: str, needle: str) -> SentMessage:
    return rig.ask(chat_id, user, f"/search {words}", needle)


def data_dir(rig: Rig) -> Path:
    return Path(rig.env["VIGIL_DATA_DIR"])


def test_claude_recalls_the_first_conversation_after_new_and_a_compaction_and_search_resumes_it(rig: Rig) -> None:
    """The issue's done-when: the fact of conversation #1 (compacted away, three conversations ago) comes back
    through `recall` into the next request, and `/search` shows it with a button that resumes #1."""
    rosa, sam = rig.person("Rosa"), rig.person("Sam")
    # Another chat says the same phrase first: it must never come back to Rosa.
    rig.ask(sam.id, sam, f"note: {FACT}, samsecret", "echo: note")

    # Conversation #1 (its first turns compacted away), #2 and #3 about other things, then a fresh #4.
    script = [(f"note: {FACT}", "echo: note"), *((f"small talk {n}", f"echo: small talk {n}") for n in range(3)),
              ("/compact", "🗜 Compacted"),
              ("/new Bread", "Fresh conversation started (#2"),
              ("the sourdough starter wants feeding twice a day", "echo: the sourdough"),
              ("/new Bikes", "Fresh conversation started (#3"),
              ("my bicycle chain needs oil after the rain", "echo: my bicycle"),
              ("/new", "Fresh conversation started (#4)")]
    for text, needle in script:
        rig.ask(rosa.id, rosa, text, needle)

    wait_indexed(rig, "okonkwo", 4)  # Sam's words and Rosa's, each with its echo
    question = 'what did we say about the greenhouse? [[tool=recall {"query": "greenhouse lease"}]]'
    rig.ask(rosa.id, rosa, question, "tool results:")
    result = wait_result(rig, "what did we say about the greenhouse?", "Okonkwo")
    assert "conversation #1" in result and "212 pounds" in result and "Rosa" in result, result
    assert "samsecret" not in result  # Sam's words, the same phrase: never in Rosa's recall
    request = rig.requests_with("what did we say about the greenhouse?")[-1]
    assert "recall" in [t["name"] for t in request.body["tools"]]
    assert "with the recall tool" in json.dumps(request.body["system"])

    found = search(rig, rosa.id, rosa, "greenhouse lease", "🔎")
    assert "#1" in found.text and "Okonkwo" in found.text and "samsecret" not in found.text, found.text
    # Conversation #4 may rank first once its own reply (which quotes the recall) is indexed: the hit of #1
    # is among the five, with its button.
    first = next((b for b in buttons(found) if str(b["callback_data"]).startswith("resume:1:")), None)
    assert first is not None, buttons(found)
    query = rig.bot.press_button(rosa.id, rosa.id, found.message_id, str(first["callback_data"]))
    back = rig.bot.wait_for_bot_text(rosa.id, "Back to conversation #1")
    assert "#4" in back.text, back.text  # the one left is kept
    assert rig.bot.callback_query(query.id).answered
    assert not rig.bot.failed_calls("answerCallbackQuery")  # answered once
    mine = search(rig, sam.id, sam, "greenhouse", "🔎")
    assert "samsecret" in mine.text and "212 pounds" in mine.text

    # In a group, the group's own history only: Rosa's private words are not there.
    group = rig.group("Allotment")
    rig.ask(group.id, sam, f"@{BOT} the greenhouse in the group is groupsecret", "echo:")
    wait_indexed(rig, "groupsecret", 2)  # Sam's words and the echo of them
    shared = search(rig, group.id, rosa, "greenhouse", "🔎")
    assert "groupsecret" in shared.text and "Okonkwo" not in shared.text and "samsecret" not in shared.text
    rig.ask(group.id, rosa, "/search bicycle chain", "Nothing in this chat's conversations matches")


def test_search_says_how_to_use_it_and_finds_nothing_plainly(rig: Rig) -> None:
    ida = rig.person("Ida")
    assert "/search WORDS" in rig.ask(ida.id, ida, "/search", "🔎").text
    rig.ask(ida.id, ida, "/search 🙂 ***", "🔎")  # no words at all: said plainly, nothing breaks
    rig.ask(ida.id, ida, '/search "unclosed AND NEAR(', "Nothing in this chat's conversations matches")


def test_forget_and_vigil_sessions_delete_take_the_words_out_of_the_index(rig: Rig) -> None:
    gus, hal = rig.person("Gus"), rig.person("Hal")
    rig.ask(gus.id, gus, "my locker code is quokkaphrase 4411", "echo: my locker")
    rig.ask(hal.id, hal, "the boat is moored at wallabyphrase pier", "echo: the boat")
    wait_indexed(rig, "quokkaphrase", 2)
    wait_indexed(rig, "wallabyphrase", 2)
    assert "quokkaphrase" in search(rig, gus.id, gus, "quokkaphrase", "🔎").text
    assert "wallabyphrase" in search(rig, hal.id, hal, "wallabyphrase", "🔎").text

    ask = rig.ask(gus.id, gus, "/forget", "cannot be undone")
    rig.bot.press_button(gus.id, gus.id, ask.message_id, f"forget:{gus.id}:tg:{gus.id}")
    rig.bot.wait_for_bot_text(gus.id, "🗑 Forgotten")
    assert indexed(data_dir(rig), "quokkaphrase") == 0
    rig.ask(gus.id, gus, "/search quokkaphrase", "Nothing in this chat's conversations matches")

    deleted = run_vigil(["sessions", "delete", f"tg:{hal.id}", "--yes"], rig.env, timeout=30)
    assert deleted.returncode == 0, deleted.stderr
    assert indexed(data_dir(rig), "wallabyphrase") == 0
    rig.ask(hal.id, hal, "/search wallabyphrase", "Nothing in this chat's conversations matches")


def test_reindex_rebuilds_beside_the_running_service_and_a_restored_store_gets_its_index_back(
        fresh: Any, tmp_path: Path) -> None:
    rig: Rig = fresh()
    una = rig.person("Una")
    rig.ask(una.id, una, "the spare key hides under the heronstone", "echo: the spare key")
    wait_indexed(rig, "heronstone", 2)
    rebuilt = run_vigil(["sessions", "reindex"], rig.env, timeout=60)
    assert rebuilt.returncode == 0 and "rebuilt the recall index from" in rebuilt.stdout, rebuilt.stderr
    assert indexed(data_dir(rig), "heronstone") == 2
    assert "heronstone" in search(rig, una.id, una, "heronstone", "🔎").text

    backup = tmp_path / "backup"
    made = run_vigil(["backup", str(backup)], rig.env, timeout=60)
    assert made.returncode == 0, made.stderr
    rig.ask(una.id, una, "later words about the kingfisherbay", "echo: later words")  # not in the backup
    wait_indexed(rig, "kingfisherbay", 2)
    rig.stop()
    restored = run_vigil(["restore", str(backup)], rig.env, timeout=60)
    assert restored.returncode == 0, restored.stderr
    rig.start()
    # The index was made from another store: rebuilt from the restored one, words absent from it gone.
    rig.bot.wait_for(lambda: indexed(data_dir(rig), "kingfisherbay") == 0 or None, 15, "the index rebuilt")
    assert "heronstone" in search(rig, una.id, una, "heronstone", "🔎").text
    rig.ask(una.id, una, "/search kingfisherbay", "Nothing in this chat's conversations matches")

    rig.stop()
    for path in data_dir(rig).glob("recall.sqlite3*"):  # missing at start: made again from the store
        path.unlink()
    rig.start()
    rig.bot.wait_for(lambda: indexed(data_dir(rig), "heronstone") == 2 or None, 15, "the index made again")
    assert "heronstone" in search(rig, una.id, una, "heronstone", "🔎").text


def test_a_second_reindex_is_refused_in_one_sentence(tmp_path: Path) -> None:
    env = vigil_env(tmp_path)
    Path(env["VIGIL_DATA_DIR"]).mkdir(parents=True)
    held = ProcessLock(Path(env["VIGIL_DATA_DIR"]) / REBUILD_LOCK, "a rebuild of the recall index").acquire()
    try:
        refused = run_vigil(["sessions", "reindex"], env, timeout=60)
    finally:
        held.release()
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"vigil: the recall index is being rebuilt already (pid {os.getpid()}); "
                                      "try again once that is done.")
    done = run_vigil(["sessions", "reindex"], env, timeout=60)
    assert done.returncode == 0 and "rebuilt the recall index from 0 turn(s)" in done.stdout, done.stderr
