"""Webhook mode's settings (vigil/config/webhook.py, read by vigil/config/settings.py): Telegram's rules, refused in
one line, and the generated secret token kept in the data directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.test_settings import home, load, refusal  # noqa: F401  (home: the fixture the helpers need)
from vigil.config.settings import SettingsError
from vigil.config.webhook import kept_secret, path_of, secret_token


def test_polling_unless_a_url_is_set(home: Path) -> None:  # noqa: F811
    settings = load(home)
    assert settings.webhook_url is None and settings.webhook_secret is None
    assert settings.webhook_listen == ("127.0.0.1", 8443)


def test_a_webhook_on_telegrams_servers(home: Path) -> None:  # noqa: F811
    settings = load(home, VIGIL_WEBHOOK_URL="https://bot.example.org:8443/telegram/x1",
                    VIGIL_WEBHOOK_SECRET="abc_DEF-123", VIGIL_WEBHOOK_LISTEN="[::1]:9000")
    assert settings.webhook_url == "https://bot.example.org:8443/telegram/x1"
    assert path_of(settings.webhook_url) == "/telegram/x1" and path_of("https://bot.example.org") == "/"
    assert settings.webhook_listen == ("::1", 9000)
    assert "abc_DEF-123" in settings.secrets()  # never logged


@pytest.mark.parametrize(("variables", "words"), [
    ({"VIGIL_WEBHOOK_URL": "http://bot.example.org/hook"}, "only to https:// URLs"),
    ({"VIGIL_WEBHOOK_URL": "https://bot.example.org:9443/hook"}, "ports 443, 80, 88, 8443, not 9443"),
    ({"VIGIL_WEBHOOK_URL": "bot.example.org/hook"}, "must be a URL"),
    ({"VIGIL_WEBHOOK_URL": "https://bot.example.org/hook?token=1"}, "query or fragment"),
    ({"VIGIL_WEBHOOK_URL": "https://bot.example.org:99999/hook"}, "port"),
    ({"VIGIL_WEBHOOK_SECRET": "with space"}, "letter, digit, _ or -"),
    ({"VIGIL_WEBHOOK_SECRET": "x" * 257}, "1 to 256"),
    ({"VIGIL_WEBHOOK_LISTEN": "8443"}, "host:port"),
    ({"VIGIL_WEBHOOK_LISTEN": "::1:8443"}, "in brackets"),
    ({"VIGIL_WEBHOOK_LISTEN": "127.0.0.1:70000"}, "1 to 65535"),
])
def test_bad_webhook_settings_are_refused_naming_the_variable(home: Path, variables: dict[str, str],  # noqa: F811
                                                              words: str) -> None:
    message = refusal(home, **variables)
    assert next(iter(variables)) in message and words in message


def test_a_local_bot_api_server_takes_any_webhook(home: Path) -> None:  # noqa: F811
    settings = load(home, VIGIL_TELEGRAM_BASE_URL="http://127.0.0.1:8081/bot",
                    VIGIL_WEBHOOK_URL="http://127.0.0.1:9000/hook")
    assert settings.webhook_url == "http://127.0.0.1:9000/hook"


def test_the_generated_secret_is_made_once_0600_and_kept(home: Path, tmp_path: Path) -> None:  # noqa: F811
    data = tmp_path / "data"
    data.mkdir()
    settings = load(home, VIGIL_DATA_DIR=str(data), VIGIL_WEBHOOK_URL="https://bot.example.org/hook")
    first = secret_token(settings.webhook_secret, settings.data_dir)
    path = data / "webhook-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32 and first == path.read_text()
    assert secret_token(settings.webhook_secret, settings.data_dir) == first == kept_secret(path)
    assert [p.name for p in data.iterdir()] == ["webhook-secret"]  # no temporary file left behind
    path.write_text("not valid!")
    with pytest.raises(SettingsError, match="webhook-secret"):
        secret_token(settings.webhook_secret, settings.data_dir)
