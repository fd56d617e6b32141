"""The `vigil` command line as a user meets it: errors they can fix, and the systemd unit.

Each test runs the real command (`python -m vigil`) in a subprocess with a controlled environment:
HOME, the data directory and the work root live in the test's tmp_path. A mistake the user can fix
is exit code 2 and exactly one line on stderr, never a traceback. Proxy variables point at a closed
port so that nothing here can reach the internet, whatever the code under test does.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest

from tests.standins.messages_api import MessagesAPI
from vigil.records.schema import StoreMeta, encode
from vigil.store.store import open_store

pytestmark = pytest.mark.e2e  # runs vigil's own code as a subprocess

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60.0
_DEAD_PROXY = "http://127.0.0.1:9"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "VIGIL_DATA_DIR": str(tmp_path / "data"),
        "VIGIL_WORKDIR_ROOT": str(home),
        "PYTHONPATH": str(REPO),
        "HTTPS_PROXY": _DEAD_PROXY,
        "HTTP_PROXY": _DEAD_PROXY,
        "NO_PROXY": "127.0.0.1,localhost",
    }


def vigil(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigil", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=env["HOME"])


def one_line_error(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The single stderr line of a refused command (asserting that is all there is)."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.returncode == code, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("vigil: ")
    return lines[0]


_HAS_SERVICE = importlib.util.find_spec("vigil.adapters.telegram.service") is not None
_needs_service = pytest.mark.skipif(not _HAS_SERVICE, reason="vigil.adapters.telegram.service is not written yet; "
                                                             "`vigil run` imports it before anything else")
_run = pytest.param(("run",), "VIGIL_MAX_LIVE_SESSIONS", "0", "must be at least 1", id="run", marks=_needs_service)


# ----------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize(("command", "name", "value", "words"), [
    pytest.param(("chat",), "VIGIL_IDLE_EVICT", "5x", "not a duration", id="chat"),
    pytest.param(("sessions", "list"), "VIGIL_ALLOWED_USERS", "12,abc", "'abc' is not a numeric Telegram user id",
                 id="sessions"),
    _run,
])
def test_a_bad_setting_is_one_line_and_exit_2(env: dict[str, str], command: tuple[str, ...], name: str,
                                              value: str, words: str) -> None:
    env |= {name: value, "ANTHROPIC_API_KEY": "sk-test", "TELEGRAM_BOT_TOKEN": "123456:test-token"}
    line = one_line_error(vigil(env, *command))
    assert line.startswith(f"vigil: {name}={value!r}: "), line
    assert words in line


def test_a_data_dir_under_a_regular_file(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    env["VIGIL_DATA_DIR"] = str(blocker / "data")
    line = one_line_error(vigil(env, "sessions", "list"))
    assert "VIGIL_DATA_DIR=" in line
    assert "not writable" in line


@pytest.mark.parametrize("command", [("chat",), ("sessions", "list"), pytest.param(("run",), marks=_needs_service)])
@pytest.mark.parametrize("inside", ["store", "."])
def test_a_data_dir_inside_the_work_root(env: dict[str, str], tmp_path: Path, command: tuple[str, ...],
                                         inside: str) -> None:
    """The chats' tools work under the root: a store there could be read or truncated by them."""
    env |= {"ANTHROPIC_API_KEY": "sk-test", "TELEGRAM_BOT_TOKEN": "123456:test-token"}
    root = Path(env["VIGIL_WORKDIR_ROOT"]).resolve()
    env["VIGIL_DATA_DIR"] = str(root / inside)
    line = one_line_error(vigil(env, *command))
    data = (root / inside).resolve()
    assert line == (f"vigil: VIGIL_DATA_DIR={data} lies inside VIGIL_WORKDIR_ROOT={root}, where the chats' "
                    "tools work: put the data directory outside the work root")
    assert not (root / "store").exists(), "nothing was created before the refusal"


def test_a_data_dir_reaching_into_the_work_root_through_a_symlink(env: dict[str, str], tmp_path: Path) -> None:
    root = Path(env["VIGIL_WORKDIR_ROOT"]).resolve()
    (root / "inner").mkdir()
    (tmp_path / "looks-outside").symlink_to(root / "inner")
    env["VIGIL_DATA_DIR"] = str(tmp_path / "looks-outside" / "data")
    line = one_line_error(vigil(env, "sessions", "list"))
    assert f"VIGIL_DATA_DIR={root / 'inner' / 'data'} lies inside VIGIL_WORKDIR_ROOT={root}" in line


def test_an_unknown_config_key(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "vigil.toml"
    config.write_text('idle_evict = "1h"\ncolour = "blue"\n')
    env["VIGIL_CONFIG"] = str(config)
    line = one_line_error(vigil(env, "sessions", "list"))
    assert line == f"vigil: VIGIL_CONFIG={config}: unknown setting 'colour'"


def test_a_store_from_a_newer_vigil(env: dict[str, str]) -> None:
    data = Path(env["VIGIL_DATA_DIR"])
    open_store(data).close()
    raw = lmdb.open(str(data), max_dbs=16)
    try:
        with raw.begin(write=True) as txn:
            newer = encode(StoreMeta(created_at=1.0, schema=StoreMeta.CURRENT + 1))
            txn.put(b"store", newer, db=raw.open_db(b"meta", txn=txn))
    finally:
        raw.close()
    line = one_line_error(vigil(env, "sessions", "list"), code=1)
    assert "newer vigil" in line


def test_the_same_environment_without_the_mistake_works(env: dict[str, str]) -> None:
    done = vigil(env, "sessions", "list")
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "no stored sessions", "")


# ----------------------------------------------------------------------------- missing secrets, bad arguments


def test_chat_without_an_api_key(env: dict[str, str]) -> None:
    assert "ANTHROPIC_API_KEY" not in env and "ANTHROPIC_AUTH_TOKEN" not in env
    line = one_line_error(vigil(env, "chat", stdin="hello\n"))
    assert "set ANTHROPIC_API_KEY" in line


@_needs_service
def test_run_without_a_bot_token(env: dict[str, str]) -> None:
    env["ANTHROPIC_API_KEY"] = "sk-test"
    line = one_line_error(vigil(env, "run"))
    assert "TELEGRAM_BOT_TOKEN is not set" in line


@pytest.mark.parametrize("name", ["bad name!", "", "x" * 65, "../etc"])
def test_chat_with_a_bad_session_name(env: dict[str, str], name: str) -> None:
    env["ANTHROPIC_API_KEY"] = "sk-test"
    line = one_line_error(vigil(env, "chat", "--session", name))
    assert line.startswith(f"vigil: --session {name!r}: ")


# ----------------------------------------------------------------------------- the config file reaches the SDK


def test_chat_reaches_the_model_named_in_the_environment(env: dict[str, str]) -> None:
    with MessagesAPI(api_key="sk-test-key") as api:
        env |= {"ANTHROPIC_API_KEY": "sk-test-key", "ANTHROPIC_BASE_URL": api.base_url}
        done = vigil(env, "chat", "--session", "probe", stdin="hello there\n")
        assert done.returncode == 0, done.stderr
        assert "echo: hello there" in done.stdout
        assert len(api.requests) == 1


def test_chat_reaches_the_model_named_in_the_config_file(env: dict[str, str], tmp_path: Path) -> None:
    with MessagesAPI(api_key="sk-test-key") as api:
        config = tmp_path / "vigil.toml"
        config.write_text(f'anthropic_api_key = "sk-test-key"\nanthropic_base_url = "{api.base_url}"\n')
        env |= {"VIGIL_CONFIG": str(config), "VIGIL_MODEL_MAX_RETRIES": "0", "VIGIL_MODEL_TIMEOUT": "5s"}
        done = vigil(env, "chat", "--session", "probe", stdin="hello there\n")
        assert done.returncode == 0, done.stderr
        assert "echo: hello there" in done.stdout, done.stdout + done.stderr
        assert len(api.requests) == 1


# ----------------------------------------------------------------------------- the systemd unit


@pytest.fixture
def unit_text(env: dict[str, str]) -> str:
    done = vigil(env, "systemd-unit")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def test_systemd_unit_contents(unit_text: str) -> None:
    lines = unit_text.splitlines()
    for expected in ("Type=notify", "Restart=on-failure", "StateDirectory=vigil", "NoNewPrivileges=yes",
                     "ProtectSystem=strict", "PrivateTmp=yes"):
        assert expected in lines, expected
    for prefix in ("WatchdogSec=", "EnvironmentFile=", "ReadWritePaths=", "ExecStart="):
        assert any(line.startswith(prefix) and len(line) > len(prefix) for line in lines), prefix
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    assert exec_start.endswith(" run")
    assert exec_start.split("=", 1)[1].startswith("/"), "systemd wants an absolute path"
    assert "EnvironmentFile=/etc/vigil/vigil.env" in lines
    assert "ReadWritePaths=/srv/vigil" in lines
    # Agent Skills: root's, read-only to the service, not in /etc/vigil (the secrets' directory).
    assert "ConfigurationDirectory=vigil-skills" in lines and "Environment=VIGIL_SKILLS_DIR=/etc/vigil-skills" in lines
    assert [line for line in lines if line.startswith("[")] == ["[Unit]", "[Service]", "[Install]"]


def test_systemd_unit_lets_bwrap_build_the_bash_sandbox(unit_text: str) -> None:
    lines = unit_text.splitlines()
    namespaces = next(line for line in lines if line.startswith("RestrictNamespaces=")).split("=", 1)[1].split()
    assert {"user", "pid", "ipc", "uts", "mnt", "net"} <= set(namespaces)
    assert not {"cgroup", "time"} & set(namespaces), "only what bwrap needs"
    families = next(line for line in lines if line.startswith("RestrictAddressFamilies=")).split("=", 1)[1].split()
    assert "AF_NETLINK" in families, "bwrap --unshare-net sets up lo over rtnetlink"
    # Each of these hides part of /proc, and the kernel then refuses bwrap's fresh /proc in a user namespace.
    for option in ("ProtectKernelTunables=", "ProtectProc=", "ProcSubset=", "PrivateUsers=", "SystemCallFilter="):
        assert not any(line.startswith(option) for line in lines), option


def test_systemd_unit_options(env: dict[str, str]) -> None:
    done = vigil(env, "systemd-unit", "--user", "bot", "--env-file", "/etc/bot.env", "--workdir-root", "/srv/bot")
    lines = done.stdout.splitlines()
    assert "User=bot" in lines
    assert "EnvironmentFile=/etc/bot.env" in lines
    assert "ReadWritePaths=/srv/bot" in lines
    assert "Environment=VIGIL_WORKDIR_ROOT=/srv/bot" in lines


_SYNTAX_PROBLEMS = ("Unknown key", "Unknown section", "Invalid", "Failed to parse", "Missing '='")


def systemd_verify(unit: Path) -> str:
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=TIMEOUT)
    return done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_accepts_the_unit(unit_text: str, tmp_path: Path) -> None:
    unit = tmp_path / "vigil.service"
    unit.write_text(unit_text)
    report = systemd_verify(unit)
    # It may say the user or the binary does not exist on this machine; it must not fault the syntax.
    for problem in _SYNTAX_PROBLEMS:
        assert problem not in report, report
    # The check itself can fail: a broken copy of the same unit is faulted.
    broken = tmp_path / "broken.service"
    broken.write_text(unit_text.replace("Type=notify", "Type=notifyy").replace("PrivateTmp=", "PrivateTemp="))
    broken_report = systemd_verify(broken)
    assert "Failed to parse" in broken_report
    assert "Unknown key" in broken_report
