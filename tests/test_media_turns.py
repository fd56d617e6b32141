"""Photos and documents through the real actors over a real LMDB store and media directory.

A photo's turn, its request (what the ScriptedModel saw, checked by the Messages API stand-in's
validator), eviction and respawn, a restart of the Runtime, /forget and `vigil sessions delete`
sweeping what no session references, /export, the history budget, and the store's growth.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import CHANNEL, Harness, HarnessFactory, Say, UseTools, chat_id_of, check_request, key_of, wait_until
from tests.media_samples import jpeg, pdf
from tests.procs import run_vigil, vigil_env
from vigil.actors.core.protocol import Sender, UserText
from vigil.control.dispatch import export_session
from vigil.media.attachments import ingest
from vigil.media.files import MediaStore
from vigil.media.sweep import GRACE_S
from vigil.model.history import estimate_tokens
from vigil.ops.stats import store_stats
from vigil.ports import ModelRequest
from vigil.records.schema import Attachment, Target
from vigil.store.store import LmdbStore


@pytest.fixture
def make(tmp_path: Path) -> Iterator[HarnessFactory]:
    with HarnessFactory(tmp_path) as factory:
        yield factory


def send(h: Harness, key: str, text: str, *attachments: Attachment, user_id: int = 7) -> None:
    h.runtime.submit(UserText(key=key, target=Target(channel=CHANNEL, chat_id=chat_id_of(key)),
                              sender=Sender(user_id=user_id, name="Tess"), text=text, at=time.time(),
                              chat_type="private", attachments=attachments))


def images(request: ModelRequest) -> list[bytes]:
    return [base64.b64decode(b["source"]["data"]) for m in request.messages for b in m["content"]
            if b.get("type") == "image"]


def documents(request: ModelRequest) -> list[dict[str, Any]]:
    return [b for m in request.messages for b in m["content"] if b.get("type") == "document"]


def age(media: MediaStore, *attachments: Attachment) -> None:
    then = time.time() - GRACE_S - 60
    for attachment in attachments:
        os.utime(media.path(attachment.digest), (then, then))


def test_a_photo_with_a_caption_is_one_request_with_the_exact_bytes(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    photo = jpeg(1280, 960)
    send(h, key, "what is this?", ingest(h.runtime.media, photo))
    assert h.outbox.wait_finished(key, 1)[0] == ("echo: what is this?", "")
    assert h.model.calls == 1
    request = h.model.requests[0]
    check_request(request)
    assert images(request) == [photo]
    last = request.messages[-1]["content"]
    assert [b["type"] for b in last] == ["image", "text"]
    assert last[1]["text"] == "what is this?"


def test_a_photo_is_carried_again_after_eviction_and_after_a_restart(make: HarnessFactory) -> None:
    h = make(idle_evict_s=0.3)
    key = key_of(1)
    photo = jpeg(800, 600)
    send(h, key, "remember this", ingest(h.runtime.media, photo))
    h.outbox.wait_finished(key, 1)
    assert wait_until(lambda: h.runtime.registry.live_count() == 0 and h.supervisor_value("evicted") == 1)

    h.say(key, "what was in the photo?")
    h.outbox.wait_finished(key, 2)
    assert h.supervisor_value("spawned") == 2  # a fresh actor, from the store
    check_request(h.model.requests[1])
    assert images(h.model.requests[1]) == [photo]

    h.restart()  # a new Runtime: a new media store object, nothing cached
    h.say(key, "and now?")
    h.outbox.wait_finished(key, 3)
    request = h.model.requests[-1]
    check_request(request)
    assert images(request) == [photo]
    assert "remember this" in json.dumps(request.messages)


def test_a_pdf_and_a_text_file_reach_the_model_and_stay_in_uploads(make: HarnessFactory, tmp_path: Path) -> None:
    h = make()
    key = key_of(1)
    root = h.settings.workdir_root
    cwd = root / "users" / "1"
    cwd.mkdir(parents=True, exist_ok=True)
    report = ingest(h.runtime.media, pdf(2), name="report.pdf", root=root, cwd=cwd)
    notes = ingest(h.runtime.media, b"remember the milk\n", name="notes.txt", root=root, cwd=cwd)
    send(h, key, "summarize", report, notes)
    h.outbox.wait_finished(key, 1)
    request = h.model.requests[0]
    check_request(request)
    found = documents(request)
    assert base64.b64decode(found[0]["source"]["data"]) == pdf(2)
    assert found[1]["source"] == {"type": "text", "media_type": "text/plain", "data": "remember the milk\n"}
    assert f"[file saved at {cwd}/uploads/report.pdf]" in json.dumps(request.messages)
    assert (cwd / "uploads" / "report.pdf").read_bytes() == pdf(2)


def test_after_a_cd_the_line_naming_an_upload_still_leads_the_tools_to_it(make: HarnessFactory) -> None:
    """The line is an absolute path: after /cd elsewhere, the editor opened at what the line says finds the
    file (a path relative to the old directory would now point at nothing, or at another file)."""
    h = make()
    key = key_of(1)
    root = h.settings.workdir_root
    cwd = root / "users" / "1"
    (cwd / "proj").mkdir(parents=True)
    notes = ingest(h.runtime.media, b"remember the milk\n", name="notes.txt", root=root, cwd=cwd)
    send(h, key, "keep this", notes)
    h.outbox.wait_finished(key, 1)
    h.command(key, "cd", "proj")
    h.outbox.wait_sent(key, 1)
    line = f"[file saved at {cwd}/uploads/notes.txt]"
    h.model.push(UseTools((("str_replace_based_edit_tool", {"command": "view", "path": line[15:-1]}),)),
                 Say("found it"))
    h.say(key, "where is the file I sent?")
    assert h.outbox.wait_finished(key, 2)[-1] == ("found it", "")
    asked = h.model.requests[-2]
    assert line in json.dumps(asked.messages, ensure_ascii=False)
    [result] = [b for b in h.model.requests[-1].messages[-1]["content"] if b.get("type") == "tool_result"]
    assert not result.get("is_error") and "remember the milk" in str(result["content"]), result


def test_a_file_deleted_by_hand_is_a_note_and_the_chat_goes_on(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    photo = ingest(h.runtime.media, jpeg())
    send(h, key, "look", photo)
    h.outbox.wait_finished(key, 1)
    h.restart()
    h.runtime.media.path(photo.digest).unlink()
    h.say(key, "still there?")
    assert h.outbox.wait_finished(key, 2)[1] == ("echo: still there?", "")
    request = h.model.requests[-1]
    check_request(request)
    assert images(request) == []
    assert "[image no longer available]" in json.dumps(request.messages)


def test_the_history_budget_counts_photos_by_their_tokens(make: HarnessFactory) -> None:
    h = make(history_tokens=6000)
    key = key_of(1)
    sent = [ingest(h.runtime.media, jpeg(1000, 1000, seed=i)) for i in range(10)]
    assert sent[0].tokens == 1334
    for index, photo in enumerate(sent):
        send(h, key, f"photo {index}", photo)
        h.outbox.wait_finished(key, index + 1)
    for request in h.model.requests:
        check_request(request)
        history = ModelRequest(model=request.model, max_tokens=1, system=(), messages=request.messages[:-1])
        # The history fits the budget, photos counted at their 1334 tokens each (not their ~20,000 of base64).
        texts = estimate_tokens([{"role": m["role"], "content": [b for b in m["content"] if b["type"] != "image"]}
                                 for m in history.messages])
        assert texts + 1334 * len(images(history)) <= 6000
    last = h.model.requests[-1]
    assert 3 <= len(images(last)) <= 5  # several photos kept: counted by their base64, only the newest would be
    assert images(last)[-1] == h.runtime.media.read(sent[-1].digest)


def test_forget_deletes_the_files_no_other_session_references(make: HarnessFactory) -> None:
    h = make()
    media = h.runtime.media
    shared = ingest(media, jpeg(seed=1))
    own = ingest(media, jpeg(seed=2))
    send(h, key_of(1), "both", shared, own)
    send(h, key_of(2), "same photo here", shared)
    h.outbox.wait_finished(key_of(1), 1)
    h.outbox.wait_finished(key_of(2), 1)
    age(media, shared, own)  # sent an hour ago

    h.command(key_of(1), "forget", "confirm")
    assert wait_until(lambda: not media.has(own.digest))
    assert media.has(shared.digest)  # chat 2 still has it

    h.command(key_of(2), "forget", "confirm")
    assert wait_until(lambda: not media.has(shared.digest))
    assert list(media.digests()) == []


def test_export_lists_the_media(make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    root = h.settings.workdir_root
    cwd = root / "users" / "1"
    cwd.mkdir(parents=True, exist_ok=True)
    photo = ingest(h.runtime.media, jpeg())
    report = ingest(h.runtime.media, pdf(1), name="report.pdf", root=root, cwd=cwd)
    send(h, key, "look", photo, report)
    h.outbox.wait_finished(key, 1)
    document = export_session(h.runtime.store, key)
    assert document is not None
    rows = json.loads(document)["media"]
    assert [(r["kind"], r["name"], r["path"], r["size"], r["digest"], r["turn"]) for r in rows] == [
        ("image", "", "", photo.size, photo.digest, 0),
        ("pdf", "report.pdf", str(cwd / "uploads" / "report.pdf"), report.size, report.digest, 0),
    ]


@pytest.mark.e2e
def test_vigil_sessions_delete_sweeps_the_media(tmp_path: Path, make: HarnessFactory) -> None:
    h = make()
    key = key_of(1)
    photo = ingest(h.runtime.media, jpeg())
    send(h, key, "look", photo)
    h.outbox.wait_finished(key, 1)
    h.shutdown()
    age(h.runtime.media, photo)
    env = vigil_env(tmp_path / "cli", VIGIL_DATA_DIR=str(h.settings.data_dir),
                    VIGIL_WORKDIR_ROOT=str(h.settings.workdir_root))
    deleted = run_vigil(["sessions", "delete", key, "--yes"], env)
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted 1 media file(s)" in deleted.stdout
    assert not MediaStore(h.settings.data_dir / "media").has(photo.digest)


def _allocated(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def test_store_growth_for_100_photos(make: HarnessFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """Each photo is one file in media/; the LMDB store grows by records only (no photo bytes)."""
    h = make()
    key = key_of(1)
    data = h.settings.data_dir
    h.say(key, "hello")
    h.outbox.wait_finished(key, 1)
    h.runtime.store.sync()
    lmdb_before, media_before = _allocated(data) - _allocated(data / "media"), _allocated(data / "media")
    store = h.runtime.store
    assert isinstance(store, LmdbStore)
    live_before = store_stats(store)["live_pages"]
    photos = [jpeg(1280, 960, seed=i) for i in range(100)]
    for index, photo in enumerate(photos):
        send(h, key, f"photo {index}", ingest(h.runtime.media, photo))
        h.outbox.wait_finished(key, index + 2)
    send(h, key, "the first one again", ingest(h.runtime.media, photos[0]))
    h.outbox.wait_finished(key, 102)
    h.runtime.store.sync()
    stored = [h.runtime.media.path(digest) for digest in h.runtime.media.digests()]  # not the new files' marks
    assert len(stored) == 100  # the same photo twice is one file
    photo_bytes = sum(len(p) for p in photos)
    assert sum(p.stat().st_size for p in stored) == photo_bytes  # stored as served
    lmdb_growth = _allocated(data) - _allocated(data / "media") - lmdb_before
    media_growth = _allocated(data / "media") - media_before
    live_growth = (store_stats(store)["live_pages"] - live_before) * 4096
    assert live_growth < 101 * 4096  # records only: a few hundred bytes per turn, no photo bytes
    # The file also holds free pages, kept for reuse while the journal's checkpoint pins an older tree
    # (vigil.store.engine.journal, GROW_PAGES): bounded, and far from the photos' bytes.
    assert lmdb_growth < live_growth + 1024 * 1024
    with capsys.disabled():
        print(f"\n[store growth] 101 photo turns (100 distinct JPEGs of 1280x960, {photo_bytes / 1e6:.1f} MB): "
              f"LMDB records +{live_growth / 1024:.0f} KiB ({live_growth / 101:.0f} B per turn), "
              f"file +{lmdb_growth / 1024:.0f} KiB, "
              f"media/ +{media_growth / 1e6:.1f} MB in {len(stored)} files")
