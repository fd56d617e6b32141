"""The bash sandbox under attack: every escape is tried for real, through bwrap, as the tests' own user (root in CI).

The world: a fake API key and bot token in this process's environment, a data
directory holding a real LMDB store with a committed session, a home with
`.ssh/id_rsa`, and two chats' directories under a work root. Bash runs in chat
A. Nothing of the rest may reach its output, and nothing outside A may change.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.procs import processes_with
from vigil.records.schema import Input, SessionHeader, Target, Turn
from vigil.store.store import open_store
from vigil.tools import Toolbox, ToolOutcome
from vigil.tools.sandbox import MAX_PROCESSES, Sandbox, SandboxUnavailable, WorkspaceRefused, detect

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

REPO = Path(__file__).resolve().parents[1]
API_KEY = "sk-ant-secret-" + "k" * 24
BOT_TOKEN = "123456:tg-secret-" + "t" * 20
STORE_SECRET = "store-secret-in-a-turn"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY----- home-secret"
OTHER_CHAT = "other-chat-secret"
ESCAPED = "ESCAPED"


def _outside_tmp() -> Path | None:
    # The sandbox's /tmp is a private tmpfs, which alone would hide a world built under /tmp: build it
    # where a deployment keeps its files, so that what hides it is the sandbox not binding it.
    for base in (Path("/srv"), Path("/var/lib"), Path("/mnt")):
        if base.is_dir() and os.access(base, os.W_OK):
            return Path(tempfile.mkdtemp(prefix="vigil-sandbox-test-", dir=base))
    return None


@dataclass
class World:
    base: Path
    data: Path
    home: Path
    root: Path
    chat_a: Path
    chat_b: Path
    box: Toolbox

    def bash(self, command: str, cwd: Path | None = None, box: Toolbox | None = None) -> ToolOutcome:
        return (box or self.box).run("bash", {"command": command}, cwd or self.chat_a, threading.Event(),
                                     workspace=self.chat_a)


def make_world(base: Path, monkeypatch: pytest.MonkeyPatch, timeout_s: float = 20) -> World:
    data, home, root = base / "data", base / "home", base / "work"
    chat_a, chat_b = root / "chats" / "100", root / "chats" / "200"
    for path in (home / ".ssh", chat_a, chat_b):
        path.mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(SSH_KEY + "\n")
    (chat_b / "secret.txt").write_text(OTHER_CHAT + "\n")
    (chat_a / "mine.txt").write_text("chat A's own file\n")
    store = open_store(data)
    try:
        header = SessionHeader(key="tg:100", incarnation=1, created_at=1.0, target=Target(channel="telegram",
                               chat_id=100), cwd=str(chat_a), model="m", next_seq=1)
        turn = Turn(seq=0, status="done", started_at=1.0, inputs=(Input(text="hi", at=1.0, user_id=42),),
                    reply=STORE_SECRET)
        store.commit(header, turn=turn, create=True).result(timeout=20)
    finally:
        store.close()
    assert STORE_SECRET.encode() in (data / "data.mdb").read_bytes(), "the store really holds the secret"
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("HOME", str(home))
    box = Toolbox(root, enable_bash=True, bash_timeout_s=timeout_s, data_dir=data)
    assert box.bash_unavailable is None, box.bash_unavailable
    return World(base, data, home, root, chat_a, chat_b, box)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    base = _outside_tmp()
    try:
        yield make_world(base or tmp_path.resolve(), monkeypatch)
    finally:
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)


def text(outcome: ToolOutcome) -> str:
    return outcome.content


def assert_no_secret(output: str) -> None:
    for secret in (API_KEY, BOT_TOKEN, "tg-secret", STORE_SECRET, SSH_KEY, "home-secret", OTHER_CHAT, ESCAPED):
        assert secret not in output, f"{secret!r} reached the output:\n{output}"


# ----------------------------------------------------------------------------- secrets through /proc


def test_the_parents_and_inits_environment_hold_no_secret(world: World) -> None:
    # A host process started with the secrets, as the service is: its /proc entry must be out of reach.
    service = subprocess.Popen(["sleep", "60"], env={"ANTHROPIC_API_KEY": API_KEY, "TELEGRAM_BOT_TOKEN": BOT_TOKEN})
    try:
        output = text(world.bash("tr '\\0' '\\n' < /proc/$PPID/environ; echo ---; tr '\\0' '\\n' < /proc/1/environ; "
                                 "echo ---; cat /proc/*/environ | tr '\\0' '\\n'; echo ---; env; env | grep -i secret; "
                                 f"tr '\\0' '\\n' < /proc/{service.pid}/environ"))
    finally:
        service.kill()
        service.wait()
    assert_no_secret(output)
    assert "PATH=/usr/local/sbin" in output, "the reads really happened"
    assert "ANTHROPIC" not in output and "TELEGRAM" not in output


def test_proc_shows_only_the_sandboxs_processes(world: World) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        output = text(world.bash(f"ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '; echo; cat /proc/1/cmdline | "
                                 f"tr '\\0' ' '; echo; cat /proc/{os.getpid()}/cmdline /proc/{victim.pid}/cmdline"))
    finally:
        victim.kill()
        victim.wait()
    pids = [int(p) for p in output.splitlines()[0].split()]
    assert pids and max(pids) < 50, f"only the sandbox's few processes: {pids}"
    assert "pytest" not in output and "sleep" not in output.splitlines()[1]
    assert "bwrap" in output.splitlines()[1], "PID 1 is bwrap's init, nothing of the service"
    assert_no_secret(output)


# ----------------------------------------------------------------------------- the store, the home, other chats


def test_the_store_is_absent(world: World) -> None:
    output = text(world.bash(f"ls -la {world.data}; cat {world.data}/data.mdb; strings {world.data}/data.mdb; "
                             f"find / -name data.mdb 2>/dev/null; grep -rs {STORE_SECRET} / 2>/dev/null | head"))
    assert_no_secret(output)
    assert "No such file or directory" in output


def test_the_home_is_absent(world: World) -> None:
    output = text(world.bash(f"cat {world.home}/.ssh/id_rsa; ls -la {world.home}; cat ~/.ssh/id_rsa; "
                             "ls -la /root /home 2>&1"))
    assert_no_secret(output)
    assert f"{world.home}/.ssh/id_rsa: No such file or directory" in output


def test_other_chats_and_the_rest_of_the_root_are_absent(world: World) -> None:
    output = text(world.bash(f"cat {world.chat_b}/secret.txt; cat ../200/secret.txt; ls -la ..; ls -la {world.root}; "
                             f"ls {world.root}/chats; cat mine.txt"))
    assert_no_secret(output)
    assert "chat A's own file" in output
    listing = text(world.bash(f"ls {world.root}/chats"))
    assert listing.split() == ["100"], listing


# ----------------------------------------------------------------------------- writes outside the chat's directory


def test_writes_outside_the_workspace_fail(world: World) -> None:
    name = f"vigil-{uuid.uuid4().hex}"
    targets = [Path("/usr/bin") / name, Path("/etc") / name, world.chat_b / name, world.data / name,
               world.root / name, world.home / name, Path("/") / name]
    attempts = "; ".join(f"echo x > {t} && echo {ESCAPED} {t}" for t in targets)
    output = text(world.bash(f"{attempts}; echo x > ../200/{name} && echo {ESCAPED}; "
                             f"echo private > /tmp/{name} && cat /tmp/{name}; echo made > {name} && echo wrote"))
    assert_no_secret(output)
    for target in targets:
        assert not target.exists(), target
    assert not (world.chat_b / name).exists()
    assert "private" in output and "wrote" in output
    assert (world.chat_a / name).read_text() == "made\n", "the chat's own directory is writable"
    assert not (Path("/tmp") / name).exists(), "/tmp is private to the command"
    assert "No such file" in text(world.bash(f"cat /tmp/{name}")), "...and to each command"


# ----------------------------------------------------------------------------- root's powers


def test_root_powers_are_gone(world: World) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        attacks = [
            "mount -t proc proc /mnt", "mount -t tmpfs none /tmp", "mount -o remount,rw /",
            "umount /proc", "unshare -U true", "unshare -m true", "unshare -n true", "chroot / true",
            "nsenter -t 1 -m -p true", f"kill -9 {victim.pid}", f"kill -9 {os.getpid()}",
            # Real root in a user namespace still owns the global sysctls: /proc must be read-only.
            "cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness",
            "echo x > /proc/sys/kernel/hostname", "echo 1 > /proc/sysrq-trigger",
            "mknod /tmp/sda b 8 0", "ip link add dummy0 type dummy",
        ]
        # Each success would print its number (not the attack itself: that may hold a redirection).
        tries = [f"{attack} 2>/dev/null && echo {ESCAPED}-{i}" for i, attack in enumerate(attacks)]
        output = text(world.bash("; ".join(tries) + "; grep Cap /proc/self/status"))
        assert victim.poll() is None, "a host process was killed from the sandbox"
    finally:
        victim.kill()
        victim.wait()
    assert_no_secret(output)
    capabilities = dict(line.split(":\t") for line in output.splitlines() if line.startswith("Cap"))
    assert capabilities["CapEff"] == capabilities["CapPrm"] == capabilities["CapBnd"] == "0000000000000000"


# ----------------------------------------------------------------------------- the time limit


def test_sleepers_are_ended_by_the_time_limit_and_nothing_is_left(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(tmp_path.resolve(), monkeypatch, timeout_s=2)
    marker = f"1000.{uuid.uuid4().int % 10**9}"
    started = time.monotonic()
    outcome = world.bash(f"sleep {marker} & (sleep {marker} &) ; nohup sleep {marker} >/dev/null 2>&1 & "
                         f"setsid sleep {marker} & echo started; sleep {marker}")
    elapsed = time.monotonic() - started
    assert outcome.is_error and "timed out after 2 s" in outcome.content and "started" in outcome.content
    assert elapsed < 8
    assert processes_with(marker) == [], "a sleeper outlived the command"


AS_NOBODY = ("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups")
_UNPRIVILEGED_RUN = """
import json, sys, threading, time
from pathlib import Path
from vigil.tools.bash import BashRunner
runner = BashRunner(timeout_s=float(sys.argv[3]))
started = time.monotonic()
outcome = runner.run(Path(sys.argv[1]), {"command": sys.argv[2]}, threading.Event())
print(json.dumps({"content": outcome.content, "is_error": outcome.is_error, "elapsed": time.monotonic() - started}))
"""


def run_unprivileged(workspace: Path, command: str, timeout_s: float) -> dict[str, object]:
    """BashRunner in a process of its own as `nobody`: how the systemd unit runs vigil (User=vigil)."""
    done = subprocess.run([*AS_NOBODY, sys.executable, "-c", _UNPRIVILEGED_RUN, str(workspace), command,
                           str(timeout_s)], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": str(workspace), "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.fixture
def nobodys_workspace() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv(1) to run the sandbox as another, unprivileged user")
    workspace = Path(tempfile.mkdtemp(prefix="vigil-nobody-"))
    os.chown(workspace, 65534, 65534)
    try:
        # What the run below imports (vigil and its packages): a checkout or venv of root's alone won't do.
        probe = subprocess.run([*AS_NOBODY, sys.executable, "-c", "import vigil.tools.bash"],
                               env={"PYTHONPATH": str(REPO)}, capture_output=True, timeout=60)
        if probe.returncode != 0:
            pytest.skip("this Python is not usable by the unprivileged user nobody")
        yield workspace
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def test_a_fork_bomb_is_capped_and_ended_by_the_time_limit(nobodys_workspace: Path) -> None:
    # The kernel exempts real root from RLIMIT_NPROC, so the bomb runs as the service user would: as
    # root here it would take every PID of this machine before the time limit ends it.
    limit = run_unprivileged(nobodys_workspace, "ulimit -u", 10)
    assert str(limit["content"]).strip() == str(MAX_PROCESSES), "the process cap is in force before the bomb"
    marker = f"vigil-bomb-{uuid.uuid4().hex}"
    # The command itself waits (on a sleeper) while the bomb goes off, so only the time limit ends it.
    outcome = run_unprivileged(nobodys_workspace, f": {marker}; sleep 1000 & :(){{ :|:& }};:; wait", 2)
    assert outcome["is_error"] and "timed out after 2 s" in str(outcome["content"]), outcome
    assert float(str(outcome["elapsed"])) < 10
    assert "Resource temporarily unavailable" in str(outcome["content"]), "the bomb hit the process cap"
    assert processes_with(marker) == [], "a fork of the bomb outlived the command"


def test_the_classic_fork_bomb_goes_with_its_command(nobodys_workspace: Path) -> None:
    # `:(){ :|:& };:` returns at once and leaves its forks behind: they are stopped with the command
    # (or by the time limit, if the bomb keeps the command's shell retrying a fork).
    marker = f"vigil-bomb-{uuid.uuid4().hex}"
    outcome = run_unprivileged(nobodys_workspace, f": {marker}; :(){{ :|:& }};:", 2)
    content = str(outcome["content"])
    assert "background processes it left running were stopped" in content or "timed out after 2 s" in content
    assert float(str(outcome["elapsed"])) < 10
    assert processes_with(marker) == [], "a fork of the bomb outlived the command"


# ----------------------------------------------------------------------------- what must keep working


def test_pwd_arithmetic_and_files_in_the_chats_directory(world: World) -> None:
    assert text(world.bash("pwd")).strip() == str(world.chat_a)
    assert text(world.bash("echo hi-$((6*7))")).strip() == "hi-42"
    (world.chat_a / "sub").mkdir()
    assert text(world.bash("pwd; echo $HOME", cwd=world.chat_a / "sub")).split() == [str(world.chat_a / "sub"),
                                                                                   str(world.chat_a)]
    world.bash("mkdir -p out && echo built > out/result.txt")
    assert (world.chat_a / "out" / "result.txt").read_text() == "built\n"
    assert text(world.bash("python3 -c 'print(2**10)' && git --version >/dev/null && echo tools")).split() == [
        "1024", "tools"]


def test_a_cwd_outside_the_workspace_is_refused(world: World) -> None:
    outcome = world.box.run("bash", {"command": "pwd"}, world.chat_b, threading.Event(), workspace=world.chat_a)
    assert outcome.is_error and "not inside the workspace" in outcome.content


def test_the_data_dir_and_home_are_covered_inside_a_wide_workspace(tmp_path: Path) -> None:
    # An admin's workspace may be a whole tree; the data dir or home inside it must still not be handed over.
    base = tmp_path.resolve()
    (base / "data").mkdir()
    (base / "data" / "data.mdb").write_text(STORE_SECRET)
    (base / "home" / ".ssh").mkdir(parents=True)
    (base / "home" / ".ssh" / "id_rsa").write_text(SSH_KEY)
    sandbox = detect(data_dirs=[base / "data"], home=base / "home")
    box = Toolbox(base, enable_bash=True, sandbox=sandbox)
    output = box.run("bash", {"command": "ls -a data home; cat data/data.mdb home/.ssh/id_rsa; "
                                         f"touch data/x && echo {ESCAPED}"}, base, threading.Event()).content
    assert_no_secret(output)
    assert not (base / "data" / "x").exists()
    for refused in (base / "data", base / "data" / "sub", base / "home"):
        refused.mkdir(exist_ok=True)
        with pytest.raises(WorkspaceRefused):
            sandbox.argv(refused, refused, "true", 1, 2)
    with pytest.raises(WorkspaceRefused):
        sandbox.argv(Path("/"), Path("/"), "true", 1, 2)


# ----------------------------------------------------------------------------- the network


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_network_off_leaves_only_loopback_and_reaches_nothing(world: World, listener: int) -> None:
    connect = f"exec 3<>/dev/tcp/127.0.0.1/{listener} && echo CONNECTED"
    assert "CONNECTED" in text(world.bash(connect)), "with the network on, the host's listener is reachable"
    offline = Toolbox(world.root, enable_bash=True, bash_network=False, data_dir=world.data)
    assert offline.sandbox is not None and not offline.sandbox.network
    output = text(world.bash(f"{connect}; cat /proc/net/dev", box=offline))
    assert "CONNECTED" not in output
    interfaces = [line.split(":")[0].strip() for line in output.splitlines() if ":" in line and "|" not in line
                  and not line.startswith("bash")]
    assert interfaces == ["lo"], output


# ----------------------------------------------------------------------------- no sandbox, no bash


def fake_bwrap(directory: Path, message: str) -> Path:
    script = directory / "bwrap"
    script.write_text(f"#!/bin/sh\necho 'bwrap: {message}' >&2\nexit 1\n")
    script.chmod(0o755)
    return directory


def test_without_a_working_bwrap_bash_is_not_offered(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SandboxUnavailable, match="bwrap not found on PATH"):
        detect(search_path=str(empty))
    failing = fake_bwrap(tmp_path, "No permissions to create new namespace")
    with pytest.raises(SandboxUnavailable, match="bwrap failed: bwrap: No permissions to create new namespace"):
        detect(search_path=str(failing))
    unavailable = SandboxUnavailable("bwrap not found on PATH (install the bubblewrap package)")
    box = Toolbox(tmp_path, enable_bash=True, sandbox=unavailable)
    assert box.bash_unavailable == str(unavailable) and box.sandbox is None
    assert "bash" not in box.names() and all(spec.get("name") != "bash" for spec in box.specs())
    assert "unknown tool `bash`" in box.run("bash", {"command": "id"}, tmp_path, threading.Event()).content
    assert Toolbox(tmp_path, enable_bash=False).bash_unavailable is None, "not asked for: nothing to explain"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_a_proc_with_hidden_parts_fails_the_probe(tmp_path: Path) -> None:
    # What systemd's ProtectKernelTunables= does: a read-only overmount inside /proc. The kernel then refuses
    # the sandbox's fresh /proc, so the probe must fail (and say why) rather than offer a broken bash.
    code = ("from vigil.tools.sandbox import detect, SandboxUnavailable\n"
            "try:\n    detect()\nexcept SandboxUnavailable as exc:\n    print('unavailable:', exc)\n"
            "else:\n    print('available')\n")
    shell = (f"mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && "
             f"exec {sys.executable} -c \"$0\"")
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", shell, code],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("unavailable: bwrap failed:") and "proc" in done.stdout, done.stdout


def test_the_sandbox_is_built_from_the_probe_once(world: World) -> None:
    sandbox = world.box.sandbox
    assert isinstance(sandbox, Sandbox) and sandbox.network
    argv = sandbox.argv(world.chat_a, world.chat_a, "true", 3, 4)
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
                 "--new-session", "--clearenv"):
        assert flag in argv, flag
    assert "--unshare-net" not in argv
