"""Settings: the environment contract, an optional TOML file, one frozen Struct.

Every setting is an environment variable; `VIGIL_CONFIG` may name a TOML file
holding the same settings in lower case (with or without the `vigil_` prefix).
The environment wins over the file. A bad value raises `SettingsError` whose
message names the variable and what is wrong, so the command line can print
one line and exit 2.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from vigil.config import parsing as parse
from vigil.config import webhook
from vigil.config.parsing import MAX_UPLOAD_MB as MAX_UPLOAD_MB
from vigil.config.parsing import WebTool as WebTool
from vigil.errors import SettingsError as SettingsError  # its old home: re-exported
from vigil.mcp.names import parse_server_names

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_TELEGRAM_BASE_URL = "https://api.telegram.org/bot"
# faster-whisper's "base": on a small server's CPU (int8) it transcribes a minute of speech in seconds
# and is a ~150 MB download; "small" is better in languages other than English but three times the
# size and time. An operator who wants that names it.
DEFAULT_WHISPER_MODEL = "base"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything vigil reads from its environment, validated and typed."""

    telegram_bot_token: str | None = None
    telegram_base_url: str = DEFAULT_TELEGRAM_BASE_URL
    telegram_base_file_url_set: str | None = None  # VIGIL_TELEGRAM_BASE_FILE_URL as given; see the property
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    model: str = DEFAULT_MODEL
    data_dir: Path
    allow_all_users: bool = False
    allowed_users: frozenset[int] = frozenset()
    admin_users: frozenset[int] = frozenset()
    workdir_root: Path
    idle_evict_s: float = 1800.0
    max_live_sessions: int = 1000
    max_concurrent_queries: int = 16
    heartbeat_min_interval_s: float = 300.0
    heartbeat_default_interval_s: float = 1800.0
    heartbeat_history_turns: int = 12
    enable_bash: bool = False
    bash_network: Literal["on", "off"] = "on"
    # Beyond the contract: limits and knobs a production service needs.
    messages_per_minute: int = 20
    daily_budget_usd: float = 5.0
    history_tokens: int = 60_000
    max_output_tokens: int = 4096
    model_timeout_s: float = 120.0
    model_max_retries: int = 2
    max_tool_rounds: int = 20
    bash_timeout_s: float = 120.0
    store_map_mb: int = 64
    max_upload_mb: int = MAX_UPLOAD_MB
    log_level: str = "info"
    log_format: str = "auto"
    notify_socket: str | None = None
    watchdog_usec: int = 0
    whisper_model: str = DEFAULT_WHISPER_MODEL
    metrics_listen: str | None = None  # "host:port" of the Prometheus endpoint (vigil/telemetry/metrics.py); None: off
    retention_s: float = 0.0  # VIGIL_RETENTION: delete what is older (vigil/ops/retention.py); 0 is off
    web: tuple[WebTool, ...] = ("search", "fetch")  # Anthropic's server web tools offered; () is off
    web_max_uses: int = 5  # searches (and, apart, fetches) the model may make per model call
    tool_mode: Literal["ask", "auto", "readonly"] = "ask"  # of sessions that did not choose one (/mode)
    approval_timeout_s: float = 600.0  # an approval prompt unanswered this long counts as Deny
    webhook_url: str | None = None  # set: webhook mode (vigil/config/webhook.py), else polling
    webhook_secret: str | None = None  # None: generated and kept in the data directory
    webhook_listen: tuple[str, int] = webhook.DEFAULT_LISTEN
    heartbeat_idle_pause_s: float = 7 * 86400.0  # 0: never paused (actors/timing/idle_pause.py)
    max_schedules: int = 20  # per chat (actors/timing/schedules.py)
    disk_warn_percent: float = parse.DISK_WARN_PERCENT  # admins are told when free space falls under it
    # Who may change a group's settings and delete its data (vigil/policy/roles.py): its admins, or every member.
    group_settings: Literal["admins", "members"] = "admins"
    # MCP servers and Agent Skills (vigil/mcp/, vigil/tools/skills.py). The config file is read by vigil/mcp/config.py:
    # a bad file or entry is reported there (/mcp, the log) and costs only that server, never the start.
    mcp_config: Path | None = None
    mcp_default: tuple[str, ...] = ()  # server names on in every chat
    mcp_timeout_s: float = 60.0
    mcp_max_eager_tools: int = 20
    skills_dir: Path = Path("skills")  # always set by load_settings: <config dir>/skills unless named
    # VIGIL_THINKING: the thinking of chats that did not choose with /think (vigil/model/thinking.py); "" leaves
    # it to the model (no `thinking` sent at all).
    thinking: Literal["", "off", "auto", "low", "medium", "high"] = ""

    @property
    def telegram_base_file_url(self) -> str:
        """PTB's `base_file_url`: as set, else the base URL's trailing `/bot` made `/file/bot`.

        Telegram serves files at `<host>/file/bot<token>/<path>` beside `<host>/bot<token>/<method>`;
        a local Bot API server keeps the same shape, so the one URL an operator set says where both are.
        """
        if self.telegram_base_file_url_set:
            return self.telegram_base_file_url_set
        base = self.telegram_base_url.rstrip("/")
        if base.endswith("/bot"):
            return base[: -len("/bot")] + "/file/bot"
        return base + "/file/bot"

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.admin_users

    def is_allowed(self, user_id: int) -> bool:
        return self.allow_all_users or user_id in self.allowed_users or user_id in self.admin_users

    def export_for_sdk(self) -> None:
        """The anthropic SDK reads its key and base URL from the environment: hand it the file's values."""
        for name, value in (("ANTHROPIC_API_KEY", self.anthropic_api_key),
                            ("ANTHROPIC_BASE_URL", self.anthropic_base_url)):
            if value:
                os.environ.setdefault(name, value)

    def secrets(self) -> tuple[str, ...]:
        """Values that must never reach a log line."""
        return tuple(s for s in (self.telegram_bot_token, self.anthropic_api_key, self.webhook_secret) if s)


@dataclass(frozen=True)
class _Var:
    env: str
    field: str
    parse: Callable[[str], Any]


_VARS: tuple[_Var, ...] = (
    _Var("TELEGRAM_BOT_TOKEN", "telegram_bot_token", parse.optional_text),
    _Var("VIGIL_TELEGRAM_BASE_URL", "telegram_base_url", parse.url),
    _Var("VIGIL_TELEGRAM_BASE_FILE_URL", "telegram_base_file_url_set", parse.url),
    _Var("ANTHROPIC_API_KEY", "anthropic_api_key", parse.optional_text),
    _Var("ANTHROPIC_BASE_URL", "anthropic_base_url", parse.optional_text),
    _Var("VIGIL_MODEL", "model", parse.text),
    _Var("VIGIL_ADMIN_USERS", "admin_users", parse.user_ids),
    _Var("VIGIL_IDLE_EVICT", "idle_evict_s", parse.duration),
    _Var("VIGIL_MAX_LIVE_SESSIONS", "max_live_sessions", parse.positive_int),
    _Var("VIGIL_MAX_CONCURRENT_QUERIES", "max_concurrent_queries", parse.positive_int),
    _Var("VIGIL_HEARTBEAT_MIN_INTERVAL", "heartbeat_min_interval_s", parse.duration),
    _Var("VIGIL_HEARTBEAT_DEFAULT_INTERVAL", "heartbeat_default_interval_s", parse.duration),
    _Var("VIGIL_HEARTBEAT_HISTORY_TURNS", "heartbeat_history_turns", parse.non_negative_int),
    _Var("VIGIL_ENABLE_BASH", "enable_bash", parse.flag),
    _Var("VIGIL_BASH_NETWORK", "bash_network", parse.on_off),
    _Var("VIGIL_MESSAGES_PER_MINUTE", "messages_per_minute", parse.positive_int),
    _Var("VIGIL_DAILY_BUDGET_USD", "daily_budget_usd", parse.money),
    _Var("VIGIL_HISTORY_TOKENS", "history_tokens", parse.positive_int),
    _Var("VIGIL_MAX_OUTPUT_TOKENS", "max_output_tokens", parse.positive_int),
    _Var("VIGIL_MODEL_TIMEOUT", "model_timeout_s", parse.duration),
    _Var("VIGIL_MODEL_MAX_RETRIES", "model_max_retries", parse.non_negative_int),
    _Var("VIGIL_MAX_TOOL_ROUNDS", "max_tool_rounds", parse.positive_int),
    _Var("VIGIL_BASH_TIMEOUT", "bash_timeout_s", parse.duration),
    _Var("VIGIL_STORE_MAP_MB", "store_map_mb", parse.positive_int),
    _Var("VIGIL_MAX_UPLOAD_MB", "max_upload_mb", parse.upload_mb),
    _Var("VIGIL_LOG_LEVEL", "log_level", parse.choice("debug", "info", "warning", "error")),
    _Var("VIGIL_LOG_FORMAT", "log_format", parse.choice("auto", "console", "json")),
    _Var("NOTIFY_SOCKET", "notify_socket", parse.optional_text),
    _Var("WATCHDOG_USEC", "watchdog_usec", parse.non_negative_int),
    _Var("VIGIL_WHISPER_MODEL", "whisper_model", parse.text),
    _Var("VIGIL_METRICS_LISTEN", "metrics_listen", parse.metrics_listen),
    _Var("VIGIL_RETENTION", "retention_s", parse.duration_or_off),
    _Var("VIGIL_WEB", "web", parse.web),
    _Var("VIGIL_WEB_MAX_USES", "web_max_uses", parse.positive_int),
    _Var("VIGIL_TOOL_MODE", "tool_mode", parse.choice("ask", "auto", "readonly")),
    _Var("VIGIL_APPROVAL_TIMEOUT", "approval_timeout_s", parse.duration),
    _Var("VIGIL_WEBHOOK_URL", "webhook_url", webhook.parse_url),
    _Var("VIGIL_WEBHOOK_SECRET", "webhook_secret", webhook.parse_secret),
    _Var("VIGIL_WEBHOOK_LISTEN", "webhook_listen", webhook.parse_listen),
    _Var("VIGIL_HEARTBEAT_IDLE_PAUSE", "heartbeat_idle_pause_s", parse.duration_or_off),
    _Var("VIGIL_MAX_SCHEDULES", "max_schedules", parse.positive_int),
    _Var("VIGIL_DISK_WARN_PERCENT", "disk_warn_percent", parse.percent),
    _Var("VIGIL_GROUP_SETTINGS", "group_settings", parse.choice("admins", "members")),
    _Var("VIGIL_MCP_DEFAULT", "mcp_default", parse_server_names),
    _Var("VIGIL_MCP_TIMEOUT", "mcp_timeout_s", parse.duration),
    _Var("VIGIL_MCP_MAX_EAGER_TOOLS", "mcp_max_eager_tools", parse.non_negative_int),
    _Var("VIGIL_THINKING", "thinking", parse.choice("off", "auto", "low", "medium", "high")),
)
# Variables handled by hand below (paths and the allowlist need more than a parser).
_SPECIAL = ("VIGIL_DATA_DIR", "VIGIL_ALLOWED_USERS", "VIGIL_WORKDIR_ROOT", "VIGIL_MCP_CONFIG", "VIGIL_SKILLS_DIR")
_KNOWN = {v.env for v in _VARS} | set(_SPECIAL)


def _file_settings(path_text: str) -> dict[str, str]:
    """The TOML file's settings as environment-style NAME -> text."""
    path = Path(os.path.expanduser(path_text))
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"VIGIL_CONFIG={path_text}: no such file") from None
    except OSError as exc:
        raise SettingsError(f"VIGIL_CONFIG={path_text}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"VIGIL_CONFIG={path_text}: not valid TOML ({exc})") from None
    out: dict[str, str] = {}
    for name, value in data.items():
        env = name.upper()
        if env not in _KNOWN and f"VIGIL_{env}" in _KNOWN:
            env = f"VIGIL_{env}"
        if env not in _KNOWN:
            raise SettingsError(f"VIGIL_CONFIG={path_text}: unknown setting {name!r}")
        out[env] = _toml_text(value)
    return out


def _toml_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_toml_text(v) for v in value)
    return str(value)


def _home(env: Mapping[str, str]) -> Path:
    """$HOME of the environment being read (not necessarily this process's)."""
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def _path(text: str, env: Mapping[str, str]) -> Path:
    if text == "~" or text.startswith("~/"):
        return _home(env) / text[2:]
    return Path(os.path.expanduser(text))


def _state_directories(env: Mapping[str, str]) -> list[str]:
    """systemd's STATE_DIRECTORY: one path per `StateDirectory=` entry, joined by colons."""
    return [part for part in env.get("STATE_DIRECTORY", "").split(":") if part]


def _default_data_dir(env: Mapping[str, str]) -> Path:
    if state := _state_directories(env):
        return Path(state[0])
    if xdg := env.get("XDG_DATA_HOME", ""):
        return Path(xdg) / "vigil"
    return _home(env) / ".local" / "share" / "vigil"


def _default_workdir_root(env: Mapping[str, str]) -> Path:
    """A directory of vigil's own beside the default data directory, never around it, never $HOME.

    Under systemd the unit may give a second state directory (`StateDirectory=vigil vigil-work`):
    that one is the root. With a single state directory the root is its sibling `<name>-work`
    (the data directory itself would put the store in the chats' reach).
    """
    state = _state_directories(env)
    if len(state) > 1:
        return Path(state[1])
    if state:
        first = Path(state[0])
        return first.parent / f"{first.name}-work"
    if xdg := env.get("XDG_DATA_HOME", ""):
        return Path(xdg) / "vigil-work"
    return _home(env) / ".local" / "share" / "vigil-work"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read, validate and freeze the settings; raises SettingsError on the first bad one."""
    env = dict(os.environ if environ is None else environ)
    merged: dict[str, str] = {}
    if config := env.get("VIGIL_CONFIG", "").strip():
        merged.update(_file_settings(config))
    merged.update({k: v for k, v in env.items() if k in _KNOWN})

    values: dict[str, Any] = {}
    for var in _VARS:
        if var.env in merged:
            values[var.field] = _parse(var.env, merged[var.env], var.parse)

    allowed = merged.get("VIGIL_ALLOWED_USERS", "").strip()
    if allowed == "*":
        values["allow_all_users"] = True
    elif allowed:
        values["allowed_users"] = _parse("VIGIL_ALLOWED_USERS", allowed, parse.user_ids)

    data_dir = merged.get("VIGIL_DATA_DIR", "").strip()
    values["data_dir"] = _path(data_dir, env) if data_dir else _default_data_dir(env)
    root = merged.get("VIGIL_WORKDIR_ROOT", "").strip()
    # A root the operator named must exist (a typo must not silently create a tree somewhere);
    # the default one is vigil's own and is created by `ensure_workdir_root`.
    values["workdir_root"] = (_existing_dir("VIGIL_WORKDIR_ROOT", _path(root, env)) if root
                              else Path(os.path.realpath(_default_workdir_root(env))))
    _refuse_store_in_reach(values["data_dir"], values["workdir_root"])
    if mcp_config := merged.get("VIGIL_MCP_CONFIG", "").strip():
        values["mcp_config"] = _path(mcp_config, env)
    values["skills_dir"] = _skills_dir(merged.get("VIGIL_SKILLS_DIR", "").strip(), env, values["data_dir"])

    settings = Settings(**values)
    webhook.check_against_api(settings.webhook_url, settings.telegram_base_url, DEFAULT_TELEGRAM_BASE_URL)
    if settings.heartbeat_default_interval_s < settings.heartbeat_min_interval_s:
        settings = msgspec.structs.replace(settings, heartbeat_default_interval_s=settings.heartbeat_min_interval_s)
    return settings


def _parse(name: str, raw: str, parser: Callable[[str], Any]) -> Any:
    try:
        return parser(raw)
    except ValueError as exc:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise SettingsError(f"{name}={shown!r}: {exc}") from None


def _existing_dir(name: str, path: Path) -> Path:
    resolved = path.resolve()
    if not resolved.is_dir():
        raise SettingsError(f"{name}={path}: not an existing directory")
    return resolved


def _refuse_store_in_reach(data_dir: Path, root: Path) -> None:
    """Every chat's tools work under the root: a store inside it could be read or truncated by them."""
    data = Path(os.path.realpath(data_dir))  # symlinks followed, also for a data dir not made yet
    if data == root or root in data.parents:
        raise SettingsError(f"VIGIL_DATA_DIR={data} lies inside VIGIL_WORKDIR_ROOT={root}, where the chats' "
                            "tools work: put the data directory outside the work root")


def _default_config_dir(env: Mapping[str, str]) -> Path:
    """Where vigil's own configuration lives: beside VIGIL_CONFIG's file, else systemd's
    CONFIGURATION_DIRECTORY (`ConfigurationDirectory=vigil`), else `$XDG_CONFIG_HOME/vigil`, else `~/.config/vigil`."""
    if config := env.get("VIGIL_CONFIG", "").strip():
        return _path(config, env).parent
    if configured := [part for part in env.get("CONFIGURATION_DIRECTORY", "").split(":") if part]:
        return Path(configured[0])
    if xdg := env.get("XDG_CONFIG_HOME", ""):
        return Path(xdg) / "vigil"
    return _home(env) / ".config" / "vigil"


def _skills_dir(named: str, env: Mapping[str, str], data_dir: Path) -> Path:
    """VIGIL_SKILLS_DIR as named (it must exist: a typo must not silently hide every skill), else
    `<config dir>/skills` (missing is fine: no skills). Skill folders are shown to the bash sandbox, so a
    named directory may neither lie in the data directory nor hold it (the default one is only ever
    read for folders holding a SKILL.md, which the store's never do)."""
    if not named:
        return Path(os.path.realpath(_default_config_dir(env) / "skills"))
    path = _existing_dir("VIGIL_SKILLS_DIR", _path(named, env))
    data = Path(os.path.realpath(data_dir))
    if path == data or data in path.parents or path in data.parents:
        raise SettingsError(f"VIGIL_SKILLS_DIR={path} holds or lies in VIGIL_DATA_DIR={data}: skills are shown "
                            "to the chats' tools, the store must not be; put the skills elsewhere")
    return path


def ensure_workdir_root(settings: Settings) -> Path:
    """Create the work root (0700: only the service user enters the chats' directories) if missing."""
    path = settings.workdir_root
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"VIGIL_WORKDIR_ROOT={path}: cannot create it ({exc.strerror or exc})") from None
    if not path.is_dir():
        raise SettingsError(f"VIGIL_WORKDIR_ROOT={path}: not an existing directory")
    return path


def ensure_data_dir(settings: Settings) -> Path:
    """Create the data directory and prove it is writable, or raise SettingsError naming it."""
    path = settings.data_dir
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_uid == os.geteuid() and path.stat().st_mode & 0o077:
            path.chmod(0o700)  # the store, the locks and nothing for anyone else: also for an older install
        probe = path / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SettingsError(f"VIGIL_DATA_DIR={path}: not writable ({exc.strerror or exc})") from None
    return path
