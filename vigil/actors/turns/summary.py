"""The summarisation call of compaction: its prompt, the transcript it reads, and the bounds on both.

Compaction (actors/turns/compaction.py) hands this the summary made last time and the turns leaving the
window; this makes the one Messages request that asks for a summary replacing both. The turns go in
as a plain transcript in one user message (not as the conversation itself): the model is asked
*about* the conversation, so its tool calls, files and the system prompt of the chat must not look
like a conversation to continue, and a request of one text message is always valid.

The system prompt begins with `SUMMARY_MARKER`, which the Messages API stand-in of the tests
recognises, as it recognises a heartbeat by its tool, so that tests can script what it answers.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from vigil.config.settings import Settings
from vigil.ports import ModelRequest
from vigil.records.schema import Message, Summary, Turn

SUMMARY_MARKER = "You are compacting a conversation"

SUMMARY_SYSTEM = SUMMARY_MARKER + """ between users and Claude (an AI assistant in a chat app) so that \
it can go on in a smaller context window. You are given the summary of the conversation before (if there is \
one) and a transcript of the turns that came after it. Write ONE updated summary that replaces both: Claude \
will see it instead of those turns.

Keep everything the conversation may need later:
- facts stated and decisions made (and why);
- names of people, places, projects and things; exact numbers, dates, amounts, versions, identifiers, URLs;
- files and directories created or changed, commands run and what they showed;
- open tasks, promises made, questions not answered yet;
- the user's preferences, instructions and corrections (how they want things done and answered).
Fold the earlier summary in: everything it says that still holds must be in yours too, so that nothing is \
forgotten across several compactions. Leave out small talk and repetition. Write in the language of the \
conversation, in the third person ("the user asked ..."), as short paragraphs or bullet points, at most about \
{words} words. Reply with the summary only."""

BLOCK_CHARS = 2000  # one message, tool input or tool result, at most (a pasted log says what it is in that)
TRANSCRIPT_TOKENS_MAX = 150_000  # the summariser's context is large, not endless
CHARS_PER_TOKEN = 3.5  # as vigil.model.history.estimate_tokens counts


def summary_max_tokens(settings: Settings) -> int:
    """Output tokens a summary may use: a fifth of the window, so that it leaves room for turns."""
    return max(256, min(settings.history_tokens // 5, settings.max_output_tokens, 4096))


def summary_chars(settings: Settings) -> int:
    """A summary longer than this (a quarter of the window) is cut: it must never crowd out the turns."""
    return max(800, int(settings.history_tokens / 4 * CHARS_PER_TOKEN))


def summary_request(model: str, previous: Summary | None, turns: list[Turn], settings: Settings) -> ModelRequest:
    """The request for a summary of `previous` and `turns`."""
    limit = summary_max_tokens(settings)
    budget = int(min(settings.history_tokens * 4, TRANSCRIPT_TOKENS_MAX) * CHARS_PER_TOKEN)
    parts: list[str] = []
    if previous is not None and previous.text.strip():
        parts.append(f"<earlier_summary>\n{previous.text.strip()}\n</earlier_summary>")
    first = turns[0].seq if turns else 0
    parts.append(f"<transcript turns=\"{first}-{turns[-1].seq if turns else 0}\">\n"
                 f"{transcript(turns, budget)}\n</transcript>")
    parts.append("Write the updated summary now.")
    return ModelRequest(
        model=model, max_tokens=limit,
        system=({"type": "text", "text": SUMMARY_SYSTEM.format(words=int(limit * 0.6))},),
        messages=({"role": "user", "content": [{"type": "text", "text": "\n\n".join(parts)}]},))


def transcript(turns: list[Turn], budget_chars: int) -> str:
    """The turns as plain text, oldest first; beyond `budget_chars` the oldest are left out (and said so)."""
    rendered = [turn_text(turn) for turn in turns]
    used = 0
    kept: list[str] = []
    for text in reversed(rendered):
        if kept and used + len(text) > budget_chars:
            break
        kept.append(text[-budget_chars:])
        used += len(text)
    omitted = len(rendered) - len(kept)
    head = [f"[{omitted} earlier turns left out: too long to summarise]"] if omitted else []
    return "\n\n".join([*head, *reversed(kept)])


def turn_text(turn: Turn) -> str:
    """One turn: when, who said what, what Claude did and answered."""
    when = dt.datetime.fromtimestamp(turn.started_at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"--- turn {turn.seq}, {when}"]
    if turn.kind == "heartbeat":
        lines.append("(Claude's scheduled check-in; nobody wrote)")
    for item in turn.inputs:
        files = " ".join(f"[{a.kind} {a.name or a.media_type}]" for a in item.attachments)
        said = " ".join(p for p in (files, _cut(item.text)) if p)
        lines.append(f"{item.user_name or f'user {item.user_id}' if item.user_id else 'User'}: {said}")
    said_anything = False
    for message in turn.messages:
        for line in _message_lines(message):
            lines.append(line)
            said_anything = said_anything or line.startswith("Claude:")
    if turn.reply.strip() and not said_anything:
        lines.append(f"Claude: {_cut(turn.reply)}")
    if turn.status not in ("done", "open"):
        lines.append(f"(the reply was {turn.status}{': ' + turn.note if turn.note else ''})")
    return "\n".join(lines)


def _message_lines(message: Message) -> list[str]:
    out: list[str] = []
    for block in message.content:
        kind = block.get("type")
        if kind == "text" and str(block.get("text", "")).strip():
            out.append(f"{'Claude' if message.role == 'assistant' else 'User'}: {_cut(str(block['text']))}")
        elif kind in ("tool_use", "server_tool_use"):
            out.append(f"Claude used {block.get('name')}: {_cut(_json(block.get('input')))}")
        elif kind == "tool_result":
            failed = " (error)" if block.get("is_error") else ""
            out.append(f"Result{failed}: {_cut(_result_text(block.get('content')))}")
        elif isinstance(kind, str) and kind.endswith("_tool_result"):
            out.append(f"[{kind}]")
    return out


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", f"[{b.get('type')}]")) for b in content if isinstance(b, dict))
    return _json(content)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _cut(text: str) -> str:
    text = text.strip()
    return text if len(text) <= BLOCK_CHARS else text[:BLOCK_CHARS] + f" […{len(text) - BLOCK_CHARS} chars cut]"
