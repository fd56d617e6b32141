"""Escape attempts against `vigil.tools.jail.Jail`, directly and through the text editor.

Every test builds a working root with a secret file *outside* it and checks
that the secret neither leaks into any tool outcome nor gets modified.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.tools.editor import TextEditor
from vigil.tools.jail import MAX_SYMLINK_HOPS, EscapeError, Jail, JailError

SECRET = "TOP-SECRET-7f3a9c-do-not-leak"


class World:
    """A root with some content, and an `outside` directory holding the secret."""

    def __init__(self, tmp_path: Path) -> None:
        base = tmp_path.resolve()
        self.root = base / "root"
        self.outside = base / "outside"
        self.root.mkdir()
        self.outside.mkdir()
        self.secret = self.outside / "secret.txt"
        self.secret.write_text(SECRET)
        # A decoy with the same relative layout as the root, for swap attacks.
        (self.outside / "sub").mkdir()
        (self.outside / "sub" / "inside.txt").write_text(SECRET)
        (self.outside / "inside.txt").write_text(SECRET)
        (self.root / "sub" / "deeper").mkdir(parents=True)
        (self.root / "sub" / "inside.txt").write_text("hello from inside\n")
        (self.root / "top.txt").write_text("top\n")
        self.jail = Jail(self.root)
        self.editor = TextEditor(self.jail, max_characters=4000)

    def outside_snapshot(self) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for dirpath, _dirs, files in os.walk(self.outside):
            for name in files:
                p = Path(dirpath) / name
                found[str(p.relative_to(self.outside))] = p.read_bytes()
        return found


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def read_fd(fd: int) -> str:
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


# -- `..` and absolute paths ---------------------------------------------


@pytest.mark.parametrize(
    ("cwd_rel", "path"),
    [
        (".", ".."),
        (".", "../outside/secret.txt"),
        (".", "sub/../../outside/secret.txt"),
        ("sub", "../../outside/secret.txt"),
        ("sub/deeper", "../../../etc/passwd"),
        ("sub/deeper", "../../.."),
        (".", "./././../root/top.txt"),  # comes back to the root by name, but went above it
    ],
)
def test_dotdot_escapes_are_refused(w: World, cwd_rel: str, path: str) -> None:
    with pytest.raises(EscapeError, match="escapes the working root"):
        w.jail.resolve(w.root / cwd_rel, path)


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "/", "/tmp", "{outside}/secret.txt", "{root}/../outside/secret.txt", "{root}other/x"],
)
def test_absolute_paths_outside_are_refused(w: World, path: str) -> None:
    path = path.format(root=w.root, outside=w.outside)
    with pytest.raises(EscapeError, match="escapes the working root"):
        w.jail.resolve(w.root, path)
    with pytest.raises(EscapeError):
        w.jail.open_file(w.root, path, os.O_RDONLY)


def test_paths_inside_resolve_to_real_paths(w: World) -> None:
    deeper = w.root / "sub" / "deeper"
    assert w.jail.resolve(w.root, "sub/inside.txt") == w.root / "sub" / "inside.txt"
    assert w.jail.resolve(deeper, "../inside.txt") == w.root / "sub" / "inside.txt"
    assert w.jail.resolve(deeper, "../..") == w.root
    assert w.jail.resolve(deeper, f"{w.root}/top.txt") == w.root / "top.txt"
    assert w.jail.resolve(w.root, "sub//./deeper/") == deeper
    # Need not exist yet (for `create`), but its directory must.
    assert w.jail.resolve(w.root, "sub/new.txt") == w.root / "sub" / "new.txt"
    with pytest.raises(JailError):
        w.jail.resolve(w.root, "missing/new.txt")
    assert read_fd(w.jail.open_file(deeper, "../inside.txt", os.O_RDONLY)) == "hello from inside\n"


def test_relative_and_contains(w: World) -> None:
    assert w.jail.relative(w.root) == "."
    assert w.jail.relative(w.root / "sub" / "inside.txt") == "sub/inside.txt"
    assert w.jail.relative(w.secret) == str(w.secret)
    assert w.jail.contains(w.root / "sub")
    assert not w.jail.contains(w.secret)
    assert not w.jail.contains(w.root / ".." / "outside")
    assert not w.jail.contains(Path(f"{w.root}other"))


def test_working_directory_outside_root_is_refused(w: World) -> None:
    with pytest.raises(EscapeError):
        w.jail.resolve(w.outside, "secret.txt")


# -- symlinks --------------------------------------------------------------


def test_symlink_to_outside_file_is_refused(w: World) -> None:
    (w.root / "leak").symlink_to(w.secret)
    with pytest.raises(EscapeError, match="escapes the working root"):
        w.jail.resolve(w.root, "leak")
    with pytest.raises(EscapeError):
        w.jail.open_file(w.root, "leak", os.O_RDONLY)


def test_symlink_to_outside_directory_is_refused(w: World) -> None:
    (w.root / "out").symlink_to(w.outside)
    (w.root / "sub" / "up").symlink_to("../../outside")  # relative target
    for path in ("out", "out/secret.txt", "sub/up/secret.txt", "sub/up"):
        with pytest.raises(EscapeError):
            w.jail.resolve(w.root, path)
    with pytest.raises(EscapeError):
        w.jail.open_dir_fd(w.root, "out")
    with pytest.raises(EscapeError):
        w.jail.open_file(w.root, "out/new.txt", os.O_WRONLY | os.O_CREAT, create_parents=True)
    assert not (w.outside / "new.txt").exists()


def test_symlinks_inside_the_root_are_followed(w: World) -> None:
    (w.root / "alias").symlink_to("sub/inside.txt")
    (w.root / "abs_dir").symlink_to(w.root / "sub")  # absolute, but inside
    (w.root / "sub" / "deeper" / "back").symlink_to("../inside.txt")
    (w.root / "chain1").symlink_to("chain2")
    (w.root / "chain2").symlink_to("alias")
    (w.root / "deep_alias").symlink_to("sub/deeper")
    inside = w.root / "sub" / "inside.txt"
    assert w.jail.resolve(w.root, "alias") == inside
    assert w.jail.resolve(w.root, "abs_dir/inside.txt") == inside
    assert w.jail.resolve(w.root, "sub/deeper/back") == inside
    assert w.jail.resolve(w.root, "chain1") == inside
    # `..` after a symlinked directory climbs from its target, as POSIX says.
    assert w.jail.resolve(w.root, "deep_alias/..") == w.root / "sub"
    assert read_fd(w.jail.open_file(w.root, "chain1", os.O_RDONLY)) == "hello from inside\n"
    fd = w.jail.open_dir_fd(w.root, "abs_dir")
    try:
        assert "inside.txt" in os.listdir(fd)
    finally:
        os.close(fd)


def test_dangling_symlink_inside_is_created_through(w: World) -> None:
    (w.root / "pending").symlink_to("sub/created.txt")
    fd = w.jail.open_file(w.root, "pending", os.O_WRONLY | os.O_CREAT)
    os.close(fd)
    assert (w.root / "sub" / "created.txt").is_file()


def test_dangling_symlink_to_outside_is_not_created(w: World) -> None:
    (w.root / "dangling").symlink_to(w.outside / "planted.txt")
    outcome = w.editor.run(w.root, {"command": "create", "path": "dangling", "file_text": "x"})
    assert outcome.is_error
    assert "escapes the working root" in outcome.content
    assert not (w.outside / "planted.txt").exists()


@pytest.mark.parametrize("layout", ["self", "pair", "dir"])
def test_symlink_loops_are_refused(w: World, layout: str) -> None:
    if layout == "self":
        (w.root / "loop").symlink_to("loop")
        path = "loop"
    elif layout == "pair":
        (w.root / "loop_a").symlink_to("loop_b")
        (w.root / "loop_b").symlink_to("loop_a")
        path = "loop_a"
    else:
        (w.root / "sub" / "again").symlink_to(".")  # sub/again/again/... is legitimate but unbounded
        path = "sub/" + "again/" * (MAX_SYMLINK_HOPS + 1) + "inside.txt"
    with pytest.raises(JailError, match="too many levels of symbolic links"):
        w.jail.resolve(w.root, path)


# -- races: something is swapped after we looked --------------------------


def test_file_swapped_for_symlink_after_resolve(w: World) -> None:
    target = w.root / "swap.txt"
    target.write_text("harmless\n")
    assert w.jail.resolve(w.root, "swap.txt") == target
    target.unlink()
    target.symlink_to(w.secret)  # the swap, after the check
    with pytest.raises(EscapeError):
        w.jail.open_file(w.root, "swap.txt", os.O_RDONLY)
    outcome = w.editor.run(w.root, {"command": "view", "path": "swap.txt"})
    assert outcome.is_error and SECRET not in outcome.content


def test_directory_swapped_for_symlink_after_resolve(w: World) -> None:
    assert w.jail.resolve(w.root, "sub/inside.txt") == w.root / "sub" / "inside.txt"
    (w.root / "sub").rename(w.root / "sub_moved")
    (w.root / "sub").symlink_to(w.outside / "sub")
    with pytest.raises(EscapeError):
        w.jail.open_file(w.root, "sub/inside.txt", os.O_RDONLY)
    outcome = w.editor.run(w.root, {"command": "view", "path": "sub/inside.txt"})
    assert outcome.is_error and SECRET not in outcome.content


def test_held_directory_fd_is_immune_to_a_later_swap(w: World) -> None:
    fd = w.jail.open_dir_fd(w.root, "sub")
    try:
        (w.root / "sub").rename(w.root / "sub_moved")
        (w.root / "sub").symlink_to(w.outside / "sub")
        # Lookups relative to the descriptor stay in the directory we vetted.
        inner = os.open("inside.txt", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        assert read_fd(inner) == "hello from inside\n"
    finally:
        os.close(fd)


@pytest.fixture
def swap_on_open(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[str, Callable[[], None]], list[bool]]]:
    """Run `action` inside the jail's own `os.open`, just before it opens `name`.

    This reproduces the worst-timed race deterministically: the walk has
    already vetted the path, and the swap lands before the kernel opens it.
    """
    real_open = os.open

    def arm(name: str, action: Callable[[], None]) -> list[bool]:
        fired: list[bool] = []

        def patched(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
            if path == name and dir_fd is not None and not fired:
                fired.append(True)
                action()
            return real_open(path, flags, mode, dir_fd=dir_fd)

        monkeypatch.setattr(os, "open", patched)  # the jail calls os.open by attribute
        return fired

    yield arm


def test_file_swapped_at_the_last_instant(
    w: World, swap_on_open: Callable[[str, Callable[[], None]], list[bool]]
) -> None:
    target = w.root / "race.txt"
    target.write_text("harmless\n")

    def swap() -> None:
        target.unlink()
        target.symlink_to(w.secret)

    fired = swap_on_open("race.txt", swap)
    with pytest.raises(EscapeError):
        w.jail.open_file(w.root, "race.txt", os.O_RDONLY)
    assert fired == [True]


def test_directory_component_swapped_mid_walk(
    w: World, swap_on_open: Callable[[str, Callable[[], None]], list[bool]]
) -> None:
    def swap() -> None:
        (w.root / "sub").rename(w.root / "sub_moved")
        (w.root / "sub").symlink_to(w.outside / "sub")

    fired = swap_on_open("sub", swap)
    outcome = w.editor.run(w.root, {"command": "view", "path": "sub/inside.txt"})
    assert fired == [True]
    assert outcome.is_error and "escapes the working root" in outcome.content
    assert SECRET not in outcome.content


def test_file_swapped_for_fifo_at_the_last_instant(
    w: World, swap_on_open: Callable[[str, Callable[[], None]], list[bool]]
) -> None:
    target = w.root / "soon_fifo"
    target.write_text("harmless\n")

    def swap() -> None:
        target.unlink()
        os.mkfifo(target)

    fired = swap_on_open("soon_fifo", swap)
    with pytest.raises(JailError, match="FIFO"):
        w.jail.open_file(w.root, "soon_fifo", os.O_RDONLY)  # must not block
    assert fired == [True]


# -- special files -----------------------------------------------------------


@pytest.mark.timeout(10)
def test_fifo_is_refused_without_blocking(w: World) -> None:
    os.mkfifo(w.root / "pipe")
    for flags in (os.O_RDONLY, os.O_RDWR, os.O_WRONLY):
        with pytest.raises(JailError, match="FIFO"):
            w.jail.open_file(w.root, "pipe", flags)
    outcome = w.editor.run(w.root, {"command": "view", "path": "pipe"})
    assert outcome.is_error and "FIFO" in outcome.content


def test_socket_is_refused(w: World) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(w.root / "sock"))
        with pytest.raises(JailError, match="socket"):
            w.jail.open_file(w.root, "sock", os.O_RDONLY)
    finally:
        sock.close()


def test_device_file_is_refused(w: World) -> None:
    try:
        os.mknod(w.root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("cannot create device nodes here")
    with pytest.raises(JailError, match="device"):
        w.jail.open_file(w.root, "null", os.O_RDONLY)


# -- bad text ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["a\x00b", "\x00", "sub/\x00/../..", "\ud800", "sub/\udfff.txt"])
def test_unencodable_paths_are_jail_errors(w: World, path: str) -> None:
    with pytest.raises(JailError):
        w.jail.resolve(w.root, path)
    outcome = w.editor.run(w.root, {"command": "view", "path": path})
    assert outcome.is_error


# -- no attack leaks or writes through the editor -------------------------------


ATTACK_PATHS = [
    "..",
    "../outside/secret.txt",
    "../../../../../../etc/passwd",
    "{outside}/secret.txt",
    "{root}/../outside/secret.txt",
    "leak",
    "out/secret.txt",
    "sub/up/secret.txt",
    "loop_a",
    "out",
]


def _plant_links(w: World) -> None:
    (w.root / "leak").symlink_to(w.secret)
    (w.root / "out").symlink_to(w.outside)
    (w.root / "sub" / "up").symlink_to("../../outside")
    (w.root / "loop_a").symlink_to("loop_b")
    (w.root / "loop_b").symlink_to("loop_a")


@pytest.mark.parametrize("raw_path", ATTACK_PATHS)
def test_editor_never_leaks_or_writes_outside(w: World, raw_path: str) -> None:
    _plant_links(w)
    before = w.outside_snapshot()
    path = raw_path.format(root=w.root, outside=w.outside)
    calls: list[dict[str, object]] = [
        {"command": "view", "path": path},
        {"command": "view", "path": path, "view_range": [1, -1]},
        {"command": "str_replace", "path": path, "old_str": "TOP", "new_str": "PWNED"},
        {"command": "insert", "path": path, "insert_line": 0, "insert_text": "PWNED\n"},
        {"command": "create", "path": path, "file_text": "PWNED"},
        {"command": "create", "path": f"{path}/planted.txt", "file_text": "PWNED"},
    ]
    for call in calls:
        outcome = w.editor.run(w.root, call)
        assert outcome.is_error, (call, outcome)
        assert SECRET not in outcome.content
    assert w.outside_snapshot() == before


# -- property: resolve never yields a path outside, never raises anything else --

_PIECES = st.one_of(
    st.sampled_from(["..", ".", "", "sub", "deeper", "inside.txt", "leak", "out", "loop_a", "alias", "up"]),
    st.text(max_size=6),
    st.text(alphabet=st.sampled_from(["\x00", "/", ".", "é", "\u202e", "\ud800"]), max_size=4),
)


@pytest.fixture
def linked_world(w: World) -> World:
    _plant_links(w)
    (w.root / "alias").symlink_to("sub/inside.txt")
    return w


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pieces=st.lists(_PIECES, max_size=8),
    absolute=st.sampled_from(["relative", "root", "slash", "outside"]),
    cwd_rel=st.sampled_from([".", "sub", "sub/deeper"]),
)
def test_resolve_stays_inside_or_raises_jail_error(
    linked_world: World, pieces: list[str], absolute: str, cwd_rel: str
) -> None:
    w = linked_world
    path = "/".join(pieces)
    if absolute == "root":
        path = f"{w.root}/{path}"
    elif absolute == "slash":
        path = "/" + path
    elif absolute == "outside":
        path = f"{w.outside}/{path}"
    try:
        resolved = w.jail.resolve(w.root / cwd_rel, path)
    except JailError:
        return
    assert w.jail.contains(resolved)
    # Whatever exists of it, really is inside (no symlink on it leads out).
    existing = resolved
    while not os.path.lexists(existing):
        existing = existing.parent
    real = Path(os.path.realpath(existing))
    assert real == w.root or w.root in real.parents
