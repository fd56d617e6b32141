"""The rule of vigil/policy/roles.py on its own, and Telegram's answer about a group's admins
(adapters/telegram/access.py) through the real PTB Bot over HTTP against the Bot API stand-in: asked once,
kept for a bounded time, never taken for "admin" when Telegram can't be asked."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from telegram import Bot

from tests.ptb import ALICE, BOB, with_bot
from tests.standins.bot_api import BotAPI
from vigil.adapters.telegram.access import ADMIN_TTL_S, TelegramAdmins
from vigil.commands import COMMANDS
from vigil.config.settings import Settings, load_settings
from vigil.policy.roles import ANONYMOUS_ADMIN, NEEDS, ChatAdmins, Place, Roles, asker_of, command_need
from vigil.records.schema import Input

GROUP = -4_000_003
ADMIN = 9001


class Lookup:
    """A group whose admins are known (None: Telegram can't be asked)."""

    def __init__(self, admins: set[int] | None) -> None:
        self.admins = admins
        self.asked: list[tuple[int, int]] = []

    def is_chat_admin(self, chat_id: int, user_id: int) -> bool | None:
        self.asked.append((chat_id, user_id))
        return None if self.admins is None else user_id in self.admins


def settings(tmp_path: Path, **extra: str) -> Settings:
    return load_settings({"HOME": str(tmp_path), "VIGIL_WORKDIR_ROOT": str(tmp_path),
                          "VIGIL_DATA_DIR": str(tmp_path.parent / "data"), "VIGIL_ADMIN_USERS": str(ADMIN), **extra})


def roles_with(tmp_path: Path, admins: set[int] | None, **extra: str) -> tuple[Roles, Lookup]:
    lookup = Lookup(admins)
    chat_admins = ChatAdmins()
    chat_admins.attach("tg", lookup)
    return Roles(settings(tmp_path, **extra), chat_admins), lookup


GROUP_PLACE = Place(f"tg:{GROUP}", GROUP, "supergroup")
PRIVATE = Place(f"tg:{ALICE}", ALICE, "private")


def test_every_command_has_a_need_and_settings_and_deletion_are_the_admins() -> None:
    assert set(NEEDS) == {spec.name for spec in COMMANDS}, "a new command must say who may use it"
    for name, args in (("mode", "auto"), ("model", "claude-x"), ("heartbeat", "every 5m"), ("heartbeat", "test"),
                       ("cd", ""), ("notes", "clear"), ("pin", "off"), ("compact", ""), ("forget", ""),
                       ("sessions", "cleanup 1s yes")):
        assert command_need(name, args) == "settings", (name, args)
    for name, args in (("mode", ""), ("model", ""), ("heartbeat", ""), ("heartbeat", "status"), ("notes", ""),
                       ("sessions", "2"), ("schedules", "cancel abc"), ("new", "x"), ("stop", ""), ("export", "")):
        assert command_need(name, args) == "member", (name, args)


def test_who_decides_where(tmp_path: Path) -> None:
    roles, lookup = roles_with(tmp_path, {BOB})
    refused = roles.command(GROUP_PLACE, ALICE, "mode", "auto")
    assert not refused.allowed and refused.reason.count(".") == 1 and "group's admins or a vigil admin" in \
        refused.reason
    assert roles.command(GROUP_PLACE, BOB, "mode", "auto").allowed, "the group's Telegram admin"
    assert roles.command(GROUP_PLACE, ADMIN, "forget", "").allowed, "a vigil admin, without asking Telegram"
    assert roles.command(GROUP_PLACE, ANONYMOUS_ADMIN, "pin", "").allowed, "an admin writing as the group"
    assert roles.command(PRIVATE, ALICE, "forget", "").allowed, "a private chat is its user's"
    assert roles.command(Place("console:x", 0, "console"), 0, "cd", "/").allowed, "the console is its operator's"
    assert roles.command(GROUP_PLACE, ALICE, "mode", "").allowed
    assert lookup.asked == [(GROUP, ALICE), (GROUP, BOB)], "Telegram is asked only when the answer matters"
    owned = roles.check(GROUP_PLACE, ALICE, "admin", "cancel abc123", owner=ALICE)
    assert owned.allowed
    theirs = roles.check(GROUP_PLACE, ALICE, "admin", "cancel abc123", owner=7, owner_name="Cy")
    assert theirs.reason == "⛔ Only Cy or an admin of this group can cancel abc123."


def test_members_may_change_a_groups_settings_when_set_so_but_not_what_is_someone_elses(tmp_path: Path) -> None:
    roles, lookup = roles_with(tmp_path, set(), VIGIL_GROUP_SETTINGS="members")
    assert roles.command(GROUP_PLACE, ALICE, "mode", "auto").allowed
    assert roles.command(GROUP_PLACE, ALICE, "sessions", "cleanup 1s yes").allowed
    assert not lookup.asked
    assert not roles.check(GROUP_PLACE, ALICE, "admin", "cancel abc123", owner=7).allowed


def test_telegram_unreachable_is_no_admin_and_the_refusal_says_why(tmp_path: Path) -> None:
    roles, _ = roles_with(tmp_path, None)
    refused = roles.command(GROUP_PLACE, BOB, "compact", "")
    assert not refused.allowed and "Telegram could not tell me just now" in refused.reason
    assert refused.reason.count(".") == 1


def test_a_collected_turn_is_asked_by_its_first_sender_subject_to_budgets() -> None:
    def said(*who: int) -> tuple[Input, ...]:
        return tuple(Input(text="x", at=0.0, user_id=user) for user in who)

    def limited(user: int) -> bool:
        return user != ADMIN

    assert (asker := asker_of(said(BOB, ADMIN), limited)) is not None and asker.user_id == BOB
    assert (asker := asker_of(said(ADMIN, BOB), limited)) is not None and asker.user_id == BOB, \
        "an admin's 'ok' before a member's request does not make the admin pay for it"
    assert (asker := asker_of(said(ADMIN, ADMIN), limited)) is not None and asker.user_id == ADMIN
    assert asker_of((), limited) is None


def test_telegram_is_asked_once_per_group_and_again_when_the_answer_is_old(bot_api: BotAPI) -> None:
    bot_api.add_group(GROUP, "Team", supergroup=True)
    bot_api.promote(GROUP, BOB)
    now = [1000.0]
    admins = TelegramAdmins(clock=lambda: now[0])

    async def body(bot: Bot) -> None:
        admins.attach(asyncio.get_running_loop(), bot)
        with pytest.raises(RuntimeError, match="from a thread"):
            admins.is_chat_admin(GROUP, BOB)  # on the loop it would wait for itself
        ask = admins.is_chat_admin
        assert await asyncio.to_thread(ask, GROUP, BOB) is True
        assert await asyncio.to_thread(ask, GROUP, ALICE) is False
        bot_api.demote(GROUP, BOB)
        now[0] += ADMIN_TTL_S - 1
        assert await asyncio.to_thread(ask, GROUP, BOB) is True, "within its time the answer is kept"
        now[0] += 2
        assert await asyncio.to_thread(ask, GROUP, BOB) is False, "then Telegram is asked again"
        bot_api.block(GROUP)  # the bot was removed from the group: Telegram refuses
        now[0] += ADMIN_TTL_S
        assert await asyncio.to_thread(ask, GROUP, BOB) is None
        bot_api.unblock(GROUP)
        assert await asyncio.to_thread(ask, GROUP, BOB) is False, "a failure is not kept"

    with_bot(bot_api, body)
    asked = [c for c in bot_api.calls if c.method == "getChatAdministrators"]
    assert len(asked) == 4
