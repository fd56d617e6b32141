"""Changing one table set of the recall index: a turn in, a turn caught up from the store, a chat out.

Everything here runs inside the caller's transaction on the writer's connection (vigil/recall/index.py
owns both). The rules that keep a chat's words in its chat:

- a chat's rows are the rowid range `sid << 32 ...`; a sid comes from AUTOINCREMENT and is never
  handed out again, and a chat's row numbers only grow, so a rowid left behind in the full-text table
  (see `detach`) can never be joined to another chat's (or another turn's) row;
- the full-text table is contentless: to take a passage out, FTS5 must be given its words again. They
  are read back from the store and checked against the checksum kept at indexing; when the store no
  longer has them (deleted without telling the index, restored, recreated elsewhere) the passage is
  `detach`ed: its row goes, so no query finds it any more (queries join on rows), and its terms stay in
  the file until the rebuild the `purge` flag asks for.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from vigil.recall.db import Tables, set_meta
from vigil.recall.passages import checksum, passages, texts
from vigil.recall.source import CHUNK, TurnSource
from vigil.records.schema import Turn

ROW_BITS = 32
_IN_LIMIT = 2000  # values bound in one IN list (SQLite allows 32,766)
MAX_SID = (1 << 31) - 1
Applied = Literal["indexed", "hole", "known", "gap"]
"""What a fed turn did: indexed (or had no words), waits as an open turn, was already in, or comes after
turns the index has not seen (the caller then catches that generation up from the store)."""


def row_range(sid: int) -> tuple[int, int]:
    return sid << ROW_BITS, (sid << ROW_BITS) | ((1 << ROW_BITS) - 1)


@dataclass(slots=True)
class Cursor:
    """How far one generation of a chat was read from the store (see vigil/recall/db.py)."""

    next_seq: int = 0
    seen: int = 0
    holes: set[int] = field(default_factory=set)


def _holes(stored: object) -> set[int]:
    return {int(seq) for seq in str(stored).split()} if stored else set()


@dataclass(slots=True)
class _Chat:
    sid: int
    incarnation: int
    next_row: int
    dirty: bool = False


class SetWriter:
    """The writes to one table set, within the caller's transaction.

    Chats, cursors and new passages are held in memory and written by `flush` in a few `executemany`s:
    a batch of turns costs a handful of statements, not seven per turn. The cache is good for one
    transaction of one writer; everything that reads or deletes beyond it (`catch_up`, `forget`,
    `detach`) flushes first and starts from what is stored.
    """

    def __init__(self, db: sqlite3.Connection, tables: Tables) -> None:
        self.db = db
        self.t = tables
        self.purge_wanted = False  # a passage was detached: the caller sets the meta flag
        self._chats: dict[str, _Chat] = {}
        self._cursors: dict[tuple[int, int], Cursor] = {}
        self._changed: set[tuple[int, int]] = set()
        self._fts: list[tuple[int, str]] = []
        self._rows: list[tuple[int, int, int, int, int]] = []

    def flush(self) -> None:
        """Write what is held in memory (and keep it: still good within this transaction)."""
        if self._fts:
            # In rowid order: FTS5 writes its pending terms out as a segment whenever a rowid is lower
            # than the one before, and a batch spans many chats (measured: 4x the cost, unsorted).
            self._fts.sort()
            self._rows.sort()
            self.db.executemany(f"INSERT INTO {self.t.fts} (rowid, body) VALUES (?, ?)", self._fts)
            self.db.executemany(f"INSERT INTO {self.t.rows} VALUES (?, ?, ?, ?, ?)", self._rows)
            self._fts, self._rows = [], []
        dirty = [chat for chat in self._chats.values() if chat.dirty]
        if dirty:
            self.db.executemany(f"UPDATE {self.t.chats} SET next_row = ? WHERE sid = ?",
                                [(chat.next_row, chat.sid) for chat in dirty])
            for chat in dirty:
                chat.dirty = False
        if self._changed:
            self.db.executemany(
                f"INSERT INTO {self.t.cursors} VALUES (?, ?, ?, ?, ?) ON CONFLICT(sid, generation) DO UPDATE "
                "SET next_seq = excluded.next_seq, seen = excluded.seen, holes = excluded.holes",
                [(sid, generation, c.next_seq, c.seen, " ".join(map(str, sorted(c.holes))) if c.holes else "")
                 for (sid, generation), c in ((k, self._cursors[k]) for k in self._changed)])
            self._changed.clear()

    def _fresh(self) -> None:
        """Flush, then forget the cache: what follows reads the tables as they are now."""
        self.flush()
        self._chats.clear()
        self._cursors.clear()

    # ------------------------------------------------------------------ chats and cursors

    def preload(self, wanted: Iterable[tuple[str, int]]) -> None:
        """Read the chats and cursors of these (key, generation) pairs in a few queries, not two per turn."""
        pairs = set(wanted)
        names = sorted({key for key, _ in pairs} - self._chats.keys())
        for at in range(0, len(names), _IN_LIMIT):
            some = names[at:at + _IN_LIMIT]
            for key, sid, incarnation, next_row in self.db.execute(
                    f"SELECT key, sid, incarnation, next_row FROM {self.t.chats} WHERE key IN "
                    f"({','.join('?' * len(some))})", some):
                self._chats[key] = _Chat(sid, incarnation, next_row)
        cursors = self._cursors
        missing = {(chat.sid, generation) for key, generation in pairs
                   if (chat := self._chats.get(key)) is not None} - cursors.keys()
        sids = sorted({sid for sid, _ in missing})
        for at in range(0, len(sids), _IN_LIMIT):  # every generation of these chats: a few rows each
            chunk = sids[at:at + _IN_LIMIT]
            for sid, generation, next_seq, seen, holes in self.db.execute(
                    f"SELECT sid, generation, next_seq, seen, holes FROM {self.t.cursors} WHERE sid IN "
                    f"({','.join('?' * len(chunk))})", chunk):
                if (sid, generation) in missing:
                    cursors[sid, generation] = Cursor(next_seq, seen, _holes(holes))
        for pair in missing - cursors.keys():  # none stored yet: a new generation
            cursors[pair] = Cursor()

    def sid(self, key: str) -> int | None:
        row = self.db.execute(f"SELECT sid FROM {self.t.chats} WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def chat(self, key: str, incarnation: int | None) -> _Chat:
        """The chat, made if new; a chat recreated elsewhere (new incarnation) starts a new sid.

        `incarnation` None: not known (a header that can't be read): the chat's rows are kept as they are."""
        chat = self._chats.get(key)
        if chat is None:
            row = self.db.execute(f"SELECT sid, incarnation, next_row FROM {self.t.chats} WHERE key = ?",
                                  (key,)).fetchone()
            chat = _Chat(int(row[0]), int(row[1]), int(row[2])) if row is not None else None
        if chat is not None and (incarnation is None or chat.incarnation == incarnation):
            self._chats[key] = chat
            return chat
        if chat is not None:
            self.detach(chat.sid)  # the turns the old rows name are another incarnation's, gone
        sid = self.db.execute(f"INSERT INTO {self.t.chats} (key, incarnation) VALUES (?, ?)",
                              (key, incarnation or 0)).lastrowid
        assert sid is not None and sid <= MAX_SID
        chat = self._chats[key] = _Chat(int(sid), incarnation or 0, 0)
        return chat

    def cursor(self, sid: int, generation: int) -> Cursor:
        cursor = self._cursors.get((sid, generation))
        if cursor is None:
            row = self.db.execute(f"SELECT next_seq, seen, holes FROM {self.t.cursors} "
                                  "WHERE sid = ? AND generation = ?", (sid, generation)).fetchone()
            cursor = Cursor() if row is None else Cursor(int(row[0]), int(row[1]), _holes(row[2]))
            self._cursors[sid, generation] = cursor
        return cursor

    def save(self, sid: int, generation: int, cursor: Cursor) -> None:
        self._cursors[sid, generation] = cursor
        self._changed.add((sid, generation))

    # ------------------------------------------------------------------ turns in

    def index(self, chat: _Chat, generation: int, turn: Turn) -> int:
        """Add a final turn's passages (written at the next flush); how many."""
        found = texts(turn)
        base = (chat.sid << ROW_BITS) + chat.next_row
        for part, text in enumerate(found):
            self._fts.append((base + part, text))
            self._rows.append((base + part, generation, turn.seq, part, checksum(text)))
        if found:
            chat.next_row += len(found)
            chat.dirty = True
        return len(found)

    def apply(self, key: str, incarnation: int | None, generation: int, turn: Turn) -> Applied:
        """A turn just committed: indexed when it is the next one (or an open one now final)."""
        chat = self.chat(key, incarnation)
        cursor = self.cursor(chat.sid, generation)
        if turn.seq < cursor.next_seq:
            if turn.seq in cursor.holes and turn.final:
                self.index(chat, generation, turn)
                cursor.holes.discard(turn.seq)
                self.save(chat.sid, generation, cursor)
                return "indexed"
            return "known"
        if turn.seq > cursor.next_seq:
            return "gap"
        applied: Applied = "hole"
        if turn.final:
            self.index(chat, generation, turn)
            applied = "indexed"
        else:
            cursor.holes.add(turn.seq)
        cursor.next_seq, cursor.seen = turn.seq + 1, cursor.seen + 1
        self.save(chat.sid, generation, cursor)
        return applied

    def resume_at(self, key: str, generation: int) -> int:
        """The seq a catch-up of this generation reads from (0 for a chat or generation not indexed)."""
        sid = self.sid(key)
        return 0 if sid is None else self.cursor(sid, generation).next_seq

    def catch_up(self, source: TurnSource, key: str, incarnation: int | None, generation: int,
                 read: tuple[int, list[tuple[int, Turn | None]]] | None = None) -> int:
        """Take in the next chunk of the generation's turns the index has not seen (read from the store
        here, or beforehand by the caller outside its transaction: `read` is (`resume_at`, the chunk));
        how many turns the chunk held (fewer than `CHUNK`: caught up, and the open turns it waited for
        were looked at again).

        Starts from the tables as they are: turns taken in meanwhile (fed, or by another process) are
        skipped, never indexed twice."""
        self._fresh()
        chat = self.chat(key, incarnation)
        cursor = self.cursor(chat.sid, generation)
        # A chunk read from further on than the cursor is now (a chat recreated meanwhile starts again at 0)
        # is read again from the cursor.
        fresh = read is None or read[0] > cursor.next_seq
        chunk = source.chunk(key, generation, cursor.next_seq) if fresh or read is None else read[1]
        for seq, turn in chunk:
            if seq < cursor.next_seq:
                continue
            cursor.next_seq, cursor.seen = seq + 1, cursor.seen + 1
            if turn is not None and turn.final:
                self.index(chat, generation, turn)
            elif turn is not None:
                cursor.holes.add(seq)
        if len(chunk) < CHUNK:
            for seq in sorted(cursor.holes):
                turn = source.turn(key, generation, seq)
                if turn is None or turn.final:
                    cursor.holes.discard(seq)
                    if turn is not None:
                        self.index(chat, generation, turn)
        self.save(chat.sid, generation, cursor)
        self._fresh()
        return len(chunk)

    # ------------------------------------------------------------------ chats out

    def forget(self, source: TurnSource, key: str, generation: int | None = None) -> int:
        """Take a chat's (or one generation's) passages out, their words read back from the store.

        Call it before the store deletes them. Passages the store no longer holds as indexed are
        detached instead (and a purge asked for). Returns the number of passages removed."""
        self._fresh()
        sid = self.sid(key)
        if sid is None:
            return 0
        low, high = row_range(sid)
        where = "id BETWEEN ? AND ?" + (" AND generation = ?" if generation is not None else "")
        params: tuple[int, ...] = (low, high) if generation is None else (low, high, generation)
        by_turn: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        for rid, gen, seq, part, crc in self.db.execute(
                f"SELECT id, generation, seq, part, crc FROM {self.t.rows} WHERE {where}", params):
            by_turn.setdefault((int(gen), int(seq)), []).append((int(rid), int(part), int(crc)))
        removed = 0
        for gen in sorted({g for g, _ in by_turn}):
            start = min(seq for g, seq in by_turn if g == gen)
            for chunk in source.turns_from(key, gen, start):
                for seq, turn in chunk:
                    rows = by_turn.pop((gen, seq), None)
                    if rows is None or turn is None:
                        continue
                    texts = {p.part: p.text for p in passages(turn)}
                    for rid, part, crc in rows:
                        text = texts.get(part)
                        if text is not None and checksum(text) == crc:
                            self.db.execute(f"INSERT INTO {self.t.fts} ({self.t.fts}, rowid, body) "
                                            "VALUES ('delete', ?, ?)", (rid, text))
                            removed += 1
                        else:
                            self.purge_wanted = True
        if by_turn:  # indexed turns the store no longer holds: their words can't be given back to FTS5
            self.purge_wanted = True
        self.db.execute(f"DELETE FROM {self.t.rows} WHERE {where}", params)
        self._drop_cursors(sid, generation)
        self._fresh()
        return removed

    def detach(self, sid: int, generation: int | None = None) -> None:
        """Make a chat's (or a generation's) passages unfindable without their words: rows and cursors go."""
        self._fresh()
        low, high = row_range(sid)
        if generation is None:
            self.db.execute(f"DELETE FROM {self.t.rows} WHERE id BETWEEN ? AND ?", (low, high))
        else:
            self.db.execute(f"DELETE FROM {self.t.rows} WHERE id BETWEEN ? AND ? AND generation = ?",
                            (low, high, generation))
        self._drop_cursors(sid, generation)
        self.purge_wanted = True

    def _drop_cursors(self, sid: int, generation: int | None) -> None:
        if generation is None:
            self.db.execute(f"DELETE FROM {self.t.cursors} WHERE sid = ?", (sid,))
            self.db.execute(f"DELETE FROM {self.t.chats} WHERE sid = ?", (sid,))
        else:
            self.db.execute(f"DELETE FROM {self.t.cursors} WHERE sid = ? AND generation = ?", (sid, generation))

    def flag_purge(self) -> None:
        """Flush, and ask for a purge (in the meta table) if a passage was detached."""
        self.flush()
        if self.purge_wanted:
            set_meta(self.db, "purge", "1")
            self.purge_wanted = False
