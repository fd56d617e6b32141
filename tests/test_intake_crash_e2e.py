"""Nothing Telegram handed over is lost: `vigil run` killed with SIGKILL inside an album's gathering window
and during a file's download, in polling mode and in webhook mode, then started again.

The rig is conftest's (`fresh`: real PTB and anthropic SDK against the loopback stand-ins). The kill comes
once Telegram (the stand-in) has been told the updates arrived: polling moved its getUpdates offset past
them, or the webhook answered 200. From then on Telegram will never send them again, so only what vigil
made durable before its confirmation can bring them back. File downloads are held by the stand-in
(`hold_downloads`): the document's download is under way when vigil dies, and an album killed late (its
window over, downloading) would show as a held download, which the album test checks it is not.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests import media_samples
from tests.rig import Rig
from tests.standins.bot_api import Message, User
from tests.standins.images import make_jpeg
from tests.standins.messages_api import RecordedRequest, TextReply
from tests.test_webhook_e2e import store as store  # the fixture: vigil's store, opened by the test too
from tests.test_webhook_e2e import times_said, webhook_settings
from vigil.store.store import LmdbStore

pytestmark = pytest.mark.e2e

WAIT = 30.0
MODES = ["polling", "webhook"]


@pytest.fixture(params=MODES)
def rig(request: pytest.FixtureRequest, fresh: Callable[..., Rig]) -> Rig:
    """A vigil of the test's own, polling or with a webhook; each test kills it."""
    return fresh(**(webhook_settings() if request.param == "webhook" else {}))


def confirmed(rig: Rig, message: Message) -> bool:
    """Telegram forgot the update of a user's message: an offset moved past it, or the webhook answered 200."""
    return not any(u.get("message", {}).get("message_id") == message.message_id
                   and u["message"]["chat"]["id"] == message.chat_id for u in rig.bot.queued_updates())


def blocks(request: RecordedRequest, kind: str) -> list[bytes]:
    """The bytes of the `kind` blocks ("image", "document") in the request's last user message."""
    content = request.body["messages"][-1]["content"]
    found: list[dict[str, Any]] = [b for b in content if isinstance(b, dict) and b.get("type") == kind]
    return [base64.b64decode(b["source"]["data"]) for b in found]


def answered_once(rig: Rig, user: User, after: Message, words: str, asked: int = 1) -> None:
    """One reply for `words` (and `asked` model requests: a turn cut short mid-call asks again), also once
    the chat went on."""
    chat_id = user.id
    rig.answer(chat_id, after, f"echo: {words}", timeout=WAIT)
    later = rig.ask(chat_id, user, "and what now?", "echo: and what now?", timeout=WAIT)
    assert later
    assert len(rig.requests_with(words)) == asked, f"{words!r} reached the model more often than its turn needed"
    assert len([m for m in rig.replies(chat_id, after) if words in m.text]) == 1, f"{words!r} answered twice"
    assert times_said(rig.requests_with("and what now?")[-1], words) == 1, "the history holds it once"


def test_kill_9_inside_an_albums_window_loses_nothing(rig: Rig, store: LmdbStore) -> None:
    cy = rig.person("Cy")
    rig.bot.hold_downloads()  # an album whose window were over would be downloading, and seen to
    photos = [make_jpeg(640, 480, level=40 + 25 * i) for i in range(3)]
    parts = rig.bot.send_album(cy.id, cy.id, photos, caption="which one is sharpest?")
    # Each part kept as it came, before the album waits: seen here once vigil's apply thread put the held
    # copies in LMDB (durable before that, in its journal; a reader in another process sees LMDB only).
    rig.bot.wait_for(lambda: all(confirmed(rig, part) for part in parts) and len(store.held_updates()) == 3,
                     WAIT, "Telegram told all parts arrived, each part held")
    rig.running().kill9()
    assert rig.bot.downloads_waiting == 0 and not rig.bot.downloads, "the kill came after the album's window"
    assert not rig.requests_with("which one is sharpest?")
    rig.bot.hold_downloads(False)

    rig.start()
    request = rig.wait_request("which one is sharpest?", WAIT)
    assert blocks(request, "image") == photos, "the album whole, in its order, as one turn"
    answered_once(rig, cy, parts[0], "which one is sharpest?")
    assert store.held_updates() == []


def test_kill_9_during_a_documents_download_loses_nothing(rig: Rig, store: LmdbStore) -> None:
    ida = rig.person("Ida")
    pdf = media_samples.pdf(pages=2)
    rig.bot.hold_downloads()
    sent = rig.bot.send_document(ida.id, ida.id, pdf, "lease.pdf", "application/pdf", caption="read this lease")
    # Confirmed while its 20 MB (here: held) download is still under way: Telegram will not send it again,
    # and in webhook mode the chat's next update is not held up behind the download.
    rig.bot.wait_for(lambda: rig.bot.downloads_waiting == 1 and confirmed(rig, sent) and store.held_updates(), WAIT,
                     "the download under way, the update confirmed and kept as it came")
    rig.running().kill9()
    rig.bot.hold_downloads(False)

    rig.start()
    request = rig.wait_request("read this lease", WAIT)
    assert blocks(request, "document") == [pdf]
    answered_once(rig, ida, sent, "read this lease")
    assert (rig.tmp / "work" / "users" / str(ida.id) / "uploads" / "lease.pdf").read_bytes() == pdf
    assert store.held_updates() == []


# ------------------------------------------------------------------ polling: the offset moves past what is durable


polling_only = pytest.mark.parametrize("rig", ["polling"], indirect=True)


def fetched(rig: Rig, message: Message) -> bool:
    """A getUpdates answered vigil with the update of `message`."""
    return any(c.method == "getUpdates" and c.ok and any(
        u.get("message", {}).get("message_id") == message.message_id for u in c.result or ()) for c in rig.bot.calls)


@polling_only
def test_polling_does_not_confirm_an_update_the_store_has_not_saved(rig: Rig, store: LmdbStore) -> None:
    ida = rig.person("Ida")
    # The test holds the store's commit lock, as another process committing would (vigil.store.engine.journal):
    # vigil can make nothing durable, so its next getUpdates must still ask for the update.
    lock = store._lmdb.journal.lock
    lock.hold()
    try:
        sent = rig.say(ida.id, ida, "keep this one safe")
        rig.bot.wait_for(lambda: fetched(rig, sent), WAIT, "vigil fetching the update")
        # vigil is working on it (typing): PTB's Updater would have confirmed it with its next getUpdates by now.
        rig.bot.wait_for(lambda: any(c[0] == ida.id for c in rig.bot.chat_actions), WAIT, "vigil typing")
        assert not confirmed(rig, sent), "vigil confirmed an update before it was durable"
        rig.running().kill9()
    finally:
        lock.unhold()

    rig.start()
    answered_once(rig, ida, sent, "keep this one safe")


@polling_only
def test_polling_answers_once_an_update_saved_but_not_yet_confirmed_when_killed(rig: Rig, store: LmdbStore) -> None:
    max_ = rig.person("Max")
    key = f"tg:{max_.id}"
    rig.api.add_rule(lambda body: "remember the lighthouse" in json.dumps(body["messages"][-1]),
                     TextReply("slowly", delay=8), times=1)
    rig.bot.wait_for(lambda: rig.bot.polls_waiting == 1, WAIT, "vigil's long poll waiting")
    rig.bot.fail(times=1000, status=502, method="getUpdates")  # the poll under way brings it; none confirms it
    sent = rig.say(max_.id, max_, "remember the lighthouse")
    rig.bot.wait_for(lambda: fetched(rig, sent), WAIT, "vigil fetching the update")
    rig.wait_request("remember the lighthouse", WAIT)  # the turn runs (its model call held by the stand-in)
    rig.bot.wait_for(lambda: (h := store.header(key)) is not None and h.open_turn is not None, WAIT,
                     "the turn durable in vigil's store")
    rig.running().kill9()  # mid-turn, and Telegram still thinks the update was never taken
    assert not confirmed(rig, sent), "Telegram must deliver it again"
    rig.bot.clear_faults()

    rig.start()
    rig.bot.wait_for(lambda: confirmed(rig, sent), WAIT, "the redelivery confirmed")
    answered_once(rig, max_, sent, "remember the lighthouse", asked=2)  # the turn resumed, not a second one


@polling_only
def test_sigterm_during_a_download_keeps_the_update_for_the_restart(rig: Rig, store: LmdbStore) -> None:
    ida = rig.person("Ida")
    pdf = media_samples.pdf(pages=1)
    rig.bot.hold_downloads()
    sent = rig.bot.send_document(ida.id, ida.id, pdf, "slow.pdf", "application/pdf", caption="the slow file")
    rig.bot.wait_for(lambda: rig.bot.downloads_waiting == 1 and confirmed(rig, sent), WAIT, "the download under way")
    rig.stop()  # exits 0 within its grace: the download is cut short, its update stays held
    assert len(store.held_updates()) == 1
    rig.bot.hold_downloads(False)

    rig.start()
    answered_once(rig, ida, sent, "the slow file")
    assert store.held_updates() == []
