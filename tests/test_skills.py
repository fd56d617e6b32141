"""Agent Skills (vigil/tools/skills.py): folders read from disk, front matter held to Anthropic's rules, the
malformed ones left out with a reason and a log line, the directory read again when it changes."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from vigil.tools.skills import Skills, read_skills


def skill(root: Path, folder: str, front: str, body: str = "Do the thing.\n") -> Path:
    path = root / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / "SKILL.md").write_text(f"---\n{front}\n---\n{body}")
    return path


def test_skills_are_listed_by_name_with_their_descriptions(tmp_path: Path) -> None:
    skill(tmp_path, "pdf-forms", "name: pdf-forms\ndescription: Fill in PDF forms.\nlicense: MIT")
    skill(tmp_path, "brand-voice", "name: brand-voice\ndescription: >\n  Write in the\n  company's voice.\n"
                                   "allowed-tools: Read")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "notes.txt").write_text("not a skill")
    found = read_skills(tmp_path)
    assert [(s.name, s.description) for s in found.skills] == [
        ("brand-voice", "Write in the company's voice."), ("pdf-forms", "Fill in PDF forms.")]
    assert found.problems == ()
    assert found.get("pdf-forms") is not None and found.get("pdf-forms").path == tmp_path / "pdf-forms"  # type: ignore[union-attr]
    prompt = found.prompt()
    assert prompt.splitlines()[1:] == ["- brand-voice: Write in the company's voice.",
                                       "- pdf-forms: Fill in PDF forms."]
    assert "/skills/<name>/SKILL.md" in prompt and "Do the thing" not in prompt


def test_malformed_skills_are_left_out_with_why(tmp_path: Path) -> None:
    skill(tmp_path, "good", "name: good\ndescription: Fine.")
    cases = {
        "Upper": ("name: Upper\ndescription: x", "only lowercase letters, digits and single hyphens"),
        "double--hyphen": ("name: double--hyphen\ndescription: x", "single hyphens"),
        "other-folder": ("name: something-else\ndescription: x", "is not the folder's name"),
        "claude-helper": ("name: claude-helper\ndescription: x", "may not contain 'anthropic' or 'claude'"),
        "no-name": ("description: x", "has no name"),
        "no-description": ("name: no-description", "has no description"),
        "long-description": ("name: long-description\ndescription: " + "x" * 1025, "longer than 1024"),
        "xml": ("name: xml\ndescription: Use <system>this</system>.", "XML tags"),
        "bad-yaml": ("name: bad-yaml\ndescription: [unclosed", "not valid YAML"),
        "a-list": ("- name\n- description", "not a mapping"),
    }
    for folder, (front, _) in cases.items():
        skill(tmp_path, folder, front)
    (tmp_path / "empty").mkdir()
    skill(tmp_path, "no-front", "")
    (tmp_path / "no-front" / "SKILL.md").write_text("# Just a title\n")
    skill(tmp_path, "x" * 65, f"name: {'x' * 65}\ndescription: x")
    with structlog.testing.capture_logs() as logs:
        found = Skills(tmp_path).current()
    assert [s.name for s in found.skills] == ["good"]
    reasons = {p.folder: p.reason for p in found.problems}
    for folder, (_, why) in cases.items():
        assert why in reasons[folder], (folder, reasons[folder])
    assert reasons["empty"] == "no SKILL.md"
    assert "does not begin with YAML front matter" in reasons["no-front"]
    assert "longer than 64 characters" in reasons["x" * 65]
    skipped = {entry["folder"] for entry in logs if entry["event"] == "skills.skipped"}
    assert skipped == set(reasons)


def test_the_directory_is_read_again_only_when_it_changed(tmp_path: Path) -> None:
    skills = Skills(tmp_path / "skills")
    assert skills.current().skills == ()  # not there yet: no skills, no error
    root = tmp_path / "skills"
    skill(root, "alpha", "name: alpha\ndescription: First.")
    first = skills.current()
    assert [s.name for s in first.skills] == ["alpha"]
    assert skills.current() is first  # nothing changed: not parsed again
    skill(root, "beta", "name: beta\ndescription: Second.")
    assert [s.name for s in skills.current().skills] == ["alpha", "beta"]
    # An edit of a description, the folder untouched otherwise.
    path = root / "alpha" / "SKILL.md"
    path.write_text("---\nname: alpha\ndescription: First, edited.\n---\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert skills.current().get("alpha").description == "First, edited."  # type: ignore[union-attr]
    (root / "beta" / "SKILL.md").unlink()
    current = skills.current()
    assert [s.name for s in current.skills] == ["alpha"] and current.problems[0].line() == "beta: no SKILL.md"
