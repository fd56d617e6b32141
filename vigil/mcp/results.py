"""From an MCP `CallToolResult` to what goes back to Claude in the `tool_result` block.

- text, embedded text resources, resource links and structured content become one text, capped as
  bash output is (head and tail kept, the cut said), so one chatty tool cannot fill the context;
- images become image blocks, but only what the Messages API takes: the bytes are decoded and
  checked by their signature (JPEG, PNG, GIF, WebP), never by the MIME type the server claimed, and
  an image over the API's limits is downscaled as a user's photo is (vigil/media/attachments.py). A broken
  image in the history would make every later request of the chat fail, so it is described instead;
- audio and binary resources are described (kind, size), not sent;
- `isError` becomes `is_error`.

Conversion runs on the caller's thread, not the MCP event loop: decoding an image takes a while.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import msgspec
from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from vigil.media.attachments import MAX_IMAGE_BASE64, prepare
from vigil.tools.bash import _CappedOutput  # the one cap for tool output (the bash tool's, 16000 bytes)

__all__ = ["OUTPUT_CAP", "ImagePart", "McpOutcome", "convert"]

OUTPUT_CAP = 16000  # BashRunner's default output_cap: a tool's text costs what a command's output costs
MAX_IMAGES = 20  # per result; the API takes 100 per request, and the history carries them all
# Larger base64 is not even decoded: an image this big could not be downscaled cheaply anyway.
_MAX_IMAGE_INPUT = 8 * MAX_IMAGE_BASE64


class ImagePart(msgspec.Struct, frozen=True):
    data: bytes
    media_type: str


class McpOutcome(msgspec.Struct, frozen=True):
    """A tool call's result for the `tool_result` block: text (capped) and images, and whether it failed."""

    text: str
    images: tuple[ImagePart, ...] = ()
    is_error: bool = False

    def blocks(self) -> list[dict[str, Any]]:
        """The `tool_result` content: a text block (never empty), then the images."""
        text = self.text if self.text.strip() or self.images else "(no output)"
        blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text.strip() else []
        for image in self.images:
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": image.media_type,
                                                       "data": base64.b64encode(image.data).decode("ascii")}})
        return blocks


def failure(sentence: str) -> McpOutcome:
    return McpOutcome(text=sentence, is_error=True)


def convert(result: CallToolResult, cap: int = OUTPUT_CAP) -> McpOutcome:
    texts: list[str] = []
    images: list[ImagePart] = []

    def add_image(data: str, claimed: str, what: str) -> None:
        if len(images) >= MAX_IMAGES:
            texts.append(f"[{what} ({claimed}): not shown, a result shows at most {MAX_IMAGES} images]")
            return
        shown = _image(data, claimed)
        if isinstance(shown, str):
            texts.append(f"[{what} ({claimed}): {shown}]")
        else:
            images.append(shown)

    for block in result.content:
        if isinstance(block, TextContent):
            texts.append(block.text)
        elif isinstance(block, ImageContent):
            add_image(block.data, block.mime_type, "image")
        elif isinstance(block, AudioContent):
            texts.append(f"[audio ({block.mime_type}), {_decoded_size(block.data)} bytes: not shown]")
        elif isinstance(block, ResourceLink):
            mime = f", {block.mime_type}" if block.mime_type else ""
            about = f": {block.description}" if block.description else ""
            texts.append(f"[resource link {block.name} ({block.uri}{mime}){about}]")
        elif isinstance(block, EmbeddedResource):
            resource = block.resource
            if isinstance(resource, TextResourceContents):
                texts.append(f"[resource {resource.uri}]\n{resource.text}")
            elif isinstance(resource, BlobResourceContents):
                mime = resource.mime_type or "application/octet-stream"
                if mime.startswith("image/"):
                    add_image(resource.blob, mime, f"image resource {resource.uri}")
                else:
                    texts.append(f"[resource {resource.uri} ({mime}), {_decoded_size(resource.blob)} bytes: "
                                 "binary, not shown]")
    structured = result.structured_content
    if structured is not None and not _shown(texts, structured):
        texts.append("structured content: " + json.dumps(structured, ensure_ascii=False, sort_keys=True))
    return McpOutcome(text=_capped("\n".join(texts), cap), images=tuple(images), is_error=result.is_error)


def _capped(text: str, cap: int) -> str:
    out = _CappedOutput(cap)
    out.add(text.encode("utf-8"))
    return out.render()


def _shown(texts: list[str], structured: Any) -> bool:
    """Whether the text already says what the structured content says (servers SHOULD repeat it as JSON
    text; the SDK's servers wrap a plain return value as `{"result": value}`): then it is not sent twice."""
    candidates = [structured]
    if isinstance(structured, dict) and len(structured) == 1:
        candidates.append(next(iter(structured.values())))
    for text in texts:
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        if any(parsed == candidate or text == candidate for candidate in candidates):
            return True
    return False


def _decoded_size(data: str) -> int:
    return len(data) * 3 // 4 - data[-2:].count("=")


def _image(data: str, claimed: str) -> ImagePart | str:
    """The image as the API will take it, or why it is not shown."""
    if len(data) > _MAX_IMAGE_INPUT:
        return f"{_decoded_size(data)} bytes, too large to show"
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return "not valid base64, not shown"
    prepared = prepare(raw, claimed)
    if prepared.kind != "image":
        return "not a readable JPEG, PNG, GIF or WebP image, not shown"
    return ImagePart(prepared.data, prepared.media_type)
