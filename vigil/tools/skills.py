"""Agent Skills: folders of know-how (a `SKILL.md` and whatever scripts it uses) Claude reads when needed.

`VIGIL_SKILLS_DIR` holds one folder per skill. Only each skill's `name` and `description` (YAML front
matter at the top of `SKILL.md`) go into every chat's system prompt: the prompt stays small and its
cache keeps hitting; Claude reads the rest of `SKILL.md` when a task calls for it. Front matter is held
to Anthropic's rules for skills:

- `name`: at most 64 characters, lowercase letters, digits and single hyphens (not first or last),
  neither "anthropic" nor "claude" in it, and the same as the folder's name;
- `description`: not empty, at most 1024 characters;
- neither holds an XML tag (it goes into the system prompt as it is).

Other keys (`license`, `allowed-tools`, `metadata`, or a Claude Code skill's own) are allowed and not
read. A folder that breaks a rule is left out with one log line and listed, with why, for `/skills`.

The directory is read again when it changes, which is noticed without a thread: each `current()`
compares a signature of stats (the directory, each folder, each `SKILL.md`: a few system calls per
skill) with the last one, and parses only then.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml

from vigil.logs import get_logger

__all__ = ["MAX_DESCRIPTION", "MAX_NAME", "SKILLS_AT", "Skill", "SkillProblem", "SkillSet", "Skills", "read_skills",
           "under_skills"]

MAX_NAME = 64
MAX_DESCRIPTION = 1024
SKILL_FILE = "SKILL.md"
SKILLS_AT = "/skills"  # where Claude finds them: the editor (actors/tools/skills.py) and the bash sandbox
_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_RESERVED = ("anthropic", "claude")
_XML_TAG = re.compile(r"<\s*/?\s*[A-Za-z][^<>]*>")
_MAX_FRONT_MATTER = 64 * 1024


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    path: Path  # the skill's folder


@dataclass(frozen=True)
class SkillProblem:
    folder: str
    reason: str

    def line(self) -> str:
        return f"{self.folder}: {self.reason}"


@dataclass(frozen=True)
class SkillSet:
    """The skills of one reading of the directory, by name, and the folders left out."""

    directory: Path
    skills: tuple[Skill, ...] = ()
    problems: tuple[SkillProblem, ...] = ()

    def get(self, name: str) -> Skill | None:
        return next((s for s in self.skills if s.name == name), None)

    def mounts(self, where: str = SKILLS_AT) -> tuple[tuple[str, str], ...]:
        """(folder, where Claude sees it) for each skill: what the bash sandbox binds read-only."""
        return tuple((os.path.realpath(skill.path), f"{where}/{skill.name}") for skill in self.skills)

    def prompt(self, where: str = SKILLS_AT) -> str:
        """The system prompt's listing: names and descriptions only, sorted; "" without skills."""
        if not self.skills:
            return ""
        lines = [f"Agent Skills are folders of instructions (and scripts) under {where}/<name>/. When a task "
                 f"matches a skill's description, read {where}/<name>/{SKILL_FILE} first and follow it:"]
        lines += [f"- {skill.name}: {' '.join(skill.description.split())}" for skill in self.skills]
        return "\n".join(lines)


def under_skills(path: object) -> bool:
    """Whether a path the model gave names `/skills` or something in it (where Claude finds the skills)."""
    if not isinstance(path, str) or not path.startswith("/"):
        return False
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return bool(parts) and parts[0] == SKILLS_AT.strip("/")


def read_skills(directory: Path) -> SkillSet:
    """Every skill folder of `directory` (a missing directory has none), checked."""
    skills: list[Skill] = []
    problems: list[SkillProblem] = []
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return SkillSet(directory)
    except OSError as exc:
        return SkillSet(directory, problems=(SkillProblem(str(directory), f"cannot read it ({exc.strerror})"),))
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        checked = _skill(Path(entry.path), entry.name)
        if isinstance(checked, Skill):
            skills.append(checked)
        else:
            problems.append(SkillProblem(entry.name, checked))
    return SkillSet(directory, tuple(skills), tuple(problems))


def _skill(folder: Path, name: str) -> Skill | str:
    """The skill in `folder`, or why it is not one."""
    try:
        with open(folder / SKILL_FILE, encoding="utf-8") as file:
            text = file.read(_MAX_FRONT_MATTER)
    except FileNotFoundError:
        return f"no {SKILL_FILE}"
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read {SKILL_FILE} ({exc.strerror if isinstance(exc, OSError) else 'not UTF-8'})"
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return f"{SKILL_FILE} does not begin with YAML front matter (a line '---')"
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
    if end is None:
        return f"{SKILL_FILE}'s front matter has no closing '---'"
    try:
        meta = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return f"{SKILL_FILE}'s front matter is not valid YAML" + (f" (line {mark.line + 2})" if mark else "")
    if not isinstance(meta, dict):
        return f"{SKILL_FILE}'s front matter is not a mapping of name, description, ..."
    problem = _name_problem(meta.get("name"), name) or _description_problem(meta.get("description"))
    if problem:
        return problem
    return Skill(name=meta["name"], description=meta["description"].strip(), path=folder)


def _name_problem(value: object, folder: str) -> str | None:
    if not isinstance(value, str) or not value:
        return "the front matter has no name"
    if len(value) > MAX_NAME:
        return f"the name is longer than {MAX_NAME} characters"
    if not _NAME.match(value):
        return "the name may hold only lowercase letters, digits and single hyphens (not first or last)"
    if any(word in value for word in _RESERVED):
        return f"the name may not contain {' or '.join(repr(w) for w in _RESERVED)}"
    if value != folder:
        return f"the name {value!r} is not the folder's name"
    return None


def _description_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "the front matter has no description"
    if len(value) > MAX_DESCRIPTION:
        return f"the description is longer than {MAX_DESCRIPTION} characters"
    if _XML_TAG.search(value):
        return "the description may not hold XML tags"
    return None


def _signature(directory: Path) -> tuple[object, ...]:
    """What changes when a skill is added, removed, renamed or edited: stats, no reading."""
    def stat(path: str) -> tuple[int, int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    top = stat(str(directory))
    if top is None:
        return (None,)
    parts: list[object] = [top]
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return (top, "unreadable")
    for entry in entries:
        parts.append((entry.name, stat(entry.path), stat(os.path.join(entry.path, SKILL_FILE))))
    return tuple(parts)


class Skills:
    """The skills of a directory, read again when it changed; thread-safe (the actors share one)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._signature: tuple[object, ...] | None = None
        self._current = SkillSet(directory)
        self._log = get_logger(__name__)

    def current(self) -> SkillSet:
        signature = _signature(self.directory)
        with self._lock:
            if signature == self._signature:
                return self._current
            found = read_skills(self.directory)
            self._signature, self._current = signature, found
        for problem in found.problems:
            self._log.warning("skills.skipped", folder=problem.folder, reason=problem.reason)
        self._log.info("skills.loaded", directory=str(self.directory), skills=[s.name for s in found.skills])
        return found
