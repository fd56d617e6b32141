"""Webhook mode end to end: `vigil run` with VIGIL_WEBHOOK_URL, the Bot API stand-in POSTing updates to it.

The rig is conftest's (`fresh`: real PTB and anthropic SDK against the loopback stand-ins); the stand-in's
deliverer plays Telegram: it POSTs each update with the secret header until a 2xx, and records every
attempt. The test process opens vigil's LMDB store too (LMDB is made for several processes): to see
what vigil holds durably, and, by holding LMDB's write lock, to keep vigil from making anything durable.
"""

from __future__ import annotations

import json
import socket
import stat
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import run_vigil
from tests.rig import Rig
from tests.standins.bot_api import Message, User, WebhookDelivery
from tests.standins.messages_api import RecordedRequest, TextReply
from vigil.adapters.telegram.service import ALLOWED_UPDATES
from vigil.store.store import LmdbStore, open_store

pytestmark = pytest.mark.e2e

HOOK_PATH = "/tg/hook"
WAIT = 30.0  # generous: turns take seconds when the machine is loaded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhook_settings(**extra: str) -> dict[str, str]:
    port = free_port()
    return {"VIGIL_WEBHOOK_URL": f"http://127.0.0.1:{port}{HOOK_PATH}", "VIGIL_WEBHOOK_LISTEN": f"127.0.0.1:{port}",
            **extra}


@pytest.fixture
def rig(fresh: Callable[..., Rig]) -> Rig:
    """A vigil of the test's own in webhook mode (each test stops, kills or restarts it)."""
    return fresh(**webhook_settings())


@pytest.fixture
def store(rig: Rig) -> Iterator[LmdbStore]:
    opened = open_store(Path(rig.env["VIGIL_DATA_DIR"]))
    try:
        yield opened
    finally:
        opened.close()


def deliveries(rig: Rig, update_id: int) -> list[WebhookDelivery]:
    return [d for d in rig.bot.webhook_deliveries if d.update_id == update_id]


def update_of(rig: Rig, message: Message) -> int:
    """The update id the stand-in queued for a user's message."""
    for update in rig.bot.queued_updates():
        posted = update.get("message", {})
        if posted.get("message_id") == message.message_id and posted.get("chat", {}).get("id") == message.chat_id:
            return int(update["update_id"])
    raise AssertionError(f"no queued update for message {message.message_id}")


def accepted(rig: Rig, update_id: int) -> bool:
    return any(d.accepted for d in deliveries(rig, update_id))


def times_said(request: RecordedRequest, words: str) -> int:
    """How many user messages of a model request carry `words`: the history as vigil holds it."""
    return sum(1 for m in request.body["messages"] if m["role"] == "user" and words in json.dumps(m["content"]))


def settled(rig: Rig, store: LmdbStore, key: str) -> bool:
    """Nothing of the session waits any more: inbox empty, no open turn, no pending message."""
    header = store.header(key)
    return (header is not None and header.open_turn is None and not header.pending
            and not any(e.key == key for _, e in store.inbox()))


def post(rig: Rig, update: dict[str, Any], secret: str | None, path: str = HOOK_PATH) -> int:
    """POST an update to vigil's webhook as anyone could; the HTTP status."""
    port = rig.env["VIGIL_WEBHOOK_LISTEN"].rsplit(":", 1)[1]
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(update).encode(),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_updates_posted_with_the_secret_are_answered_and_nothing_polls(rig: Rig) -> None:
    hook = rig.bot.webhook
    assert hook is not None and hook.url == rig.env["VIGIL_WEBHOOK_URL"]
    secret_file = Path(rig.env["VIGIL_DATA_DIR"]) / "webhook-secret"
    assert hook.secret_token == secret_file.read_text().strip()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    set_calls = [c for c in rig.bot.calls if c.method == "setWebhook"]
    assert set_calls[-1].params["allowed_updates"] == list(ALLOWED_UPDATES)  # the same as polling asks for
    assert set_calls[-1].params.get("drop_pending_updates") in (False, "false", "False", None)

    ana = rig.person("Ana")
    rig.ask(ana.id, ana, "hello by webhook", "echo: hello by webhook", timeout=WAIT)
    rig.ask(ana.id, ana, "/status", "Model", timeout=WAIT)  # answered out of band: still one delivery, answered
    # The reply may reach the chat before the answer reaches "Telegram": the answer waits for the mark on disk.
    rig.bot.wait_for(lambda: rig.bot.queued_updates() == [], WAIT, "every update answered")
    attempts = rig.bot.webhook_deliveries
    assert attempts and all(d.accepted and d.secret_token == hook.secret_token for d in attempts), attempts
    assert not [c for c in rig.bot.calls if c.method == "getUpdates"], "vigil polled in webhook mode"


def test_requests_without_the_right_secret_get_403_and_reach_no_session(rig: Rig, store: LmdbStore) -> None:
    eve = rig.person("Eve")
    key = f"tg:{eve.id}"
    rig.bot.pause_webhook()
    sent = rig.say(eve.id, eve, "let me in")
    update = next(u for u in rig.bot.queued_updates() if u["update_id"] == update_of(rig, sent))
    assert post(rig, update, None) == 403
    assert post(rig, update, "not-the-secret") == 403
    hook = rig.bot.webhook
    assert hook is not None and hook.secret_token
    assert post(rig, update, hook.secret_token + "x") == 403
    assert post(rig, update, hook.secret_token, path="/elsewhere") == 404
    assert not rig.requests_with("let me in"), "a refused request reached the model"
    assert store.header(key) is None and not [e for _, e in store.inbox() if e.key == key]
    assert not store.update_taken(update["update_id"]), "a refused request was marked as taken"
    assert not rig.replies(eve.id, sent)

    rig.bot.pause_webhook(False)  # Telegram's own delivery, with the secret, is taken
    rig.answer(eve.id, sent, "echo: let me in", timeout=WAIT)
    assert [d.status for d in deliveries(rig, update["update_id"])] == [200]


def test_kill_9_before_the_update_is_durable_means_no_answer_then_a_redelivery_answered_once(
        rig: Rig, store: LmdbStore) -> None:
    ida = rig.person("Ida")
    key = f"tg:{ida.id}"
    # The test holds the store's commit lock, as another process committing would (vigil.store.engine.journal):
    # vigil can make nothing durable, so it must not answer Telegram.
    lock = store._lmdb.journal.lock
    lock.hold()
    try:
        sent = rig.say(ida.id, ida, "keep this one safe")
        update_id = update_of(rig, sent)
        # vigil is working on it (typing): PTB's own webhook handler would have said 200 by now.
        rig.bot.wait_for(lambda: any(c[0] == ida.id for c in rig.bot.chat_actions), WAIT, "vigil typing")
        assert deliveries(rig, update_id) == [], "vigil answered before the update was durable"
        rig.running().kill9()
    finally:
        lock.unhold()
    rig.bot.wait_for(lambda: deliveries(rig, update_id), WAIT, "the deliverer seeing the connection drop")
    first = deliveries(rig, update_id)[0]
    assert (first.status, first.error) == (None, "dropped")
    assert not store.update_taken(update_id) and store.header(key) is None

    rig.start()
    rig.answer(ida.id, sent, "echo: keep this one safe", timeout=WAIT)
    rig.bot.wait_for(lambda: accepted(rig, update_id) and settled(rig, store, key), WAIT, "the redelivery taken")
    assert len([m for m in rig.replies(ida.id, sent) if "keep this one safe" in m.text]) == 1
    later = rig.ask(ida.id, ida, "what did I say?", "echo: what did I say?", timeout=WAIT)
    assert later
    assert times_said(rig.requests_with("what did I say?")[-1], "keep this one safe") == 1


def test_kill_9_after_the_update_is_durable_but_before_telegram_has_the_answer_is_answered_once(
        rig: Rig, store: LmdbStore) -> None:
    max_ = rig.person("Max")
    key = f"tg:{max_.id}"
    rig.api.add_rule(lambda body: "remember the lighthouse" in json.dumps(body["messages"][-1]),
                     TextReply("slowly", delay=8), times=1)
    rig.bot.lose_webhook_answers(1, then_pause=True)  # the answer never reaches "Telegram"
    sent = rig.say(max_.id, max_, "remember the lighthouse")
    update_id = update_of(rig, sent)
    rig.bot.wait_for(lambda: store.update_taken(update_id), WAIT, "the update durable in vigil's store")
    rig.bot.wait_for(lambda: deliveries(rig, update_id), WAIT, "the lost answer")
    rig.wait_request("remember the lighthouse", WAIT)  # the turn runs (its model call held by the stand-in)
    rig.running().kill9()  # mid-turn, and Telegram still thinks the update was never taken
    assert [d.error for d in deliveries(rig, update_id)] == ["lost"]
    assert update_of(rig, sent) == update_id, "the stand-in must deliver it again"

    rig.start()
    rig.bot.pause_webhook(False)
    rig.bot.wait_for(lambda: accepted(rig, update_id), WAIT, "the redelivery answered")
    rig.answer(max_.id, sent, "echo: remember the lighthouse", timeout=WAIT)
    rig.bot.wait_for(lambda: settled(rig, store, key), WAIT, "the session settled")
    assert len([m for m in rig.replies(max_.id, sent) if "lighthouse" in m.text]) == 1
    rig.ask(max_.id, max_, "and then?", "echo: and then?", timeout=WAIT)
    assert times_said(rig.requests_with("and then?")[-1], "remember the lighthouse") == 1


def test_the_generated_secret_is_kept_across_restarts_and_polling_again_deletes_the_webhook(rig: Rig) -> None:
    first = rig.bot.webhook
    assert first is not None and first.secret_token
    rig.stop()
    rig.start()
    again = rig.bot.webhook
    assert again is not None and again.secret_token == first.secret_token
    ana = rig.person("Ana")
    rig.ask(ana.id, ana, "still there?", "echo: still there?", timeout=WAIT)

    rig.stop()
    del rig.env["VIGIL_WEBHOOK_URL"]
    rig.start()
    assert rig.bot.webhook is None
    calls = [c.method for c in rig.bot.calls]
    assert "deleteWebhook" in calls[len(calls) - calls[::-1].index("getMe"):]  # this start's calls
    rig.ask(ana.id, ana, "and by polling?", "echo: and by polling?", timeout=WAIT)


def test_a_secret_that_is_set_is_the_one_registered(fresh: Callable[..., Rig]) -> None:
    rig = fresh(**webhook_settings(VIGIL_WEBHOOK_SECRET="my_own-Secret42"))
    hook = rig.bot.webhook
    assert hook is not None and hook.secret_token == "my_own-Secret42"
    assert not (Path(rig.env["VIGIL_DATA_DIR"]) / "webhook-secret").exists()
    assert "my_own-Secret42" not in rig.running().err.text, "the secret reached the log"
    ana: User = rig.person("Ana")
    rig.ask(ana.id, ana, "hi", "echo: hi", timeout=WAIT)


def test_bad_webhook_settings_are_refused_in_one_line(tmp_path: Path, fresh: Callable[..., Rig]) -> None:
    rig = fresh(start=False, **webhook_settings(VIGIL_WEBHOOK_SECRET="has spaces in it"))
    result = run_vigil(["run"], rig.env, timeout=30)
    assert result.returncode == 2
    assert "VIGIL_WEBHOOK_SECRET" in result.stderr and "Traceback" not in result.stderr
