"""The disk in view, end to end: `vigil run` tells its admins when free space runs short or the store cannot
grow, once a day, not again after a restart; `/status` shows admins the sizes and the room left.

Two real conditions: a threshold of 100 % (`VIGIL_DISK_WARN_PERCENT`), under which every real disk is
short, works anywhere; and a real full disk: vigil runs in a user and mount namespace of its own
(`unshare -rm`, unprivileged where user namespaces are allowed, as for the bash sandbox) with its data
directory on a 40 MB tmpfs, which the test fills from inside that namespace until writes fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.procs import LineReader, VigilProcess
from tests.rig import ADMIN_ID, Rig
from tests.standins.bot_api import Message, SentMessage
from tests.standins.images import make_jpeg

pytestmark = pytest.mark.e2e

WAIT = 30.0
LOW = "⚠️ Disk space is low"
CANNOT_GROW = "⚠️ The store cannot grow"


def told(rig: Rig, words: str) -> list[SentMessage]:
    return [m for m in rig.bot.bot_messages(ADMIN_ID) if words in m.text]


def test_admins_are_told_of_low_space_once_and_not_again_after_a_restart(fresh: Callable[..., Rig]) -> None:
    rig = fresh(VIGIL_DISK_WARN_PERCENT="100")  # every real disk has less than 100 % free
    [warning] = rig.bot.wait_for(lambda: told(rig, LOW), WAIT, "the admin told")
    assert "under the 100 % I warn at" in warning.text and "The store takes" in warning.text
    assert "free of" in warning.text and str(Path(rig.env["VIGIL_DATA_DIR"])) in warning.text
    ann = rig.person("Ann")
    assert not [m for m in rig.bot.bot_messages(ann.id) if "Disk" in m.text], "only admins are told"

    status = rig.ask(ADMIN_ID, rig.admin, "/status", "📊", timeout=WAIT)
    assert "Disk: store " in status.text and " · media 0 B · " in status.text and "free of" in status.text
    theirs = rig.ask(ann.id, ann, "/status", "📊", timeout=WAIT)
    assert "Disk:" not in theirs.text, "the machine's disk is for admins"

    rig.stop()
    restarted = rig.start()
    restarted.err.wait_for(lambda text: '"disk.already_told"' in text, WAIT, "the check after the restart")
    rig.ask(ADMIN_ID, rig.admin, "/status", "📊", timeout=WAIT)
    assert len(told(rig, LOW)) == 1, "told again after a restart the same day"


# ------------------------------------------------------------------ a real full disk


WRAPPER = r"""
set -e
mount -t tmpfs -o size=40m,mode=0700 tmpfs "$VIGIL_DATA_DIR"
"$VIGIL_PYTHON" -m vigil run < /dev/null &
vigil=$!
while read -r command; do
  case "$command" in
    fill) dd if=/dev/zero of="$VIGIL_DATA_DIR/ballast" bs=64k 2>/dev/null || true; echo filled ;;
    free-and-restart)
      kill -9 "$vigil"; wait "$vigil" || true; rm -f "$VIGIL_DATA_DIR/ballast"
      "$VIGIL_PYTHON" -m vigil run < /dev/null &
      vigil=$!; echo restarted ;;
  esac
done
"""


def namespaces_work(tmp: Path) -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, "-rm", "--pid", "--fork", "sh", "-c", f"mount -t tmpfs tmpfs {tmp}"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


class InNamespace(VigilProcess):
    """`vigil run` with its data directory on a small tmpfs of its own; stdin takes `fill`. Killing it (the
    namespace's first process) ends everything inside."""

    def __init__(self, env: dict[str, str]) -> None:
        Path(env["VIGIL_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["unshare", "-rm", "--pid", "--fork", "--kill-child", "sh", "-c", WRAPPER],
            env={**env, "VIGIL_PYTHON": sys.executable}, text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.process.stdout is not None and self.process.stderr is not None
        self.out = LineReader(self.process.stdout)
        self.err = LineReader(self.process.stderr)


def test_a_full_disk_is_told_to_the_admins_and_so_is_a_store_that_cannot_grow(
        fresh: Callable[..., Rig], tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    if not namespaces_work(probe):
        pytest.skip("no user and mount namespaces here (unshare -rm) to mount a small tmpfs in")
    rig = fresh(start=False)
    vigil = rig.vigil = InNamespace(rig.env)
    try:
        vigil.err.wait_for(lambda text: '"service.ready"' in text, WAIT, "service.ready")
        ann = rig.person("Ann")
        rig.ask(ann.id, ann, "hello", "echo: hello", timeout=WAIT)
        assert not told(rig, "⚠️"), "40 MB with room to spare: nothing to tell"

        vigil.send("fill")
        vigil.out.wait_for(lambda text: "filled" in text, WAIT, "the tmpfs filled")
        photo = rig.bot.send_photo(ann.id, ann.id, make_jpeg(640, 480), caption="keep this")
        rig.answer(ann.id, photo, "couldn't save your file", timeout=WAIT)  # the media store found no room
        [low] = rig.bot.wait_for(lambda: told(rig, LOW), WAIT, "the admin told of the full disk")
        assert "0 B free of 41.9 MB (0 %)" in low.text, low.text

        # Long turns need new pages at the end of the store's file: the store cannot grow any more.
        for number in range(40):
            if told(rig, CANNOT_GROW):
                break
            sent = rig.say(ann.id, ann, f"note {number}: " + "a long line of notes " * 180)

            def answered(sent: Message = sent) -> bool:
                return bool(told(rig, CANNOT_GROW) or rig.replies(ann.id, sent))

            rig.bot.wait_for(answered, WAIT, "a reply, or the admin told")
        [stuck] = rig.bot.wait_for(lambda: told(rig, CANNOT_GROW), WAIT, "the admin told the store cannot grow")
        assert "its disk is full" in stuck.text and "0 B free" in stuck.text, stuck.text
        assert len(told(rig, LOW)) == 1, "each cause once a day"

        # A store that cannot save any more: a file sent now is not taken, and its sender hears so, once.
        late = rig.bot.send_photo(ann.id, ann.id, make_jpeg(320, 240), caption="sent while the disk was full")
        rig.answer(ann.id, late, "couldn't save your file", timeout=WAIT)
        # Room again, and a restart (systemd's, when the watchdog misses the stopped store): nothing was lost.
        vigil.send("free-and-restart")
        vigil.out.wait_for(lambda text: "restarted" in text, WAIT, "vigil restarted with room")
        request = rig.bot.wait_for(lambda: next(iter(rig.requests_with("sent while the disk was full")), None),
                                   WAIT, "the file sent while the disk was full, taken in after the restart")
        assert request.media(current_turn=True), "the photo reached the model with its caption"
        assert sum("couldn't save your file" in m.text for m in rig.replies(ann.id, late)) == 1, "told once"
    finally:
        vigil.kill9()
        rig.vigil = None
