"""The Messages API stand-in's image and document blocks, driven by the real anthropic SDK over real HTTP.

The stand-in must refuse every image and document the real API refuses (media type, base64, size,
dimensions, count, PDF validity, where a block may sit), in the API's words, and give a test back the
decoded bytes of what was accepted, so an end-to-end test can assert "exactly these bytes reached the
model". Images are real ones, made by `tests.standins.images`.
"""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import pytest

from tests import media_samples
from tests.media_samples import pdf_in_object_streams
from tests.standins.images import make_jpeg, make_png
from tests.standins.messages_api import MessagesAPI

MODEL = "claude-sonnet-5-5"
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages >> endobj\n" \
      b"3 0 obj << /Type /Page >> endobj\n%%EOF\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image(data: bytes, media_type: str = "image/jpeg") -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": b64(data)}}


def pdf(data: bytes = PDF, **extra: Any) -> dict[str, Any]:
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(data)},
            **extra}


def text(words: str) -> dict[str, Any]:
    return {"type": "text", "text": words}


def send(
    claude: anthropic.Anthropic, *blocks: dict[str, Any], messages: list[Any] | None = None, **kwargs: Any
) -> Any:
    return claude.messages.create(
        model=MODEL, max_tokens=100, messages=messages or [{"role": "user", "content": list(blocks)}], **kwargs
    )


def test_images_and_documents_are_accepted_and_read_back_decoded(messages_api: MessagesAPI,
                                                                 claude: anthropic.Anthropic) -> None:
    photo, png = make_jpeg(1200, 800, level=70), make_png(300, 200)
    history: list[Any] = [
        {"role": "user", "content": [image(make_jpeg(10, 10)), text("earlier")]},
        {"role": "assistant", "content": "seen"},
        {
            "role": "user",
            "content": [
                image(photo),
                image(png, "image/png"),
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                pdf(title="contract.pdf", context="uploaded", citations={"enabled": True}),
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "log line"}},
                {"type": "document", "source": {"type": "content", "content": [text("chunk")]}},
                text("what is this?"),
            ],
        },
    ]
    send(claude, messages=history)
    assert messages_api.errors == []
    (request,) = messages_api.requests
    assert request.images() == [make_jpeg(10, 10), photo, png]
    assert request.images(current_turn=True) == [photo, png]
    documents = request.documents()
    assert [(d.source_type, d.media_type, d.title) for d in documents] == [
        ("base64", "application/pdf", "contract.pdf"),
        ("text", "text/plain", None),
        ("content", None, None),
    ]
    assert documents[0].data == PDF and documents[1].text == "log line" and documents[2].text == "chunk"
    url_image = request.media(current_turn=True)[2]
    assert (url_image.kind, url_image.url, url_image.data, url_image.message) == (
        "image", "https://example.com/a.png", None, 2,
    )


def test_images_inside_tool_results_are_checked_and_read(messages_api: MessagesAPI,
                                                         claude: anthropic.Anthropic) -> None:
    tools: list[Any] = [{"name": "look", "input_schema": {"type": "object"}}]
    use = {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {}}
    shot = make_png(64, 64, (0, 255, 0))
    messages: list[Any] = [
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": [use]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [image(shot, "image/png")]}],
        },
    ]
    claude.messages.create(model=MODEL, max_tokens=100, tools=tools, messages=messages)
    assert messages_api.requests[0].images() == [shot]
    bad = [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [image(shot)]}]
    with pytest.raises(anthropic.BadRequestError, match="appears to be a image/png image"):
        send(claude, messages=[*messages[:2], {"role": "user", "content": bad}], tools=tools)


def _too_many(n: int, side: int) -> list[dict[str, Any]]:
    one = image(make_png(side, 10))
    one["source"]["media_type"] = "image/png"
    return [one] * n


REFUSED: list[tuple[str, list[dict[str, Any]], str]] = [
    (
        "png declared as jpeg",
        [image(make_png(10, 10))],
        "messages.0.content.0.image.source.base64: The image was specified using the image/jpeg media type, "
        "but the image appears to be a image/png image",
    ),
    (
        "unknown media type",
        [image(make_jpeg(10, 10), "image/bmp")],
        "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
        "'image/gif' or 'image/webp'",
    ),
    (
        "not an image",
        [text("see"), image(b"hello, world")],
        "messages.0.content.1.image.source.base64: Could not process image",
    ),
    ("empty image", [image(b"")], "image.source.base64: image cannot be empty"),
    (
        "bad base64",
        [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "not base64!"}}],
        "image.source.base64.data: Invalid base64 data",
    ),
    (
        "over 5 MB of base64",
        [image(make_jpeg(100, 100, size=3_932_161))],
        "messages.0.content.0.image.source.base64: image exceeds 5 MB maximum: 5242884 bytes > 5242880 bytes",
    ),
    (
        "over 8000 px",
        [image(make_jpeg(8001, 100))],
        "messages.0.content.0.image.source.base64.data: At least one of the image dimensions exceed max allowed "
        "size: 8000 pixels",
    ),
    (
        "over 2000 px among 21 images",
        _too_many(21, 2001),
        "image.source.base64.data: At least one of the image dimensions exceed max allowed size for many-image "
        "requests: 2000 pixels",
    ),
    ("101 images", _too_many(101, 10), "messages: too much media: 0 document pages + 101 images > 100"),
    (
        "file source",
        [{"type": "image", "source": {"type": "file", "file_id": "file_1"}}],
        "messages.0.content.0.image.source: Input tag 'file' found using 'type' does not match any of the "
        "expected tags",
    ),
    (
        "extra key on the source",
        [{"type": "image", "source": {"type": "url", "url": "https://x.test/a.png", "detail": "high"}}],
        "messages.0.content.0.image.source.url.detail: Extra inputs are not permitted",
    ),
    ("pdf that is not one", [pdf(b"<html>")], "document.source.base64.data: The PDF specified was not valid."),
    (
        "pdf as text/plain",
        [{"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": b64(PDF)}}],
        "messages.0.content.0.document.source.base64.media_type: Input should be 'application/pdf'",
    ),
    (
        "101 pdf pages",
        [pdf(b"%PDF-1.4\n" + b"<< /Type /Page >>\n" * 101)],
        "A maximum of 100 PDF pages may be provided.",
    ),
    (
        "101 pdf pages hidden in a compressed object stream",
        [pdf(pdf_in_object_streams(101))],
        "messages.0.content.0.document.source.base64.data: A maximum of 100 PDF pages may be provided.",
    ),
    (
        "pdf whose startxref points nowhere",
        [pdf(media_samples.pdf(2).rsplit(b"startxref", 1)[0] + b"startxref\n17\n%%EOF\n")],
        "messages.0.content.0.document.source.base64.data: The PDF specified was not valid.",
    ),
    (
        "pdf whose object stream does not inflate",
        [pdf(pdf_in_object_streams(3).replace(b"stream\nx", b"stream\n\x00", 1))],
        "messages.0.content.0.document.source.base64.data: The PDF specified was not valid.",
    ),
    (
        "text document that is markdown",
        [{"type": "document", "source": {"type": "text", "media_type": "text/markdown", "data": "# x"}}],
        "messages.0.content.0.document.source.text.media_type: Input should be 'text/plain'",
    ),
]


@pytest.mark.parametrize(("blocks", "expected"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_media_the_api_refuses(
    messages_api: MessagesAPI, claude: anthropic.Anthropic, blocks: list[dict[str, Any]], expected: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        send(claude, *blocks, text("what is it?"))
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert expected in caught.value.body["error"]["message"]
    [error] = messages_api.errors
    assert error["status"] == 400 and expected in error["message"]


def test_media_limits_hold_at_their_edges(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    send(claude, image(make_jpeg(100, 100, size=3_932_160)), text("exactly 5 MB of base64"))
    send(claude, image(make_jpeg(8000, 8000)), text("8000 px"))
    send(claude, *_too_many(20, 8000), text("20 large images"))
    send(claude, *_too_many(100, 2000), text("100 small images"))
    send(claude, pdf(b"%PDF-1.4\n" + b"<< /Type /Page >>\n" * 100 + b"<< /Type /Pages >>"), text("100 pages"))
    send(claude, pdf(pdf_in_object_streams(100)), text("100 pages in an object stream"))
    send(claude, pdf(media_samples.pdf(3)), text("a real PDF with its xref table"))
    assert messages_api.errors == []


def test_a_document_may_not_sit_in_an_assistant_message(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "read"},
        {"role": "assistant", "content": [pdf()]},
        {"role": "user", "content": "and?"},
    ]
    with pytest.raises(anthropic.BadRequestError, match="`document` blocks can only be in `user` messages"):
        send(claude, messages=messages)


def test_a_request_over_32_mb_is_413(messages_api: MessagesAPI, claude: anthropic.Anthropic) -> None:
    big = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x" * (32 * 1024 * 1024)}}
    with pytest.raises(anthropic.APIStatusError) as caught:
        send(claude, big, text("too much"))
    assert caught.value.status_code == 413
    assert isinstance(caught.value.body, dict) and caught.value.body["error"]["type"] == "request_too_large"
    assert messages_api.requests == [] and messages_api.errors[0]["status"] == 413


def test_images_are_billed_by_size_not_by_base64_length(claude: anthropic.Anthropic) -> None:
    small = send(claude, text("no image")).usage.input_tokens
    with_image = send(claude, image(make_jpeg(100, 100, size=3_000_000)), text("no image")).usage.input_tokens
    # A 100x100 image is ~14 tokens by the API's estimate, whatever its padding; a big one at most ~1600.
    assert 0 < with_image - small < 100
    large = send(claude, image(make_jpeg(4000, 3000)), text("no image")).usage.input_tokens
    assert 1400 < large - small < 1700
