"""Byte layouts of the store's keys, chosen so that LMDB's sort order is the useful order.

- turns: `<session key> NUL <generation u32 BE> <seq u64 BE>`: one session's turns
  are contiguous and in order, so a window is one cursor range.
- usage: `<user id> NUL <YYYY-MM-DD> NUL <session key> NUL <kind>`: a user's days
  are contiguous, newest last.
- members: `<user id> NUL <session key>`: the sessions a user takes part in.
- notes: `<session key> NUL <time f64 BE>`: a session's notes in time order.
- inbox: `<session key> NUL <arrival id u64 BE>`: a session's received messages in arrival order.
- summaries: laid out as turns, `<session key> NUL <generation u32 BE> <upto u64 BE>`: a generation's
  summaries are contiguous, newest last, and go with the turn prefix of their generation.
- updates: `<update id i64 BE>`: the Telegram updates taken in (value: when, f64 BE).
- held: `<update id i64 BE>`: Telegram updates kept as they came until taken (value: a HeldUpdate).
- conversations: `<session key> NUL <generation u32 BE>`: a session's past conversations, one record
  each (vigil/records/conversations.py), in generation order; deleted by the same prefixes as their turns.
- media (vigil/store/engine/media_refs.py), three ranges in one database, a digest as its 32 raw bytes:
  `r <session key> NUL <generation u32 BE> <digest>`: the files a session's records name, per generation
  (0: its header's pending inputs and its inbox), so deleting a generation finds them by range;
  `d <digest> <session key> NUL <generation u32 BE>`: the same pairs by file, so a sweep asks one range
  per file whether anything still names it; `z <digest>`: files to look at in the next sweep (value:
  when, f64 BE), put in the transaction that dropped a reference to them.
Session keys never contain NUL (they are `tg:<id>[:<thread>]` or `console:<name>`).
"""

from __future__ import annotations

import struct

SEP = b"\x00"
_TURN = struct.Struct(">IQ")
_TIME = struct.Struct(">d")
TIME_SIZE = _TIME.size
_ARRIVAL = struct.Struct(">Q")
_UPDATE = struct.Struct(">q")
_GENERATION = struct.Struct(">I")
GENERATION_SIZE = _GENERATION.size
DIGEST_SIZE = 32
REF, BY_DIGEST, SUSPECT = b"r", b"d", b"z"


def session(key: str) -> bytes:
    return key.encode()


def turn(key: str, generation: int, seq: int) -> bytes:
    return key.encode() + SEP + _TURN.pack(generation, seq)


def turn_prefix(key: str, generation: int | None = None) -> bytes:
    base = key.encode() + SEP
    return base if generation is None else base + struct.pack(">I", generation)


def turn_position(raw: bytes) -> tuple[int, int]:
    """(generation, seq) of a turn key."""
    generation, seq = _TURN.unpack(raw[-_TURN.size:])
    return int(generation), int(seq)


def turn_session(raw: bytes) -> bytes:
    """The session key (encoded) of a turn or summary key."""
    return raw[:-_TURN.size - 1]


def summary(key: str, generation: int, upto: int) -> bytes:
    return turn(key, generation, upto)


def usage(user_id: int, day: str, key: str, kind: str) -> bytes:
    return f"{user_id}\x00{day}\x00{key}\x00{kind}".encode()


def usage_prefix(user_id: int) -> bytes:
    return f"{user_id}\x00".encode()


def usage_day_prefix(user_id: int, day: str) -> bytes:
    return f"{user_id}\x00{day}\x00".encode()


def parse_usage(raw: bytes) -> tuple[int, str, str, str]:
    user, day, key, kind = raw.decode().split("\x00")
    return int(user), day, key, kind


def member(user_id: int, key: str) -> bytes:
    return f"{user_id}\x00{key}".encode()


def member_prefix(user_id: int) -> bytes:
    return f"{user_id}\x00".encode()


def note(key: str, at: float) -> bytes:
    return key.encode() + SEP + _TIME.pack(at)


def note_prefix(key: str) -> bytes:
    return key.encode() + SEP


def inbox(key: str, arrival: int) -> bytes:
    return key.encode() + SEP + _ARRIVAL.pack(arrival)


def inbox_prefix(key: str) -> bytes:
    return key.encode() + SEP


def inbox_position(raw: bytes) -> tuple[str, int]:
    """(session key, arrival id) of an inbox key."""
    return raw[:-_ARRIVAL.size - 1].decode(), int(_ARRIVAL.unpack(raw[-_ARRIVAL.size:])[0])


def inbox_session(raw: bytes) -> bytes:
    """The session key (encoded) of an inbox key."""
    return raw[:-_ARRIVAL.size - 1]


def update(update_id: int) -> bytes:
    return _UPDATE.pack(update_id)


def update_id(raw: bytes) -> int:
    return int(_UPDATE.unpack(raw)[0])


def conversation(key: str, generation: int) -> bytes:
    return key.encode() + SEP + _GENERATION.pack(generation)


def conversation_prefix(key: str) -> bytes:
    return key.encode() + SEP


def conversation_generation(raw: bytes) -> int:
    """The generation of a conversation key."""
    return int(_GENERATION.unpack(raw[-GENERATION_SIZE:])[0])


def ref(key: bytes, generation: int, digest: bytes) -> bytes:
    """`r` entry: `key` (a session key, encoded) names `digest` (raw) in `generation`."""
    return REF + key + SEP + _GENERATION.pack(generation) + digest


def ref_prefix(key: bytes, generation: int | None = None) -> bytes:
    base = REF + key + SEP
    return base if generation is None else base + _GENERATION.pack(generation)


def by_digest(digest: bytes, key: bytes, generation: int) -> bytes:
    """`d` entry: the `r` entry's pair, by file."""
    return BY_DIGEST + digest + key + SEP + _GENERATION.pack(generation)


def parse_ref(raw: bytes) -> tuple[bytes, int, bytes]:
    """(session key, generation, digest) of an `r` entry."""
    digest = raw[-DIGEST_SIZE:]
    generation = int(_GENERATION.unpack(raw[-DIGEST_SIZE - GENERATION_SIZE:-DIGEST_SIZE])[0])
    return raw[1:-DIGEST_SIZE - GENERATION_SIZE - 1], generation, digest


def parse_by_digest(raw: bytes) -> tuple[bytes, int]:
    """(session key, generation) of a `d` entry."""
    return raw[1 + DIGEST_SIZE:-GENERATION_SIZE - 1], int(_GENERATION.unpack(raw[-GENERATION_SIZE:])[0])


def suspect(digest: bytes) -> bytes:
    return SUSPECT + digest


def time_value(at: float) -> bytes:
    return _TIME.pack(at)


def parse_time(raw: bytes) -> float:
    return float(_TIME.unpack(raw)[0])
