"""Who may do what in a chat: the one rule every command, every button and every Claude tool consults.

A chat shared by several people must not let each of them change what all of them live with. So:

- a private chat is its user's: they decide everything there; the console is its operator's;
- in a group (or any topic of a forum), *vigil admins* (`VIGIL_ADMIN_USERS`) and the group's *own
  admins* (Telegram's creator and administrators of that chat; an anonymous admin writing as the
  group is one) may do everything;
- *members* (allowed users) may talk, start, resume and name conversations, stop a reply, read what
  there is (`/status`, `/usage`, `/export`, `/schedules`, ...) and cancel their own schedules;
- changing the chat's settings and deleting its data (`NEEDS` says which commands do) needs an admin
  of either kind, unless `VIGIL_GROUP_SETTINGS=members` gives every member that too;
- what acts with the operator's own credentials (turning an MCP server on or off in a chat) needs a vigil
  admin, in every chat, private ones too;
- what belongs to someone (a schedule, a prompt someone asked for) is theirs or an admin's, whatever
  that setting says.

A refusal is one sentence that says who may. Whether someone administers a group is Telegram's to
say: `ChatAdmins` asks the channel's adapter (getChatAdministrators on Telegram, remembered for a
couple of minutes: see adapters/telegram/access.py), and only when a rule needs the answer, so talking
and reading never wait for Telegram.

Which person a turn acts for (`asker_of`): a turn may answer several messages collected while the
one before ran. It is asked by its first sender who is subject to budgets; a turn written only by
admins is its first sender's. That person pays for it and owns what it creates (a schedule and its
firings), so a member's request never rides on an admin's exemption because the admin wrote "ok" in
the same turn. What its tools may do is what *every* sender of the turn may do: nobody gains rights by
writing in an admin's turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from vigil.config.settings import Settings
from vigil.records.schema import Input, Schedule, SessionHeader

GROUP_TYPES = ("group", "supergroup")
# Telegram's GroupAnonymousBot: whatever an anonymous admin writes in a group comes from it (with the group as
# `sender_chat`), and only a group's admins can write anonymously, so in a group it stands for one of them.
ANONYMOUS_ADMIN = 1087968824

Need = Literal["member", "settings", "admin", "vigil admin"]
"""What an action needs: `member`, anyone allowed to talk; `settings`, an admin of either kind (every
member with VIGIL_GROUP_SETTINGS=members); `admin`, an admin of either kind whatever that setting says
(for what belongs to someone else: the owner always may); `vigil admin`, a vigil admin (or the console's
operator), in any chat, private ones too: what acts with the operator's own credentials (MCP servers)."""

Role = Literal["operator", "owner", "vigil admin", "group admin", "member"]

# What each command needs, by its arguments: the table of the README, and the one the gate applies.
_SETTINGS_WHAT = {
    "cd": "change the working directory (/cd)",
    "model": "change the model (/model NAME)",
    "mode": "change the permission mode (/mode ask|auto|readonly)",
    "heartbeat": "change the heartbeat (/heartbeat; /heartbeat status is for everyone)",
    "notes": "clear the notes (/notes clear)",
    "pin": "pin or unpin this chat (/pin)",
    "compact": "compact the conversation (/compact)",
    "forget": "delete this chat's data (/forget)",
    "sessions": "clean up this group's sessions (/sessions cleanup)",
    "think": "change how Claude thinks here (/think off|auto|low|medium|high|show)",
    "mcp": "turn MCP servers on or off (/mcp on|off NAME)",
}


def _first_word(args: str) -> str:
    words = args.split()
    return words[0].lower() if words else ""


NEEDS: dict[str, Callable[[str], Need]] = {
    "start": lambda args: "member",
    "help": lambda args: "member",
    "new": lambda args: "member",
    "resume": lambda args: "member",
    "title": lambda args: "member",
    "status": lambda args: "member",
    "stop": lambda args: "member",
    "usage": lambda args: "member",
    "export": lambda args: "member",
    "pwd": lambda args: "member",
    "schedules": lambda args: "member",  # cancelling: the schedule's owner or an admin (the session checks)
    "sessions": lambda args: "settings" if _first_word(args) == "cleanup" else "member",
    "model": lambda args: "settings" if _first_word(args) else "member",
    "mode": lambda args: "settings" if _first_word(args) else "member",
    "heartbeat": lambda args: "member" if _first_word(args) in ("", "status") else "settings",
    "notes": lambda args: "settings" if _first_word(args) == "clear" else "member",
    "cd": lambda args: "settings",
    "pin": lambda args: "settings",
    "compact": lambda args: "settings",
    "forget": lambda args: "settings",
    "search": lambda args: "member",  # this chat's own history, which every member could read
    "think": lambda args: "settings" if _first_word(args) else "member",
    "mcp": lambda args: "vigil admin" if _first_word(args) in ("on", "off") else "member",
    "skills": lambda args: "member",
}


def command_need(name: str, args: str) -> Need:
    """What `/name args` needs; an unknown command needs nothing (it is answered "Unknown command")."""
    need = NEEDS.get(name)
    return need(args) if need is not None else "member"


@dataclass(frozen=True)
class Place:
    """A chat as the rule sees it: its session key, Telegram's id of it now, its kind."""

    key: str
    chat_id: int  # the chat as it is addressed now (a group upgraded to a supergroup: the new id)
    chat_type: str

    @property
    def group(self) -> bool:
        return self.chat_type in GROUP_TYPES

    @property
    def channel(self) -> str:
        return self.key.split(":", 1)[0]


def place_of(header: SessionHeader) -> Place:
    return Place(header.key, header.target.chat_id, header.chat_type)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""  # a refusal: one sentence saying who may


ALLOWED = Verdict(True)


class AdminLookup(Protocol):
    def is_chat_admin(self, chat_id: int, user_id: int) -> bool | None:
        """Whether the channel says `user_id` administers the group `chat_id`; None: it could not tell now.

        Called from worker and actor threads (it may wait for the network), never from an adapter's loop."""


class ChatAdmins:
    """The adapters' lookups of group admins, by channel ("tg"); thread-safe, one per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lookups: dict[str, AdminLookup] = {}

    def attach(self, channel: str, lookup: AdminLookup) -> None:
        with self._lock:
            self._lookups[channel] = lookup

    def is_admin(self, place: Place, user_id: int) -> bool | None:
        with self._lock:
            lookup = self._lookups.get(place.channel)
        return lookup.is_chat_admin(place.chat_id, user_id) if lookup is not None else False


class Roles:
    """The rule, over the settings and the channels' admin lookups; cheap to make, thread-safe."""

    def __init__(self, settings: Settings, admins: ChatAdmins | None = None) -> None:
        self.settings = settings
        self.admins = admins or ChatAdmins()

    def role(self, place: Place, user_id: int) -> Role:
        """Who `user_id` is in `place` (asks the channel about a group's admins)."""
        if place.channel == "console":
            return "operator"
        if self.settings.is_admin(user_id):
            return "vigil admin"
        if not place.group:
            return "owner"
        if user_id == ANONYMOUS_ADMIN or self.admins.is_admin(place, user_id):
            return "group admin"
        return "member"

    def check(self, place: Place, user_id: int, need: Need, what: str, *, owner: int | None = None,
              owner_name: str = "") -> Verdict:
        """May `user_id` do `what` (words after "can": "cancel abc123") in `place`? `owner`: whose it is."""
        if need == "member" or (owner is not None and owner and user_id == owner):
            return ALLOWED
        if need == "vigil admin":  # whatever the chat: a private chat's owner or a group's admin is not enough
            if place.channel == "console" or self.settings.is_admin(user_id):
                return ALLOWED
            return Verdict(False, f"⛔ Only a vigil admin (VIGIL_ADMIN_USERS) can {what}, since that acts with the "
                                  "operator's own credentials.")
        if place.channel == "console" or self.settings.is_admin(user_id) or not place.group \
                or user_id == ANONYMOUS_ADMIN:
            return ALLOWED
        if need == "settings" and self.settings.group_settings == "members":
            return ALLOWED
        known = self.admins.is_admin(place, user_id)
        if known:
            return ALLOWED
        who = f"{owner_name or 'the person who asked for it'} or an admin of this group" if owner is not None \
            else "this group's admins or a vigil admin"
        unsure = (", and Telegram could not tell me just now whether you are one, so try again in a minute"
                  if known is None else "")
        return Verdict(False, f"⛔ Only {who} can {what}{unsure}.")

    def command(self, place: Place, user_id: int, name: str, args: str) -> Verdict:
        """The gate of every chat command (and of the buttons that stand for one)."""
        return self.check(place, user_id, command_need(name, args), f"{_SETTINGS_WHAT.get(name, f'use /{name}')} here")

    def everyone(self, place: Place, user_ids: Sequence[int], need: Need, what: str, *, owner: int | None = None,
                 owner_name: str = "") -> Verdict:
        """What a turn's tools may do: only what every one of its senders may (the first refusal, if any)."""
        for user_id in dict.fromkeys(user_ids):
            verdict = self.check(place, user_id, need, what, owner=owner, owner_name=owner_name)
            if not verdict.allowed:
                return verdict
        return ALLOWED


def asker_of(inputs: Sequence[Input], limited: Callable[[int], bool]) -> Input | None:
    """The input that asked for a turn: the first whose sender is subject to budgets (`limited`: the
    Allowance's; admins and the operator are not), else the first. It pays for the turn and owns what the
    turn creates."""
    return next((item for item in inputs if limited(item.user_id)), inputs[0] if inputs else None)


def senders_of(inputs: Sequence[Input]) -> tuple[int, ...]:
    """Everyone whose message a turn answers, once each, in order."""
    return tuple(dict.fromkeys(item.user_id for item in inputs))


def cancel_verdict(roles: Roles, header: SessionHeader, schedule: Schedule, *user_ids: int) -> Verdict:
    """May these people (a presser, or everyone a turn answers) cancel `schedule` of the chat of `header`?"""
    return roles.everyone(place_of(header), user_ids, "admin", f"cancel {schedule.id}", owner=schedule.owner,
                          owner_name=schedule.owner_name or (f"user {schedule.owner}" if schedule.owner else ""))
