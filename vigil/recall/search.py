"""Searching one chat's past: the query, ranked by BM25 within that chat's rows, and the hits made readable.

Scope is part of the query itself: a chat's passages are one rowid range (vigil/recall/writes.py) and
the range is bound beside the MATCH, so FTS5 walks only that chat's postings; no other chat's row is
ever ranked, returned and then dropped. (BM25's term statistics are the whole index's: a word common
in other chats weighs a little less here. That is ranking, not content: no other chat's words leave.)

Two passes: every word (AND), then, if that found fewer than asked for, any word (OR), the first
pass's hits first. Each pass ranks at most `CANDIDATES` matching passages, the newest: a word found in
tens of thousands of a chat's passages would otherwise cost a scoring of each (measured: 67 ms at
p95 over a 100,000-turn chat without the bound, 8 ms with 5,000; `vigil bench`'s
`recall_p95_ms_100k_turns`). For so common a word BM25 ranks by length and frequency alone anyway.

Each hit's passage is read back from the store (the index holds no text) and checked against the
checksum kept at indexing: a turn that changed since (a store restored under the index) is skipped.
Readers are a small pool of connections: searches from many actor threads share them, never the
indexer's, and never wait for it (WAL).
"""

from __future__ import annotations

import os
import queue
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec

from vigil.recall.db import LIVE, connect, is_damage, paths
from vigil.recall.passages import Speaker, checksum, passages
from vigil.recall.query import Query, parse_query, snippet
from vigil.recall.source import TurnSource
from vigil.recall.writes import row_range

DEFAULT_LIMIT = 5
MAX_LIMIT = 20
CANDIDATES = 5000
# What a search returns, all hits together, is held to this many characters of passage (~1,500 tokens):
# a recall result lands in the model's context, so it must stay small whatever `limit` asks.
MAX_RESULT_CHARS = 6000
MIN_SNIPPET, MAX_SNIPPET = 160, 700
READERS = 4

_RANKED = (f"SELECT r.id, r.generation, r.seq, r.part, r.crc, c.score FROM ("
           f"SELECT id, score FROM (SELECT rowid AS id, bm25({LIVE.fts}) AS score FROM {LIVE.fts} "
           f"WHERE {LIVE.fts} MATCH ? AND rowid BETWEEN ? AND ? ORDER BY rowid DESC LIMIT ?) "
           f"ORDER BY score LIMIT ?) c JOIN {LIVE.rows} r ON r.id = c.id ORDER BY c.score")


class RecallHit(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One passage of the chat's past, as a search returns it."""

    key: str
    generation: int  # the conversation's number (`/resume N`)
    title: str  # the conversation's title, "" if it has none
    current: bool  # the conversation the chat is in now
    seq: int
    at: float  # when it was said (epoch seconds)
    speaker: Speaker
    name: str  # who: the user's name, or "Claude"
    text: str  # the passage, cut around the words searched for
    score: float  # BM25 as FTS5 gives it (lower is better)


class RecallResult(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    hits: tuple[RecallHit, ...] = ()
    note: str = ""  # why the hits may be incomplete, or why there are none ("" when all is well)


class Searcher:
    """Searches of the live index, from any thread."""

    def __init__(self, data_dir: Path, source: TurnSource, readers: int = READERS,
                 on_damage: Callable[[str], None] = lambda why: None) -> None:
        self._path = paths(data_dir)[0]
        self._source = source
        self._pool: queue.LifoQueue[tuple[sqlite3.Connection, int] | None] = queue.LifoQueue()
        for _ in range(readers):
            self._pool.put(None)
        self._on_damage = on_damage
        self.busy_note = ""  # set by the indexer while its answers may be incomplete (catching up, rebuilding)

    def close(self) -> None:
        while True:
            try:
                held = self._pool.get_nowait()
            except queue.Empty:
                return
            if held is not None:
                held[0].close()

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        held = self._pool.get()
        try:
            inode = os.stat(self._path).st_ino
            if held is not None and held[1] != inode:  # the file was made anew (it was damaged): reopen
                held[0].close()
                held = None
            if held is None:
                held = (connect(self._path), inode)
            yield held[0]
        except sqlite3.DatabaseError:
            if held is not None:
                held[0].close()
            held = None
            raise
        finally:
            self._pool.put(held)

    def search(self, key: str, text: str, limit: int = DEFAULT_LIMIT) -> RecallResult:
        """The chat's passages best matching `text`, best first; never another chat's."""
        query = parse_query(text)
        if query is None:
            return RecallResult(note="nothing to search for: the query has no words")
        limit = max(1, min(MAX_LIMIT, limit))
        try:
            ranked = self._ranked(key, query, limit)
        except FileNotFoundError:
            return RecallResult(note="this chat's history is not indexed yet")
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                return RecallResult(note=f"the search index is busy ({exc}); try again")
            self._on_damage(str(exc))
            return RecallResult(note="the search index can't be read just now; it is being rebuilt")
        hits = self._readable(key, query, ranked, limit)
        return RecallResult(hits=tuple(hits), note=self.busy_note)

    def _ranked(self, key: str, query: Query, limit: int) -> list[tuple[int, int, int, int, int, float]]:
        with self._reader() as db:
            row = db.execute(f"SELECT sid FROM {LIVE.chats} WHERE key = ?", (key,)).fetchone()
            if row is None:
                return []
            low, high = row_range(int(row[0]))
            # A few more than asked: a hit whose turn is gone from the store is dropped below.
            want = limit + 5
            db.execute("BEGIN")  # one snapshot for both passes
            try:
                found = db.execute(_RANKED, (query.all_of(), low, high, CANDIDATES, want)).fetchall()
                if len(found) < limit and len(query.terms) > 1:
                    seen = {r[0] for r in found}
                    more = db.execute(_RANKED, (query.any_of(), low, high, CANDIDATES, want)).fetchall()
                    found += [r for r in more if r[0] not in seen]
            finally:
                db.execute("COMMIT")
        return [(int(a), int(b), int(c), int(d), int(e), float(f)) for a, b, c, d, e, f in found]

    def _readable(self, key: str, query: Query, ranked: list[tuple[int, int, int, int, int, float]],
                  limit: int) -> list[RecallHit]:
        header = self._source.header(key)
        titles: dict[int, str] = {}
        current = header.generation if header is not None else 0
        if header is not None:
            titles[header.generation] = header.conversation_title
        for generation in {g for _, g, *_ in ranked} - titles.keys():
            titles[generation] = self._source.title(key, generation)  # a past one: its record holds it
        width = max(MIN_SNIPPET, min(MAX_SNIPPET, MAX_RESULT_CHARS // limit))
        hits: list[RecallHit] = []
        for _, generation, seq, part, crc, score in ranked:
            if len(hits) >= limit:
                break
            turn = self._source.turn(key, generation, seq)
            said = passages(turn) if turn is not None else []
            if part >= len(said) or checksum(said[part].text) != crc:
                continue  # gone from the store, or changed under the index: not what was found
            passage = said[part]
            hits.append(RecallHit(key=key, generation=generation, title=titles.get(generation, ""),
                                  current=generation == current, seq=seq, at=passage.at, speaker=passage.speaker,
                                  name=passage.name, text=snippet(passage.text, query.words, width), score=score))
        return hits


def when(at: float, tz: str) -> str:
    """A moment as the chat reads it: its date and time in `tz` (a zone that is no zone reads as UTC)."""
    try:
        zone = ZoneInfo(tz) if tz and tz != "UTC" else UTC
    except (KeyError, ValueError):
        zone = UTC
    moment = datetime.fromtimestamp(at, zone)
    return moment.strftime("%Y-%m-%d %H:%M") + ("" if zone is UTC else f" {moment.tzname() or ''}".rstrip())


def format_hits(result: RecallResult, tz: str = "UTC", now: float | None = None) -> str:
    """The result as the `recall` tool gives it to Claude: one paragraph per hit, best first."""
    if not result.hits:
        return result.note or "Nothing in this chat's past conversations matches."
    lines = [f"{len(result.hits)} passage{'s' if len(result.hits) != 1 else ''} from this chat's conversations, "
             f"best match first (now is {when(time.time() if now is None else now, tz)}):"]
    for n, hit in enumerate(result.hits, 1):
        title = f' "{hit.title}"' if hit.title else ""
        where = f"conversation #{hit.generation}{title}{' (current)' if hit.current else ''}"
        who = hit.name if hit.speaker == "claude" else (hit.name or "the user")
        lines.append(f"[{n}] {where} · {when(hit.at, tz)} · {who}: {hit.text}")
    if result.note:
        lines.append(f"({result.note})")
    return "\n".join(lines)
