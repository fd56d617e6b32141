"""The recall index on real files: a real LMDB store, the SQLite index beside it, the indexer's thread.

Scope (a phrase two chats share), ranking, deletion (and that the words really leave the file),
a rebuild equal to the index built turn by turn, conversations and titles, open turns indexed once
they end, and the query language that can't be abused. Catching up, damage and concurrency are in
test_recall_upkeep.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.recall_chats import Chat
from vigil.recall import RecallIndex, RecallIndexer, StoreView, format_hits
from vigil.recall.db import paths
from vigil.recall.passages import MAX_PASSAGE_CHARS, passages, texts
from vigil.recall.query import parse_query, snippet
from vigil.records.schema import Input, Turn
from vigil.store.store import LmdbStore


@pytest.fixture
def indexer(store: LmdbStore, data_dir: Path) -> Iterator[RecallIndexer]:
    running = RecallIndexer(data_dir, StoreView(store))
    running.start()
    yield running
    running.close()


def idle(indexer: RecallIndexer) -> None:
    assert indexer.wait_idle(20), "the indexer did not take in what it was fed"


def terms_in_file(data_dir: Path, word: str) -> int:
    """Passages of any chat whose terms hold `word`, read from the file itself, scope aside."""
    db = sqlite3.connect(paths(data_dir)[0])
    try:
        return int(db.execute("SELECT count(*) FROM fts WHERE fts MATCH ?", (f'"{word}"',)).fetchone()[0])
    finally:
        db.close()


def test_a_chat_never_finds_another_chats_words(store: LmdbStore, indexer: RecallIndexer) -> None:
    ours, theirs = Chat(store, "tg:100"), Chat(store, "tg:200")
    ours.say("remember the blue heron lease", "Noted: the blue heron lease ends in March.", indexer=indexer)
    theirs.say("the blue heron lease is ours too", "Their blue heron lease, their secret.", indexer=indexer)
    theirs.say("blue heron blue heron blue heron lease", "blue heron lease", indexer=indexer)
    idle(indexer)
    for chat, own in ((ours, "ends in March"), (theirs, "their secret")):
        result = indexer.search(chat.key, "blue heron lease", limit=20)
        assert result.hits and all(hit.key == chat.key for hit in result.hits)
        texts = " ".join(hit.text for hit in result.hits)
        assert own in texts
        assert ("secret" in texts) == (chat is theirs) and ("March" in texts) == (chat is ours)
    assert not indexer.search("tg:300", "blue heron").hits  # a chat that never spoke finds nothing


def test_best_match_first_and_every_word_before_some(store: LmdbStore, indexer: RecallIndexer) -> None:
    chat = Chat(store, "tg:1", title="Plans")
    chat.say("let us talk about the garden", "The garden needs water.", indexer=indexer)
    chat.say("the backup of the garden photos", "Backup done: garden photos are on the NAS.", indexer=indexer)
    chat.say("what about the car", "The car goes to the garage on Friday.", indexer=indexer)
    for n in range(30):
        chat.say(f"filler message number {n} about nothing", f"Reply {n} about nothing much.", indexer=indexer)
    idle(indexer)
    hits = indexer.search(chat.key, "backup garden").hits
    # Both words first (the two passages of turn 1), then passages with one of them (turn 0's).
    assert [hit.seq for hit in hits[:2]] == [1, 1]
    assert {hit.seq for hit in hits[2:]} == {0}
    assert hits[0].title == "Plans" and hits[0].current and hits[0].generation == 1
    car = indexer.search(chat.key, "garage").hits
    assert len(car) == 1 and car[0].speaker == "claude" and car[0].name == "Claude"
    assert indexer.search(chat.key, "garden", limit=1).hits[0].seq in (0, 1)
    assert len(indexer.search(chat.key, "nothing", limit=50).hits) == 20  # the limit is capped


def test_who_said_it_when_and_in_which_conversation(store: LmdbStore, indexer: RecallIndexer) -> None:
    chat = Chat(store, "tg:5", title="Moving house")
    said = chat.say("the movers come on the 14th", "Got it, the 14th.", name="Bea", indexer=indexer)
    chat.new_conversation("Taxes")
    chat.say("the tax office wrote", "Let us answer the tax office.", indexer=indexer)
    idle(indexer)
    movers = indexer.search(chat.key, "movers").hits
    assert len(movers) == 1
    hit = movers[0]
    assert (hit.generation, hit.title, hit.current, hit.seq) == (1, "Moving house", False, 0)
    assert (hit.speaker, hit.name, hit.at) == ("user", "Bea", said.inputs[0].at)
    tax = indexer.search(chat.key, "tax office").hits
    assert tax and all(h.generation == 2 and h.current and h.title == "Taxes" for h in tax)
    text = format_hits(indexer.search(chat.key, "movers"))
    assert 'conversation #1 "Moving house"' in text and "Bea: the movers come on the 14th" in text


def test_forget_takes_the_words_out_of_the_file(store: LmdbStore, data_dir: Path, indexer: RecallIndexer) -> None:
    chat, other = Chat(store, "tg:7"), Chat(store, "tg:8")
    chat.say("my passport number is zanzibar", "I will not repeat zanzibar.", indexer=indexer)
    chat.new_conversation("second")
    chat.say("the kettle is broken", "Buy a kettle.", indexer=indexer)
    other.say("zanzibar is a place", "An island, zanzibar.", indexer=indexer)
    idle(indexer)
    assert terms_in_file(data_dir, "zanzibar") == 4
    # One conversation: its words leave, the other conversation's stay.
    assert indexer.forget(chat.key, generation=1) == 2
    store.drop_generation(chat.key, 1).result()
    assert not indexer.search(chat.key, "zanzibar").hits
    assert indexer.search(chat.key, "kettle").hits
    assert terms_in_file(data_dir, "zanzibar") == 2  # only the other chat's, in the file itself
    # The whole chat.
    assert indexer.forget(chat.key) == 2
    store.delete_session(chat.key).result()
    assert not indexer.search(chat.key, "kettle").hits
    assert terms_in_file(data_dir, "kettle") == 0
    assert len(indexer.search(other.key, "zanzibar").hits) == 2
    # Taken out with their words: no purge (rebuild) is owed.
    index = RecallIndex(data_dir, StoreView(store))
    try:
        assert index.plan()[0] == "ok"
    finally:
        index.close()


def test_a_rebuild_finds_exactly_what_the_fed_index_finds(store: LmdbStore, data_dir: Path,
                                                          indexer: RecallIndexer) -> None:
    chats = [Chat(store, f"tg:{n}") for n in range(3)]
    words = ["apple", "pear", "plum", "quince", "cherry"]
    for n in range(60):
        chat = chats[n % 3]
        chat.say(f"{words[n % 5]} and {words[(n * 2) % 5]} turn {n}", f"About {words[(n + 1) % 5]} at {n}.",
                 indexer=indexer)
        if n == 30:
            chat.new_conversation("later")
    idle(indexer)
    queries = ["apple", "pear plum", "quince cherry apple", "turn 7", '"and pear"']

    def everything() -> list[list[tuple[str, int, int, str, float]]]:
        return [[(h.key, h.generation, h.seq, h.text, round(h.score, 9)) for h in
                 indexer.search(c.key, q, limit=20).hits] for c in chats for q in queries]

    fed = everything()
    assert any(fed)
    indexer.rebuild()
    idle(indexer)
    assert everything() == fed
    db = sqlite3.connect(paths(data_dir)[0])
    try:
        assert db.execute("SELECT count(*) FROM rows").fetchone()[0] == 120
        assert db.execute("SELECT v FROM meta WHERE k = 'epoch'").fetchone()[0] == "1"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert not any(name.endswith("_next") for name in tables)
    finally:
        db.close()


def test_an_open_turn_is_found_once_it_ends(store: LmdbStore, indexer: RecallIndexer) -> None:
    chat = Chat(store, "tg:9")
    chat.say("first", "one", indexer=indexer)
    running = chat.say("tell me about volcanoes", "", status="open", indexer=indexer)
    chat.say("and then", "two", indexer=indexer)  # a later turn is indexed past the open one
    idle(indexer)
    assert indexer.search(chat.key, "two").hits
    assert not indexer.search(chat.key, "volcanoes").hits
    chat.finish(running, "Volcanoes erupt.", indexer=indexer)
    idle(indexer)
    assert {h.speaker for h in indexer.search(chat.key, "volcanoes").hits} == {"user", "claude"}
    chat.finish(running, "Volcanoes erupt.", indexer=indexer)  # fed twice: indexed once
    idle(indexer)
    assert len(indexer.search(chat.key, "volcanoes", limit=20).hits) == 2


@pytest.mark.parametrize("query", ['" OR ', "NEAR(a b)", "x*", 'tg:200 OR "', "rowid:1", "-", "{body}: heron",
                                   "AND", "a\" OR 1=1 --"])
def test_query_syntax_is_searched_for_never_obeyed(store: LmdbStore, indexer: RecallIndexer, query: str) -> None:
    ours, theirs = Chat(store, "tg:100"), Chat(store, "tg:200")
    ours.say("nothing here", "still nothing", indexer=indexer)
    theirs.say("heron near body and rowid x 1 a b", "heron OR NEAR x", indexer=indexer)
    idle(indexer)
    result = indexer.search(ours.key, query)
    assert all(hit.key == ours.key for hit in result.hits)
    assert not result.hits


def test_queries_and_snippets() -> None:
    assert parse_query("  ?! ") is None
    query = parse_query('What did we "sign up" for, sign?')
    assert query is not None and query.terms[0] == "sign up" and "sign" in query.terms
    assert query.all_of().startswith('"sign up" AND "what"')
    text = ("Lorem ipsum " * 40) + "we decided to sign the lease for two years " + ("dolor sit " * 40)
    cut = snippet(text, ["decide", "lease"], 120)
    assert "decided to sign the lease" in cut and cut.startswith("…") and cut.endswith("…")
    assert len(cut) <= 122
    assert snippet("short text", ["x"], 120) == "short text"


def test_indexing_takes_the_same_passages_a_search_reads_back() -> None:
    long = "word " * (MAX_PASSAGE_CHARS // 4)
    turns = [
        Turn(seq=0, started_at=1.0, ended_at=2.0, status="done", reply="  answer  ",
             inputs=(Input(text=" first ", at=1.0), Input(text="   ", at=1.0), Input(text="second", at=1.5))),
        Turn(seq=1, started_at=1.0, kind="heartbeat", status="done", prompt="vigil's own words", reply=""),
        Turn(seq=2, started_at=1.0, status="stopped", inputs=(Input(text=long, at=1.0),), reply=long),
    ]
    for turn in turns:
        made = passages(turn)
        assert [p.text for p in made] == texts(turn)
        assert [p.part for p in made] == list(range(len(made)))
    assert [p.speaker for p in passages(turns[0])] == ["user", "user", "claude"]
    assert not passages(turns[1])  # a heartbeat's prompt is vigil's, not anyone's words
    assert all(len(p.text) == MAX_PASSAGE_CHARS for p in passages(turns[2]))
