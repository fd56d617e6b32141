"""Image and document blocks as the Messages API judges them, reads them and bills them.

The checks refuse what the API refuses, in its words: a base64 image over 5 MB (the API measures the
base64 text, so raw bytes over 3.75 MB already fail), bytes that are not the declared media type (the
magic numbers decide, as the API's decoder does), a side over 8000 px (2000 px once a request holds more
than 20 images), more than 100 images; a PDF that is not one (``%PDF-``), that cannot be parsed (a
`startxref` pointing nowhere, an object stream that does not inflate) or has over 100 pages, counted in
its compressed object streams too (where vigil's own cheap count cannot see them); a text
document that is not ``text/plain`` text. What a test reads back is `MediaBlock`: every image and
document of a request, its bytes decoded. Token counts follow the API's published estimate for images
((width x height) / 750 after its own downscaling to 1568 px and 1.15 megapixels) and ~1600 per PDF
page, so the prompt-cache and usage numbers stay of the right size when images ride along.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import zlib
from dataclasses import dataclass
from typing import Any, Final, Literal

from tests.standins.images import MIME_OF_FORMAT, ImageInfo, image_info, sniff_format
from tests.standins.messages_api.checks import BLOCK_KEYS, check_extra_keys
from tests.standins.messages_api.errors import bad_tag, invalid

IMAGE_MEDIA_TYPES: Final = tuple(MIME_OF_FORMAT.values())  # image/jpeg, image/png, image/gif, image/webp
MAX_IMAGE_BASE64_BYTES: Final = 5 * 1024 * 1024
MAX_IMAGE_SIDE: Final = 8000
MAX_IMAGE_SIDE_MANY: Final = 2000  # when a request holds more than MANY_IMAGES images
MANY_IMAGES: Final = 20
MAX_IMAGES: Final = 100
MAX_PDF_PAGES: Final = 100
MAX_REQUEST_BYTES: Final = 32 * 1024 * 1024
_PDF_PAGE: Final = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_STREAM: Final = re.compile(rb"\bobj\s*<<(.*?)>>\s*stream\r?\n(.*?)\r?\nendstream", re.S)
_STARTXREF: Final = re.compile(rb"startxref\s+(\d{1,12})")
_XREF_TARGET: Final = re.compile(rb"xref\b|\d+\s+\d+\s+obj\b")
_SOURCE_KEYS: Final = {
    "base64": frozenset({"type", "media_type", "data"}),
    "url": frozenset({"type", "url"}),
    "text": frozenset({"type", "media_type", "data"}),
    "content": frozenset({"type", "content"}),
}
_TOKENS_PER_PDF_PAGE: Final = 1600


@dataclass(frozen=True)
class MediaBlock:
    """An image or document block of a request, as a test reads it back.

    ``data`` holds the decoded bytes of a base64 source (an image, a PDF), ``text`` the text of a text
    document, ``url`` a url source's address; ``message`` and ``index`` say where the block sits
    (``index`` counts blocks of the message; a block inside a tool_result is at the tool_result's index)."""

    kind: Literal["image", "document"]
    source_type: str
    media_type: str | None
    message: int
    index: int
    data: bytes | None = None
    text: str | None = None
    url: str | None = None
    title: str | None = None


def _decode(data: Any, path: str) -> bytes:
    if not isinstance(data, str):
        raise invalid(f"{path}.data: Input should be a valid string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{path}.data: Invalid base64 data") from None


def _source(block: dict[str, Any], path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    source = block.get("source")
    if source is None:
        raise invalid(f"{path}.source: Field required")
    if not isinstance(source, dict):
        raise invalid(f"{path}.source: Input should be a valid dictionary")
    kind = source.get("type")
    if kind not in allowed:
        raise bad_tag(f"{path}.source", kind)
    check_extra_keys(source, _SOURCE_KEYS[kind], f"{path}.source.{kind}")
    if kind == "url" and not (isinstance(source.get("url"), str) and source["url"].startswith(("http://", "https://"))):
        raise invalid(f"{path}.source.url.url: Input should be a valid URL")
    return source


def check_image(block: dict[str, Any], path: str) -> ImageInfo | None:
    """Checks an image block; returns the header of a base64 image (its size is judged per request)."""
    check_extra_keys(block, BLOCK_KEYS["image"], path)
    path += ".image"  # the API names the block type in the paths below it
    source = _source(block, path, ("base64", "url"))
    if source["type"] == "url":
        return None
    where = f"{path}.source.base64"
    media_type = source.get("media_type")
    if media_type not in IMAGE_MEDIA_TYPES:
        expected = ", ".join(f"'{m}'" for m in IMAGE_MEDIA_TYPES[:-1]) + f" or '{IMAGE_MEDIA_TYPES[-1]}'"
        raise invalid(f"{where}.media_type: Input should be {expected}")
    raw = source.get("data")
    if isinstance(raw, str) and len(raw) > MAX_IMAGE_BASE64_BYTES:
        raise invalid(f"{where}: image exceeds 5 MB maximum: {len(raw)} bytes > {MAX_IMAGE_BASE64_BYTES} bytes")
    data = _decode(raw, where)
    if not data:
        raise invalid(f"{where}: image cannot be empty")
    fmt = sniff_format(data)
    if fmt is None:
        raise invalid(f"{where}: Could not process image")
    if MIME_OF_FORMAT[fmt] != media_type:
        raise invalid(
            f"{where}: The image was specified using the {media_type} media type, "
            f"but the image appears to be a {MIME_OF_FORMAT[fmt]} image"
        )
    info = image_info(data)
    if info is None:
        raise invalid(f"{where}: Could not process image")
    return info


def check_image_sizes(images: list[tuple[str, ImageInfo | None]]) -> None:
    """The limits that depend on the whole request: how many images, and so how large each may be.
    ``images``: (the block's path, its header) of each image, in order."""
    if len(images) > MAX_IMAGES:
        raise invalid(f"messages: too much media: 0 document pages + {len(images)} images > {MAX_IMAGES}")
    many = len(images) > MANY_IMAGES
    limit = MAX_IMAGE_SIDE_MANY if many else MAX_IMAGE_SIDE
    for path, info in images:
        if info is not None and max(info.width, info.height) > limit:
            what = "max allowed size for many-image requests" if many else "max allowed size"
            raise invalid(
                f"{path}.image.source.base64.data: At least one of the image dimensions exceed {what}: {limit} pixels"
            )


def pdf_pages(data: bytes) -> int | None:
    """The pages of a PDF as the API's parser finds them, or None for one it cannot parse.

    Pages are counted in the raw bytes and inside compressed object streams (PDF 1.5+, where office
    suites put the whole page tree); a `startxref` that points at neither an xref table nor an object,
    or an object stream that does not inflate, is a PDF that cannot be parsed."""
    if not data.startswith(b"%PDF-"):
        return None
    pages = len(_PDF_PAGE.findall(data))
    for head, body in _STREAM.findall(data):
        if b"/ObjStm" not in head:
            continue
        try:
            inflated = zlib.decompress(body) if b"/FlateDecode" in head else body
        except zlib.error:
            return None
        pages += len(_PDF_PAGE.findall(inflated))
    xref = _STARTXREF.findall(data[-2048:])
    if xref:
        at = int(xref[-1])
        if at >= len(data) or not _XREF_TARGET.match(data, at):
            return None
    return pages


def check_document(block: dict[str, Any], path: str) -> None:
    check_extra_keys(block, BLOCK_KEYS["document"], path)
    path += ".document"
    for key in ("title", "context"):
        if block.get(key) is not None and not isinstance(block[key], str):
            raise invalid(f"{path}.{key}: Input should be a valid string")
    citations = block.get("citations")
    if citations is not None and not (
        isinstance(citations, dict) and isinstance(citations.get("enabled", False), bool)
    ):
        raise invalid(f"{path}.citations: Input should be a valid dictionary")
    source = _source(block, path, ("base64", "text", "content", "url"))
    kind = source["type"]
    where = f"{path}.source.{kind}"
    if kind == "base64":
        if source.get("media_type") != "application/pdf":
            raise invalid(f"{where}.media_type: Input should be 'application/pdf'")
        data = _decode(source.get("data"), where)
        if not data:
            raise invalid(f"{where}: PDF cannot be empty")
        pages = pdf_pages(data)
        if pages is None:
            raise invalid(f"{where}.data: The PDF specified was not valid.")
        if pages > MAX_PDF_PAGES:
            raise invalid(f"{where}.data: A maximum of {MAX_PDF_PAGES} PDF pages may be provided.")
    elif kind == "text":
        if source.get("media_type") != "text/plain":
            raise invalid(f"{where}.media_type: Input should be 'text/plain'")
        if not isinstance(source.get("data"), str):
            raise invalid(f"{where}.data: Input should be a valid string")
    elif kind == "content":
        content = source.get("content")
        if isinstance(content, str):
            return
        if not isinstance(content, list):
            raise invalid(f"{where}.content: Input should be a valid string or a list of content blocks")
        for k, inner in enumerate(content):
            inner_type = inner.get("type") if isinstance(inner, dict) else None
            if inner_type not in ("text", "image"):
                raise bad_tag(f"{where}.content.{k}", inner_type)


# -- reading and billing ----------------------------------------------------------------------------


def media_block(block: dict[str, Any], message: int, index: int) -> MediaBlock | None:
    """What a test reads of an image or document block (None for other blocks or malformed ones)."""
    kind = block.get("type")
    source = block.get("source")
    if kind not in ("image", "document") or not isinstance(source, dict):
        return None
    source_type = str(source.get("type"))
    data: bytes | None = None
    text: str | None = None
    if source_type == "base64" and isinstance(source.get("data"), str):
        try:
            data = base64.b64decode(source["data"])
        except (binascii.Error, ValueError):
            data = None
    elif source_type == "text" and isinstance(source.get("data"), str):
        text = source["data"]
    elif source_type == "content":
        inner = source.get("content")
        text = inner if isinstance(inner, str) else "\n".join(
            b["text"] for b in inner or [] if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
    media_type = source.get("media_type")
    title = block.get("title")
    return MediaBlock(
        kind,
        source_type,
        media_type if isinstance(media_type, str) else None,
        message,
        index,
        data=data,
        text=text,
        url=source.get("url") if isinstance(source.get("url"), str) else None,
        title=title if isinstance(title, str) else None,
    )


def image_tokens(info: ImageInfo | None) -> int:
    if info is None:
        return 1600
    w, h = info.width, info.height
    scale = min(1.0, 1568 / max(w, h), math.sqrt(1_150_000 / (w * h)))
    return max(1, math.ceil((w * scale) * (h * scale) / 750))


def billed(block: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The block with a base64 payload replaced by its digest (what the cache keys on), and the extra
    characters it stands for (4 per token of the API's estimate), so usage need not count base64 text."""
    source = block.get("source")
    if block.get("type") not in ("image", "document") or not isinstance(source, dict):
        return block, 0
    data = source.get("data")
    if source.get("type") != "base64" or not isinstance(data, str):
        return block, 0 if source.get("type") != "url" else 4 * 1600
    digest = hashlib.sha256(data.encode()).hexdigest()
    stripped = {**block, "source": {**source, "data": digest}}
    try:
        raw = base64.b64decode(data)
    except (binascii.Error, ValueError):
        return stripped, 0
    if block["type"] == "image":
        return stripped, 4 * image_tokens(image_info(raw))
    return stripped, 4 * _TOKENS_PER_PDF_PAGE * max(1, pdf_pages(raw) or 0)
