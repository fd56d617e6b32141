"""No chat waits for another: a slow command in one chat, and the others keep talking.

`vigil run` against the stand-ins. Each test proves the overlap, not a speed: the other chat is
answered while the slow command is observably still running (its Bot API call still held by the
stand-in, or its completion not yet logged), which cannot happen when updates are handled one at a
time. Order within a chat is kept, except for /stop and /status, which only signal and read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig import Rig, close_rig, make_rig
from tests.standins.bot_api import User
from vigil.records.schema import Input, SessionHeader, Target, Turn
from vigil.store.store import open_store

pytestmark = pytest.mark.e2e

LONG_HISTORY = 25_000  # turns: exporting them takes seconds


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = make_rig(tmp_path / "rig")
    try:
        yield made
    finally:
        close_rig(made)


def press_answered(rig: Rig) -> bool:
    """Whether the stand-in has given vigil its answer to answerCallbackQuery (a stalled one is recorded then)."""
    return any(c.method == "answerCallbackQuery" for c in list(rig.bot.calls))


def slow_export_logged(rig: Rig) -> bool:
    return any('"telegram.slow_update"' in line and '"/export"' in line for line in rig.running().err.lines)


def test_a_held_up_button_delays_no_other_chat_and_not_stop_or_status(rig: Rig) -> None:
    rig.start()
    ann, ben = rig.person("Ann"), rig.person("Ben")
    rig.ask(ann.id, ann, "something to forget", "echo: something to forget")
    prompt = rig.ask(ann.id, ann, "/forget", "cannot be undone")
    # Telegram holds its answer to vigil's answerCallbackQuery for Ann's press for 8 s (a slow data centre):
    # her button's handler waits that long.
    rig.bot.stall(seconds=8, method="answerCallbackQuery")
    press = rig.bot.press_button(ann.id, ann.id, prompt.message_id, f"cancel:{ann.id}")
    rig.bot.wait_for(lambda: rig.bot.pending_updates == 0, 5, "vigil took the press")
    waiting = rig.say(ann.id, ann, "said after the press")

    rig.ask(ben.id, ben, "meanwhile in another chat", "echo: meanwhile in another chat", timeout=5)
    assert not press_answered(rig), "Ben was answered only after Ann's handler finished"
    # In Ann's own chat, /status and /stop do not queue behind the held-up press either.
    status = rig.ask(ann.id, ann, "/status", "📊 Session", timeout=5)
    assert "State: idle" in status.text, status.text
    rig.ask(ann.id, ann, "/stop", "Nothing to stop", timeout=5)
    assert not press_answered(rig)

    # Her message keeps its place behind the press: answered only once the press was handled.
    rig.answer(ann.id, waiting, "echo: said after the press", timeout=20)
    assert press_answered(rig)
    assert rig.bot.callback_query(press.id).answer_text == "Cancelled."


def write_long_history(rig: Rig, user: User) -> None:
    """A private chat with a long history, written to the store before vigil starts."""
    store = open_store(Path(rig.env["VIGIL_DATA_DIR"]))
    try:
        key = f"tg:{user.id}"
        previous: SessionHeader | None = None
        future = None
        for seq in range(LONG_HISTORY):
            header = SessionHeader(key=key, incarnation=7, created_at=1.0, target=Target(channel="tg", chat_id=user.id),
                                   cwd=rig.env["VIGIL_WORKDIR_ROOT"], model="claude-sonnet-4-6", chat_type="private",
                                   participants=(user.id,), next_seq=seq + 1, turns_total=seq + 1,
                                   last_activity=time.time(), last_turn_at=time.time())
            turn = Turn(seq=seq, status="done", started_at=time.time(), ended_at=time.time(),
                        inputs=(Input(text=f"question {seq}", at=time.time(), user_id=user.id),),
                        reply=f"answer {seq} " + "x" * 300)
            future = store.commit(header, turn, create=previous is None, previous=previous, urgent=False)
            previous = header
        assert future is not None
        future.result()
    finally:
        store.close()


def test_a_long_export_delays_no_other_chat(rig: Rig) -> None:
    eve, ben = rig.person("Eve"), rig.person("Ben")
    write_long_history(rig, eve)
    rig.start()
    rig.ask(ben.id, ben, "warming up", "echo: warming up")

    rig.say(eve.id, eve, "/export")
    answered = 0
    for n in range(3):
        rig.ask(ben.id, ben, f"still talking {n}", f"echo: still talking {n}", timeout=10)
        # Ben's answer came while Eve's /export was still being handled (its end is logged, as a slow update).
        assert not slow_export_logged(rig), f"Ben's message {n} waited for Eve's export"
        answered += 1
    assert answered == 3
    rig.running().err.wait_for(lambda t: '"/export"' in t and '"telegram.slow_update"' in t, 60,
                               "the export's end")
    document = rig.bot.wait_for(lambda: next((d for d in rig.bot.documents if d.chat_id == eve.id), None), 60,
                                "the exported document")
    assert f"answer {LONG_HISTORY - 1} " in document.content.decode()
