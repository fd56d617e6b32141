"""The files of a turn in a request: reference blocks in the history, the API's blocks in each request.

Stored turns name their files by digest (`Attachment`), and the bytes live once in the media store.
Building a request takes two steps, so that the history window stays small and history.py touches no
disk:

- `ref_block` is what `turn_messages` puts before an input's text (and an MCP tool's result holds for each
  image it returned: actors/tools/mcp.py): a small placeholder that names the attachment. The window
  (actors/engine/window.py) keeps these, not megabytes of base64 per photo in each of a thousand live sessions,
  and counts each by the tokens estimated when the file arrived (`block_tokens`), never by the length of
  its text.
- `materialize`, once per request, replaces each placeholder with the block the API takes: an image,
  a PDF `document`, or a text `document` (titled with the file's name: its contents stay marked as the
  file's, apart from what the user wrote, and the model can cite it), read through a `MediaSource`.
  A file deleted by hand becomes a line saying so, never a refused request. The newest files go first
  within what one request may carry (`RequestLimits`); older ones beyond it become a line each.

A placeholder never reaches the API: the Messages API refuses unknown block types, and the tests run
every request through the stand-in's validator.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import msgspec

from vigil.ports import MediaSource
from vigil.records.schema import Attachment

Block = dict[str, Any]
ApiMessage = dict[str, Any]

REF_TYPE = "vigil_attachment"
CARRIED = ("image", "pdf", "text")  # the kinds that reach the model as a block; a "file" only by its path

# Anthropic's documented costs: an image costs width*height/750 tokens after the API scaled it to a
# long edge of at most 1568 px and about 1.15 megapixels (so at most ~1,600 tokens); a PDF page costs
# about 1,500-3,000 tokens (its text and an image of it): the upper end, so the window errs on the safe side.
IMAGE_MAX_TOKENS = 1_600
PDF_PAGE_TOKENS = 3_000
CHARS_PER_TOKEN = 3.5
PDF_BYTES_PER_PAGE = 60_000  # for a PDF whose pages could not be counted


@dataclass(frozen=True)
class RequestLimits:
    """What one Messages API request may carry, with room to spare.

    More than 20 images in one request makes the API refuse any image over 2000 px a side (a Telegram
    photo is up to 2560); a request is at most 32 MB (base64 makes bytes 4/3 larger); a request's PDFs
    are at most 100 pages together.
    """

    images: int = 20
    bytes: int = 18 * 1024 * 1024
    pdf_pages: int = 100


LIMITS = RequestLimits()
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})  # what the API takes


def ref_block(attachment: Attachment) -> Block:
    """The placeholder of one attachment in a stored turn's messages (see the module docstring)."""
    return {"type": REF_TYPE, "attachment": msgspec.to_builtins(attachment)}


def attachment_of(block: Block) -> Attachment:
    return msgspec.convert(block["attachment"], Attachment)


def attachment_tokens(attachment: Attachment) -> int:
    """What the attachment costs the model: as estimated on arrival, else from its kind and size."""
    if attachment.tokens > 0:
        return attachment.tokens
    if attachment.kind == "image":
        return IMAGE_MAX_TOKENS
    if attachment.kind == "pdf":
        return PDF_PAGE_TOKENS * max(1, math.ceil(attachment.size / PDF_BYTES_PER_PAGE))
    if attachment.kind == "text":
        return math.ceil(attachment.size / CHARS_PER_TOKEN)
    return 0


def pdf_pages(attachment: Attachment) -> int:
    return max(1, math.ceil(attachment_tokens(attachment) / PDF_PAGE_TOKENS))


def block_tokens(block: Block) -> int | None:
    """The tokens of a file block (a placeholder, or one `materialize` made); None for other blocks.

    A file is never counted by the length of its base64, which would make one photo look like a
    million tokens and push the whole history out of the window."""
    kind = block.get("type")
    if kind == REF_TYPE:
        return attachment_tokens(attachment_of(block))
    source = block.get("source")
    if kind not in ("image", "document") or not isinstance(source, dict):
        return None
    data = source.get("data")
    size = len(data) if isinstance(data, str) else 0
    if kind == "image":
        return IMAGE_MAX_TOKENS  # the size is unknown here; the API never charges more than this
    if source.get("type") == "text":
        return math.ceil(size / CHARS_PER_TOKEN)
    return PDF_PAGE_TOKENS * max(1, math.ceil(size * 3 / 4 / PDF_BYTES_PER_PAGE))


def has_refs(messages: list[ApiMessage]) -> bool:
    return any(isinstance(m["content"], list) and any(b.get("type") == REF_TYPE for b in m["content"])
               for m in messages)


Spot = tuple[int, int, int | None]
"""Where a placeholder stands: (message, block, index within that block's `tool_result` content or None)."""


def ref_spots(messages: list[ApiMessage]) -> list[Spot]:
    """Every placeholder: before a user's text, or in a tool's result (an MCP tool's images)."""
    spots: list[Spot] = []
    for m, message in enumerate(messages):
        if not isinstance(message["content"], list):
            continue
        for b, block in enumerate(message["content"]):  # every block of the window, at every model call
            kind = block.get("type")
            if kind == REF_TYPE:
                spots.append((m, b, None))
            elif kind == "tool_result" and isinstance(block.get("content"), list):
                spots += [(m, b, k) for k, inner in enumerate(block["content"]) if inner.get("type") == REF_TYPE]
    return spots


def ref_at(messages: list[ApiMessage], spot: Spot) -> Block:
    m, b, k = spot
    block: Block = messages[m]["content"][b]
    return block if k is None else block["content"][k]


def materialize(messages: list[ApiMessage], source: MediaSource | None,
                limits: RequestLimits = LIMITS, unreadable: Collection[str] = ()) -> list[ApiMessage]:
    """`messages` with every placeholder replaced (new dicts where replaced; the rest shared).

    `source` None (a heartbeat, which should not pay for the chat's photos at every beat): each file
    becomes a short line naming it. A file whose digest is in `unreadable` (the model service refused
    it once: actors/turns/refused_files.py) becomes a line saying so, so that it never fails a request again.
    The placeholders of the last message are the ones the user is being answered about: a file of
    theirs left out is worded as such, not as one "sent earlier"."""
    spots = ref_spots(messages)
    if not spots:
        return messages
    budget = _Budget(limits)
    chosen: dict[Spot, Block] = {}
    last = len(messages) - 1
    for spot in reversed(spots):  # newest first: the files the user just sent are the ones that matter
        ref = ref_at(messages, spot)
        attachment = attachment_of(ref)
        if attachment.digest in unreadable:
            block = _note(f"[{_what(attachment)}: the model service could not read it, so it is left out]")
        else:
            block = _api_block(attachment, source, budget, current=spot[0] == last)
        if "cache_control" in ref:
            block["cache_control"] = ref["cache_control"]
        chosen[spot] = block
    out = list(messages)
    for index in {m for m, _, _ in spots}:
        content = []
        for b, block in enumerate(messages[index]["content"]):
            if (index, b, None) in chosen:
                block = chosen[(index, b, None)]
            elif block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                inner = [chosen.get((index, b, k), part) for k, part in enumerate(block["content"])]
                block = {**block, "content": inner}
            content.append(block)
        out[index] = {"role": messages[index]["role"], "content": content}
    return out


class _Budget:
    def __init__(self, limits: RequestLimits) -> None:
        self.limits = limits
        self.images = limits.images
        self.bytes = limits.bytes
        self.pages = limits.pdf_pages

    def take(self, attachment: Attachment) -> bool:
        pages = pdf_pages(attachment) if attachment.kind == "pdf" else 0
        images = 1 if attachment.kind == "image" else 0
        if attachment.size > self.bytes or images > self.images or pages > self.pages:
            return False
        self.bytes -= attachment.size
        self.images -= images
        self.pages -= pages
        return True


def _what(attachment: Attachment) -> str:
    if attachment.kind == "image":
        return f"image {attachment.name}" if attachment.name else "image"
    return f"{'document' if attachment.kind == 'pdf' else 'file'} {attachment.name or attachment.digest[:12]}"


def _note(text: str) -> Block:
    return {"type": "text", "text": text}


def _api_block(attachment: Attachment, source: MediaSource | None, budget: _Budget, current: bool) -> Block:
    if source is None:
        return _note(f"[{_what(attachment)} sent earlier: not shown here]")
    if attachment.kind == "image" and attachment.media_type not in IMAGE_MEDIA_TYPES:
        return _note(f"[{_what(attachment)} in a format the model cannot read ({attachment.media_type})]")
    if not budget.take(attachment):
        if current:
            return _note(f"[{_what(attachment)} left out of this request: one request carries at most "
                         f"{budget.limits.images} images, {budget.limits.pdf_pages} PDF pages and "
                         f"{budget.limits.bytes // (1024 * 1024)} MB of files; ask the user to send it "
                         f"again on its own if it is needed]")
        return _note(f"[{_what(attachment)} sent earlier: left out of this request, which carries the newest "
                     f"files only; ask the user to send it again if it is needed]")
    try:
        if attachment.kind == "text":
            text = source.read(attachment.digest).decode("utf-8-sig", errors="replace")
            block: Block = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
        else:
            data = source.base64(attachment.digest)
            if attachment.kind == "image":
                return {"type": "image", "source": {"type": "base64", "media_type": attachment.media_type,
                                                    "data": data}}
            block = {"type": "document",
                     "source": {"type": "base64", "media_type": "application/pdf", "data": data}}
    except (FileNotFoundError, ValueError):
        return _note(f"[{_what(attachment)} no longer available]")
    except OSError as exc:
        return _note(f"[{_what(attachment)} could not be read: {exc.strerror or exc}]")
    if attachment.name:
        block["title"] = attachment.name[:200]
    return block
