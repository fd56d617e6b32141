"""The tools Claude uses in a chat's working directory, and what confines them.

- `Toolbox` is the entry point the conversation uses: tool definitions to offer
  (`specs`), `run` for a `tool_use` block, `describe` for a progress line.
- `TextEditor` implements Anthropic's `text_editor_20250728` tool
  (`str_replace_based_edit_tool`) with every file access confined by `Jail`.
- `Jail` resolves model paths inside the working root, safely against symlink
  races; `/cd` uses `Jail.resolve` too.
- `BashRunner` implements Anthropic's `bash_20250124` tool. A shell cannot be
  confined by the jail, so every command runs in the bubblewrap `Sandbox`;
  it is opt-in, and not offered at all when the sandbox cannot be built.
- `workspace` is each chat's directory and who shares it; `skills` the Agent Skills
  mounted read-only; `approvals` the values of an approval prompt and its buttons.

A new tool that works on files or runs things goes here; the session's side of it (which turns
offer it) in `vigil/actors/tools/`. May import the records, cancel tokens and logs only.
"""

from vigil.tools.bash import BashRunner
from vigil.tools.editor import TextEditor
from vigil.tools.jail import EscapeError, Jail, JailError
from vigil.tools.outcome import ToolOutcome
from vigil.tools.sandbox import Sandbox, SandboxUnavailable
from vigil.tools.toolbox import Toolbox

__all__ = ["BashRunner", "EscapeError", "Jail", "JailError", "Sandbox", "SandboxUnavailable", "TextEditor",
           "ToolOutcome", "Toolbox"]
