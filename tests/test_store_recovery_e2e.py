"""The black-box report of issue 22, as a test: `vigil run` with VIGIL_STORE_MAP_MB=1, long replies in twenty
chats, the store grown past the setting, kill -9 in the middle of the talk, and a restart.

Before the fix the restart died in the journal's replay ("an unexpected error stopped vigil") and so did
every restart after it. Now it must start, every time, with every reply a user saw in the store.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.rig import Rig
from tests.standins.bot_api import User
from vigil.store.store import open_store

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
CHATS = 20
ROUNDS = 2
TOKEN = re.compile(r"<t-\d+-\d+-\d+>")
FILL = "the quick brown fox jumps over the lazy dog " * 70  # about 3 KB: the echo makes a long reply


def talk(rig: Rig, user: User, round_: int, stop: threading.Event) -> None:
    """One user: a long message with a token of its own, its answer awaited (or a while), the next one."""
    number = 0
    while not stop.is_set():
        number += 1
        token = f"<t-{user.id}-{round_}-{number}>"
        sent = rig.say(user.id, user, f"{token} {FILL}")
        while not stop.is_set() and not any(token in m.text for m in rig.replies(user.id, sent)):
            stop.wait(0.05)


def shown_tokens(rig: Rig, user: User) -> set[str]:
    return {token for message in rig.bot.bot_messages(user.id) for token in TOKEN.findall(message.text)}


def stored_tokens(data_dir: Path, user: User) -> set[str]:
    """Read from this (another) process, as `vigil sessions` does, with the same small map setting."""
    store = open_store(data_dir, map_mb=1)
    try:
        header = store.header(f"tg:{user.id}")
        if header is None:
            return set()
        return {token for turn in store.turns(header.key, header.generation) for token in TOKEN.findall(turn.reply)}
    finally:
        store.close()


def test_a_store_grown_past_a_1_mb_map_restarts_after_kill_9_with_every_reply_a_user_saw(
        fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_STORE_MAP_MB="1", VIGIL_MESSAGES_PER_MINUTE="100000")
    data_dir = Path(rig.env["VIGIL_DATA_DIR"])
    users = [rig.person(f"U{i}") for i in range(CHATS)]
    for round_ in range(ROUNDS):
        stop = threading.Event()
        talkers = [threading.Thread(target=talk, args=(rig, user, round_, stop), daemon=True) for user in users]
        for talker in talkers:
            talker.start()
        try:
            grown = (round_ + 1.5) * MIB

            def past(grown: float = grown) -> bool:
                return os.path.getsize(data_dir / "data.mdb") > grown

            rig.bot.wait_for(past, timeout=120, message=f"the store to grow past {grown / MIB} MB")
            rig.running().kill9()  # the talk goes on: commits are under way, records wait in the journal
        finally:
            stop.set()
            for talker in talkers:
                talker.join(timeout=30)
        rig.start()  # waits for service.ready; fails with vigil's output if it died instead
        for user in users:
            missing = shown_tokens(rig, user) - stored_tokens(data_dir, user)
            assert not missing, f"round {round_}: replies {user.first_name} saw are not stored: {sorted(missing)}"
