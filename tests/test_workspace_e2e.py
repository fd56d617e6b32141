"""A workspace per chat, end to end: `vigil run` against the Bot API and Messages API stand-ins.

Every chat starts in a directory of its own under the work root; a non-admin's `/cd` and the text
editor stay inside it; an admin may point a chat at any tree under the root. The attacks are real:
the model stand-in is scripted to `view` the store, a key in the service user's home and another
chat's files, by relative, absolute and symlinked paths, and no byte of them may reach a request.
"""

from __future__ import annotations

import json
import random
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.rig import BOT, Rig
from tests.standins.messages_api import RecordedRequest
from vigil.records.schema import Heartbeat, SessionHeader, Target
from vigil.store.store import open_store

pytestmark = pytest.mark.e2e

EDITOR = "str_replace_based_edit_tool"
KEY_BYTES = "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAAC2ZvcmVzdC1rZXk="
OTHER_CHAT_SECRET = "the-neighbours-diary-entry-3141"
STORE_WORDS = "quetzalcoatl-stored-in-lmdb"


def tool(name: str = EDITOR, **arguments: Any) -> str:
    return f"[[tool={name} {json.dumps(arguments)}]]"


def tool_results(request: RecordedRequest) -> list[dict[str, Any]]:
    last = request.body["messages"][-1]["content"]
    return [b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"]


def result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return str(content)


def root_of(rig: Rig) -> Path:
    return Path(rig.env["VIGIL_WORKDIR_ROOT"]).resolve()


def pwd(rig: Rig, chat_id: int, user: Any, thread: int | None = None) -> str:
    return rig.ask(chat_id, user, "/pwd", "📁", thread=thread).text.removeprefix("📁 ")


def run_tool(rig: Rig, chat_id: int, user: Any, words: str, **arguments: Any) -> dict[str, Any]:
    """Has the model call the editor once in `chat_id`; returns the tool_result vigil sent back."""
    prefix = f"@{BOT} " if chat_id < 0 else ""
    rig.ask(chat_id, user, f"{prefix}{tool(**arguments)} {words}", "tool results")
    request = rig.bot.wait_for(lambda: next((r for r in reversed(list(rig.api.requests))
                                             if words in r.all_text() and tool_results(r)), None),
                               10, f"the tool result of {words!r}")
    [result] = tool_results(request)
    return result


# ------------------------------------------------------------------------------------------------ where chats start


def test_a_private_chat_starts_in_a_directory_of_its_own(rig: Rig) -> None:
    root = root_of(rig)
    pia = rig.person("Pia")
    rig.ask(pia.id, pia, "hello from pia", "echo: hello from pia")
    home = root / "users" / str(pia.id)
    assert pwd(rig, pia.id, pia) == str(home)
    assert home.is_dir() and stat.S_IMODE(home.stat().st_mode) == 0o700
    assert f"Working directory: {home}\n" in rig.requests_with("hello from pia")[-1].body["system"][0]["text"]
    # Not even a chat that never talked starts at the root.
    quiet = rig.person("Quiet")
    assert pwd(rig, quiet.id, quiet) == str(root / "users" / str(quiet.id))


def test_a_group_and_all_topics_of_a_forum_share_the_chats_directory(rig: Rig) -> None:
    root = root_of(rig)
    gus = rig.person("Gus")
    group = rig.group("Gardeners")
    rig.ask(group.id, gus, f"@{BOT} hello gardeners", "hello gardeners")
    assert pwd(rig, group.id, gus) == str(root / "chats" / str(group.id))

    forum = rig.group("Forum with a desk", forum=True)
    first = rig.bot.create_topic(forum.id, "One")
    second = rig.bot.create_topic(forum.id, "Two")
    where = {pwd(rig, forum.id, gus, thread) for thread in (first, second, None)}
    assert where == {str(root / "chats" / str(forum.id))}
    # A file one topic's editor writes is there for the others.
    run_tool(rig, forum.id, gus, "topic one writes", command="create", path="shared.txt", file_text="from one\n")
    rig.ask(forum.id, gus, f"@{BOT} {tool(command='view', path='shared.txt')} topic two reads", "from one",
            thread=second)


def test_a_group_upgraded_to_a_supergroup_keeps_its_directory(rig: Rig) -> None:
    root = root_of(rig)
    mia = rig.person("Mia")
    group = rig.group("Soon a supergroup")
    run_tool(rig, group.id, mia, "before the upgrade", command="create", path="kept.txt", file_text="kept\n")
    new_id = rig.group_id(supergroup=True)
    rig.bot.migrate_to_supergroup(group.id, new_id)
    rig.ask(new_id, mia, f"@{BOT} after the upgrade", "after the upgrade")
    assert pwd(rig, new_id, mia) == str(root / "chats" / str(group.id))
    assert not (root / "chats" / str(new_id)).exists()
    result = run_tool(rig, new_id, mia, "still there", command="view", path="kept.txt")
    assert "kept" in result_text(result) and not result.get("is_error")


# ------------------------------------------------------------------------------------------------ /cd


def test_a_non_admin_cannot_cd_out_of_the_chats_directory(rig: Rig) -> None:
    root = root_of(rig)
    nat = rig.person("Nat")
    neighbour = rig.person("Neighbour")
    rig.ask(neighbour.id, neighbour, "i exist", "echo: i exist")
    home = root / "users" / str(nat.id)
    (home / "sub").mkdir(parents=True)
    (root / "projects" / "nat-wants-this").mkdir(parents=True)
    (home / "sneaky").symlink_to(root / "projects")
    for wanted in ("..", "/", "../..", f"../{neighbour.id}", str(root), str(root / "users" / str(neighbour.id)),
                   str(root / "projects" / "nat-wants-this"), "sneaky", "/etc", str(home / ".." / "..")):
        refusal = rig.ask(nat.id, nat, f"/cd {wanted}", "⛔").text
        assert refusal.endswith(f"The directory stays {home}"), (wanted, refusal)
        assert pwd(rig, nat.id, nat) == str(home), wanted
    for wanted, where in (("sub", home / "sub"), ("..", home), ("sub", home / "sub"), ("", home)):
        # Down and back up to the chat's directory itself is fine; no argument goes there too.
        assert rig.ask(nat.id, nat, f"/cd {wanted}".strip(), "📁").text == f"📁 {where}"
        assert pwd(rig, nat.id, nat) == str(where)


def test_an_admin_points_a_chat_at_a_project_and_its_editor_works_there(rig: Rig) -> None:
    root = root_of(rig)
    project = root / "projects" / "x"
    project.mkdir(parents=True, exist_ok=True)
    (project / "README").write_text("project x\n")
    ada = rig.admin
    # In the admin's own chat: anywhere under the root, by an absolute path or one relative to the cwd.
    assert pwd(rig, ada.id, ada) == str(root / "users" / str(ada.id))
    rig.ask(ada.id, ada, "/cd ../../projects/x", f"📁 {project}")
    rig.ask(ada.id, ada, f"/cd {root}", f"📁 {root}")
    refusal = rig.ask(ada.id, ada, "/cd ..", "⛔").text  # never above the root, admin or not
    assert refusal.endswith(f"The directory stays {root}")

    # In a group: the admin's /cd moves the chat's workspace; its members' tools then work there.
    group = rig.group("Project x team")
    member = rig.person("Member")
    rig.ask(group.id, member, f"@{BOT} hi team", "hi team")
    rig.ask(group.id, ada, f"/cd {project}", f"📁 {project}")
    assert pwd(rig, group.id, member) == str(project)
    result = run_tool(rig, group.id, member, "member edits the project", command="str_replace", path="README",
                      old_str="project x", new_str="project x, edited by the team")
    assert not result.get("is_error"), result
    assert (project / "README").read_text() == "project x, edited by the team\n"
    # Moving a group's directory is for its admins (vigil/policy/roles.py): the member is told who may.
    (project / "src").mkdir()
    assert "Only this group's admins" in rig.ask(group.id, member, "/cd src", "⛔").text
    rig.ask(group.id, ada, "/cd src", f"📁 {project / 'src'}")
    assert pwd(rig, group.id, member) == str(project / "src")
    result = run_tool(rig, group.id, member, "member peeks next door", command="view", path="../../../users")
    assert result.get("is_error") is True


# ------------------------------------------------------------------------------------------------ the editor's reach


def test_the_quick_start_defaults_put_neither_the_store_nor_home_in_reach(fresh: Callable[..., Rig]) -> None:
    """The README's quick start: no VIGIL_DATA_DIR, no VIGIL_WORKDIR_ROOT. Before, the root was $HOME."""
    rig = fresh(defaults=True, start=False)
    home = Path(rig.env["HOME"])
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "id_rsa").write_text(KEY_BYTES + "\n")
    rig.start()
    data = home / ".local" / "share" / "vigil"
    root = home / ".local" / "share" / "vigil-work"
    assert root.is_dir() and stat.S_IMODE(root.stat().st_mode) == 0o700

    bob = rig.person("Bob")
    eve = rig.person("Eve")
    rig.ask(bob.id, bob, f"remember {STORE_WORDS}", f"echo: remember {STORE_WORDS}")
    run_tool(rig, bob.id, bob, "bob writes his diary", command="create", path="secret.txt",
             file_text=OTHER_CHAT_SECRET + "\n")
    assert (root / "users" / str(bob.id) / "secret.txt").is_file()
    rig.ask(eve.id, eve, "hello", "echo: hello")
    eve_home = root / "users" / str(eve.id)
    (eve_home / "shortcut").symlink_to(root / "users" / str(bob.id))
    mdb = data / "data.mdb"
    size = mdb.stat().st_size

    attacks = [
        str(mdb), "../../../vigil/data.mdb", "../../../vigil", str(data),
        str(ssh / "id_rsa"), "../../../../../.ssh/id_rsa", "~/.ssh/id_rsa",
        f"../{bob.id}/secret.txt", str(root / "users" / str(bob.id) / "secret.txt"), "shortcut/secret.txt",
        "..", "/", str(root),
    ]
    for n, path in enumerate(attacks):
        result = run_tool(rig, eve.id, eve, f"attack {n}", command="view", path=path)
        assert result.get("is_error") is True, (path, result)
    for n, path in enumerate((str(mdb), "../../../vigil/data.mdb", f"../{bob.id}/secret.txt")):
        result = run_tool(rig, eve.id, eve, f"overwrite {n}", command="create", path=path, file_text="x")
        assert result.get("is_error") is True, (path, result)
    assert mdb.stat().st_size >= size, "the store was truncated"
    assert (root / "users" / str(bob.id) / "secret.txt").read_text() == OTHER_CHAT_SECRET + "\n"

    eves = [r for r in rig.api.requests if "attack" in r.all_text() or "overwrite" in r.all_text()]
    assert len(eves) >= 2 * len(attacks)
    for request in eves:
        seen = request.all_text()
        assert KEY_BYTES not in seen and "OPENSSH" not in seen
        assert OTHER_CHAT_SECRET not in seen
        assert STORE_WORDS not in seen, "bytes of the store reached the model"
        assert "lock.mdb" not in seen, "a listing of the data directory reached the model"
    rig.stop()
    assert (root / "users" / str(bob.id) / "secret.txt").read_text() == OTHER_CHAT_SECRET + "\n"


# ------------------------------------------------------------------------------------------------ upgrades


def legacy_header(key: str, chat_id: int, cwd: Path) -> SessionHeader:
    """A header as vigil wrote it before workspaces: no `workspace` field."""
    now = time.time()
    return SessionHeader(key=key, incarnation=random.getrandbits(62), created_at=now, generation_started_at=now,
                         target=Target(channel="tg", chat_id=chat_id), cwd=str(cwd), model="claude-sonnet-5-5",
                         chat_type="private", heartbeat=Heartbeat())


def test_sessions_from_before_keep_their_directory_and_are_confined_to_it(fresh: Callable[..., Rig]) -> None:
    rig = fresh(start=False)
    root = root_of(rig)
    old = rig.person("Olga")
    moved = rig.person("Moritz")
    legacy = root / "olgas-project"
    (legacy / "docs").mkdir(parents=True)
    (legacy / "docs" / "plan.txt").write_text("the plan of olga\n")
    (root / "someone-else").mkdir()
    (root / "someone-else" / "private.txt").write_text(OTHER_CHAT_SECRET + "\n")
    store = open_store(Path(rig.env["VIGIL_DATA_DIR"]))
    try:
        for header in (legacy_header(f"tg:{old.id}", old.id, legacy / "docs"),
                       legacy_header(f"tg:{moved.id}", moved.id, Path(rig.env["HOME"]))):  # the old default root
            store.commit(header, create=True).result()
    finally:
        store.close()
    raw = open_store(Path(rig.env["VIGIL_DATA_DIR"]))
    try:
        stored = raw.header(f"tg:{old.id}")
        assert stored is not None and stored.workspace == ""
    finally:
        raw.close()
    rig.start()

    assert pwd(rig, old.id, old) == str(legacy / "docs")
    result = run_tool(rig, old.id, old, "olga reads her plan", command="view", path="plan.txt")
    assert "the plan of olga" in result_text(result)
    rig.ask(old.id, old, "/cd ..", "⛔")
    for n, path in enumerate(("../../someone-else/private.txt", str(root / "someone-else" / "private.txt"))):
        assert run_tool(rig, old.id, old, f"olga strays {n}", command="view", path=path).get("is_error") is True
    assert pwd(rig, old.id, old) == str(legacy / "docs")

    # A session whose directory was the old default ($HOME, now outside the root) moves to its own.
    assert pwd(rig, moved.id, moved) == str(root / "users" / str(moved.id))
    result = run_tool(rig, moved.id, moved, "moritz looks around", command="view", path=".")
    assert not result.get("is_error"), result

    # Kept across a restart as well.
    rig.stop()
    rig.start()
    assert pwd(rig, old.id, old) == str(legacy / "docs")
    assert not [r for r in rig.api.requests if OTHER_CHAT_SECRET in r.all_text()]
