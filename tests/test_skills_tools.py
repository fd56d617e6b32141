"""Agent Skills in Claude's tools, under attack: the editor's `/skills/<name>/…` and the bash sandbox's binds.

A skill folder is the operator's and shared by every chat: Claude may read it, never change it, and nothing
in it (a symlink, `..`, a folder that is itself a link to the data directory) may lead anywhere else. Each
escape is tried for real: through the editor's jail, and through bwrap.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from vigil.actors.tools.skills import view
from vigil.policy.tool_mode import EDITOR, risk_of
from vigil.tools.bash import BashRunner
from vigil.tools.sandbox import Sandbox, detect
from vigil.tools.skills import read_skills, under_skills

SECRET = "the-data-directorys-secret"
SKILL = "---\nname: tidy\ndescription: Tidies things.\n---\nStep one: run scripts/go.sh\n"


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """(skills directory, data directory): a skill `tidy` with a script and two symlinks out of it."""
    data, skills = tmp_path / "data", tmp_path / "skills"
    data.mkdir()
    (data / "secret.txt").write_text(SECRET)
    tidy = skills / "tidy"
    (tidy / "scripts").mkdir(parents=True)
    (tidy / "SKILL.md").write_text(SKILL)
    (tidy / "scripts" / "go.sh").write_text("echo going\n")
    (tidy / "leak").symlink_to(data / "secret.txt")
    (tidy / "up").symlink_to(tmp_path)
    return skills, data


def run(skills: Path, **tool_input: object) -> tuple[str, bool]:
    outcome = view(read_skills(skills), {**tool_input})
    return outcome.content, outcome.is_error


def test_the_editor_views_a_skill_and_lists_them(world: tuple[Path, Path]) -> None:
    skills, _ = world
    text, error = run(skills, command="view", path="/skills/tidy/SKILL.md")
    assert not error and "Step one: run scripts/go.sh" in text and "/skills/tidy/SKILL.md" in text
    text, error = run(skills, command="view", path="/skills/tidy")
    assert not error and "scripts/" in text and "SKILL.md" in text
    text, error = run(skills, command="view", path="/skills")
    assert not error and "/skills/tidy/ — Tidies things." in text
    text, error = run(skills, command="view", path="/skills/./tidy/scripts/go.sh", view_range=[1, 1])
    assert not error and "echo going" in text


def test_the_editor_leaves_no_skill_by_a_symlink_or_dots(world: tuple[Path, Path]) -> None:
    skills, _ = world
    for path in ("/skills/tidy/leak", "/skills/tidy/up/data/secret.txt", "/skills/tidy/../../data/secret.txt",
                 "/skills/../data/secret.txt", "/skills/tidy/scripts/../../../data/secret.txt"):
        text, error = run(skills, command="view", path=path)
        assert error and SECRET not in text, path
    text, error = run(skills, command="view", path="/skills/nothere/SKILL.md")
    assert error and "is not an Agent Skill (the skills: tidy)" in text


def test_the_editor_changes_nothing_under_skills_and_asks_nobody_about_it(world: tuple[Path, Path]) -> None:
    skills, _ = world
    before = {p: p.read_bytes() for p in skills.rglob("*") if p.is_file() and not p.is_symlink()}
    for change in ({"command": "create", "path": "/skills/tidy/new.md", "file_text": "x"},
                   {"command": "str_replace", "path": "/skills/tidy/SKILL.md", "old_str": "one", "new_str": "two"},
                   {"command": "insert", "path": "/skills/tidy/SKILL.md", "insert_line": 0, "insert_text": "x"}):
        text, error = run(skills, **change)
        assert error and "/skills is read-only" in text
        assert risk_of(EDITOR, change) == "safe", "refused without running: nothing to approve"
    assert {p: p.read_bytes() for p in skills.rglob("*") if p.is_file() and not p.is_symlink()} == before
    assert not (skills / "tidy" / "new.md").exists()
    assert risk_of(EDITOR, {"command": "create", "path": "/skillsx/a", "file_text": ""}) == "change"
    assert [under_skills(p) for p in ("/skills", "/skills/a", "//skills/a", "/./skills", "skills/a", "/skillsx")] \
        == [True, True, True, True, False, False]


# ------------------------------------------------------------------------------------------------ the sandbox

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@needs_bwrap
def test_the_sandbox_shows_each_skill_read_only_and_nothing_through_it(world: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    skills, data = world
    sandbox = detect(data_dirs=[data], home=tmp_path / "home")
    (skills / "evil").symlink_to(data)  # a "skill" that is the data directory itself
    (data / "SKILL.md").write_text("---\nname: evil\ndescription: Looks like a skill.\n---\n")
    found = read_skills(skills)
    assert [s.name for s in found.skills] == ["evil", "tidy"]
    workspace = tmp_path / "chat"
    workspace.mkdir()
    runner = BashRunner(timeout_s=30, sandbox=sandbox, read_only=found.mounts)
    script = ("cat /skills/tidy/SKILL.md; bash /skills/tidy/scripts/go.sh; cat /skills/tidy/leak; "
              "ls /skills/tidy/up/data; ls /skills/evil; touch /skills/tidy/mine; echo done")
    outcome = runner.run(workspace, {"command": script}, threading.Event(), workspace)
    assert "Step one" in outcome.content and "going" in outcome.content and "done" in outcome.content
    assert SECRET not in outcome.content and "secret.txt" not in outcome.content
    assert "/skills/evil" in outcome.content and "No such file or directory" in outcome.content
    assert "Read-only file system" in outcome.content
    assert not (skills / "tidy" / "mine").exists()


def test_the_sandbox_binds_no_skill_that_is_or_holds_the_data_directory_or_the_home(tmp_path: Path) -> None:
    data, home = tmp_path / "data", tmp_path / "home"
    sandbox = Sandbox("/usr/bin/bwrap", data_dirs=[data], home=home)
    work = tmp_path / "work"
    argv = sandbox.argv(work, work, "true", 3, 4, read_only=[
        (str(tmp_path / "skills" / "ok"), "/skills/ok"), (str(data), "/skills/a"), (str(data / "x"), "/skills/b"),
        (str(tmp_path), "/skills/c"), (str(home), "/skills/d"), ("/", "/skills/e"),
        (str(home / ".config" / "vigil" / "skills" / "mine"), "/skills/mine")])
    binds = [argv[i + 1:i + 3] for i, arg in enumerate(argv) if arg == "--ro-bind-try"]
    assert [b[1] for b in binds if b[1].startswith("/skills/")] == ["/skills/ok", "/skills/mine"], \
        "the default skills directory lies in the home: its folders, not the home, are shown"
    assert [os.path.realpath(tmp_path / "skills" / "ok"), "/skills/ok"] in binds
    assert argv.index("/skills/ok") < argv.index("--proc") < argv.index("--remount-ro"), \
        "after the fixed binds, before any remount"
