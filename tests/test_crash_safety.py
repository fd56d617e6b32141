"""Crash safety: `vigil run` killed with SIGKILL again and again while several chats talk.

After every restart, each reply a user saw (every bot message with model text, as Telegram
shows it) must be in the store, and every session's history must still make a valid request.
At the end, every message vigil confirmed to Telegram has reached the model, except one confirmed
in the instant before a kill (the durable inbox's one group commit may not have reached the disk).
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.procs import VigilProcess, vigil_env
from tests.standins.bot_api import BotAPI
from tests.standins.messages_api import MessagesAPI, validate_request
from vigil.actors.engine.window import HistoryWindow
from vigil.model.history import join
from vigil.store.store import open_store

pytestmark = pytest.mark.e2e

CHATS = (101, 102, 103, 104)
KILLS = 6
# PTB confirms an update (its next getUpdates) before handling it; the inbox write follows within
# milliseconds (more on a loaded machine). A kill that soon after may lose the message: allowed, with margin.
IN_FLIGHT_S = 0.5


def chatter(tg: BotAPI, chat: int, stop: threading.Event, sent: list[str]) -> None:
    """One user: a message (now and then a second one right after), wait for its answer (or a while, if
    vigil is down), the next message."""
    rng = random.Random(chat)
    number = 0
    while not stop.is_set():
        number += 1
        body = f"c{chat}-m{number}"
        style = rng.choice(["", "", "[[slow=1]][[len=300]] ", "[[len=5000]] "])
        tg.send_text(chat, chat, f"{style}{body}")
        sent.append(body)
        if style.startswith("[[slow") and not stop.wait(0.3):
            tg.send_text(chat, chat, f"{body}x")  # said while the slow answer streams: it waits behind it
            sent.append(f"{body}x")
        deadline = time.monotonic() + 8
        while not stop.is_set() and time.monotonic() < deadline:
            if any(body in m.text for m in tg.bot_messages(chat)):
                break
            stop.wait(0.05)


NOTICES = ("⏸", "⚠️", "⏳", "⏹", "📊", "🆕")


def squash(text: str) -> str:
    return " ".join(text.split())


def model_text(shown: str) -> str:
    """The model's words in a bot message: without vigil's note line and the preview's leading ellipsis."""
    for marker in NOTICES:
        shown = shown.split(f"\n\n{marker}")[0]
    return squash(shown.lstrip("…"))


def acknowledged(tg: BotAPI) -> dict[str, float]:
    """Each message text vigil fetched, and when it confirmed it (its next getUpdates with a higher offset)."""
    polls = [c for c in list(tg.calls) if c.method == "getUpdates" and c.ok and not c.client_gone]
    confirmed: dict[str, float] = {}
    for index, poll in enumerate(polls):
        for update in poll.result or []:
            text = (update.get("message") or {}).get("text", "")
            later = (p.time for p in polls[index + 1:] if int(p.params.get("offset") or 0) > update["update_id"])
            at = next(later, None)
            if text and at is not None:
                confirmed.setdefault(text, at)
    return confirmed


def wait_until_answered(data_dir: Path, tg: BotAPI, also: Callable[[], bool]) -> None:
    """Until the running vigil holds nothing unanswered (its inbox is empty and no turn is open) and `also`.

    A message leaves the inbox only with the turn (or header) that holds it, and a turn that runs
    longer than a moment is written as open: so this is "every received message has been answered".
    """
    store = open_store(data_dir)
    try:
        tg.wait_for(lambda: store.inbox_count() == 0 and all(h.open_turn is None for h in store.headers())
                    and also(), timeout=60, message="vigil to answer everything it received")
    except AssertionError as exc:
        waiting = [(e.key, e.text) for _, e in store.inbox()]
        open_turns = [(h.key, h.open_turn) for h in store.headers() if h.open_turn is not None]
        raise AssertionError(f"{exc}\nin the inbox: {waiting}; open turns: {open_turns}") from exc
    finally:
        store.close()


def check_store(data_dir: Path, tg: BotAPI) -> None:
    """Everything a user saw is stored; every stored history makes a valid request."""
    store = open_store(data_dir)
    try:
        for chat in CHATS:
            key = f"tg:{chat}"
            header = store.header(key)
            shown = [model_text(m.text) for m in tg.bot_messages(chat) if not m.text.startswith(NOTICES)]
            shown = [text for text in shown if text]
            if header is None:
                assert not shown, f"{key}: replies were shown but nothing is stored"
                continue
            turns = store.turns(key, header.generation)
            stored = squash(" ".join(f"{t.reply} {t.superseded_reply}" for t in turns))
            for text in shown:
                assert text[:80] in stored, f"{key}: the user saw {text[:80]!r}, which is not stored"
            window = HistoryWindow.load(store, key, header.generation, 0, header.next_seq, False)
            messages = join([window.messages(), [{"role": "user", "content": [{"type": "text", "text": "next"}]}]])
            problem = validate_request({"model": "claude-sonnet-5-5", "max_tokens": 100, "messages": messages})
            assert problem is None, f"{key}: {problem}"
    finally:
        store.close()


def test_repeated_kill_9_loses_no_delivered_turn(tmp_path: Path) -> None:
    rng = random.Random(4711)
    with MessagesAPI() as api, BotAPI() as tg:
        for chat in CHATS:
            tg.add_private_chat(tg.add_user(chat, f"user{chat}"))
        env = vigil_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=api.base_url,
                        TELEGRAM_BOT_TOKEN=tg.token, VIGIL_TELEGRAM_BASE_URL=tg.base_url,
                        VIGIL_ALLOWED_USERS=",".join(map(str, CHATS)), VIGIL_MESSAGES_PER_MINUTE="10000")
        data_dir = Path(env["VIGIL_DATA_DIR"])
        stop = threading.Event()
        sent: dict[int, list[str]] = {chat: [] for chat in CHATS}
        users = [threading.Thread(target=chatter, args=(tg, chat, stop, sent[chat]), daemon=True) for chat in CHATS]
        vigil = VigilProcess(["run"], env)
        tg.wait_for(lambda: tg.commands, timeout=60, message="vigil to start")
        for user in users:
            user.start()
        logs: list[str] = []
        killed_at: list[float] = []

        def deliveries() -> int:
            return len([c for c in tg.calls if c.method in ("sendMessage", "editMessageText")])

        def deliveries_reach(target: int) -> Callable[[], bool]:
            return lambda: deliveries() >= target

        def lost() -> list[str]:
            """Messages vigil confirmed (not in the instant before a kill) that no model request carries."""
            asked = "\n".join(r.last_user_text() for r in list(api.requests))
            return [text for text, at in acknowledged(tg).items()
                    if not any(0 <= kill - at < IN_FLIGHT_S for kill in killed_at)
                    and not re.search(rf"(?<![\w-]){re.escape(text.split()[-1])}(?![\w-])", asked)]

        def is_ready(process: VigilProcess) -> Callable[[], bool]:
            return lambda: process.out is not None and any('"service.ready"' in line for line in process.err.lines)

        try:
            for _ in range(KILLS):
                tg.wait_for(deliveries_reach(deliveries() + rng.randint(2, 12)), timeout=30,
                            message="some traffic before the next kill")
                time.sleep(rng.uniform(0, 0.4))  # a random moment, not a quiet one
                killed_at.append(time.monotonic())
                vigil.kill9()
                logs.append(vigil.err.text)
                check_store(data_dir, tg)
                vigil = VigilProcess(["run"], env)
                tg.wait_for(is_ready(vigil), timeout=60, message="vigil to restart")
        except AssertionError as exc:
            tail = "\n".join((logs[-1] if logs else vigil.err.text).splitlines()[-40:])
            raise AssertionError(f"{exc}\n--- the last vigil's log:\n{tail}") from exc
        finally:
            stop.set()
            for user in users:
                user.join(timeout=15)
        # Quiet now: vigil answers everything it holds (nothing is left to be collected with the messages
        # below), and every message it confirmed to Telegram reached the model ...
        tg.wait_for(lambda: tg.pending_updates == 0, timeout=30, message="vigil to take every update")
        try:
            wait_until_answered(data_dir, tg, also=lambda: not lost())
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nmessages vigil confirmed to Telegram that never reached the model: "
                                 f"{lost()}") from exc
        # ... every chat's last message gets its answer, and the histories are still valid.
        for chat in CHATS:
            tg.send_text(chat, chat, f"final c{chat}")
            tg.wait_for_bot_text(chat, f"echo: final c{chat}", timeout=60)
        assert vigil.terminate() == 0
        check_store(data_dir, tg)
        assert not api.errors, f"invalid requests after crashes: {api.errors[:3]}"
        # Every user kept talking across the kills (each chat got past its first message).
        assert all(len(v) >= 2 for v in sent.values()), {chat: len(v) for chat, v in sent.items()}
