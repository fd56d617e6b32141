"""The commands that change a session, run inside its actor (in order with its messages)."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from actors.protocol import SessionCommand
from actors.session import SessionActor
from vigil.model.prices import MODEL_CHOICES
from vigil.ports import Button, Reply
from vigil.store.schema import GenerationInfo
from vigil.tools.jail import Jail, JailError
from vigil.workspace import is_operator, within, workspace_of

MAX_PAST_GENERATIONS = 50
NOT_SAVED = "⚠️ That could not be saved (the store refused the write), so it did not happen."
_MODEL_NAME = re.compile(r"^claude-[a-z0-9][a-z0-9.-]{1,60}$")


class SessionCommandsMixin(SessionActor):
    """/new, /cd, /model, /notes, /forget."""

    def on_command(self, message: SessionCommand) -> None:
        handler = {
            "new": self._cmd_new,
            "cd": self._cmd_cd,
            "model": self._cmd_model,
            "notes": self._cmd_notes,
            "forget": self._cmd_forget,
        }.get(message.name)
        if handler is None:
            super().on_command(message)
            return
        handler(message)

    def _reply(self, message: SessionCommand, text: str, buttons: tuple[tuple[Button, ...], ...] = ()) -> None:
        outbox = self.deps.outbox(message.target)
        if outbox is not None:
            outbox.send(self.key, message.target, Reply(text=text, buttons=buttons))

    def _cmd_new(self, message: SessionCommand) -> None:
        header = self.ensure_header(message.target, message.chat_title, message.chat_type)
        now = self.deps.clock()
        past = GenerationInfo(generation=header.generation, turns=header.next_seq,
                              started_at=header.generation_started_at, ended_at=now)
        kept = (*header.past_generations, past)[-MAX_PAST_GENERATIONS:] if header.next_seq else header.past_generations
        self.header = msgspec.structs.replace(
            header, generation=header.generation + 1, generation_started_at=now, next_seq=0, window_start=0,
            past_generations=kept)
        if not self.commit(wait=True):
            self._reply(message, "⚠️ Couldn't start a fresh conversation: the store refused the write.")
            return
        previous = (f" The previous one ({header.next_seq} turns) stays readable until cleanup."
                    if header.next_seq else "")
        self._reply(message, f"🆕 Fresh conversation started.{previous} "
                             f"Directory, model and heartbeat are unchanged.")

    def _cmd_cd(self, message: SessionCommand) -> None:
        """Move the cwd; a non-admin stays in the chat's workspace, an admin may move the workspace too."""
        header = self.ensure_header(message.target, message.chat_title, message.chat_type)
        root = self.deps.settings.workdir_root
        workspace = workspace_of(header)
        admin = is_operator(self.key) or self.deps.settings.is_admin(message.sender.user_id)
        wanted = message.args.strip()
        try:
            # Relative paths are taken from the cwd for everyone, as in a shell.
            path = Jail(root if admin else workspace).resolve(Path(header.cwd), wanted or str(workspace))
        except JailError as exc:
            reason = str(exc)
            if not admin:
                reason = reason.replace("escapes the working root", "is outside this chat's directory "
                                        f"{workspace} (only an admin can go elsewhere)")
            self._reply(message, f"⛔ {reason}. The directory stays {header.cwd}")
            return
        if not path.is_dir():
            reason = "does not exist" if not path.exists() else "is not a directory"
            self._reply(message, f"⛔ {wanted} {reason}. The directory stays {header.cwd}")
            return
        # An admin going outside the workspace takes it along (the chat now works on that tree);
        # inside it only the cwd moves, so the chat's members keep the reach they had.
        moved = admin and not within(path, workspace)
        self.header = msgspec.structs.replace(header, cwd=str(path),
                                              workspace=str(path) if moved else str(workspace))
        if not self.commit(wait=True):
            self.header = header  # not saved, so not in effect: what the chat is told must be true
            self._reply(message, f"{NOT_SAVED} The directory stays {header.cwd}")
            return
        self._reply(message, f"📁 {path}" + (" (this chat's tools now work in this tree)" if moved else ""))

    def _cmd_model(self, message: SessionCommand) -> None:
        header = self.ensure_header(message.target, message.chat_title, message.chat_type)
        name = message.args.strip().lower()
        if not name:
            choices = "\n".join(f"{'•' if m == header.model else '◦'} {m}" for m in
                                dict.fromkeys((header.model, *MODEL_CHOICES)))
            self._reply(message, f"Model for this chat: {header.model}\n\nChoices:\n{choices}\n\n"
                                 "Set one with /model NAME.")
            return
        if not _MODEL_NAME.match(name):
            self._reply(message, f"⛔ {message.args.strip()!r} is not a Claude model name. Choose one of: "
                                 f"{', '.join(MODEL_CHOICES)}. The model stays {header.model}.")
            return
        previous = header.model
        self.header = msgspec.structs.replace(header, model=name)
        if not self.commit(wait=True):
            self.header = header
            self._reply(message, f"{NOT_SAVED} The model stays {previous}.")
            return
        self._reply(message, f"🧠 Model for this chat: {name} (was {previous}).")

    def _cmd_notes(self, message: SessionCommand) -> None:
        store = self.deps.store
        if message.args.strip().lower() == "clear":
            try:
                store.clear_notes(self.key).result()
            except Exception as exc:
                self.log.error("session.notes_clear_failed", error=repr(exc))
                self._reply(message, f"{NOT_SAVED} The notes are still there.")
                return
            finally:
                self.forget_cached()
            self._reply(message, "🗒 Notes cleared.")
            return
        notes = sorted(store.notes(self.key), key=lambda n: n.at, reverse=True)
        if not notes:
            self._reply(message, "🗒 No notes yet. Claude saves notes here with its save_note tool.")
            return
        lines = [f"🗒 Notes ({len(notes)}), newest first:"]
        lines += [f"• {n.text}" for n in notes[:30]]
        lines.append("\n/notes clear empties them.")
        self._reply(message, "\n".join(lines))

    def _cmd_forget(self, message: SessionCommand) -> None:
        if message.args.strip().lower() != "confirm":
            self._reply(message, "Delete this chat's stored history, notes and settings? This cannot be undone. "
                                 "(Usage records are kept for accounting.) Type /forget confirm, or press:",
                        buttons=((Button("🗑 Yes, forget", f"forget:{self.key}"),
                                  Button("Cancel", "cancel")),))
            return
        try:
            self.forget()
        except Exception as exc:
            self.log.error("session.forget_failed", error=repr(exc))
            self._reply(message, f"{NOT_SAVED} Nothing was deleted.")
            return
        self._reply(message, "🗑 Forgotten: this chat's history, notes and settings were deleted.")
