"""Backup and restore through the command line and `vigil run` (issue 15.4).

The done-when: a backup taken while chats are talking restores into a fresh process (a new data
directory) that continues every conversation: the next request of each chat carries the history the
backup holds. And the refusals: a restore while the service runs, a backup damaged after it was taken.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.procs import run_vigil
from tests.rig import Rig
from tests.standins.bot_api import User
from tests.standins.images import make_jpeg
from vigil.store.store import open_store

pytestmark = pytest.mark.e2e

SLOW = 40.0  # a reply's timeout: the test machine is shared and sometimes very slow
CHATS = 5


def user_texts(data_dir: Path, key: str) -> list[str]:
    """The user messages of the session's current conversation, oldest first, as a store holds them."""
    store = open_store(data_dir)
    try:
        header = store.header(key)
        assert header is not None, key
        return [i.text for t in store.turns(key, header.generation) for i in t.inputs]
    finally:
        store.close()


def talk(rig: Rig, users: list[User], stop: threading.Event, answered: list[float]) -> None:
    """Each chat asks, one message after another, until `stop`; the time of every answer is noted."""
    n = 0
    while not stop.is_set():
        for user in users:
            rig.ask(user.id, user, f"{user.first_name} message {n}", f"echo: {user.first_name} message {n}",
                    timeout=SLOW)
            answered.append(time.time())
        n += 1


def test_a_backup_taken_while_chats_talk_restores_into_a_fresh_process_that_continues_every_conversation(
        fresh: Callable[..., Rig], tmp_path: Path) -> None:
    rig = fresh()
    users = [rig.person(f"Chat{i}") for i in range(CHATS)]
    picture = make_jpeg(80, 60, level=77)
    for user in users:
        rig.ask(user.id, user, f"{user.first_name} opens", f"echo: {user.first_name} opens", timeout=SLOW)
    sent = rig.bot.send_photo(users[0].id, users[0].id, picture, caption="a picture to keep")
    rig.answer(users[0].id, sent, "echo:", timeout=SLOW)

    stop = threading.Event()
    answered: list[float] = []
    errors: list[Exception] = []

    def run_talk() -> None:
        try:
            talk(rig, users, stop, answered)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    talker = threading.Thread(target=run_talk, daemon=True)
    talker.start()
    rig.bot.wait_for(lambda: len(answered) >= CHATS, SLOW, "the chats to be talking")
    backup = tmp_path / "backups" / "daily"
    began = time.time()
    result = run_vigil(["backup", str(backup)], rig.env, timeout=120)
    ended = time.time()
    rig.bot.wait_for(lambda: any(t > ended for t in answered), SLOW, "the chats to go on after the backup")
    stop.set()
    talker.join(SLOW * CHATS)
    assert not errors, errors
    assert result.returncode == 0, result.stderr
    assert f"{CHATS} session(s)" in result.stdout and "1 media file(s)" in result.stdout, result.stdout
    during = [t for t in answered if began <= t <= ended]
    print(f"\n{len(during)} replies were answered while the backup ran ({ended - began:.2f} s)")
    rig.stop()

    # A fresh process on a new data directory, the same bot and chats.
    fresh_data = tmp_path / "restored"
    rig.env["VIGIL_DATA_DIR"] = str(fresh_data)
    restored = run_vigil(["restore", str(backup)], rig.env, timeout=120)
    assert restored.returncode == 0, restored.stderr
    assert f"restored {CHATS} session(s)" in restored.stdout, restored.stdout
    check = run_vigil(["check"], rig.env, timeout=60)
    assert "ok   store:" in check.stdout and f"{CHATS} session(s)" in check.stdout, check.stdout
    held = {user.id: user_texts(fresh_data, f"tg:{user.id}") for user in users}
    assert all(texts and texts[0] == f"{u.first_name} opens" for u, texts in zip(users, held.values(), strict=True))
    assert all(len(texts) >= 2 for texts in held.values()), "the backup holds what was said during the talk"

    rig.start()
    for user in users:
        rig.ask(user.id, user, f"{user.first_name} after the restore", f"echo: {user.first_name} after the restore",
                timeout=SLOW)
        request = rig.wait_request(f"{user.first_name} after the restore", SLOW)
        history = str(request.body["messages"])
        # Every message the backup holds for this chat, in order, then the new one.
        positions = [m.start() if (m := re.search(re.escape(text) + r"(?!\d)", history)) else -1
                     for text in held[user.id]]
        assert all(p >= 0 for p in positions) and positions == sorted(positions), (user.first_name, history[:3000])
    # The picture came back with the store: the first chat's requests carry its bytes again.
    request = rig.wait_request(f"{users[0].first_name} after the restore", SLOW)
    assert any(b.data == picture for b in request.media()), "the restored media file is sent again"


def test_restore_is_refused_while_the_service_runs(fresh: Callable[..., Rig], tmp_path: Path) -> None:
    rig = fresh()
    ann = rig.person("Ann")
    rig.ask(ann.id, ann, "before the backup", "echo: before the backup", timeout=SLOW)
    backup = tmp_path / "b"
    assert run_vigil(["backup", str(backup)], rig.env, timeout=120).returncode == 0
    rig.ask(ann.id, ann, "after the backup", "echo: after the backup", timeout=SLOW)
    store_file = rig.tmp / "data" / "data.mdb"
    inode = os.stat(store_file).st_ino
    refused = run_vigil(["restore", str(backup)], rig.env, timeout=60)
    assert refused.returncode == 2 and "refusing to restore while the store is in use" in refused.stderr, refused
    assert "vigil run" in refused.stderr and "Traceback" not in refused.stderr
    assert os.stat(store_file).st_ino == inode, "the live store was not touched"
    assert not list((rig.tmp / "data").glob("pre-restore-*"))
    rig.ask(ann.id, ann, "still here", "echo: still here", timeout=SLOW)
    assert "after the backup" in str(rig.wait_request("still here", SLOW).body["messages"])


def test_a_damaged_backup_is_refused_by_its_manifest(fresh: Callable[..., Rig], tmp_path: Path) -> None:
    rig = fresh()
    bo = rig.person("Bo")
    rig.ask(bo.id, bo, "worth keeping", "echo: worth keeping", timeout=SLOW)
    sent = rig.bot.send_photo(bo.id, bo.id, make_jpeg(40, 30, level=99), caption="and a picture")
    rig.answer(bo.id, sent, "echo:", timeout=SLOW)
    backup = tmp_path / "b"
    assert run_vigil(["backup", str(backup)], rig.env, timeout=120).returncode == 0
    rig.stop()
    store_file = rig.tmp / "data" / "data.mdb"
    inode = os.stat(store_file).st_ino

    with open(backup / "store" / "data.mdb", "r+b") as handle:  # one byte flipped, deep in the store
        handle.seek(os.path.getsize(backup / "store" / "data.mdb") // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    refused = run_vigil(["restore", str(backup)], rig.env, timeout=60)
    assert refused.returncode == 2 and "is damaged: store/data.mdb does not match its manifest" in refused.stderr
    media = next((backup / "media").glob("*/*"))
    media.unlink()
    refused = run_vigil(["restore", str(backup)], rig.env, timeout=60)
    assert refused.returncode == 2 and "is missing" in refused.stderr, refused.stderr
    (backup / "manifest.json").unlink()
    refused = run_vigil(["restore", str(backup)], rig.env, timeout=60)
    assert refused.returncode == 2 and "not a vigil backup" in refused.stderr, refused.stderr
    assert os.stat(store_file).st_ino == inode and not list((rig.tmp / "data").glob("pre-restore-*"))
    rig.start()
    rig.ask(bo.id, bo, "nothing was lost", "echo: nothing was lost", timeout=SLOW)
    assert "worth keeping" in str(rig.wait_request("nothing was lost", SLOW).body["messages"])
