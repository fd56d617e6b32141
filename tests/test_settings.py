"""Settings (`vigil/config/settings.py`) and human durations (`vigil/durations.py`).

Every variable of the environment contract is read, defaulted and refused here; a refusal is a
`SettingsError` whose one-line message names the variable and says what is wrong with it.
"""

from __future__ import annotations

import math
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from vigil.config.settings import (
    DEFAULT_MODEL,
    DEFAULT_TELEGRAM_BASE_URL,
    Settings,
    SettingsError,
    ensure_data_dir,
    ensure_workdir_root,
    load_settings,
)
from vigil.durations import DurationError, format_duration, parse_duration


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home directory for the test, also set as the process's HOME (Path.home() reads it)."""
    path = (tmp_path / "home").resolve()
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


def load(home: Path, **variables: str) -> Settings:
    """Settings from an environment holding HOME and `variables` only."""
    return load_settings({"HOME": str(home), **variables})


def refusal(home: Path, **variables: str) -> str:
    """The message of the SettingsError the environment must cause."""
    with pytest.raises(SettingsError) as caught:
        load(home, **variables)
    message = str(caught.value)
    assert "\n" not in message, "a settings error is one line"
    return message


# ----------------------------------------------------------------------------- defaults


def test_defaults_of_an_empty_environment(home: Path) -> None:
    settings = load(home)
    assert settings.telegram_bot_token is None
    assert settings.telegram_base_url == DEFAULT_TELEGRAM_BASE_URL == "https://api.telegram.org/bot"
    assert settings.anthropic_api_key is None
    assert settings.model == DEFAULT_MODEL
    assert settings.data_dir == home / ".local" / "share" / "vigil"
    assert settings.workdir_root == home / ".local" / "share" / "vigil-work"
    assert not settings.allow_all_users
    assert settings.allowed_users == frozenset()
    assert settings.admin_users == frozenset()
    assert settings.idle_evict_s == 1800.0
    assert settings.max_live_sessions == 1000
    assert settings.max_concurrent_queries == 16
    assert settings.heartbeat_min_interval_s == 300.0
    assert settings.enable_bash is False
    assert settings.bash_network == "on"
    assert settings.secrets() == ()
    assert not settings.is_allowed(42)


def test_variables_outside_the_contract_are_ignored(home: Path) -> None:
    assert load(home, VIGIL_NO_SUCH_SETTING="x", PATH="/usr/bin") == load(home)


# ----------------------------------------------------------------------------- Telegram and the model


def test_telegram_bot_token(home: Path) -> None:
    settings = load(home, TELEGRAM_BOT_TOKEN=" 123456:ABC-def_ghi ")
    assert settings.telegram_bot_token == "123456:ABC-def_ghi"
    assert load(home, TELEGRAM_BOT_TOKEN="").telegram_bot_token is None


def test_secrets_are_the_token_and_the_api_key(home: Path) -> None:
    settings = load(home, TELEGRAM_BOT_TOKEN="123456:ABCDEF", ANTHROPIC_API_KEY="sk-ant-xyz123")
    assert set(settings.secrets()) == {"123456:ABCDEF", "sk-ant-xyz123"}


@pytest.mark.parametrize("url", ["http://127.0.0.1:8081/bot", "https://tg.example.org/bot"])
def test_telegram_base_url(home: Path, url: str) -> None:
    assert load(home, VIGIL_TELEGRAM_BASE_URL=url).telegram_base_url == url


def test_telegram_base_url_must_be_http(home: Path) -> None:
    message = refusal(home, VIGIL_TELEGRAM_BASE_URL="ftp://example.org/bot")
    assert message.startswith("VIGIL_TELEGRAM_BASE_URL=")
    assert "http" in message


@pytest.mark.parametrize(("base", "files"), [
    ("https://api.telegram.org/bot", "https://api.telegram.org/file/bot"),
    ("http://127.0.0.1:8081/bot/", "http://127.0.0.1:8081/file/bot"),
    ("http://127.0.0.1:8081/custom", "http://127.0.0.1:8081/custom/file/bot"),
])
def test_telegram_base_file_url_follows_the_base_url(home: Path, base: str, files: str) -> None:
    assert load(home, VIGIL_TELEGRAM_BASE_URL=base).telegram_base_file_url == files


def test_telegram_base_file_url_as_set(home: Path) -> None:
    settings = load(home, VIGIL_TELEGRAM_BASE_URL="http://a.example/bot",
                    VIGIL_TELEGRAM_BASE_FILE_URL="http://files.example/file/bot")
    assert settings.telegram_base_file_url == "http://files.example/file/bot"
    message = refusal(home, VIGIL_TELEGRAM_BASE_FILE_URL="/var/lib/telegram-bot-api")
    assert message.startswith("VIGIL_TELEGRAM_BASE_FILE_URL=")
    assert "http" in message


def test_whisper_model(home: Path) -> None:
    assert load(home).whisper_model == "base"
    assert load(home, VIGIL_WHISPER_MODEL="small").whisper_model == "small"
    assert refusal(home, VIGIL_WHISPER_MODEL=" ").startswith("VIGIL_WHISPER_MODEL=")


def test_model(home: Path) -> None:
    assert load(home, VIGIL_MODEL="claude-opus-5").model == "claude-opus-5"
    message = refusal(home, VIGIL_MODEL="  ")
    assert message.startswith("VIGIL_MODEL=")
    assert "empty" in message


# ----------------------------------------------------------------------------- directories


def test_data_dir_explicit(home: Path, tmp_path: Path) -> None:
    assert load(home, VIGIL_DATA_DIR=str(tmp_path / "d")).data_dir == tmp_path / "d"
    assert load(home, VIGIL_DATA_DIR="~/vigil-data").data_dir == home / "vigil-data"


def test_data_dir_default_prefers_state_directory(home: Path) -> None:
    settings = load(home, STATE_DIRECTORY="/var/lib/vigil:/var/lib/other", XDG_DATA_HOME="/xdg")
    assert settings.data_dir == Path("/var/lib/vigil")


def test_data_dir_default_then_xdg_data_home(home: Path) -> None:
    assert load(home, XDG_DATA_HOME="/xdg").data_dir == Path("/xdg/vigil")


def test_data_dir_default_finally_home(home: Path) -> None:
    assert load(home, STATE_DIRECTORY="", XDG_DATA_HOME="").data_dir == home / ".local/share/vigil"


def test_explicit_data_dir_wins_over_the_default_chain(home: Path, tmp_path: Path) -> None:
    settings = load(home, VIGIL_DATA_DIR=str(tmp_path / "d"), STATE_DIRECTORY="/var/lib/vigil")
    assert settings.data_dir == tmp_path / "d"


def test_home_defaults_follow_the_given_environment(home: Path, tmp_path: Path) -> None:
    other = (tmp_path / "other-home").resolve()
    other.mkdir()
    settings = load_settings({"HOME": str(other)})
    assert settings.workdir_root == other / ".local/share/vigil-work"
    assert settings.data_dir == other / ".local/share/vigil"


def test_workdir_root(home: Path, tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    assert load(home, VIGIL_WORKDIR_ROOT=str(root)).workdir_root == root.resolve()
    link = tmp_path / "link"
    link.symlink_to(root)
    assert load(home, VIGIL_WORKDIR_ROOT=str(link)).workdir_root == root.resolve()


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_workdir_root_must_be_an_existing_directory(home: Path, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "nope"
    if kind == "file":
        path.write_text("x")
    message = refusal(home, VIGIL_WORKDIR_ROOT=str(path))
    assert message.startswith(f"VIGIL_WORKDIR_ROOT={path}")
    assert "not an existing directory" in message


# The work root is where the chats' tools work: never the home directory, never around the store.


def test_the_default_work_root_is_vigils_own_not_home(home: Path) -> None:
    settings = load(home)
    root = settings.workdir_root
    assert root != home
    assert root == home / ".local" / "share" / "vigil-work"
    assert root not in (settings.data_dir, *settings.data_dir.parents), "the default root holds the store"
    assert settings.data_dir not in (root, *root.parents)
    assert not root.exists(), "reading the settings creates nothing"


@pytest.mark.parametrize("env", [
    {},
    {"XDG_DATA_HOME": "/xdg"},
    {"STATE_DIRECTORY": "/var/lib/vigil"},
    {"STATE_DIRECTORY": "/var/lib/vigil:/var/lib/vigil-work"},
], ids=["home", "xdg", "one-state-dir", "two-state-dirs"])
def test_no_default_root_contains_the_default_data_dir(home: Path, env: dict[str, str]) -> None:
    settings = load(home, **env)
    root, data = settings.workdir_root, settings.data_dir.resolve()
    assert data != root and root not in data.parents, (root, data)
    assert root != home


def test_default_work_root_beside_xdg_data_home(home: Path) -> None:
    assert load(home, XDG_DATA_HOME="/xdg").workdir_root == Path("/xdg/vigil-work")


def test_state_directory_with_two_paths_gives_data_dir_and_work_root(home: Path) -> None:
    settings = load(home, STATE_DIRECTORY="/var/lib/vigil:/var/lib/vigil-work", XDG_DATA_HOME="/xdg")
    assert settings.data_dir == Path("/var/lib/vigil")
    assert settings.workdir_root == Path("/var/lib/vigil-work")


def test_state_directory_with_one_path_gets_a_sibling_work_root(home: Path) -> None:
    settings = load(home, STATE_DIRECTORY="/var/lib/vigil")
    assert settings.data_dir == Path("/var/lib/vigil")
    assert settings.workdir_root == Path("/var/lib/vigil-work")


def test_an_explicit_root_wins_over_state_directory(home: Path, tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    settings = load(home, STATE_DIRECTORY="/var/lib/vigil:/var/lib/vigil-work", VIGIL_WORKDIR_ROOT=str(root))
    assert settings.workdir_root == root.resolve()


def test_ensure_workdir_root_creates_the_default_private(home: Path) -> None:
    settings = load(home)
    assert ensure_workdir_root(settings) == settings.workdir_root
    assert settings.workdir_root.is_dir()
    assert stat.S_IMODE(settings.workdir_root.stat().st_mode) == 0o700
    assert ensure_workdir_root(settings) == settings.workdir_root, "a second start finds it there"


@pytest.mark.parametrize("where", ["equal", "inside", "deep", "via-symlink", "home-root"])
def test_a_data_dir_inside_the_work_root_is_refused(home: Path, tmp_path: Path, where: str) -> None:
    root = (tmp_path / "work").resolve()
    root.mkdir()
    data = {"equal": root, "inside": root / "data", "deep": root / "a" / "b"}.get(where)
    variables = {"VIGIL_WORKDIR_ROOT": str(root)}
    if where == "via-symlink":
        (tmp_path / "elsewhere").symlink_to(root / "x", target_is_directory=True)
        (root / "x").mkdir()
        data = tmp_path / "elsewhere" / "data"
    if where == "home-root":  # the old defaults: root $HOME, the store in ~/.local/share/vigil
        variables = {"VIGIL_WORKDIR_ROOT": str(home)}
        root = home
    else:
        variables["VIGIL_DATA_DIR"] = str(data)
    message = refusal(home, **variables)
    assert message.startswith("VIGIL_DATA_DIR="), message
    assert f"VIGIL_WORKDIR_ROOT={root}" in message
    resolved_data = message.split(" ", 1)[0].removeprefix("VIGIL_DATA_DIR=")
    assert Path(resolved_data).is_relative_to(root), message


def test_a_data_dir_beside_the_root_with_a_common_prefix_is_fine(home: Path, tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    settings = load(home, VIGIL_WORKDIR_ROOT=str(root), VIGIL_DATA_DIR=str(tmp_path / "work-data"))
    assert settings.data_dir == tmp_path / "work-data"


def test_ensure_data_dir_creates_it(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "data"
    assert ensure_data_dir(load(home, VIGIL_DATA_DIR=str(target))) == target
    assert target.is_dir()
    assert list(target.iterdir()) == [], "the write probe is cleaned up"


def test_ensure_data_dir_refuses_a_path_under_a_regular_file(home: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = load(home, VIGIL_DATA_DIR=str(blocker / "data"))
    with pytest.raises(SettingsError) as caught:
        ensure_data_dir(settings)
    message = str(caught.value)
    assert message.startswith(f"VIGIL_DATA_DIR={blocker / 'data'}")
    assert "not writable" in message
    assert "\n" not in message


# ----------------------------------------------------------------------------- users


def test_allowed_users(home: Path) -> None:
    settings = load(home, VIGIL_ALLOWED_USERS=" 12, 34;56 ,")
    assert settings.allowed_users == frozenset({12, 34, 56})
    assert not settings.allow_all_users
    assert settings.is_allowed(34)
    assert not settings.is_allowed(78)


def test_allowed_users_star_allows_everyone(home: Path) -> None:
    settings = load(home, VIGIL_ALLOWED_USERS=" * ")
    assert settings.allow_all_users
    assert settings.is_allowed(123456789)
    assert not settings.is_admin(123456789)


def test_allowed_users_refuses_a_non_numeric_id(home: Path) -> None:
    message = refusal(home, VIGIL_ALLOWED_USERS="12,abc")
    assert message.startswith("VIGIL_ALLOWED_USERS='12,abc'")
    assert "'abc' is not a numeric Telegram user id" in message


def test_admin_users_are_admins_and_allowed(home: Path) -> None:
    settings = load(home, VIGIL_ADMIN_USERS="7,8", VIGIL_ALLOWED_USERS="9")
    assert settings.admin_users == frozenset({7, 8})
    assert settings.is_admin(7)
    assert not settings.is_admin(9)
    assert settings.is_allowed(8)
    assert settings.is_allowed(9)
    message = refusal(home, VIGIL_ADMIN_USERS="7,@bob")
    assert message.startswith("VIGIL_ADMIN_USERS=")
    assert "'@bob'" in message


# ----------------------------------------------------------------------------- numbers, durations, flags


def test_contract_numbers_and_durations(home: Path) -> None:
    settings = load(home, VIGIL_IDLE_EVICT="15m", VIGIL_MAX_LIVE_SESSIONS="50",
                    VIGIL_MAX_CONCURRENT_QUERIES="4", VIGIL_HEARTBEAT_MIN_INTERVAL="1h30m")
    assert settings.idle_evict_s == 900.0
    assert settings.max_live_sessions == 50
    assert settings.max_concurrent_queries == 4
    assert settings.heartbeat_min_interval_s == 5400.0


@pytest.mark.parametrize(("name", "value", "words"), [
    ("VIGIL_IDLE_EVICT", "5x", "not a duration"),
    ("VIGIL_IDLE_EVICT", "30", "not a duration"),
    ("VIGIL_IDLE_EVICT", "0s", "not a positive duration"),
    ("VIGIL_HEARTBEAT_MIN_INTERVAL", "soon", "not a duration"),
    ("VIGIL_MAX_LIVE_SESSIONS", "0", "must be at least 1"),
    ("VIGIL_MAX_LIVE_SESSIONS", "many", "not a whole number"),
    ("VIGIL_MAX_CONCURRENT_QUERIES", "-3", "must be at least 1"),
    ("VIGIL_MAX_CONCURRENT_QUERIES", "2.5", "not a whole number"),
    ("VIGIL_ENABLE_BASH", "maybe", "not a yes/no value"),
])
def test_bad_values_name_the_variable_and_the_problem(home: Path, name: str, value: str, words: str) -> None:
    message = refusal(home, **{name: value})
    assert message.startswith(f"{name}={value!r}: ")
    assert words in message


def test_a_long_bad_value_is_shortened_in_the_message(home: Path) -> None:
    message = refusal(home, VIGIL_IDLE_EVICT="x" * 200)
    assert message.startswith("VIGIL_IDLE_EVICT='" + "x" * 37 + "...'")
    assert len(message) < 160


@pytest.mark.parametrize("raw", ["1", "true", "YES", " on "])
def test_enable_bash_true(home: Path, raw: str) -> None:
    assert load(home, VIGIL_ENABLE_BASH=raw).enable_bash is True


@pytest.mark.parametrize("raw", ["", "0", "false", "No", "off"])
def test_enable_bash_false(home: Path, raw: str) -> None:
    assert load(home, VIGIL_ENABLE_BASH=raw).enable_bash is False


@pytest.mark.parametrize(("raw", "value"), [("on", "on"), (" OFF ", "off"), ("0", "off"), ("true", "on")])
def test_bash_network(home: Path, raw: str, value: str) -> None:
    assert load(home, VIGIL_BASH_NETWORK=raw).bash_network == value


@pytest.mark.parametrize("raw", ["", "maybe"])
def test_bash_network_must_be_on_or_off(home: Path, raw: str) -> None:
    assert refusal(home, VIGIL_BASH_NETWORK=raw) == f"VIGIL_BASH_NETWORK={raw!r}: must be on or off"


def test_bash_network_from_the_file(home: Path, tmp_path: Path) -> None:
    assert load(home, VIGIL_CONFIG=write_config(tmp_path, "bash_network = false\n")).bash_network == "off"
    assert load(home, VIGIL_CONFIG=write_config(tmp_path, 'vigil_bash_network = "off"\n'),
                VIGIL_BASH_NETWORK="on").bash_network == "on"


def test_heartbeat_default_interval_is_raised_to_the_minimum(home: Path) -> None:
    settings = load(home, VIGIL_HEARTBEAT_MIN_INTERVAL="2h", VIGIL_HEARTBEAT_DEFAULT_INTERVAL="30m")
    assert settings.heartbeat_default_interval_s == settings.heartbeat_min_interval_s == 7200.0
    assert load(home, VIGIL_HEARTBEAT_DEFAULT_INTERVAL="3h").heartbeat_default_interval_s == 10800.0


@pytest.mark.parametrize(("name", "raw", "field", "value"), [
    ("ANTHROPIC_API_KEY", "sk-ant-test", "anthropic_api_key", "sk-ant-test"),
    ("VIGIL_HEARTBEAT_HISTORY_TURNS", "0", "heartbeat_history_turns", 0),
    ("VIGIL_MESSAGES_PER_MINUTE", "5", "messages_per_minute", 5),
    ("VIGIL_DAILY_BUDGET_USD", "$2.50", "daily_budget_usd", 2.5),
    ("VIGIL_HISTORY_TOKENS", "1000", "history_tokens", 1000),
    ("VIGIL_MAX_OUTPUT_TOKENS", "256", "max_output_tokens", 256),
    ("VIGIL_MODEL_TIMEOUT", "45s", "model_timeout_s", 45.0),
    ("VIGIL_MODEL_MAX_RETRIES", "0", "model_max_retries", 0),
    ("VIGIL_MAX_TOOL_ROUNDS", "3", "max_tool_rounds", 3),
    ("VIGIL_BASH_TIMEOUT", "2m", "bash_timeout_s", 120.0),
    ("VIGIL_STORE_MAP_MB", "8", "store_map_mb", 8),
    ("VIGIL_MAX_UPLOAD_MB", "20", "max_upload_mb", 20),
    ("VIGIL_MAX_UPLOAD_MB", "50", "max_upload_mb", 50),
    ("VIGIL_LOG_LEVEL", "DEBUG", "log_level", "debug"),
    ("VIGIL_LOG_FORMAT", "json", "log_format", "json"),
    ("NOTIFY_SOCKET", "/run/systemd/notify", "notify_socket", "/run/systemd/notify"),
    ("WATCHDOG_USEC", "60000000", "watchdog_usec", 60_000_000),
])
def test_extra_variables(home: Path, name: str, raw: str, field: str, value: object) -> None:
    assert getattr(load(home, **{name: raw}), field) == value


@pytest.mark.parametrize(("name", "raw", "words"), [
    ("VIGIL_HEARTBEAT_HISTORY_TURNS", "-1", "must not be negative"),
    ("VIGIL_MESSAGES_PER_MINUTE", "0", "must be at least 1"),
    ("VIGIL_DAILY_BUDGET_USD", "five", "not an amount of dollars"),
    ("VIGIL_DAILY_BUDGET_USD", "-1", "must not be negative"),
    ("VIGIL_HISTORY_TOKENS", "lots", "not a whole number"),
    ("VIGIL_MODEL_TIMEOUT", "120", "not a duration"),
    ("VIGIL_MODEL_MAX_RETRIES", "-2", "must not be negative"),
    ("VIGIL_STORE_MAP_MB", "0", "must be at least 1"),
    ("VIGIL_MAX_UPLOAD_MB", "0", "must be at least 1"),
    ("VIGIL_MAX_UPLOAD_MB", "51", "must be at most 50"),
    ("VIGIL_MAX_UPLOAD_MB", "1.5", "not a whole number"),
    ("VIGIL_LOG_LEVEL", "loud", "must be one of debug, info, warning, error"),
    ("VIGIL_LOG_FORMAT", "xml", "must be one of auto, console, json"),
    ("WATCHDOG_USEC", "soon", "not a whole number"),
])
def test_extra_variables_refused(home: Path, name: str, raw: str, words: str) -> None:
    message = refusal(home, **{name: raw})
    assert message.startswith(f"{name}={raw!r}: ")
    assert words in message


# ----------------------------------------------------------------------------- the TOML file


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "vigil.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_config_file_both_spellings_lists_and_booleans(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, """
vigil_idle_evict = "10m"
max_live_sessions = 5
allowed_users = [1, 2]
vigil_admin_users = [3]
enable_bash = true
telegram_bot_token = "123456:from-file"
daily_budget_usd = 2.5
heartbeat_min_interval = "1h"
""")
    settings = load(home, VIGIL_CONFIG=config)
    assert settings.idle_evict_s == 600.0
    assert settings.max_live_sessions == 5
    assert settings.allowed_users == frozenset({1, 2})
    assert settings.admin_users == frozenset({3})
    assert settings.enable_bash is True
    assert settings.telegram_bot_token == "123456:from-file"
    assert settings.daily_budget_usd == 2.5
    assert settings.heartbeat_min_interval_s == 3600.0


def test_config_file_idle_evict_spelling(home: Path, tmp_path: Path) -> None:
    assert load(home, VIGIL_CONFIG=write_config(tmp_path, 'idle_evict = "2h"\n')).idle_evict_s == 7200.0


def test_config_file_false_and_star(home: Path, tmp_path: Path) -> None:
    settings = load(home, VIGIL_CONFIG=write_config(tmp_path, 'enable_bash = false\nallowed_users = "*"\n'))
    assert settings.enable_bash is False
    assert settings.allow_all_users


def test_environment_wins_over_the_file(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, 'idle_evict = "10m"\nmax_live_sessions = 5\nmodel = "from-file"\n')
    settings = load(home, VIGIL_CONFIG=config, VIGIL_IDLE_EVICT="1h", VIGIL_MODEL="from-env")
    assert settings.idle_evict_s == 3600.0
    assert settings.model == "from-env"
    assert settings.max_live_sessions == 5


def test_config_file_unknown_key_refused(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, 'idle_evict = "1h"\nidle_evicts = "1h"\n')
    message = refusal(home, VIGIL_CONFIG=config)
    assert message == f"VIGIL_CONFIG={config}: unknown setting 'idle_evicts'"


def test_config_file_table_refused(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, '[vigil]\nidle_evict = "1h"\n')
    assert "unknown setting 'vigil'" in refusal(home, VIGIL_CONFIG=config)


def test_config_file_bad_value_names_the_setting(home: Path, tmp_path: Path) -> None:
    message = refusal(home, VIGIL_CONFIG=write_config(tmp_path, "idle_evict = 30\n"))
    assert message.startswith("VIGIL_IDLE_EVICT='30': ")
    assert "not a duration" in message


def test_config_file_missing_or_invalid(home: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    assert refusal(home, VIGIL_CONFIG=missing) == f"VIGIL_CONFIG={missing}: no such file"
    broken = write_config(tmp_path, "idle_evict = \n")
    message = refusal(home, VIGIL_CONFIG=broken)
    assert message.startswith(f"VIGIL_CONFIG={broken}: not valid TOML")


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("15m", 900.0), ("2h", 7200.0), ("1d", 86400.0), ("1h30m", 5400.0),
    ("1w", 604800.0), ("250ms", 0.25), ("1.5h", 5400.0), (" 2H ", 7200.0), ("1h 30m", 5400.0),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "5x", "-1m", "", "   ", "m", "1h30", "0s", "0m0s", "1.m", "h1"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert "like 90s, 15m, 2h or 1d" in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("seconds", "text"), [
    (90, "1m30s"), (900, "15m"), (7200, "2h"), (86400, "1d"), (5400, "1h30m"), (0.25, "250ms"),
    (45, "45s"), (90061, "1d1h"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


_UNIT_PAIRS = [(86400, 3600), (86400, 60), (86400, 1), (3600, 60), (3600, 1), (60, 1)]


_BELOW_NEXT_UNIT = {86400: 400, 3600: 23, 60: 59, 1: 59}


@given(st.sampled_from(_UNIT_PAIRS), st.data())
def test_format_duration_round_trips(pair: tuple[int, int], data: st.DataObject) -> None:
    big, small = pair
    # Each count stays below the next unit up, so the value is made of two units at most.
    big_count = data.draw(st.integers(min_value=1, max_value=_BELOW_NEXT_UNIT[big]))
    small_count = data.draw(st.integers(min_value=0, max_value=_BELOW_NEXT_UNIT[small]))
    seconds = big_count * big + small_count * small
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert format_duration(parse_duration(text)) == text


@given(st.floats(min_value=1.0, max_value=3e8))  # durations stop at ten years
def test_format_duration_is_compact_and_never_overshoots(seconds: float) -> None:
    text = format_duration(seconds)
    assert len([c for c in text if c.isalpha()]) <= 2
    assert parse_duration(text) <= round(seconds)


@given(st.text())
def test_any_text_is_a_positive_duration_or_a_duration_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except DurationError:
        return
    assert isinstance(value, float)
    assert value > 0
    assert math.isfinite(value)


@hypothesis_settings(max_examples=50)
@given(st.from_regex(r"\A\s*(\d{1,4}(\.\d{1,2})?\s*(ms|s|m|h|d|w)\s*){1,4}\Z", fullmatch=True))
def test_well_formed_durations_parse(text: str) -> None:
    try:
        value = parse_duration(text)
    except DurationError as exc:
        # All parts zero, or more than the ten years a duration may span.
        assert "not a positive duration" in str(exc) or "longer than ten years" in str(exc)
        return
    assert value > 0


def test_an_absurdly_long_number_is_not_an_infinite_duration() -> None:
    text = "9" * 400 + "s"
    try:
        value = parse_duration(text)
    except DurationError:
        return
    assert math.isfinite(value)
    format_duration(value)  # raises OverflowError on inf (e.g. admin "/sessions cleanup 999…9s")
