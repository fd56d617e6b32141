"""vigil/tools/workspace.py and the toolbox's per-workspace jail, on a real directory tree.

The end-to-end behaviour is in tests/test_workspace_e2e.py; here are the corners a chat cannot reach
easily: planted symlinks on the way to a new chat's directory, a workspace swapped for a symlink,
keys of migrated groups, headers from before workspaces and from another root.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path, PurePosixPath

import pytest

from vigil.records.schema import SessionHeader, Target
from vigil.tools.toolbox import Toolbox
from vigil.tools.workspace import (
    WorkspaceError,
    ensure_directory,
    is_operator,
    own_directory,
    placed,
    settle,
    start_header,
    within,
)

EDITOR = "str_replace_based_edit_tool"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = (tmp_path / "work").resolve()
    path.mkdir()
    return path


def header(key: str, chat_id: int, chat_type: str, cwd: str, workspace: str = "") -> SessionHeader:
    return SessionHeader(key=key, incarnation=1, created_at=1.0, target=Target(channel="tg", chat_id=chat_id),
                         cwd=cwd, workspace=workspace, model="m", chat_type=chat_type)


@pytest.mark.parametrize(("key", "chat_id", "chat_type", "expected"), [
    ("tg:42", 42, "private", "users/42"),
    ("tg:-5", -5, "group", "chats/-5"),
    ("tg:-1005", -1005, "supergroup", "chats/-1005"),
    ("tg:-1005:77", -1005, "supergroup", "chats/-1005"),
    # A group upgraded to a supergroup: the key keeps the old id, the target has the new one.
    ("tg:-5:9", -1009, "supergroup", "chats/-5"),
    ("console:default", 0, "console", "."),
])
def test_own_directory(key: str, chat_id: int, chat_type: str, expected: str) -> None:
    assert own_directory(key, Target(channel="tg", chat_id=chat_id), chat_type) == PurePosixPath(expected)


def test_only_console_keys_are_the_operators() -> None:
    assert is_operator("console:default")
    assert not is_operator("tg:1") and not is_operator("tg:-1:console")


def test_within_is_per_component() -> None:
    assert within("/w/users/1", "/w") and within("/w", "/w") and within("/w/a/", "/w/a")
    assert not within("/work", "/w") and not within("/w/../etc", "/w") and not within("/", "/w")


def test_a_new_chats_directory_is_private(root: Path) -> None:
    made = start_header(header("tg:42", 42, "private", str(root)), root)
    assert made.cwd == made.workspace == str(root / "users" / "42")
    assert stat.S_IMODE((root / "users").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "users" / "42").stat().st_mode) == 0o700


@pytest.mark.parametrize("planted", ["users", "users/42"])
def test_a_planted_symlink_never_becomes_a_chats_directory(root: Path, tmp_path: Path, planted: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    link = root / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    with pytest.raises(WorkspaceError, match="is a symlink"):
        ensure_directory(root, PurePosixPath("users", "42"))
    assert list(outside.iterdir()) == []
    # The session still starts, with the path it should have; its tools refuse the link (below).
    made = start_header(header("tg:42", 42, "private", str(root)), root)
    assert made.workspace == str(root / "users" / "42")


def test_a_file_in_the_way_is_an_error_not_a_crash(root: Path) -> None:
    (root / "chats").write_text("not a directory")
    with pytest.raises(WorkspaceError):
        ensure_directory(root, PurePosixPath("chats", "-5"))


def test_a_pre_workspace_header_is_confined_to_its_cwd(root: Path) -> None:
    (root / "proj").mkdir()
    old = header("tg:42", 42, "private", str(root / "proj"))
    assert (placed(old, root).workspace, placed(old, root).cwd) == (str(root / "proj"), str(root / "proj"))


def test_a_header_outside_the_root_moves_to_its_own_directory(root: Path, tmp_path: Path) -> None:
    for old in (header("tg:42", 42, "private", str(tmp_path)),  # the old default root, $HOME
                header("tg:42", 42, "private", str(tmp_path / "a"), workspace=str(tmp_path))):  # root moved
        shown = placed(old, root)
        assert shown.workspace == shown.cwd == str(root / "users" / "42")
        assert not (root / "users").exists(), "placed() creates nothing"
        assert settle(old, root) == shown
        assert (root / "users" / "42").is_dir()
        os.rmdir(root / "users" / "42")
        os.rmdir(root / "users")


def test_a_cwd_outside_its_workspace_is_brought_back(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    odd = header("tg:42", 42, "private", str(root), workspace=str(root / "a"))
    assert placed(odd, root).cwd == str(root / "a")
    fine = header("tg:42", 42, "private", str(root / "a" / "b"), workspace=str(root / "a"))
    assert placed(fine, root) is fine


def test_a_deleted_own_directory_is_made_again(root: Path) -> None:
    made = start_header(header("tg:-5", -5, "group", str(root)), root)
    os.rmdir(made.workspace)
    assert settle(made, root) == made
    assert Path(made.workspace).is_dir()


# ------------------------------------------------------------------------------------------ the toolbox


def view(box: Toolbox, path: str, cwd: Path, workspace: Path | None) -> tuple[str, bool]:
    outcome = box.run(EDITOR, {"command": "view", "path": path}, cwd, threading.Event(), workspace=workspace)
    return outcome.content if isinstance(outcome.content, str) else str(outcome.content), outcome.is_error


def test_the_editor_is_jailed_to_the_workspace_not_the_root(root: Path) -> None:
    mine, theirs = root / "users" / "1", root / "users" / "2"
    for directory in (mine, theirs):
        directory.mkdir(parents=True)
    (theirs / "secret.txt").write_text("theirs\n")
    (mine / "note.txt").write_text("mine\n")
    box = Toolbox(root, enable_bash=False)
    assert view(box, "note.txt", mine, mine) == (view(box, "note.txt", mine, None)[0], False)
    for path in ("../2/secret.txt", str(theirs / "secret.txt"), "..", str(root)):
        text, error = view(box, path, mine, mine)
        assert error and "theirs" not in text, path
    # Without a workspace (the old call) the whole root is the jail, as before.
    text, error = view(box, "../2/secret.txt", mine, None)
    assert "theirs" in text and not error


def test_a_workspace_swapped_for_a_symlink_does_not_move_the_jail(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "loot.txt").write_text("loot\n")
    ws = root / "chats" / "-5"
    ws.mkdir(parents=True)
    box = Toolbox(root, enable_bash=False)
    assert not view(box, ".", ws, ws)[1]
    os.rmdir(ws)
    ws.symlink_to(outside)  # e.g. planted by bash in a chat that may write there
    text, error = view(box, "loot.txt", ws, ws)
    assert error and "loot" not in text
    assert "cannot be used" in text


def test_a_workspace_outside_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.txt").write_text("elsewhere\n")
    text, error = view(Toolbox(root, enable_bash=False), "x.txt", tmp_path / "elsewhere", tmp_path / "elsewhere")
    assert error and "elsewhere\n" not in text
