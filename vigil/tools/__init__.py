"""The tools Claude uses in a chat's working directory.

- `Toolbox` is the entry point the conversation uses: tool definitions to offer
  (`specs`), `run` for a `tool_use` block, `describe` for a progress line.
- `TextEditor` implements Anthropic's `text_editor_20250728` tool
  (`str_replace_based_edit_tool`) with every file access confined by `Jail`.
- `Jail` resolves model paths inside the working root, safely against symlink
  races; `/cd` uses `Jail.resolve` too.
- `BashRunner` implements Anthropic's `bash_20250124` tool. It is opt-in
  because a shell cannot be confined by the jail.
"""

from vigil.tools.bash import BashRunner
from vigil.tools.editor import TextEditor
from vigil.tools.jail import EscapeError, Jail, JailError
from vigil.tools.outcome import ToolOutcome
from vigil.tools.toolbox import Toolbox

__all__ = ["BashRunner", "EscapeError", "Jail", "JailError", "TextEditor", "ToolOutcome", "Toolbox"]
