"""The commands that change a session: /cd, /model, /notes, /forget (/new is in conversation.py).

Each is a function of the session and the command, run inside the session's actor (in order with
its messages); `COMMANDS` is this part's contribution to the table in actors/commands/table.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from vigil.actors.core.protocol import SessionCommand
from vigil.actors.core.state import Session
from vigil.commands import cancel_button
from vigil.model.prices import MODEL_CHOICES
from vigil.ports import Button
from vigil.tools.jail import Jail, JailError
from vigil.tools.workspace import is_operator, within, workspace_of

NOT_SAVED = "⚠️ That could not be saved (the store refused the write), so it did not happen."
_MODEL_NAME = re.compile(r"^claude-[a-z0-9][a-z0-9.-]{1,60}$")



def cmd_cd(session: Session, message: SessionCommand) -> None:
    """Move the cwd; a non-admin stays in the chat's workspace, an admin may move the workspace too."""
    header = session.ensure_header(message.target, message.chat_title, message.chat_type)
    root = session.deps.settings.workdir_root
    workspace = workspace_of(header)
    admin = is_operator(session.key) or session.deps.settings.is_admin(message.sender.user_id)
    wanted = message.args.strip()
    try:
        # Relative paths are taken from the cwd for everyone, as in a shell.
        path = Jail(root if admin else workspace).resolve(Path(header.cwd), wanted or str(workspace))
    except JailError as exc:
        reason = str(exc)
        if not admin:
            reason = reason.replace("escapes the working root", "is outside this chat's directory "
                                    f"{workspace} (only an admin can go elsewhere)")
        session.reply(message.target, f"⛔ {reason}. The directory stays {header.cwd}")
        return
    if not path.is_dir():
        reason = "does not exist" if not path.exists() else "is not a directory"
        session.reply(message.target, f"⛔ {wanted} {reason}. The directory stays {header.cwd}")
        return
    # An admin going outside the workspace takes it along (the chat now works on that tree);
    # inside it only the cwd moves, so the chat's members keep the reach they had.
    moved = admin and not within(path, workspace)
    session.header = msgspec.structs.replace(header, cwd=str(path),
                                             workspace=str(path) if moved else str(workspace))
    if not session.commit(wait=True):
        session.header = header  # not saved, so not in effect: what the chat is told must be true
        session.reply(message.target, f"{NOT_SAVED} The directory stays {header.cwd}")
        return
    session.reply(message.target, f"📁 {path}" + (" (this chat's tools now work in this tree)" if moved else ""))


def cmd_model(session: Session, message: SessionCommand) -> None:
    header = session.ensure_header(message.target, message.chat_title, message.chat_type)
    name = message.args.strip().lower()
    if not name:
        choices = "\n".join(f"{'•' if m == header.model else '◦'} {m}" for m in
                            dict.fromkeys((header.model, *MODEL_CHOICES)))
        session.reply(message.target, f"Model for this chat: {header.model}\n\nChoices:\n{choices}\n\n"
                      "Set one with /model NAME.")
        return
    if not _MODEL_NAME.match(name):
        session.reply(message.target, f"⛔ {message.args.strip()!r} is not a Claude model name. Choose one of: "
                      f"{', '.join(MODEL_CHOICES)}. The model stays {header.model}.")
        return
    previous = header.model
    session.header = msgspec.structs.replace(header, model=name)
    if not session.commit(wait=True):
        session.header = header
        session.reply(message.target, f"{NOT_SAVED} The model stays {previous}.")
        return
    session.reply(message.target, f"🧠 Model for this chat: {name} (was {previous}).")


def cmd_notes(session: Session, message: SessionCommand) -> None:
    store = session.deps.store
    if message.args.strip().lower() == "clear":
        try:
            store.clear_notes(session.key).result()
        except Exception as exc:
            session.log.error("session.notes_clear_failed", error=repr(exc))
            session.reply(message.target, f"{NOT_SAVED} The notes are still there.")
            return
        finally:
            session.forget_cached()
        session.reply(message.target, "🗒 Notes cleared.")
        return
    notes = sorted(store.notes(session.key), key=lambda n: n.at, reverse=True)
    if not notes:
        session.reply(message.target, "🗒 No notes yet. Claude saves notes here with its save_note tool.")
        return
    lines = [f"🗒 Notes ({len(notes)}), newest first:"]
    lines += [f"• {n.text}" for n in notes[:30]]
    lines.append("\n/notes clear empties them.")
    session.reply(message.target, "\n".join(lines))


def forget_button(asker: int, key: str) -> str:
    """The confirm button's data: it names who asked, so in a group only they (or an admin) may press it."""
    return f"forget:{asker}:{key}"


def cmd_forget(session: Session, message: SessionCommand) -> None:
    if message.args.strip().lower() != "confirm":
        session.reply(message.target, "Delete this chat's stored history, notes and settings? This cannot be undone. "
                      "(Usage records are kept for accounting.) Type /forget confirm, or press:",
                      buttons=((Button("🗑 Yes, forget", forget_button(message.sender.user_id, session.key)),
                                cancel_button(message.sender.user_id)),))
        return
    try:
        session.forget()
    except Exception as exc:
        session.log.error("session.forget_failed", error=repr(exc))
        session.reply(message.target, f"{NOT_SAVED} Nothing was deleted.")
        return
    session.reply(message.target, "🗑 Forgotten: this chat's history, notes and settings were deleted.")


COMMANDS = {"cd": cmd_cd, "model": cmd_model, "notes": cmd_notes, "forget": cmd_forget}
