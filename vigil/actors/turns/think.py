"""Thinking in a chat: `/think`, the level a turn asks for, and which turns ask at all.

A chat's level is its header's `thinking` (set by `/think`), else `VIGIL_THINKING`, else none: then no
`thinking` is sent and the model does as it does by default. What each level asks of the API, and how
it makes room for itself within `max_tokens`, is vigil/model/thinking.py's.

Which turns think:
- a user's turn and a schedule's firing (a task someone asked for) ask for the chat's level;
- a heartbeat and a compaction never ask: a check-in that most often says nothing, and a summary, are
  not worth thinking tokens. A chat that chose a level (even `off`) sends them `disabled`, so a model
  that would think by default does not either; a chat that never chose leaves them to the model too.
- a turn resumed after a restart whose stored rounds began without thinking (the level changed in
  between) goes on without it: the API wants a continued turn to start with thinking or not think.

`/think show` also shows the summarized thinking above the answer (an expandable quote on Telegram,
plain lines on the console); `/think show off` (or `/think hide`) stops showing it. Changing either is
a setting of the chat: in a group it needs what `/mode` needs (vigil/policy/roles.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from vigil.actors.core.protocol import SessionCommand
from vigil.actors.core.state import Session
from vigil.config.settings import Settings
from vigil.model.thinking import BUDGETS, LEVELS, THINKING_TYPES, ThinkingLevel, thinking_request
from vigil.records.schema import Message, SessionHeader

NOT_SAVED = "⚠️ That could not be saved (the store refused the write), so it did not happen."
THINKING_LINE = "💭 thinking…"
DISABLED: dict[str, Any] = {"type": "disabled"}
_MEANING: dict[ThinkingLevel, str] = {
    "off": "no thinking",
    "auto": "Claude decides whether and how much to think (adaptive)",
    "low": f"up to {BUDGETS['low']:,} tokens of thinking",
    "medium": f"up to {BUDGETS['medium']:,} tokens of thinking",
    "high": f"up to {BUDGETS['high']:,} tokens of thinking",
}
_HIDE = ("hide", "show off", "show no", "show false")


def level_of(header: SessionHeader, settings: Settings) -> ThinkingLevel | None:
    """The chat's level: its own choice, else VIGIL_THINKING's, else None (the model's default)."""
    chosen = header.thinking or settings.thinking
    return next((level for level in LEVELS if level == chosen), None)


def asked(header: SessionHeader, settings: Settings, max_tokens: int,
          exchange: Sequence[Message] = ()) -> tuple[dict[str, Any] | None, int]:
    """(thinking, max_tokens) of a user turn or a schedule's firing; `exchange`: a resumed turn's stored rounds."""
    thinking, room = thinking_request(level_of(header, settings), max_tokens, show=header.think_show)
    if thinking is not None and thinking["type"] != "disabled" and not _began_thinking(exchange):
        return DISABLED, max_tokens  # the stored rounds did not think: the turn goes on as it began
    return thinking, room


def not_asked(header: SessionHeader, settings: Settings) -> dict[str, Any] | None:
    """The thinking of a heartbeat or a compaction: none asked; `disabled` where the chat chose a level."""
    return DISABLED if level_of(header, settings) is not None else None


def _began_thinking(exchange: Sequence[Message]) -> bool:
    first = next((m for m in exchange if m.role == "assistant"), None)
    return first is None or (bool(first.content) and first.content[0].get("type") in THINKING_TYPES)


def _overview(header: SessionHeader, settings: Settings, note: str = "") -> str:
    level = level_of(header, settings)
    if level is None:
        now = "not set: the model decides as it does by default"
    else:
        whence = "" if header.thinking else " (VIGIL_THINKING's default)"
        now = f"{level}{whence}: {_MEANING[level]}"
    shown = ("shown above each answer (/think show off hides it)" if header.think_show
             else "not shown (/think show shows it above each answer)")
    lines = [f"{note}💭 Thinking in this chat: {now}.", f"Claude's summarized thinking: {shown}.", ""]
    lines += [f"{'•' if level == m else '◦'} /think {m}: {_MEANING[m]}" for m in LEVELS]
    if header.thinking:
        lines.append("◦ /think default: follow the service's default again")
    lines += ["", "Thinking tokens are billed as output tokens; /usage counts them."]
    return "\n".join(lines)


def cmd_think(session: Session, message: SessionCommand) -> None:
    header = session.ensure_header(message.target, message.chat_title, message.chat_type)
    settings = session.deps.settings
    wanted = " ".join(message.args.lower().split())
    if not wanted:
        session.reply(message.target, _overview(header, settings))
        return
    if wanted in ("show", "show on", *_HIDE):
        changed = msgspec.structs.replace(header, think_show=wanted in ("show", "show on"))
    elif wanted == "default":
        changed = msgspec.structs.replace(header, thinking="")
    elif wanted in LEVELS:
        changed = msgspec.structs.replace(header, thinking=next(m for m in LEVELS if m == wanted))
    else:
        session.reply(message.target, f"⛔ {message.args.strip()!r} is not a thinking level: /think off, auto, low, "
                                      "medium or high; /think show or /think show off.")
        return
    session.header = changed
    if not session.commit(wait=True):
        session.header = header
        session.reply(message.target, NOT_SAVED)
        return
    session.reply(message.target, _overview(changed, settings, "Done. "))


COMMANDS = {"think": cmd_think}
