"""The set of tools one vigil instance offers Claude, and the single entry point to run them.

The conversation code needs four things from the tools: the definitions to put
in the request (`specs`), which names are ours (`names`), a way to run a
`tool_use` block (`run`), and a short line to show in the chat while it runs
(`describe`). Everything else — the jail, the editor, bash — stays behind this
class.

Bash is offered only when it was asked for and its sandbox works here: the
sandbox is probed once, when the toolbox is built, and `bash_unavailable`
says why bash is missing, for `vigil check`, `/status` and the start-up log.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from vigil.tools import bash as bash_tool
from vigil.tools import editor as editor_tool
from vigil.tools.bash import BashRunner
from vigil.tools.editor import TextEditor
from vigil.tools.jail import Jail, JailError
from vigil.tools.outcome import ToolOutcome
from vigil.tools.sandbox import Sandbox, SandboxUnavailable, detect

__all__ = ["DESCRIBE_WIDTH", "Toolbox"]

_log = logging.getLogger(__name__)

# Progress lines share a chat message with other text; keep them one short line.
DESCRIBE_WIDTH = 60

# Workspaces whose editor is kept (the chats active lately); more are made again on demand.
_EDITOR_CACHE = 256


def _printable(text: str) -> str:
    # A progress line must stay one line whatever the model put in a path.
    return "".join(c if c.isprintable() else "?" for c in text)


def _cut_end(text: str, width: int = DESCRIBE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _cut_start(text: str, width: int = DESCRIBE_WIDTH) -> str:
    # For paths the file name at the end is the informative part.
    return text if len(text) <= width else "…" + text[-(width - 1) :]


class Toolbox:
    """The text editor (always) and bash (only when enabled and sandboxed), over one working root."""

    def __init__(
        self,
        root: Path,
        enable_bash: bool,
        view_max_characters: int = 16000,
        bash_timeout_s: float = 120,
        bash_output_cap: int = 16000,
        scrub_env: Iterable[str] = (),
        bash_network: bool = True,
        data_dir: Path | None = None,
        sandbox: Sandbox | SandboxUnavailable | None = None,
        read_only: Callable[[], Sequence[tuple[str, str]]] = lambda: (),
    ) -> None:
        """`sandbox` is the probe's result when the caller has one; otherwise it is probed here
        (hiding `data_dir` and the service user's home) when bash is enabled. `read_only`: the
        (directory, where) pairs bash's sandbox binds read-only at each command (the Agent Skills)."""
        self._jail = Jail(root)
        self._view_max = view_max_characters
        self._editor = TextEditor(self._jail, max_characters=view_max_characters)
        # One editor per workspace seen lately: a Jail pins its root's real path once, so making them
        # per call would cost a realpath each time; bounded, since a service sees many chats.
        self._editors: OrderedDict[Path, TextEditor] = OrderedDict()
        self._editors_lock = threading.Lock()
        self._bash: BashRunner | None = None
        self.bash_unavailable: str | None = None
        if not enable_bash:
            return
        if sandbox is None:
            try:
                sandbox = detect(network=bash_network, data_dirs=[data_dir] if data_dir else [], home=Path.home())
            except SandboxUnavailable as exc:
                sandbox = exc
        if isinstance(sandbox, SandboxUnavailable):
            self.bash_unavailable = str(sandbox)
            return
        self._bash = BashRunner(timeout_s=bash_timeout_s, output_cap=bash_output_cap, scrub_env=scrub_env,
                                sandbox=sandbox, read_only=read_only)

    @property
    def sandbox(self) -> Sandbox | None:
        """The sandbox bash runs in, when bash is offered."""
        return self._bash.sandbox if self._bash is not None else None

    @property
    def jail(self) -> Jail:
        """The jail over the working root (the chat's `/cd` resolves through it)."""
        return self._jail

    def jail_for(self, workspace: Path | None) -> Jail:
        """The editor's jail over `workspace` (the whole root when None), for other tools that read the
        chat's files (send_file): the same rules, checked the same way. Raises JailError for a workspace
        that is not usable (outside the root, through a symlink, gone)."""
        return self._editor_for(workspace).jail

    def specs(self) -> list[dict[str, object]]:
        """Tool definitions for the Messages API `tools` parameter."""
        specs = [self._editor.spec()]
        if self._bash is not None:
            specs.append(self._bash.spec())
        return specs

    def names(self) -> frozenset[str]:
        """Names of the tools offered, as they appear in `tool_use` blocks."""
        if self._bash is None:
            return frozenset({editor_tool.TOOL_NAME})
        return frozenset({editor_tool.TOOL_NAME, bash_tool.TOOL_NAME})

    def run(
        self, name: str, tool_input: dict[str, object], cwd: Path, cancel: threading.Event,
        workspace: Path | None = None,
    ) -> ToolOutcome:
        """Run one `tool_use` block (blocking). Never raises for anything the model sent.

        `workspace` is the tree the chat is confined to (the whole root when None): the editor's
        jail, and the only directory bash may write.
        """
        if not isinstance(tool_input, dict):
            return ToolOutcome("Error: the tool input must be an object", is_error=True)
        try:
            if name == editor_tool.TOOL_NAME:
                try:
                    editor = self._editor_for(workspace)
                except JailError as exc:
                    return ToolOutcome(f"Error: this chat's directory cannot be used: {exc}", is_error=True)
                return editor.run(cwd, tool_input)
            if name == bash_tool.TOOL_NAME and self._bash is not None:
                return self._bash.run(cwd, tool_input, cancel, workspace)
        except Exception:
            # A bug in a tool must cost one tool call, not the conversation:
            # Claude gets an error it can react to and the traceback goes to the log.
            _log.exception("tool %s failed on input %r", name, tool_input)
            return ToolOutcome(f"Error: internal error in tool `{name}`", is_error=True)
        offered = ", ".join(f"`{n}`" for n in sorted(self.names()))
        return ToolOutcome(f"Error: unknown tool `{name}`; available tools: {offered}", is_error=True)

    def _editor_for(self, workspace: Path | None) -> TextEditor:
        """The editor jailed to `workspace`, which must lie under the root (checked on every call).

        The workspace is resolved through the root's jail first, so a directory on its way that was
        swapped for a symlink (by bash in an admin's chat, say) cannot move the jail out of the root.
        """
        if workspace is None:
            return self._editor
        real = self._jail.resolve(self._jail.root, str(workspace))
        if real == self._jail.root:
            return self._editor
        with self._editors_lock:
            editor = self._editors.get(real)
            if editor is None:
                editor = TextEditor(Jail(real), max_characters=self._view_max)
                self._editors[real] = editor
                while len(self._editors) > _EDITOR_CACHE:
                    self._editors.popitem(last=False)
            else:
                self._editors.move_to_end(real)
            return editor

    def describe(self, name: str, tool_input: dict[str, object], cwd: Path) -> str:
        """A short progress line for the chat, e.g. `view src/app.py` or `$ pytest -q`."""
        if not isinstance(tool_input, dict):
            return _cut_end(_printable(name))
        if name == editor_tool.TOOL_NAME:
            command = tool_input.get("command")
            path = tool_input.get("path")
            verb = _printable(command) if isinstance(command, str) and command else "edit"
            if not isinstance(path, str) or not path:
                return _cut_end(verb)
            shown = _cut_start(self._display_path(path, cwd), DESCRIBE_WIDTH - len(verb) - 1)
            return _cut_end(f"{verb} {shown}")
        if name == bash_tool.TOOL_NAME:
            if tool_input.get("restart") is True:
                return "bash restart"
            command = tool_input.get("command")
            if not isinstance(command, str):
                return "$ ?"
            lines = command.strip().splitlines() or [""]
            first = _printable(lines[0])
            if len(lines) > 1:
                first += " …"
            return _cut_end(f"$ {first}")
        return _cut_end(_printable(name))

    def _display_path(self, path: str, cwd: Path) -> str:
        """`path` relative to `cwd` when it lies there (lexically), else as the model wrote it."""
        if "\x00" in path:
            return _printable(path)
        target = os.path.normpath(os.path.join(cwd, path))
        base = os.path.normpath(cwd)
        if target == base:
            return "."
        if target.startswith(base.rstrip("/") + "/"):
            return _printable(os.path.relpath(target, base))
        return _printable(path)
