"""The store of a busy year, built by direct bulk writes through the store's own writer: fast, and the real format.

Shaped like real chats rather than like a benchmark's: how many turns a chat has is heavy-tailed (a
lognormal: most chats hold a few dozen turns, a few hold tens of thousands), and so is how many
conversations it left behind (`/new`); a user's message is short and a reply longer, both with long
tails; one turn in twenty ran a tool (a `tool_use` and its `tool_result` of a few kB); some chats went
quiet months ago, most were active this week. Every record is what the service writes: `Turn`s with
their inputs, messages and usage, `Conversation` records, headers with the window where the history
budget puts it (and the compaction `Summary` standing before it), usage rows per user and day, member
rows, and the media index's pairs for the turns that carry a photo, whose files are in the media store.

Turns are written in time order across chats (as a service would write them), so LMDB's pages split and
fill as in a store that grew for a year, not as in a compacted copy: the bytes per turn are honest.
"""

from __future__ import annotations

import array
import hashlib
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import lmdb

from vigil.media.files import MediaStore
from vigil.records.conversations import title_from
from vigil.records.schema import (
    Attachment,
    Conversation,
    Input,
    Message,
    SessionHeader,
    Summary,
    Target,
    Turn,
    Usage,
    UsageDay,
    encode,
)
from vigil.store.core import RECOVER_NO
from vigil.store.engine import keys, media_refs
from vigil.store.store import LmdbStore

DAY = 86400.0
CHARS_PER_TOKEN = 3.5  # vigil/model/history.py's estimate
HISTORY_TOKENS = 60_000  # VIGIL_HISTORY_TOKENS' default: where a window starts
MODEL = "claude-sonnet-4-5"
BATCH = 40_000  # records per write transaction


@dataclass(frozen=True)
class YearShape:
    """How big the year is; the defaults are issue 22's "busy year"."""

    sessions: int = 2000
    turns: int = 1_000_000
    conversations: int = 20_000  # past ones, left by /new
    media: int = 20_000  # turns whose message carried a photo or a file
    shared_media: float = 0.2  # of those, the share naming a file some chat sent before (forwards, re-sends)
    media_median_bytes: int = 60_000
    days: float = 365.0
    chat_texts: bool = True  # realistic lengths; False: short texts (a store of a million turns, quickly)
    seed: int = 2026


@dataclass
class Chat:
    """One session of the year: its key, when it lived, and how its turns fall into conversations."""

    key: str
    chat_type: str
    chat_id: int
    thread_id: int | None
    users: tuple[int, ...]
    times: array.array[float] = field(default_factory=lambda: array.array("d"))
    bounds: list[int] = field(default_factory=list)  # first turn index of each generation, and the end


@dataclass
class Built:
    """What was built: the chats (for the measurements to pick from) and the store's figures."""

    chats: list[Chat]
    turns: int
    conversations: int
    media_refs: int
    media_files: int
    media_bytes: int
    seconds: float
    now: float


class _Texts:
    """Words of a Zipf-like vocabulary, sliced out of one corpus: text of any length, costing a slice."""

    def __init__(self, rng: random.Random) -> None:
        letters = "etaoinshrdlucmfwypvbgkjqxz"
        vocabulary = ["".join(rng.choice(letters[:12 + n % 14]) for _ in range(2 + n % 9)) for n in range(4000)]
        weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
        words = rng.choices(vocabulary, weights, k=400_000)
        for n in range(0, len(words), 14):
            words[n] = words[n].capitalize()
            words[n - 1] += "."
        self.corpus = " ".join(words)
        self.rng = rng

    def text(self, median: float, sigma: float, cap: int) -> str:
        length = max(2, min(cap, int(self.rng.lognormvariate(math.log(median), sigma))))
        start = self.rng.randrange(len(self.corpus) - length)
        return self.corpus[start:start + length].strip() or "ok"

    def pool(self, median: float, sigma: float, cap: int, size: int = 1 << 15) -> list[str]:
        """`size` texts of lengths drawn so: a turn picks one with a few random bits, not a draw of its own."""
        return [self.text(median, sigma, cap) for _ in range(size)]


def _spread(rng: random.Random, total: int, weights: list[float], floor: int) -> list[int]:
    """`total` split in proportion to `weights`, each part at least `floor`, summing to `total` exactly."""
    scale = sum(weights)
    parts = [max(floor, int(total * w / scale)) for w in weights]
    order = sorted(range(len(parts)), key=lambda i: -weights[i])
    n = 0
    while sum(parts) != total:
        i = order[n % len(order)]
        step = 1 if sum(parts) < total else -1
        if parts[i] + step >= floor:
            parts[i] += step
        n += 1
    return parts


def plan(shape: YearShape, now: float) -> list[Chat]:
    """The chats of the year: who, when, and how their turns split into conversations."""
    rng = random.Random(shape.seed)
    weights = [rng.lognormvariate(0.0, 1.6) for _ in range(shape.sessions)]
    turns = _spread(rng, shape.turns, weights, 1)
    # Conversations left per chat: more in bigger chats, not in proportion (a long chat is often one topic).
    left = _spread(rng, shape.conversations, [t ** 0.8 * rng.uniform(0.3, 1.7) for t in turns], 0)
    chats: list[Chat] = []
    for n, (count, past) in enumerate(zip(turns, left, strict=True)):
        past = min(past, count - 1)
        kind = rng.random()
        if kind < 0.7:
            chat = Chat(f"tg:{10_000_000 + n}", "private", 10_000_000 + n, None, (10_000_000 + n,))
        else:
            group = -1_001_000_000_000 - n
            topic = 2 + n % 40 if kind > 0.95 else None
            key = f"tg:{group}" if topic is None else f"tg:{group}:{topic}"
            members = tuple(20_000_000 + rng.randrange(3000) for _ in range(rng.randrange(2, 9)))
            chat = Chat(key, "supergroup", group, topic, members)
        began = now - shape.days * DAY * rng.uniform(0.05, 1.0)
        # Most chats were active this week; a third went quiet some time ago (what retention is for).
        ended = now - rng.uniform(0, 7) * DAY if rng.random() < 0.67 else rng.uniform(began, now)
        chat.times = array.array("d", sorted(rng.uniform(began, ended) for _ in range(count)))
        cuts = sorted(rng.sample(range(1, count), past)) if past else []
        chat.bounds = [0, *cuts, count]
        chats.append(chat)
    return chats


def build(store: LmdbStore, shape: YearShape, progress: Callable[[str], None] = lambda line: None) -> Built:
    """Write the year into `store` (empty) and its media store; what was built."""
    started = time.monotonic()
    now = time.time()
    rng = random.Random(shape.seed + 1)
    texts = _Texts(random.Random(shape.seed + 2))
    pools = _Pools(texts, shape.chat_texts)
    chats = plan(shape, now)
    # Every turn of the year, in time order: (time, chat, generation, seq).
    order: list[tuple[float, int, int, int]] = []
    for c, chat in enumerate(chats):
        for g in range(len(chat.bounds) - 1):
            for seq, i in enumerate(range(chat.bounds[g], chat.bounds[g + 1])):
                order.append((chat.times[i], c, g + 1, seq))
    order.sort()
    with_media = set(rng.sample(range(len(order)), min(shape.media, len(order))))
    media = MediaStore(store.data_dir / "media")
    files: list[tuple[str, int]] = []
    tokens: dict[tuple[int, int], list[int]] = {}  # (chat, generation) -> each turn's window tokens
    firsts: dict[tuple[int, int], str] = {}
    usage_rows: dict[bytes, Usage] = {}
    batch: list[media_refs.Change] = []
    media_bytes = 0
    noise = os.urandom(6_000_000)  # media bytes: a window of it behind a unique prefix (cheap, and distinct)
    days: dict[int, str] = {}
    for n, (at, c, generation, seq) in enumerate(order):
        chat = chats[c]
        user = chat.users[seq % len(chat.users)]
        photos: tuple[Attachment, ...] = ()
        if n in with_media:
            if files and rng.random() < shape.shared_media:
                digest, size = rng.choice(files)
            else:
                size = max(2000, min(5_000_000, int(rng.lognormvariate(math.log(shape.media_median_bytes), 0.8))))
                digest = _media_file(media, b"%d:" % n + noise[n % 1_000_000:n % 1_000_000 + size])
                files.append((digest, size))
                media_bytes += size
            photos = (Attachment(kind="image", digest=digest, media_type="image/jpeg", size=size,
                                 tokens=min(1600, size // 750)),)
        turn, window = _turn(pools, seq, at, user, photos, n)
        raw_key = keys.turn(chat.key, generation, seq)
        raw = encode(turn)
        batch.append((b"turns", raw_key, raw))
        if photos:
            batch += media_refs.pairs(keys.session(chat.key), generation, raw)
        tokens.setdefault((c, generation), []).append(window)
        if seq == 0:
            firsts[(c, generation)] = turn.inputs[0].text
        day = days.get(int(at // DAY)) or days.setdefault(int(at // DAY), time.strftime("%Y-%m-%d", time.gmtime(at)))
        row = keys.usage(user, day, chat.key, "chat")
        usage_rows[row] = usage_rows.get(row, Usage()) + turn.usage
        if len(batch) >= BATCH:
            _put(store, batch)
            batch = []
            progress(f"turns {n + 1:,}/{len(order):,}")
    del order
    conversations = 0
    for c, chat in enumerate(chats):
        batch += _session_records(store, chat, tokens, firsts, c, texts)
        conversations += len(chat.bounds) - 2
        if len(batch) >= BATCH:
            _put(store, batch)
            batch = []
    batch += [(b"usage", row, encode(UsageDay(usage=total))) for row, total in usage_rows.items()]
    _put(store, batch)
    return Built(chats=chats, turns=shape.turns, conversations=conversations, media_refs=len(with_media),
                 media_files=len(files), media_bytes=media_bytes, seconds=time.monotonic() - started, now=now)


def _put(store: LmdbStore, changes: list[media_refs.Change]) -> None:
    """One write transaction of the store's writer (made durable as any closure is)."""
    dbs = store.environment.dbs

    def op(txn: lmdb.Transaction) -> None:
        for name, raw_key, value in changes:
            txn.put(raw_key, value or b"", db=dbs[name])

    store.writer.write(op)


def _media_file(media: MediaStore, data: bytes) -> str:
    """A file in the media store, named by the sha256 of its bytes (not fsynced: bench setup)."""
    digest = hashlib.sha256(data).hexdigest()
    path = media.path(digest)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return digest


class _Pools:
    """The texts turns are made of: what users say, replies, tool results (lognormal lengths, long tails)."""

    def __init__(self, texts: _Texts, chat_texts: bool) -> None:
        self.rng = texts.rng
        if chat_texts:
            self.asked, self.replies = texts.pool(70, 1.0, 3000), texts.pool(380, 0.9, 4000)
            self.results = texts.pool(1500, 0.8, 12000, 1 << 12)
        else:  # a million turns quickly: short ones
            self.asked, self.replies, self.results = texts.pool(40, 0.3, 80), texts.pool(60, 0.3, 120), ["ok"]
        self.chat_texts = chat_texts

    def pick(self, pool: list[str]) -> str:
        return pool[self.rng.getrandbits(32) % len(pool)]


def _turn(pools: _Pools, seq: int, at: float, user: int, photos: tuple[Attachment, ...], n: int
          ) -> tuple[Turn, int]:
    """A turn, and the tokens it weighs in a history window."""
    asked, reply = pools.pick(pools.asked), pools.pick(pools.replies)
    took = 2.0 + len(reply) / 80
    messages: tuple[Message, ...]
    chars = len(asked) + len(reply)
    if pools.chat_texts and n % 20 == 7:  # a tool round: the call, its result, then the answer
        output = pools.pick(pools.results)
        call = {"type": "tool_use", "id": f"toolu_{n:020d}", "name": "str_replace_based_edit_tool",
                "input": {"command": "view", "path": "notes/plan.md"}}
        result = {"type": "tool_result", "tool_use_id": f"toolu_{n:020d}", "content": output}
        messages = (Message(role="assistant", content=({"type": "text", "text": "Let me look."}, call)),
                    Message(role="user", content=(result,)),
                    Message(role="assistant", content=({"type": "text", "text": reply},)))
        chars += len(output) + 80
    else:
        messages = (Message(role="assistant", content=({"type": "text", "text": reply},)),)
    window = min(HISTORY_TOKENS, 1500 + seq * 300)
    usage = Usage(calls=len(messages) // 2 + 1, input_tokens=200, cache_read_tokens=window,
                  cache_write_tokens=len(asked) // 3, output_tokens=int(len(reply) / CHARS_PER_TOKEN),
                  cost_micros=int(window * 0.3 + len(reply) * 4.3))
    turn = Turn(seq=seq, status="done", started_at=at, ended_at=at + took,
                inputs=(Input(text=asked, at=at, user_id=user, user_name="Ann", message_id=1000 + seq,
                              attachments=photos),),
                messages=messages, reply=reply, model=MODEL, usage=usage)
    return turn, int(chars / CHARS_PER_TOKEN) + sum(a.tokens for a in photos)


def _window_start(tokens: list[int], rng: random.Random) -> int:
    """Where the window of a conversation stands: it slides to ~60-100% of the budget once it overflows."""
    total = sum(tokens)
    if total <= HISTORY_TOKENS:
        return 0
    keep = HISTORY_TOKENS * rng.uniform(0.6, 1.0)
    start = len(tokens)
    while start > 0 and keep - tokens[start - 1] > 0:
        keep -= tokens[start - 1]
        start -= 1
    return start


def _session_records(store: LmdbStore, chat: Chat, tokens: dict[tuple[int, int], list[int]],
                     firsts: dict[tuple[int, int], str], c: int, texts: _Texts) -> list[media_refs.Change]:
    """The header, past-conversation records, summaries and member rows of one chat."""
    rng = texts.rng
    out: list[media_refs.Change] = []
    generations = len(chat.bounds) - 1
    starts: dict[int, int] = {}
    for g in range(1, generations + 1):
        starts[g] = _window_start(tokens[(c, g)], rng)
        if starts[g]:  # compaction summarised what left the window
            summary = Summary(generation=g, upto=starts[g], start=0, folded=starts[g], made_at=chat.times[
                chat.bounds[g - 1] + starts[g] - 1], text=texts.text(2400, 0.4, 6000), model=MODEL)
            out.append((b"summaries", keys.summary(chat.key, g, starts[g]), encode(summary)))
    for g in range(1, generations):
        first, last = chat.bounds[g - 1], chat.bounds[g] - 1
        record = Conversation(generation=g, turns=last - first + 1, started_at=chat.times[first],
                              ended_at=chat.times[last] + rng.uniform(60, 3 * DAY),
                              title=title_from(firsts[(c, g)]), window_start=starts[g],
                              last_at=chat.times[last] + 10)
        out.append((b"conversations", keys.conversation(chat.key, g), encode(record)))
    current = chat.bounds[-2]
    header = SessionHeader(
        key=chat.key, incarnation=rng.getrandbits(62), created_at=chat.times[0] - 60,
        target=Target(channel="bench", chat_id=chat.chat_id, thread_id=chat.thread_id),
        cwd=f"/srv/vigil-work/chats/{chat.chat_id}", workspace=f"/srv/vigil-work/chats/{chat.chat_id}",
        model=MODEL, chat_type=chat.chat_type, title="" if chat.chat_type == "private" else f"Group {c}",
        generation=generations, generation_started_at=chat.times[current],
        next_seq=chat.bounds[-1] - current, window_start=starts[generations],
        last_activity=chat.times[-1], last_turn_at=chat.times[-1] + 5, participants=chat.users,
        turns_total=chat.bounds[-1], conversation_title=title_from(firsts[(c, generations)]),
        usage=Usage(calls=chat.bounds[-1], cost_micros=chat.bounds[-1] * 9000))
    out.append((b"sessions", keys.session(chat.key), encode(header)))
    out.append((b"recover", keys.session(chat.key), RECOVER_NO))
    out += [(b"members", keys.member(user, chat.key), b"") for user in set(chat.users)]
    return out


__all__ = ["Built", "Chat", "YearShape", "build", "plan"]
