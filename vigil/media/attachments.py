"""From the bytes a user sent to an `Attachment`: what kind of file it is, what the model gets, its cost.

The adapter downloads a photo or document and calls `ingest` (off the event loop: decoding an image
takes a while). The kind is decided from the bytes, never from the name or the MIME type the sender's
client claimed:

- an image (JPEG, PNG, GIF, WebP, sniffed by signature and decoded in full once, since a broken image
  in the history would make every later request of the chat fail) is kept exactly as Telegram served
  it when the Messages API takes it as it is (base64 at most 5 MiB, at most 8000 px a side). Only an
  image over those limits is re-encoded, and then to a long edge of 1568 px: the API scales every
  image down to about that size (and ~1.15 megapixels) before the model sees it, so anything larger
  is bytes sent for nothing. Images within the limits are not shrunk to 1568 px: the API's own
  scaling charges the same, and the bytes the user sent stay the bytes the model gets;
- a PDF (by its `%PDF-` header, complete, not encrypted, at most 100 pages) is a `document` block;
- UTF-8 text without NUL bytes, up to 100 kB, is a text `document`: about 30,000 tokens, half the
  default history window. A larger one would crowd out the conversation and be sent again at every
  turn; the model reads it with its file tools from `uploads/` instead;
- anything else is a "file": saved in the workspace only, and the turn says where.

Decoding is bounded: a PNG of a few kB may inflate to 8000 x 8000 pixels (about 245 MB while Pillow
reads it), and `ingest` runs on asyncio's default thread pool, up to 32 threads at once: an album of
such images, or several chats sending them together, would ask for gigabytes. So at most
`MAX_DECODES` images are decoded at a time (`DECODES`); the others wait their turn.

Tokens are estimated as Anthropic documents them (vigil/model/attached.py), so the history window can
count a file without reading it. The bytes the model gets are stored once in the media store; with a
work root and directory given, the file as sent is also saved under `uploads/` (vigil/media/uploads.py).
"""

from __future__ import annotations

import io
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from vigil.media.files import MediaStore, digest_of, sniff_image
from vigil.media.uploads import safe_name, save_upload
from vigil.model.attached import CHARS_PER_TOKEN, IMAGE_MAX_TOKENS, LIMITS, PDF_BYTES_PER_PAGE, PDF_PAGE_TOKENS
from vigil.records.schema import Attachment, AttachmentKind

MAX_IMAGE_BASE64 = 5 * 1024 * 1024  # the API measures an image by its base64 text
MAX_IMAGE_BYTES = MAX_IMAGE_BASE64 // 4 * 3
MAX_IMAGE_EDGE = 8000
DOWNSCALE_EDGE = 1568  # Anthropic's recommended long edge: the size the API scales to anyway
MODEL_PIXELS = 1_150_000  # the API also scales to about this many pixels
MAX_DECODE_PIXELS = 64_000_000  # 8000 x 8000: more than that is decoded only by a JPEG's reduced-size draft
MAX_TEXT_BYTES = 100_000
MAX_PDF_PAGES = 100
JPEG_QUALITY = 85
# Two: the peak stays near half a GB, and the machine's two cores are both kept busy (Pillow decodes
# without the GIL); a third decode at once would only share those cores and add another 245 MB.
MAX_DECODES = 2
DECODES = threading.BoundedSemaphore(MAX_DECODES)

_IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_COUNT = re.compile(rb"/Count\s+(\d{1,6})")


@dataclass(frozen=True)
class Prepared:
    """What reaches the model of one file: its kind, the bytes (for a "file": as sent), their cost."""

    kind: AttachmentKind
    data: bytes
    media_type: str
    tokens: int
    note: str = ""  # how it was changed, or why it is only a file (for logs and the user)


def image_tokens(width: int, height: int) -> int:
    """Anthropic's estimate, width*height/750, at the size the API scales the image to."""
    if width <= 0 or height <= 0:
        return IMAGE_MAX_TOKENS
    scale = min(1.0, DOWNSCALE_EDGE / max(width, height), math.sqrt(MODEL_PIXELS / (width * height)))
    return max(1, min(IMAGE_MAX_TOKENS, math.ceil(width * scale * height * scale / 750)))


def pdf_page_count(data: bytes) -> int:
    """Pages of a PDF, estimated from its bytes: page objects, else the page tree's count, else its size."""
    pages = len(_PAGE.findall(data))
    if pages:
        return pages
    counts = [int(n) for n in _COUNT.findall(data)]
    return max(counts) if counts and max(counts) > 0 else max(1, math.ceil(len(data) / PDF_BYTES_PER_PAGE))


def prepare(data: bytes, mime: str = "") -> Prepared:
    """Decide the kind of `data` and what the model gets of it (pure: no disk)."""
    image = sniff_image(data)
    if image is not None:
        try:
            with DECODES:
                return _prepare_image(data, image)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            return _file(data, mime, f"not a readable image ({exc})")
    if data[:1024].find(b"%PDF-") >= 0:
        return _prepare_pdf(data, mime)
    text = _text(data)
    if text is not None:
        if len(data) > MAX_TEXT_BYTES:
            return _file(data, mime or "text/plain", f"text over {MAX_TEXT_BYTES // 1000} kB: read it from the file")
        return Prepared("text", data, "text/plain", math.ceil(len(text) / CHARS_PER_TOKEN))
    return _file(data, mime, "")


def ingest(media: MediaStore, data: bytes, *, name: str = "", mime: str = "", root: Path | None = None,
           cwd: Path | None = None) -> Attachment:
    """Store what the model gets of `data` and describe it; with `root` and `cwd`, save it under uploads/
    (the attachment's `path` is then the saved file's absolute path).

    Raises vigil.media.uploads.UploadError (a sentence for the user) if the file cannot be saved; the media
    store may then hold an unreferenced copy, which the next sweep removes.
    """
    prepared = prepare(data, mime)
    if prepared.kind != "file":
        media.put(prepared.data)
    path = ""
    saved_name = safe_name(name, _fallback_name(prepared)) if name or root is not None else ""
    if root is not None and cwd is not None:
        relative = save_upload(root, cwd, saved_name, data)
        saved_name = relative.rsplit("/", 1)[-1]
        # Absolute: the chat may /cd away before the model reads the line naming it (see Attachment.path).
        path = str((cwd if cwd.is_absolute() else root / cwd) / relative)
    return Attachment(kind=prepared.kind, digest=digest_of(prepared.data), media_type=prepared.media_type,
                      size=len(prepared.data), name=saved_name, path=path, tokens=prepared.tokens)


def _fallback_name(prepared: Prepared) -> str:
    suffix = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
              "application/pdf": ".pdf", "text/plain": ".txt"}.get(prepared.media_type, "")
    return f"file{suffix}"


def _file(data: bytes, mime: str, note: str) -> Prepared:
    media_type = mime.strip().lower() if _MEDIA_TYPE.match(mime.strip().lower()) else "application/octet-stream"
    return Prepared("file", data, media_type, 0, note)


def _text(data: bytes) -> str | None:
    if b"\x00" in data[:MAX_TEXT_BYTES + 1]:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # A text over the limit counts as text if its first part is: it is kept as a file either way.
        if len(data) > MAX_TEXT_BYTES and exc.start > MAX_TEXT_BYTES:
            return data[:exc.start].decode("utf-8-sig")
        return None
    return text if text.strip() else None


def _prepare_pdf(data: bytes, mime: str) -> Prepared:
    trailer = data[:4096] + data[-8192:]
    if b"/Encrypt" in trailer:
        return _file(data, "application/pdf", "an encrypted PDF: the model cannot open it")
    if b"%%EOF" not in data[-2048:]:
        return _file(data, "application/pdf", "an incomplete PDF")
    pages = pdf_page_count(data)
    if pages > MAX_PDF_PAGES or len(data) > LIMITS.bytes:
        return _file(data, "application/pdf", f"a PDF of {pages} pages: too long to read in one request")
    return Prepared("pdf", data, "application/pdf", pages * PDF_PAGE_TOKENS)


def _prepare_image(data: bytes, fmt: str) -> Prepared:
    with Image.open(io.BytesIO(data), formats=[fmt]) as img:
        width, height = img.size
        if len(data) <= MAX_IMAGE_BYTES and max(width, height) <= MAX_IMAGE_EDGE:
            if width * height > MAX_DECODE_PIXELS:
                raise ValueError(f"{width}x{height} pixels is too large to decode")
            img.load()  # proves it decodes (see the module docstring)
            return Prepared("image", data, _IMAGE_TYPES[fmt], image_tokens(width, height))
        if fmt == "JPEG":
            img.draft("RGB", (DOWNSCALE_EDGE, DOWNSCALE_EDGE))  # decodes at 1/2 .. 1/8 of the size: cheap
        if img.size[0] * img.size[1] > MAX_DECODE_PIXELS:
            raise ValueError(f"{width}x{height} pixels is too large to decode")
        img.load()
        small = ImageOps.exif_transpose(img)  # the orientation tag goes with the re-encoding
        small.thumbnail((DOWNSCALE_EDGE, DOWNSCALE_EDGE), Image.Resampling.LANCZOS)
        out, media_type = _encode(small)
    note = f"downscaled from {width}x{height} to {small.size[0]}x{small.size[1]}"
    return Prepared("image", out, media_type, image_tokens(*small.size), note)


def _encode(img: Image.Image) -> tuple[bytes, str]:
    """PNG where transparency matters, else JPEG; always within the API's size limit."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        buffer = io.BytesIO()
        img.save(buffer, "PNG")
        if buffer.tell() <= MAX_IMAGE_BYTES:
            return buffer.getvalue(), "image/png"
        flat = Image.new("RGB", img.size, "white")
        flat.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        img = flat
    rgb = img.convert("RGB")
    quality = JPEG_QUALITY
    while True:
        buffer = io.BytesIO()
        rgb.save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= MAX_IMAGE_BYTES or quality <= 30:
            return buffer.getvalue(), "image/jpeg"
        quality -= 20
