"""The text editor and bash tools, and the Toolbox that offers them."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.procs import processes_with
from vigil.tools import BashRunner, Jail, TextEditor, Toolbox, ToolOutcome
from vigil.tools.bash import RESTART_MESSAGE, is_secret_name


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `condition` until it holds or `timeout` passes; the result of the last poll."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        threading.Event().wait(0.02)
    return condition()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path.resolve() / "root"
    r.mkdir()
    return r


@pytest.fixture
def editor(root: Path) -> TextEditor:
    return TextEditor(Jail(root), max_characters=2000)


def ok(outcome: ToolOutcome) -> str:
    assert not outcome.is_error, outcome.content
    return outcome.content


def err(outcome: ToolOutcome) -> str:
    assert outcome.is_error, outcome.content
    assert outcome.content.startswith("Error: ")
    return outcome.content


# -- view --------------------------------------------------------------------


def test_view_numbers_lines_like_cat_n(root: Path, editor: TextEditor) -> None:
    (root / "a.py").write_text("one\ntwo\nthree\n")
    content = ok(editor.run(root, {"command": "view", "path": "a.py"}))
    assert content.splitlines()[1:] == ["     1\tone", "     2\ttwo", "     3\tthree"]
    assert "cat -n" in content.splitlines()[0]
    # Absolute paths inside the root work too.
    assert ok(editor.run(root, {"command": "view", "path": str(root / "a.py")})).endswith("3\tthree")


def test_view_range(root: Path, editor: TextEditor) -> None:
    (root / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    content = ok(editor.run(root, {"command": "view", "path": "a.txt", "view_range": [3, 5]}))
    assert content.splitlines()[1:] == ["     3\tline 3", "     4\tline 4", "     5\tline 5"]
    content = ok(editor.run(root, {"command": "view", "path": "a.txt", "view_range": [9, -1]}))
    assert content.splitlines()[1:] == ["     9\tline 9", "    10\tline 10"]
    # An end past the last line is read as "to the end".
    content = ok(editor.run(root, {"command": "view", "path": "a.txt", "view_range": [10, 99]}))
    assert content.splitlines()[1:] == ["    10\tline 10"]


@pytest.mark.parametrize(
    ("view_range", "needle"),
    [
        ([0, 2], "start must be between 1 and 3"),
        ([4, 4], "start must be between 1 and 3"),
        ([3, 2], "end must be -1 or at least start"),
        ([1], "view_range"),
        ("1-2", "view_range"),
        ([1, "2"], "view_range"),
        ([True, 2], "view_range"),
    ],
)
def test_view_range_errors(root: Path, editor: TextEditor, view_range: object, needle: str) -> None:
    (root / "a.txt").write_text("a\nb\nc\n")
    assert needle in err(editor.run(root, {"command": "view", "path": "a.txt", "view_range": view_range}))


def test_view_empty_file(root: Path, editor: TextEditor) -> None:
    (root / "empty.txt").write_text("")
    assert "is empty" in ok(editor.run(root, {"command": "view", "path": "empty.txt"}))
    assert "empty" in err(editor.run(root, {"command": "view", "path": "empty.txt", "view_range": [1, 1]}))


def test_view_truncates_long_files_and_says_how_to_see_more(root: Path) -> None:
    editor = TextEditor(Jail(root), max_characters=500)
    (root / "big.txt").write_text("".join(f"row {i}\n" for i in range(1, 1001)))
    content = ok(editor.run(root, {"command": "view", "path": "big.txt"}))
    assert len(content) < 500 + 300
    assert "     1\trow 1" in content
    assert "row 1000" not in content
    match = re.search(r"showed lines 1-(\d+) of 1000.*view_range \[(\d+), -1\]", content)
    assert match is not None, content
    assert int(match.group(2)) == int(match.group(1)) + 1
    # Following the advice shows the next lines.
    follow = ok(
        editor.run(root, {"command": "view", "path": "big.txt", "view_range": [int(match.group(2)), -1]})
    )
    assert f"row {match.group(2)}\n" in follow + "\n"


def test_view_cuts_a_single_huge_line(root: Path) -> None:
    editor = TextEditor(Jail(root), max_characters=300)
    (root / "min.js").write_text("x" * 5000)
    content = ok(editor.run(root, {"command": "view", "path": "min.js"}))
    assert "alone is longer" in content
    assert len(content) < 600


def test_view_directory_two_levels_without_hidden(root: Path, editor: TextEditor) -> None:
    (root / "src" / "pkg" / "deep").mkdir(parents=True)
    (root / "src" / "pkg" / "deep" / "too_deep.py").write_text("")
    (root / "src" / "app.py").write_text("")
    (root / "README.md").write_text("")
    (root / ".git").mkdir()
    (root / ".env").write_text("SECRET=1")
    (root / "src" / ".hidden").write_text("")
    (root / "link").symlink_to("src/app.py")
    content = ok(editor.run(root, {"command": "view", "path": "."}))
    rows = content.splitlines()[1:]
    assert rows == ["README.md", "link -> src/app.py", "src/", "src/app.py", "src/pkg/"]
    assert "2 levels deep" in content.splitlines()[0]
    assert "view_range" in err(editor.run(root, {"command": "view", "path": "src", "view_range": [1, 2]}))
    (root / "void").mkdir()
    assert "(empty)" in ok(editor.run(root, {"command": "view", "path": "void"}))


def test_view_refuses_binary_files(root: Path, editor: TextEditor) -> None:
    (root / "blob.bin").write_bytes(b"\x89PNG\x00\x01\x02")
    (root / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    assert "binary" in err(editor.run(root, {"command": "view", "path": "blob.bin"}))
    assert "not UTF-8" in err(editor.run(root, {"command": "view", "path": "latin1.txt"}))
    assert "binary" in err(
        editor.run(root, {"command": "str_replace", "path": "blob.bin", "old_str": "PNG", "new_str": "x"})
    )
    assert (root / "blob.bin").read_bytes() == b"\x89PNG\x00\x01\x02"


def test_view_missing_file(root: Path, editor: TextEditor) -> None:
    assert "No such file" in err(editor.run(root, {"command": "view", "path": "nope.txt"}))


# -- create ------------------------------------------------------------------


def test_create_then_view_round_trip(root: Path, editor: TextEditor) -> None:
    text = "# Notes\n\nünïcødé ✓\n"
    content = ok(editor.run(root, {"command": "create", "path": "docs/notes/today.md", "file_text": text}))
    assert "created" in content
    assert (root / "docs" / "notes" / "today.md").read_text() == text
    view = ok(editor.run(root / "docs", {"command": "view", "path": "notes/today.md"}))
    assert view.splitlines()[1:] == ["     1\t# Notes", "     2\t", "     3\tünïcødé ✓"]


def test_create_overwrites_and_says_so(root: Path, editor: TextEditor) -> None:
    (root / "a.txt").write_text("old\n")
    content = ok(editor.run(root, {"command": "create", "path": "a.txt", "file_text": "new\n"}))
    assert "overwritten" in content
    assert (root / "a.txt").read_text() == "new\n"


def test_create_errors(root: Path, editor: TextEditor) -> None:
    assert "`file_text`" in err(editor.run(root, {"command": "create", "path": "a.txt"}))
    assert "`file_text`" in err(editor.run(root, {"command": "create", "path": "a.txt", "file_text": 3}))
    assert "`path`" in err(editor.run(root, {"command": "create", "file_text": "x"}))
    assert "`path`" in err(editor.run(root, {"command": "create", "path": "", "file_text": "x"}))
    (root / "dir").mkdir()
    assert "directory" in err(editor.run(root, {"command": "create", "path": "dir", "file_text": "x"}))
    (root / "file").write_text("")
    assert "not a directory" in err(
        editor.run(root, {"command": "create", "path": "file/x", "file_text": "x"})
    )


# -- str_replace ---------------------------------------------------------------


def test_str_replace_unique(root: Path, editor: TextEditor) -> None:
    (root / "app.py").write_text("def f():\n    return 1\n\ndef g():\n    return 2\n")
    content = ok(
        editor.run(
            root, {"command": "str_replace", "path": "app.py", "old_str": "return 2", "new_str": "return 3"}
        )
    )
    assert "exactly one location" in content
    assert "     5\t    return 3" in content  # the snippet shows the edited line
    assert (root / "app.py").read_text() == "def f():\n    return 1\n\ndef g():\n    return 3\n"


def test_str_replace_without_new_str_deletes(root: Path, editor: TextEditor) -> None:
    (root / "a.txt").write_text("keep DROP keep\n")
    ok(editor.run(root, {"command": "str_replace", "path": "a.txt", "old_str": " DROP"}))
    assert (root / "a.txt").read_text() == "keep keep\n"


def test_str_replace_no_match_and_many_matches(root: Path, editor: TextEditor) -> None:
    (root / "a.txt").write_text("x = 1\ny = 1\nz = 1\n")
    content = err(
        editor.run(root, {"command": "str_replace", "path": "a.txt", "old_str": "w = 1", "new_str": ""})
    )
    assert "No match found" in content
    content = err(
        editor.run(root, {"command": "str_replace", "path": "a.txt", "old_str": " = 1", "new_str": ""})
    )
    assert "Found 3 matches" in content and "lines 1, 2, 3" in content
    (root / "b.txt").write_text("aaa\n")
    content = err(
        editor.run(root, {"command": "str_replace", "path": "b.txt", "old_str": "aa", "new_str": "b"})
    )
    assert "Found 2 matches" in content  # overlapping occurrences are ambiguous too
    assert (root / "a.txt").read_text() == "x = 1\ny = 1\nz = 1\n"
    assert (root / "b.txt").read_text() == "aaa\n"


def test_str_replace_input_errors(root: Path, editor: TextEditor) -> None:
    (root / "a.txt").write_text("abc\n")
    assert "`old_str`" in err(editor.run(root, {"command": "str_replace", "path": "a.txt"}))
    assert "`old_str`" in err(editor.run(root, {"command": "str_replace", "path": "a.txt", "old_str": ""}))
    assert "`new_str`" in err(
        editor.run(root, {"command": "str_replace", "path": "a.txt", "old_str": "a", "new_str": 5})
    )
    assert "No such file" in err(
        editor.run(root, {"command": "str_replace", "path": "nope.txt", "old_str": "a", "new_str": "b"})
    )
    (root / "d").mkdir()
    assert "directory" in err(editor.run(root, {"command": "str_replace", "path": "d", "old_str": "a"}))


# -- insert --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "line", "text", "expected"),
    [
        ("a\nb\n", 0, "top", "top\na\nb\n"),
        ("a\nb\n", 1, "mid\n", "a\nmid\nb\n"),
        ("a\nb\n", 2, "end1\nend2", "a\nb\nend1\nend2\n"),
        ("a\nb", 2, "c", "a\nb\nc"),  # no final newline stays without one
        ("", 0, "first", "first\n"),
    ],
)
def test_insert(root: Path, editor: TextEditor, original: str, line: int, text: str, expected: str) -> None:
    (root / "f.txt").write_text(original)
    ok(editor.run(root, {"command": "insert", "path": "f.txt", "insert_line": line, "insert_text": text}))
    assert (root / "f.txt").read_text() == expected


def test_insert_accepts_legacy_new_str(root: Path, editor: TextEditor) -> None:
    (root / "f.txt").write_text("a\n")
    ok(editor.run(root, {"command": "insert", "path": "f.txt", "insert_line": 1, "new_str": "b"}))
    assert (root / "f.txt").read_text() == "a\nb\n"


def test_insert_errors(root: Path, editor: TextEditor) -> None:
    (root / "f.txt").write_text("a\nb\n")
    base: dict[str, object] = {"command": "insert", "path": "f.txt"}
    assert "out of range" in err(editor.run(root, {**base, "insert_line": 3, "insert_text": "x"}))
    assert "`insert_line`" in err(editor.run(root, {**base, "insert_line": -1, "insert_text": "x"}))
    assert "`insert_line`" in err(editor.run(root, {**base, "insert_line": True, "insert_text": "x"}))
    assert "`insert_line`" in err(editor.run(root, {**base, "insert_line": "1", "insert_text": "x"}))
    assert "`insert_line`" in err(editor.run(root, {**base, "insert_text": "x"}))
    assert "`insert_text`" in err(editor.run(root, {**base, "insert_line": 1}))
    assert (root / "f.txt").read_text() == "a\nb\n"


# -- commands and input shape ----------------------------------------------------


@pytest.mark.parametrize(
    ("tool_input", "needle"),
    [
        ({}, "`command`"),
        ({"command": 7, "path": "a"}, "`command`"),
        ({"command": "delete", "path": "a"}, "unknown command `delete`"),
        ({"command": "undo_edit", "path": "a"}, "undo_edit"),
        ({"command": "view"}, "`path`"),
        ({"command": "view", "path": ["a"]}, "`path`"),
    ],
)
def test_bad_editor_input(root: Path, editor: TextEditor, tool_input: dict[str, object], needle: str) -> None:
    assert needle in err(editor.run(root, tool_input))


# -- bash ------------------------------------------------------------------------


@pytest.fixture
def bash() -> BashRunner:
    return BashRunner(timeout_s=10)


def test_bash_pwd_is_the_session_cwd(root: Path, bash: BashRunner) -> None:
    (root / "proj").mkdir()
    assert ok(bash.run(root / "proj", {"command": "pwd"}, threading.Event())).strip() == str(root / "proj")


def test_bash_runs_commands(root: Path, bash: BashRunner) -> None:
    assert ok(bash.run(root, {"command": "echo hi-$((6*7))"}, threading.Event())).strip() == "hi-42"
    # stderr is merged; stdin is /dev/null (so `cat` ends at once).
    content = ok(bash.run(root, {"command": "echo out; echo err >&2; cat"}, threading.Event()))
    assert content.splitlines() == ["out", "err"]
    assert ok(bash.run(root, {"command": "true"}, threading.Event())) == "(no output)"


def test_bash_reports_non_zero_exit(root: Path, bash: BashRunner) -> None:
    content = bash.run(root, {"command": "echo failing; exit 3"}, threading.Event()).content
    assert content.startswith("failing")
    assert "[exit code: 3]" in content


def test_bash_state_does_not_persist(root: Path, bash: BashRunner) -> None:
    (root / "sub").mkdir()
    ok(bash.run(root, {"command": "cd sub && export X=1"}, threading.Event()))
    assert ok(bash.run(root, {"command": "pwd; echo X=$X"}, threading.Event())).split() == [str(root), "X="]
    restart = ok(bash.run(root, {"restart": True}, threading.Event()))
    assert restart == RESTART_MESSAGE
    assert "restarted" in restart and "does not persist" in restart


def test_bash_timeout_kills_the_process_group(root: Path) -> None:
    runner = BashRunner(timeout_s=0.5)
    started = time.monotonic()
    # The sandbox has its own PID namespace: `$!` means nothing on the host, so the
    # background child is found by its unique command line.
    outcome = runner.run(root, {"command": "sleep 30.101 & echo $!; sleep 30"}, threading.Event())
    elapsed = time.monotonic() - started
    assert outcome.is_error
    assert "timed out after 0.5 s" in outcome.content
    assert elapsed < 5
    assert int(outcome.content.split()[0]) > 0, "the background child was started"
    assert wait_until(lambda: not processes_with("30.101")), "background child survived the timeout"


def test_bash_cancel_ends_the_command_promptly(root: Path, bash: BashRunner) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    try:
        started = time.monotonic()
        outcome = bash.run(root, {"command": "sleep 30.102 & echo $!; sleep 30"}, cancel)
        elapsed = time.monotonic() - started
    finally:
        timer.cancel()
    assert outcome.is_error and "cancelled" in outcome.content
    assert elapsed < 2.5
    assert int(outcome.content.split()[0]) > 0, "the background child was started"
    assert wait_until(lambda: not processes_with("30.102"))
    # Already cancelled: nothing is started.
    assert "cancelled" in bash.run(root, {"command": "echo no"}, cancel).content


def test_bash_stops_leftover_background_processes(root: Path, bash: BashRunner) -> None:
    started = time.monotonic()
    outcome = bash.run(root, {"command": "sleep 30.103 & echo $!"}, threading.Event())
    assert time.monotonic() - started < 5
    assert not outcome.is_error
    assert "background processes" in outcome.content
    assert int(outcome.content.split()[0]) > 0, "the background child was started"
    assert wait_until(lambda: not processes_with("30.103"))


def test_bash_output_is_capped_head_and_tail(root: Path) -> None:
    runner = BashRunner(output_cap=1000)
    content = ok(runner.run(root, {"command": "seq 1 100000"}, threading.Event()))
    assert content.startswith("1\n2\n3\n")
    assert content.rstrip().endswith("99999\n100000")
    assert "bytes of output omitted" in content
    assert len(content) < 1300
    total = len("".join(f"{i}\n" for i in range(1, 100001)))
    assert f"{total} bytes in all" in content


def test_bash_environment_is_scrubbed(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "ANTHROPIC_API_KEY": "sk-ant-secret",
        "ANTHROPIC_AUTH_TOKEN": "auth-secret",
        "TELEGRAM_BOT_TOKEN": "123:tg-secret",
        "FOO_TOKEN": "foo-secret",
        "github_token": "gh-secret",
        "MY_SECRET_THING": "s-secret",
        "DB_PASSWORD": "pw-secret",
        "STRIPE_KEY": "key-secret",
        "CUSTOM_CREDENTIAL": "custom-secret",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HARMLESS_SETTING", "visible")
    runner = BashRunner(scrub_env=["CUSTOM_CREDENTIAL"])
    content = ok(runner.run(root, {"command": "env"}, threading.Event()))
    for name, value in secrets.items():
        assert name not in content
        assert value not in content
    # The sandbox's environment is built from nothing: not even harmless service variables reach it.
    assert "HARMLESS_SETTING" not in content
    assert f"PWD={root}" in content and "PATH=/usr/local/sbin:" in content
    assert is_secret_name("KEYBOARD_LAYOUT") is False
    assert is_secret_name("PATH") is False


@pytest.mark.parametrize(
    ("tool_input", "needle"),
    [
        ({}, "`command`"),
        ({"command": 5}, "`command`"),
        ({"command": "   "}, "must not be empty"),
        ({"command": "echo \x00"}, "NUL"),
    ],
)
def test_bash_bad_input(root: Path, bash: BashRunner, tool_input: dict[str, object], needle: str) -> None:
    assert needle in err(bash.run(root, tool_input, threading.Event()))


def test_bash_missing_cwd(root: Path, bash: BashRunner) -> None:
    assert "does not exist" in err(bash.run(root / "gone", {"command": "pwd"}, threading.Event()))


# -- toolbox -------------------------------------------------------------------


def test_toolbox_specs_and_names(root: Path) -> None:
    without = Toolbox(root, enable_bash=False, view_max_characters=5000)
    assert without.specs() == [
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool", "max_characters": 5000}
    ]
    assert without.names() == frozenset({"str_replace_based_edit_tool"})
    with_bash = Toolbox(root, enable_bash=True)
    assert {"type": "bash_20250124", "name": "bash"} in with_bash.specs()
    assert with_bash.names() == frozenset({"str_replace_based_edit_tool", "bash"})


def test_toolbox_runs_and_refuses(root: Path) -> None:
    box = Toolbox(root, enable_bash=False)
    cancel = threading.Event()
    outcome = box.run(
        "str_replace_based_edit_tool",
        {"command": "create", "path": "x.md", "file_text": "hi\n"},
        root,
        cancel,
    )
    assert not outcome.is_error and (root / "x.md").read_text() == "hi\n"
    assert "unknown tool `bash`" in err(box.run("bash", {"command": "id"}, root, cancel))
    assert "unknown tool `rm_rf`" in err(box.run("rm_rf", {}, root, cancel))
    assert err(box.run("str_replace_based_edit_tool", "view x.md", root, cancel))  # type: ignore[arg-type]
    assert box.jail.resolve(root, "x.md") == root / "x.md"
    enabled = Toolbox(root, enable_bash=True, bash_timeout_s=5)
    assert ok(enabled.run("bash", {"command": "cat x.md"}, root, cancel)).strip() == "hi"


def test_toolbox_describe(root: Path) -> None:
    box = Toolbox(root, enable_bash=True)
    editor = "str_replace_based_edit_tool"
    src = root / "src"
    assert box.describe(editor, {"command": "view", "path": "src/app.py"}, root) == "view src/app.py"
    assert box.describe(editor, {"command": "view", "path": str(src / "app.py")}, root) == "view src/app.py"
    # Outside the cwd: shown as written (tail kept if too long).
    outside_cwd = box.describe(editor, {"command": "create", "path": str(root / "notes.md")}, src)
    assert outside_cwd.startswith("create ") and outside_cwd.endswith("notes.md") and len(outside_cwd) <= 60
    assert (
        box.describe(editor, {"command": "str_replace", "path": "../app.py"}, src) == "str_replace ../app.py"
    )
    assert box.describe(editor, {"command": "view", "path": "."}, root) == "view ."
    assert box.describe(editor, {}, root) == "edit"
    assert box.describe("bash", {"command": "pytest -q"}, root) == "$ pytest -q"
    long = box.describe("bash", {"command": "python -c 'print(1)' " + "x" * 200}, root)
    assert len(long) == 60 and long.endswith("…")
    assert box.describe("bash", {"command": "cd a\nmake"}, root) == "$ cd a …"
    assert box.describe("bash", {"restart": True}, root) == "bash restart"
    deep = box.describe(editor, {"command": "view", "path": "a/" * 50 + "file.py"}, root)
    assert len(deep) <= 60 and deep.endswith("file.py")
    assert "\n" not in box.describe(editor, {"command": "view", "path": "a\nb"}, root)
    assert box.describe("mystery", {}, root) == "mystery"


# -- property: no model input makes the editor raise -----------------------------

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 5),
    st.sampled_from(["view", "create", "str_replace", "insert", "undo_edit", "a.txt", "..", "/", "d", ""]),
    st.text(max_size=12),
    st.lists(st.integers(-2, 4), max_size=3),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tool_input=st.dictionaries(
        st.sampled_from(
            ["command", "path", "view_range", "file_text", "old_str", "new_str", "insert_line", "insert_text"]
        ),
        _VALUES,
    )
)
def test_editor_never_raises(root: Path, tool_input: dict[str, object]) -> None:
    (root / "a.txt").write_text("alpha\nbeta\n")
    (root / "d").mkdir(exist_ok=True)
    outcome = TextEditor(Jail(root), max_characters=500).run(root, tool_input)
    assert isinstance(outcome, ToolOutcome)
    assert isinstance(outcome.content, str) and outcome.content
