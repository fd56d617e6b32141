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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import media_samples
from tests.rig import Rig
from tests.standins.bot_api import Message, User
from tests.standins.images import make_jpeg
from tests.standins.messages_api import RecordedRequest
from tests.test_webhook_e2e import times_said, webhook_settings
from vigil.store.store import LmdbStore, open_store

pytestmark = pytest.mark.e2e

WAIT = 30.0
MODES = ["polling", "webhook"]


@pytest.fixture(params=MODES)
def rig(request: pytest.FixtureRequest, fresh: Callable[..., Rig]) -> Rig:
    """A vigil of the test's own, polling or with a webhook; each test kills it."""
    return fresh(**(webhook_settings() if request.param == "webhook" else {}))


@pytest.fixture
def store(rig: Rig) -> Iterator[LmdbStore]:
    """The store vigil runs on, opened by the test process too (LMDB is made for several processes)."""
    opened = open_store(Path(rig.env["VIGIL_DATA_DIR"]))
    try:
        yield opened
    finally:
        opened.close()


def confirmed(rig: Rig, message: Message) -> bool:
    """Telegram forgot the update of a user's message: an offset moved past it, or the webhook answered 200."""
    return not any(u.get("message", {}).get("message_id") == message.message_id
                   and u["message"]["chat"]["id"] == message.chat_id for u in rig.bot.queued_updates())


def blocks(request: RecordedRequest, kind: str) -> list[bytes]:
    """The bytes of the `kind` blocks ("image", "document") in the request's last user message."""
    content = request.body["messages"][-1]["content"]
    found: list[dict[str, Any]] = [b for b in content if isinstance(b, dict) and b.get("type") == kind]
    return [base64.b64decode(b["source"]["data"]) for b in found]


def answered_once(rig: Rig, user: User, after: Message, words: str) -> None:
    """One model request and one reply for `words`, also once the chat went on."""
    chat_id = user.id
    rig.answer(chat_id, after, f"echo: {words}", timeout=WAIT)
    later = rig.ask(chat_id, user, "and what now?", "echo: and what now?", timeout=WAIT)
    assert later
    assert len(rig.requests_with(words)) == 1, f"{words!r} reached the model more than once"
    assert len([m for m in rig.replies(chat_id, after) if words in m.text]) == 1, f"{words!r} answered twice"
    assert times_said(rig.requests_with("and what now?")[-1], words) == 1, "the history holds it once"


def test_kill_9_inside_an_albums_window_loses_nothing(rig: Rig, store: LmdbStore) -> None:
    cy = rig.person("Cy")
    rig.bot.hold_downloads()  # an album whose window were over would be downloading, and seen to
    photos = [make_jpeg(640, 480, level=40 + 25 * i) for i in range(3)]
    parts = rig.bot.send_album(cy.id, cy.id, photos, caption="which one is sharpest?")
    rig.bot.wait_for(lambda: all(confirmed(rig, part) for part in parts), WAIT, "Telegram told all parts arrived")
    rig.running().kill9()
    assert rig.bot.downloads_waiting == 0 and not rig.bot.downloads, "the kill came after the album's window"
    assert not rig.requests_with("which one is sharpest?")
    assert len(store.held_updates()) == 3, "each part kept as it came, before the album waited"
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
    rig.bot.wait_for(lambda: rig.bot.downloads_waiting == 1 and confirmed(rig, sent), WAIT,
                     "the download under way and the update confirmed")
    rig.running().kill9()
    assert [update_id for update_id, _ in store.held_updates()], "the update kept as it came"
    rig.bot.hold_downloads(False)

    rig.start()
    request = rig.wait_request("read this lease", WAIT)
    assert blocks(request, "document") == [pdf]
    answered_once(rig, ida, sent, "read this lease")
    assert (rig.tmp / "work" / "users" / str(ida.id) / "uploads" / "lease.pdf").read_bytes() == pdf
    assert store.held_updates() == []
