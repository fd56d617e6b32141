"""Chats written into a real store the way sessions write them, for the recall index's tests.

`Chat` commits headers and turns through `LmdbStore.commit` (the per-turn commit the actors use), keeps
its conversations' numbers and titles as /new and /title do (past ones as records), and hands back each
committed turn so a test can feed it to the indexer as the integration will, right after the commit.
"""

from __future__ import annotations

import itertools

import msgspec

from vigil.recall import RecallIndexer
from vigil.records.conversations import start_new
from vigil.records.schema import Input, SessionHeader, Target, Turn
from vigil.store.store import LmdbStore

_CLOCK = itertools.count(1_700_000_000)


class Chat:
    """One session of the store: its header as last committed, and turns appended to it."""

    def __init__(self, store: LmdbStore, key: str, incarnation: int = 7, title: str = "") -> None:
        self.store = store
        self.key = key
        self.header = SessionHeader(key=key, incarnation=incarnation, created_at=float(next(_CLOCK)),
                                    target=Target(channel="tg", chat_id=1), cwd="/", model="claude-sonnet-5-5",
                                    conversation_title=title)
        store.commit(self.header, create=True).result()

    def say(self, user: str, reply: str, name: str = "Ann", status: str = "done",
            indexer: RecallIndexer | None = None) -> Turn:
        """Commit a turn (durably) with the user's words and Claude's reply; feed it if given an indexer."""
        now = float(next(_CLOCK))
        turn = Turn(seq=self.header.next_seq, status=status, started_at=now,  # type: ignore[arg-type]
                    ended_at=now + 1 if status != "open" else 0.0,
                    inputs=(Input(text=user, at=now, user_id=42, user_name=name),) if user else (),
                    reply=reply)
        self.header = msgspec.structs.replace(self.header, next_seq=turn.seq + 1, last_turn_at=now)
        self.store.commit(self.header, turn).result()
        if indexer is not None:
            indexer.feed(self.key, self.header.incarnation, self.header.generation, turn)
        return turn

    def finish(self, turn: Turn, reply: str, indexer: RecallIndexer | None = None) -> Turn:
        """Rewrite an open turn as done (as a turn that ends does)."""
        done = msgspec.structs.replace(turn, status="done", reply=reply, ended_at=turn.started_at + 2)
        self.store.commit(self.header, done).result()
        if indexer is not None:
            indexer.feed(self.key, self.header.incarnation, self.header.generation, done)
        return done

    def new_conversation(self, title: str) -> None:
        """/new TITLE: the current conversation becomes a past one (a record of its own); the next turns start at
        seq 0."""
        now = float(next(_CLOCK))
        self.header, move = start_new(self.header, now, now, self.store.newest_generation(self.key), title)
        self.store.commit(self.header, move=move).result()
