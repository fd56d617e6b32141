"""`/search WORDS`: people search their own chat's past conversations, as Claude does with `recall`.

Answered at once, beside a running turn (a control command: it only reads). The top five passages of
the chat where it is asked, never another's: in a group, the group's own history, whoever asks (every
member may search what every member could read). Each hit names its conversation, when and who, and
has a button that goes back to that conversation (`/resume N`, the same button `/resume` gives, tied to
this chat's incarnation so a button from before a /forget resumes nothing).
"""

from __future__ import annotations

from collections.abc import Callable

from vigil.ports import Button, Reply
from vigil.recall.live import RecallPort
from vigil.recall.search import RecallHit, when
from vigil.records.conversations import resume_button
from vigil.records.schema import SessionHeader

SHOWN = 5
LABEL_CHARS = 40  # a button's label: Telegram shows about this much on a phone


def _who(hit: RecallHit) -> str:
    return hit.name if hit.speaker == "claude" else (hit.name or "you")


def _where(hit: RecallHit) -> str:
    title = f" “{hit.title}”" if hit.title else ""
    return f"#{hit.generation}{title}{' (current)' if hit.current else ''}"


def search_reply(recall: RecallPort, key: str, words: str, header: Callable[[str], SessionHeader | None]) -> Reply:
    """The answer to `/search words` in the chat `key` (`header` reads its header, live or stored)."""
    if not words.strip():
        return Reply(text="🔎 /search WORDS finds them in this chat's conversations, earlier ones included; "
                          "a \"quoted phrase\" stays a phrase.")
    result = recall.search(key, words, SHOWN)
    shown = " ".join(words.split())
    if not result.hits:
        why = f" ({result.note})" if result.note else ""
        return Reply(text=f"🔎 Nothing in this chat's conversations matches «{shown}»{why}.")
    current = header(key)
    tz = current.heartbeat.tz if current is not None else "UTC"
    lines = [f"🔎 «{shown}» in this chat's conversations, best match first:", ""]
    buttons: list[tuple[Button, ...]] = []
    for n, hit in enumerate(result.hits, 1):
        lines.append(f"{n}. {_where(hit)} · {when(hit.at, tz)} · {_who(hit)}:\n{hit.text}")
        lines.append("")
        if current is not None:
            label = f"{n} ↩️ #{hit.generation} {hit.title or '(untitled)'}"
            buttons.append((Button(label[:LABEL_CHARS], resume_button(hit.generation, current.incarnation)),))
    lines.append("Press a number to go back to that conversation (/resume N).")
    if result.note:
        lines.append(f"({result.note})")
    return Reply(text="\n".join(lines), buttons=tuple(buttons))
