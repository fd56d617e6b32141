"""Reads of one session: its header, turns, generations, past conversations, notes, alias; the start-up indexes.

Reads run in the caller's thread: LMDB read transactions are cheap and never
block the writer. Ranges are one cursor walk each, thanks to the key layouts
in `vigil.store.engine.keys`.
"""

from __future__ import annotations

import lmdb

from vigil.records.schema import (
    Conversation,
    Note,
    SessionHeader,
    Turn,
    UnreadableRecord,
    decode_conversation,
    decode_header,
    decode_note,
    decode_turn,
)
from vigil.store.core import RECOVER_YES, StoreCore
from vigil.store.engine import keys
from vigil.store.engine.cursors import generations_under, get, items, pairs, prefixed


class SessionReads(StoreCore):
    """What one session (or the start-up) reads back."""

    def header(self, key: str) -> SessionHeader | None:
        raw = self._lmdb.read(lambda txn: get(txn, keys.session(key), self._db[b"sessions"]))
        return None if raw is None else decode_header(raw)

    def canonical(self, key: str) -> str:
        """The stable key of a chat that changed id (a group upgraded to a supergroup)."""
        raw = self._lmdb.read(lambda txn: get(txn, keys.session(key), self._db[b"aliases"]))
        return key if raw is None else raw.decode()

    def turn(self, key: str, generation: int, seq: int) -> Turn | None:
        raw = self._lmdb.read(lambda txn: get(txn, keys.turn(key, generation, seq), self._db[b"turns"]))
        return None if raw is None else decode_turn(raw)

    def turns(self, key: str, generation: int, start: int = 0, stop: int | None = None) -> list[Turn]:
        """Turns with start <= seq < stop, oldest first: one cursor range."""
        first = keys.turn(key, generation, start)
        prefix = keys.turn_prefix(key, generation)

        def scan(txn: lmdb.Transaction) -> list[bytes]:
            out: list[bytes] = []
            cursor = txn.cursor(db=self._db[b"turns"])
            if not cursor.set_range(first):
                return out
            for raw_key, value in items(cursor):
                if not raw_key.startswith(prefix):
                    break
                if stop is not None and keys.turn_position(raw_key)[1] >= stop:
                    break
                out.append(value)
            return out

        return [decode_turn(raw) for raw in self._lmdb.read(scan)]

    def last_turns(self, key: str, generation: int, count: int) -> list[Turn]:
        """The newest `count` turns, oldest first, read backwards from the end."""
        prefix = keys.turn_prefix(key, generation)
        end = keys.turn(key, generation, 2**64 - 1)

        def scan(txn: lmdb.Transaction) -> list[bytes]:
            out: list[bytes] = []
            cursor = txn.cursor(db=self._db[b"turns"])
            if not cursor.set_range(end):
                if not cursor.last():
                    return out
            elif bytes(cursor.key()) != end and not cursor.prev():
                return out
            while len(out) < count and bytes(cursor.key()).startswith(prefix):
                out.append(bytes(cursor.value()))
                if not cursor.prev():
                    break
            return out

        return [decode_turn(raw) for raw in reversed(self._lmdb.read(scan))]

    def generations(self, key: str) -> list[int]:
        return list(self._lmdb.read(lambda txn: generations_under(txn, self._db[b"turns"], keys.turn_prefix(key))))

    def scan_conversations(self, key: str) -> tuple[list[Conversation], list[tuple[int, str]]]:
        """The session's past conversations in generation order (one range), and (generation, reason) of the
        records that can't be read (a newer vigil's, or damaged): named, never judged, never deleted here."""
        raw = self._lmdb.read(lambda txn: prefixed(txn, self._db[b"conversations"], keys.conversation_prefix(key)))
        found: list[Conversation] = []
        unreadable: list[tuple[int, str]] = []
        for raw_key, value in raw:
            try:
                found.append(decode_conversation(value))
            except UnreadableRecord as exc:
                unreadable.append((keys.conversation_generation(raw_key), exc.reason))
        return found, unreadable

    def conversation(self, key: str, generation: int) -> Conversation | None:
        """One past conversation's record (UnreadableRecord if it can't be read)."""
        raw = self._lmdb.read(lambda txn: get(txn, keys.conversation(key, generation), self._db[b"conversations"]))
        return None if raw is None else decode_conversation(raw)

    def newest_generation(self, key: str) -> int:
        """The highest generation anything of the session is stored under (records, turns, summaries); 0 if none."""
        prefix = keys.conversation_prefix(key)  # the same `<key> NUL` for the three layouts
        end = prefix + b"\xff" * (keys.GENERATION_SIZE + 8)

        def last(txn: lmdb.Transaction, name: bytes) -> int:
            cursor = txn.cursor(db=self._db[name])
            if not cursor.set_range(end):
                if not cursor.last():
                    return 0
            elif not cursor.prev():
                return 0
            raw = bytes(cursor.key())
            if not raw.startswith(prefix) or len(raw) < len(prefix) + keys.GENERATION_SIZE:
                return 0
            return keys.conversation_generation(raw[:len(prefix) + keys.GENERATION_SIZE])

        return int(self._lmdb.read(lambda txn: max(last(txn, name) for name in (b"conversations", b"turns",
                                                                                     b"summaries"))))

    def has_session(self, key: str) -> bool:
        """Whether a header is stored for `key`, readable or not (nothing is decoded)."""
        return self._lmdb.read(lambda txn: get(txn, keys.session(key), self._db[b"sessions"])) is not None

    def session_count(self) -> int:
        return int(self._lmdb.read(lambda txn: txn.stat(self._db[b"sessions"])["entries"]))

    def recovery_keys(self) -> list[str]:
        """Sessions holding unanswered messages or a turn cut short: answered after a restart."""
        # Every session has a row here: read through `pairs` (no generator of ours), a third of start-up's
        # cost over 100k sessions goes.
        return self._lmdb.read(lambda txn: [k.decode(errors="replace") for k, v in
                                            pairs(txn.cursor(db=self._db[b"recover"]))
                                            if v == RECOVER_YES])

    def heartbeat_schedule(self) -> list[tuple[str, float]]:
        """(key, next wake) of each session with a heartbeat on or a schedule: the timer's start-up load."""
        # A value of the wrong size (damage) is skipped: it must not stop the start-up of every session.
        return self._lmdb.read(lambda txn: [(k.decode(errors="replace"), keys.parse_time(v)) for k, v in
                                            pairs(txn.cursor(db=self._db[b"heartbeats"]))
                                            if len(v) == keys.TIME_SIZE])

    def notes(self, key: str) -> list[Note]:
        prefix = keys.note_prefix(key)

        def scan(txn: lmdb.Transaction) -> list[bytes]:
            cursor = txn.cursor(db=self._db[b"notes"])
            out: list[bytes] = []
            if cursor.set_range(prefix):
                for raw_key, value in items(cursor):
                    if not raw_key.startswith(prefix):
                        break
                    out.append(value)
            return out

        return [decode_note(raw) for raw in self._lmdb.read(scan)]
