"""The commands that choose a chat's conversation: /new [TITLE], /resume [N], /title [NAME].

They run inside the session's actor, in order with its messages (a /resume sent after a question
acts once that question is answered), and each change is one durable commit: what moves between
"current" and "earlier" is the header and one record each (vigil/records/conversations.py), written together;
the turns stay where they are in the store. The earlier conversations are read from the store by range
when they are listed or resumed, never carried in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vigil.actors.core.protocol import SessionCommand
from vigil.actors.core.recovery import resend_undelivered
from vigil.actors.core.state import Session
from vigil.durations import ago
from vigil.ports import Button, Store
from vigil.ports.store import ConversationMove
from vigil.records import conversations
from vigil.records.schema import SessionHeader, UnreadableRecord

NOT_SAVED = "⚠️ That could not be saved (the store refused the write), so it did not happen."
LISTED = 20  # buttons in a /resume list; older ones are reached with /resume N


def _quoted(title: str) -> str:
    return f"«{title}»" if title else "(untitled)"


def _current(session: Session, message: SessionCommand) -> SessionHeader:
    """The header, with replies still owed sent first: their seqs name turns of the current conversation."""
    header = session.ensure_header(message.target, message.chat_title, message.chat_type)
    if header.undelivered:
        resend_undelivered(session)
        assert session.header is not None
        header = session.header
    return header


def _switch(session: Session, header: SessionHeader,
            change: Callable[[SessionHeader, float, float], tuple[SessionHeader, ConversationMove]]) -> bool:
    """Put `change(header, now, last turn's time)` in place with one durable write; False (unchanged) if refused."""
    now = session.deps.clock()
    last_at = last_turn_at(session.deps.store, session.key, header.generation) if header.next_seq else 0.0
    session.header, move = change(header, now, last_at)
    if not session.commit(wait=True, move=move):
        session.header = header
        return False
    session.window = None  # the window cached is the other conversation's
    return True


def cmd_new(session: Session, message: SessionCommand) -> None:
    header = _current(session, message)
    title = message.args.strip()
    newest = session.deps.store.newest_generation(session.key)
    if not _switch(session, header, lambda h, now, last: conversations.start_new(h, now, last, newest, title)):
        session.reply(message.target, "⚠️ Couldn't start a fresh conversation: the store refused the write.")
        return
    assert session.header is not None
    previous = (f" The previous one (#{header.generation} {_quoted(header.conversation_title)}, "
                f"{header.next_seq} turns) is kept: /resume goes back to it." if header.next_seq else "")
    named = f" {_quoted(session.header.conversation_title)}" if session.header.conversation_title else ""
    session.reply(message.target, f"🆕 Fresh conversation started (#{session.header.generation}{named}).{previous} "
                  f"Directory, model and heartbeat are unchanged.")


def cmd_resume(session: Session, message: SessionCommand) -> None:
    header = _current(session, message)
    words = message.args.split()
    if not words:
        _list(session, message, header)
        return
    if not words[0].lstrip("#").isdigit():
        session.reply(message.target, "⛔ /resume takes a conversation's number; /resume alone lists them.")
        return
    generation = int(words[0].lstrip("#"))
    if len(words) > 1 and words[1] != str(header.incarnation):
        # A button from before this chat's history was deleted: its numbers now name other conversations.
        session.reply(message.target, "⛔ That conversation no longer exists: this chat's history was deleted "
                      "since that list was made. /resume lists what there is.")
        return
    if generation == header.generation:
        session.reply(message.target, f"💬 #{generation} {_quoted(header.conversation_title)} is the current "
                      "conversation already.")
        return
    try:
        info = session.deps.store.conversation(session.key, generation)
    except UnreadableRecord as exc:
        session.reply(message.target, f"⚠️ Conversation #{generation} can't be resumed: its record {exc.reason}.")
        return
    if info is None or info.deleting:
        session.reply(message.target, f"⛔ Conversation #{generation} no longer exists here (a cleanup may have "
                      "deleted it). /resume lists what there is.")
        return
    if not _switch(session, header, lambda h, now, last: conversations.switch_to(h, info, now, last)):
        session.reply(message.target, f"{NOT_SAVED} The current conversation is still #{header.generation}.")
        return
    left = (f" The one you left, #{header.generation} {_quoted(header.conversation_title)}, is kept: "
            "/resume goes back to it." if header.next_seq else "")
    session.reply(message.target, f"↩️ Back to conversation #{generation} {_quoted(info.title)} ({info.turns} turns): "
                  f"Claude sees its history from here on.{left}")


def _list(session: Session, message: SessionCommand, header: SessionHeader) -> None:
    past, unreadable = session.deps.store.scan_conversations(session.key)
    earlier = conversations.earlier([c for c in past if not c.deleting])
    current = f"Now: #{header.generation} {_quoted(header.conversation_title)}, {header.next_seq} turns."
    bad = ""
    if unreadable:
        numbers = ", ".join(f"#{generation} ({reason})" for generation, reason in unreadable[:10])
        bad = f"\n⚠️ {len(unreadable)} earlier conversation(s) can't be read: {numbers}."
    if not earlier:
        session.reply(message.target, f"💬 No earlier conversations in this chat. {current} "
                      f"/new starts another and keeps this one.{bad}")
        return
    now = time.time()
    lines = [f"💬 Earlier conversations in this chat, most recent first. {current}", ""]
    lines += [f"#{g.generation} {_quoted(g.title)} — {g.turns} turns, last active "
              f"{ago(conversations.last_activity(g), now)}" for g in earlier[:LISTED]]
    if len(earlier) > LISTED:
        lines.append(f"…and {len(earlier) - LISTED} older: /resume N goes to any of them.")
    if bad:
        lines.append(bad.strip())
    lines += ["", "Press one to continue it, or type /resume N."]
    buttons = tuple((Button(f"#{g.generation} {g.title or '(untitled)'}"[:48],
                            conversations.resume_button(g.generation, header.incarnation)),)
                    for g in earlier[:LISTED])
    session.reply(message.target, "\n".join(lines), buttons=buttons)


def cmd_title(session: Session, message: SessionCommand) -> None:
    header = session.ensure_header(message.target, message.chat_title, message.chat_type)
    name = message.args.strip()
    if not name:
        text = (f"💬 This conversation (#{header.generation}): {_quoted(header.conversation_title)}."
                if header.conversation_title else
                f"💬 This conversation (#{header.generation}) has no title yet: its first message will name it.")
        session.reply(message.target, f"{text} /title NAME renames it.")
        return
    session.header = conversations.named(header, name)
    if not session.commit(wait=True):
        session.header = header
        session.reply(message.target, f"{NOT_SAVED} The title stays {_quoted(header.conversation_title)}.")
        return
    session.reply(message.target, f"💬 This conversation (#{header.generation}) is now "
                  f"{_quoted(session.header.conversation_title)}.")


COMMANDS = {"new": cmd_new, "resume": cmd_resume, "title": cmd_title}


def last_turn_at(store: Store, key: str, generation: int) -> float:
    """When the conversation's last turn ended (or began), read from the store: 0 if it has none."""
    turns = store.last_turns(key, generation, 1)
    return max((t.ended_at or t.started_at for t in turns), default=0.0)
