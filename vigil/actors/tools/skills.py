"""The Agent Skills' folders for Claude's editor: `/skills/<name>/…`, viewed, never changed.

The system prompt lists each skill's name and description (vigil/tools/skills.py); Claude reads the rest when a
task calls for it, at `/skills/<name>/SKILL.md`, the same path the bash sandbox binds the folder at
(vigil/tools/sandbox.py), so what the instructions say about their own files holds in both tools.

A path under `/skills` never reaches the chat's workspace jail: it is served from the skill's own folder
through a `Jail` of its own (the folder is its root, `/skills/<name>` its other spelling), so a symlink or
`..` in a skill cannot lead anywhere else, and only `view` runs: the skills are the operator's, shared by
every chat, and a change is refused with one sentence. `/skills` itself lists the skills.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from vigil.actors.core.state import Session
from vigil.actors.engine.runner import ToolSet
from vigil.cancel import CancelToken
from vigil.policy.tool_mode import EDITOR
from vigil.tools.editor import TextEditor
from vigil.tools.jail import Jail
from vigil.tools.outcome import ToolOutcome
from vigil.tools.skills import SKILL_FILE, SKILLS_AT, SkillSet, under_skills

__all__ = ["skill_files", "view"]

READ_ONLY = ToolOutcome(f"Error: {SKILLS_AT} is read-only: the Agent Skills can be viewed, not changed (copy a "
                        "file into the working directory to work on it there).", is_error=True)


def skill_files(session: Session, tools: ToolSet) -> ToolSet:
    """`tools` (which hold the editor) with editor paths under `/skills` served from the skills' folders."""
    skills = session.deps.skills
    if skills is None:
        return tools

    def run(name: str, tool_input: dict[str, Any], cancel: CancelToken) -> ToolOutcome:
        if name != EDITOR or not isinstance(tool_input, dict) or not under_skills(tool_input.get("path")):
            return tools.run(name, tool_input, cancel)
        return view(skills.current(), tool_input)

    return dataclasses.replace(tools, run=run)


def view(found: SkillSet, tool_input: dict[str, Any]) -> ToolOutcome:
    """The editor's command on a path under `/skills`: a view, or why not."""
    if tool_input.get("command") != "view":
        return READ_ONLY
    path = str(tool_input["path"])
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if len(parts) == 1:
        if not found.skills:
            return ToolOutcome(f"{SKILLS_AT} holds no Agent Skills.")
        lines = [f"The Agent Skills in {SKILLS_AT} (read {SKILLS_AT}/<name>/{SKILL_FILE} for one):"]
        lines += [f"{SKILLS_AT}/{skill.name}/ — {' '.join(skill.description.split())}" for skill in found.skills]
        return ToolOutcome("\n".join(lines))
    skill = found.get(parts[1])
    if skill is None:
        known = ", ".join(s.name for s in found.skills) or "none"
        return ToolOutcome(f"Error: {SKILLS_AT}/{parts[1]} is not an Agent Skill (the skills: {known}).",
                           is_error=True)
    home = Path(SKILLS_AT) / skill.name
    return TextEditor(Jail(skill.path, also=home)).run(home, tool_input)
