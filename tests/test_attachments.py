"""Ingest of what users send (vigil/media/attachments.py) and saving it under uploads/ (vigil/media/uploads.py).

Real files throughout: images and PDFs made with Pillow, a real work root with hostile names and
symlinks planted the way a sandboxed shell could plant them.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.media_samples import jpeg, noisy_png, pdf, png
from tests.standins.images import make_png
from vigil.media import attachments
from vigil.media.attachments import (
    MAX_DECODES,
    MAX_IMAGE_BASE64,
    MAX_TEXT_BYTES,
    image_tokens,
    ingest,
    pdf_page_count,
    prepare,
)
from vigil.media.files import MediaStore, digest_of
from vigil.media.uploads import MAX_NAME_BYTES, UploadError, safe_name, save_upload

# ------------------------------------------------------------------------------------------- kinds


def test_no_more_than_two_images_are_decoded_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Six images at once (an album): two decode, four wait at the gate; all come out as images."""
    assert MAX_DECODES == 2
    state = threading.Condition()
    arrived = inside = peak = 0
    release = threading.Event()

    class Gate(threading.BoundedSemaphore):
        def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
            nonlocal arrived
            with state:
                arrived += 1
                state.notify_all()
            return super().acquire(blocking, timeout)

        __enter__ = acquire

    real = attachments._prepare_image

    def decoding(data: bytes, fmt: str) -> Any:
        nonlocal inside, peak
        with state:
            inside += 1
            peak = max(peak, inside)
            state.notify_all()
        try:
            assert release.wait(30), "the test never let the decodes go on"
            return real(data, fmt)
        finally:
            with state:
                inside -= 1

    monkeypatch.setattr(attachments, "DECODES", Gate(MAX_DECODES))
    monkeypatch.setattr(attachments, "_prepare_image", decoding)
    images = [make_png(2000, 1500, (i, 0, 0)) for i in range(6)]
    results: list[Any] = [None] * len(images)

    def run(index: int) -> None:
        results[index] = prepare(images[index], "image/png")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    try:
        with state:
            assert state.wait_for(lambda: arrived == len(images) and inside == MAX_DECODES, 30), (arrived, inside)
    finally:
        release.set()
        for thread in threads:
            thread.join(60)
    assert peak == MAX_DECODES
    assert [r.kind if r is not None else None for r in results] == ["image"] * len(images)


def test_a_photo_within_the_limits_is_kept_byte_for_byte() -> None:
    photo = jpeg(1280, 960)
    prepared = prepare(photo, "image/jpeg")
    assert prepared.kind == "image"
    assert prepared.data == photo  # exactly the bytes Telegram served
    assert prepared.media_type == "image/jpeg"
    assert prepared.tokens == image_tokens(1280, 960)
    assert prepared.note == ""


@pytest.mark.parametrize(("data", "media_type"), [(png(), "image/png"), (png(alpha=True), "image/png")])
def test_the_kind_comes_from_the_bytes_not_the_name_or_mime(data: bytes, media_type: str) -> None:
    assert prepare(data, "application/pdf").media_type == media_type
    assert prepare(b"plain words\n", "image/jpeg").kind == "text"
    assert prepare(pdf(1), "text/plain").kind == "pdf"


def test_an_image_over_the_byte_limit_is_downscaled_and_reencoded() -> None:
    big = noisy_png(1700, 1700)
    assert len(big) * 4 / 3 > MAX_IMAGE_BASE64
    prepared = prepare(big)
    assert prepared.kind == "image"
    assert len(prepared.data) * 4 / 3 <= MAX_IMAGE_BASE64
    with Image.open(io.BytesIO(prepared.data)) as img:
        assert max(img.size) == 1568
        assert prepared.media_type == f"image/{img.format.lower()}"  # type: ignore[union-attr]
    assert "downscaled from 1700x1700" in prepared.note


def test_an_image_over_the_edge_limit_is_downscaled_keeping_transparency() -> None:
    wide = png(8200, 60, alpha=True)
    prepared = prepare(wide)
    with Image.open(io.BytesIO(prepared.data)) as img:
        assert img.size == (1568, 11)
        assert img.mode == "RGBA"
    assert prepared.media_type == "image/png"


def test_a_huge_jpeg_is_decoded_at_reduced_size() -> None:
    photo = jpeg(9000, 3000, quality=30)
    prepared = prepare(photo)
    assert prepared.kind == "image"
    with Image.open(io.BytesIO(prepared.data)) as img:
        assert max(img.size) == 1568


def test_a_broken_image_is_only_a_file() -> None:
    photo = jpeg(800, 600)
    prepared = prepare(photo[: len(photo) // 2], "image/jpeg")
    assert prepared.kind == "file"
    assert "not a readable image" in prepared.note


def test_image_tokens_follow_anthropics_formula() -> None:
    assert image_tokens(1000, 1000) == 1334  # ceil(1000*1000/750)
    assert image_tokens(200, 200) == 54
    assert image_tokens(2560, 1920) <= 1600  # the API scales it down first
    assert image_tokens(8000, 8000) <= 1600


def test_a_pdf_is_a_document_priced_by_its_pages() -> None:
    document = pdf(3)
    assert pdf_page_count(document) == 3
    prepared = prepare(document, "application/pdf")
    assert (prepared.kind, prepared.media_type, prepared.tokens) == ("pdf", "application/pdf", 9000)
    assert prepared.data == document


def test_pdfs_the_model_cannot_read_are_files() -> None:
    too_long = pdf(101)
    assert prepare(too_long).kind == "file"
    assert "101 pages" in prepare(too_long).note
    document = pdf(1)
    assert prepare(document[:-200]).kind == "file"  # cut short: no %%EOF
    encrypted = document.replace(b"trailer\n<<", b"trailer\n<<\n/Encrypt 99 0 R")
    assert b"/Encrypt" in encrypted
    assert prepare(encrypted).kind == "file"


def test_text_up_to_the_limit_is_text_beyond_it_a_file() -> None:
    text = "naïve résumé ✓\n".encode()
    assert prepare(text).kind == "text"
    assert prepare(text).tokens > 0
    assert prepare(b"x" * MAX_TEXT_BYTES).kind == "text"
    over = prepare(b"x" * (MAX_TEXT_BYTES + 1))
    assert over.kind == "file"
    assert over.media_type == "text/plain"
    assert prepare("caf\xe9".encode("latin-1")).kind == "file"  # not UTF-8
    assert prepare(b"a\x00b").kind == "file"
    assert prepare(b"   \n").kind == "file"
    assert prepare(b"").kind == "file"


def test_a_files_media_type_is_kept_only_when_well_formed() -> None:
    blob = bytes(range(256))
    assert prepare(blob, "application/zip").media_type == "application/zip"
    assert prepare(blob, "evil\r\nheader").media_type == "application/octet-stream"


# ------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(("sent", "saved"), [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\boot.ini", "boot.ini"),
    ("/abs/path/x.txt", "x.txt"),
    ("..", "file"),
    (".", "file"),
    ("", "file"),
    (".bashrc", "bashrc"),
    ("...hidden", "hidden"),
    ("-rf", "rf"),
    ("a\nb\tc.txt", "a b c.txt"),
    ("invoice\u202egpj.exe", "invoicegpj.exe"),
    ("nul\x00byte.txt", "nulbyte.txt"),
    ("trailing. . .", "trailing"),
])
def test_safe_names(sent: str, saved: str) -> None:
    assert safe_name(sent) == saved


def test_a_long_name_is_capped_keeping_its_extension() -> None:
    name = safe_name("é" * 300 + ".pdf")
    assert name.endswith(".pdf")
    assert len(name.encode()) <= MAX_NAME_BYTES
    name.encode().decode()  # not cut inside a character


# ------------------------------------------------------------------------------------------- saving


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "work"
    cwd = root / "users" / "7"
    cwd.mkdir(parents=True)
    return root, cwd


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_document_is_saved_under_uploads_0700(workspace: tuple[Path, Path]) -> None:
    root, cwd = workspace
    assert save_upload(root, cwd, "report.pdf", b"%PDF-1 body") == "uploads/report.pdf"
    assert (cwd / "uploads" / "report.pdf").read_bytes() == b"%PDF-1 body"
    assert stat.S_IMODE((cwd / "uploads").stat().st_mode) == 0o700
    assert _listing(cwd / "uploads") == ["report.pdf"]  # no temporary file left


def test_a_clash_gets_the_next_free_name(workspace: tuple[Path, Path]) -> None:
    root, cwd = workspace
    paths = [save_upload(root, cwd, "report.pdf", f"v{i}".encode()) for i in range(3)]
    assert paths == ["uploads/report.pdf", "uploads/report (2).pdf", "uploads/report (3).pdf"]
    assert (cwd / "uploads" / "report (3).pdf").read_bytes() == b"v2"
    assert save_upload(root, cwd, "README", b"x") == "uploads/README"
    assert save_upload(root, cwd, "README", b"y") == "uploads/README (2)"


def test_a_hostile_name_stays_inside_uploads(workspace: tuple[Path, Path]) -> None:
    root, cwd = workspace
    assert save_upload(root, cwd, "../../../escape.txt", b"x") == "uploads/escape.txt"
    assert save_upload(root, cwd, "..", b"y") == "uploads/file"
    assert not (root / "escape.txt").exists()
    assert _listing(cwd) == ["uploads"]


def test_a_symlink_planted_at_uploads_is_not_followed(workspace: tuple[Path, Path], tmp_path: Path) -> None:
    root, cwd = workspace
    elsewhere = root / "chats" / "99"
    elsewhere.mkdir(parents=True)
    (cwd / "uploads").symlink_to(elsewhere)
    with pytest.raises(UploadError, match="not a plain directory"):
        save_upload(root, cwd, "report.pdf", b"secret")
    assert _listing(elsewhere) == []
    outside = tmp_path / "outside"
    outside.mkdir()
    (cwd / "uploads").unlink()
    (cwd / "uploads").symlink_to(outside)
    with pytest.raises(UploadError):
        save_upload(root, cwd, "report.pdf", b"secret")
    assert _listing(outside) == []


def test_a_symlink_planted_as_the_file_is_neither_followed_nor_replaced(workspace: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    root, cwd = workspace
    (cwd / "uploads").mkdir(mode=0o700)
    target = tmp_path / "victim.txt"
    target.write_text("precious")
    (cwd / "uploads" / "report.pdf").symlink_to(target)
    dangling = tmp_path / "not-there"
    (cwd / "uploads" / "notes.txt").symlink_to(dangling)
    assert save_upload(root, cwd, "report.pdf", b"new") == "uploads/report (2).pdf"
    assert save_upload(root, cwd, "notes.txt", b"new") == "uploads/notes (2).txt"
    assert target.read_text() == "precious"
    assert not dangling.exists()
    assert (cwd / "uploads" / "report.pdf").is_symlink()


def test_a_working_directory_outside_the_root_is_refused(workspace: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = workspace
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(UploadError, match="working directory"):
        save_upload(root, outside, "x.txt", b"x")
    assert _listing(outside) == []


def test_nothing_half_saved_when_the_disk_refuses(workspace: tuple[Path, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root, cwd = workspace

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)  # the os module vigil.media.uploads writes through
    with pytest.raises(UploadError, match="No space left"):
        save_upload(root, cwd, "big.bin", b"x" * 100_000)
    assert _listing(cwd / "uploads") == []


# ------------------------------------------------------------------------------------------- ingest


def test_ingest_stores_what_the_model_gets_and_saves_the_file_as_sent(workspace: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    root, cwd = workspace
    media = MediaStore(tmp_path / "data" / "media")
    big = noisy_png(1700, 1700)
    attachment = ingest(media, big, name="../shot.png", mime="image/png", root=root, cwd=cwd)
    assert attachment.kind == "image"
    assert attachment.path == str(cwd / "uploads" / "shot.png")  # absolute: true after a /cd too
    assert attachment.name == "shot.png"
    assert (cwd / "uploads" / "shot.png").read_bytes() == big  # the user's file, untouched
    stored = media.read(attachment.digest)
    assert attachment.digest == digest_of(stored) != digest_of(big)  # the model's copy, downscaled
    assert attachment.size == len(stored)
    assert attachment.tokens == image_tokens(1568, 1568)

    photo = jpeg()
    same = [ingest(media, photo) for _ in range(2)]
    assert same[0] == same[1]
    assert (same[0].name, same[0].path) == ("", "")
    assert media.read(same[0].digest) == photo
    assert len(list(media.digests())) == 2  # the same photo twice is one file

    blob = bytes(range(256)) * 4
    attachment = ingest(media, blob, name="data.bin", mime="application/octet-stream", root=root, cwd=cwd)
    assert (attachment.kind, attachment.path, attachment.tokens) == ("file", str(cwd / "uploads" / "data.bin"), 0)
    assert not media.has(attachment.digest)  # a file the model cannot read is kept in the workspace only

    document = ingest(media, pdf(2), name="", root=root, cwd=cwd)
    assert (document.kind, document.path) == ("pdf", str(cwd / "uploads" / "file.pdf"))


def test_short_writes_are_continued_until_every_byte_is_on_disk(tmp_path: Path, workspace: tuple[Path, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """os.write may take less than it is given: both writers go on until all of it is written."""
    real_write = os.write
    calls = 0

    def short_write(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        return real_write(fd, bytes(data[:1000]))

    data = os.urandom(10_000)
    root, cwd = workspace
    media = MediaStore(tmp_path / "media")
    monkeypatch.setattr(os, "write", short_write)
    digest = media.put(data)
    saved = save_upload(root, cwd, "blob.bin", data)
    monkeypatch.undo()
    assert media.path(digest).read_bytes() == data
    assert (cwd / saved).read_bytes() == data
    assert calls == 20
