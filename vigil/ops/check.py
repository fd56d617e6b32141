"""`vigil check`: settings, store, disk, the bash sandbox, MCP servers, Agent Skills, Telegram getMe, model
reachability — one line each.

Exit status 0 only when every check passes, so an operator (or a deploy
script) can run it before starting the service. A disk running short is a
warning (`warn`): it needs attention, but vigil runs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from vigil.config.settings import Settings, ensure_data_dir
from vigil.logs import redact, redact_also
from vigil.mcp.config import load_config
from vigil.store.store import open_store
from vigil.telemetry.disk import measure
from vigil.tools.sandbox import SandboxUnavailable, detect
from vigil.tools.skills import read_skills


class CheckWarning(Exception):
    """Worth an operator's attention, but nothing that stops vigil from running."""


def _settings(settings: Settings) -> str:
    allowed = "anyone" if settings.allow_all_users else f"{len(settings.allowed_users)} allowed user(s)"
    return (f"model {settings.model}, {allowed}, {len(settings.admin_users)} admin(s), "
            f"work root {settings.workdir_root}, bash {'on' if settings.enable_bash else 'off'}")


def _store(settings: Settings) -> str:
    ensure_data_dir(settings)
    store = open_store(settings.data_dir, settings.store_map_mb)
    try:
        sessions = store.session_count()
        return f"{settings.data_dir / 'data.mdb'}: {sessions} session(s), map {store.map_size // (1024 * 1024)} MiB"
    finally:
        store.close()


def _disk(settings: Settings) -> str:
    report = measure(settings.data_dir, settings.data_dir / "media")
    short = [room for room in report.rooms if room.percent_free < settings.disk_warn_percent]
    if short:
        raise CheckWarning(f"{report.line()}; under VIGIL_DISK_WARN_PERCENT={settings.disk_warn_percent:g} %")
    return report.line().removeprefix("Disk: ")


def _bash(settings: Settings) -> str:
    try:
        sandbox = detect(network=settings.bash_network == "on", data_dirs=[settings.data_dir], home=Path.home())
    except SandboxUnavailable as exc:
        # The same probe `vigil run` makes at start-up: it would not offer bash either.
        raise RuntimeError(f"{exc}; bash is not offered (it never runs unsandboxed)") from None
    return f"sandboxed by {sandbox.describe()}"


def _mcp(settings: Settings) -> str:
    """Every configured MCP server started (or connected to) as `vigil run` would, its tools counted."""
    config = load_config(settings.mcp_config, settings.mcp_default)
    redact_also(config.secrets())
    shown = []
    if config.servers:
        from vigil.mcp.manager import McpManager

        manager = McpManager(config, timeout_s=settings.mcp_timeout_s, extra_secrets=settings.secrets())
        try:
            manager.tools(config.servers)
            statuses = manager.status()
        finally:
            manager.close()
        shown = [f"{s.name} ({s.state}, {len(s.tools)} tools{': ' + s.detail if s.detail else ''})" for s in statuses]
        if any(s.state != "running" for s in statuses) or config.problems:
            raise CheckWarning("; ".join([*shown, *config.problems]))
    elif config.problems:
        raise CheckWarning("; ".join(config.problems))
    return f"{len(shown)} server(s): {', '.join(shown) or 'none'}"


def _skills(settings: Settings) -> str:
    found = read_skills(settings.skills_dir)
    names = ", ".join(skill.name for skill in found.skills) or "none"
    if found.problems:
        raise CheckWarning(f"{settings.skills_dir}: {names}; left out: "
                           + "; ".join(problem.line() for problem in found.problems))
    return f"{settings.skills_dir}: {len(found.skills)} skill(s): {names}"


def _telegram(settings: Settings) -> str:
    if not settings.telegram_bot_token:
        raise RuntimeError("TELEGRAM_BOT_TOKEN is not set")
    from telegram import Bot

    async def get_me() -> str:
        bot = Bot(settings.telegram_bot_token or "", base_url=settings.telegram_base_url)
        async with bot:
            me = await bot.get_me()
        return f"@{me.username} (id {me.id})"

    return asyncio.run(get_me())


def _model(settings: Settings) -> str:
    if not (settings.anthropic_api_key or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        raise RuntimeError("ANTHROPIC_API_KEY is not set")
    import anthropic

    client = anthropic.Anthropic(api_key=settings.anthropic_api_key, base_url=settings.anthropic_base_url,
                                 max_retries=1, timeout=15.0)
    info = client.models.retrieve(settings.model)
    return f"{info.id} reachable at {client.base_url}"


def run_checks(settings: Settings) -> int:
    checks: list[tuple[str, Callable[[Settings], str]]] = [
        ("settings", _settings), ("store", _store), ("disk", _disk), ("telegram", _telegram), ("model", _model)]
    if settings.enable_bash:  # its sandbox is checked only when bash is asked for
        checks.insert(2, ("bash", _bash))
    if settings.mcp_config is not None:
        checks.insert(-2, ("mcp", _mcp))
    if settings.skills_dir.is_dir():
        checks.insert(-2, ("skills", _skills))
    failed = 0
    for name, check in checks:
        try:
            detail = check(settings)
        except CheckWarning as exc:  # worth an operator's attention, but nothing stops vigil from running
            print(f"warn {name}: {redact(str(exc))}", flush=True)
        except Exception as exc:
            failed += 1
            message = str(exc) or type(exc).__name__
            print(f"FAIL {name}: {redact(message)}", flush=True)
        else:
            print(f"ok   {name}: {redact(detail)}", flush=True)
    return 1 if failed else 0
