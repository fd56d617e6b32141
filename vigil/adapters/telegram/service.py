"""`vigil run`: the Telegram service, from start-up to a clean SIGTERM.

The Application's lifecycle is driven by hand (rather than `run_polling`) so
that every step happens in a known order:
start: lock the data dir → getMe → sessions up → setMyCommands → updates held by the last run taken up
(receiver.py) → polling (polling.py; or, with VIGIL_WEBHOOK_URL, the webhook server listening, then
setWebhook: see webhook.py) → READY=1.
stop (SIGTERM/SIGINT): STOPPING=1 → stop polling or the webhook server (no new updates; those taken are
answered, polling confirms its offset) → hand on albums still being gathered → let handlers finish (what
is cut short stays held, for the restart) → stop every session (running turns get a short grace, then
are suspended to be answered after the restart) → deliver what is still
queued for Telegram → close; exit 0, well within systemd's 10 seconds.
While it runs, WATCHDOG=1 is sent for as long as the sessions and the store
writer are alive.
"""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vigil.config.settings import Settings
from vigil.errors import StartupError as StartupError  # its old home: re-exported
from vigil.logs import get_logger

SHUTDOWN_GRACE_S = 3.0
DRAIN_S = 3.0
ALLOWED_UPDATES = ["message", "callback_query", "edited_message"]
HANDLER_THREADS = 32


def run_service(settings: Settings) -> int:
    """Serve until SIGTERM; the exit code."""
    # PTB: report retry_after as timedelta (and skip its deprecation warning on every 429).
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    from vigil.lock import ProcessLock

    lock = ProcessLock(settings.data_dir / "vigil-run.lock", "vigil run").acquire()
    try:
        return asyncio.run(_serve(settings))
    finally:
        lock.release()


async def _serve(settings: Settings) -> int:
    from telegram import BotCommand
    from telegram.error import InvalidToken, NetworkError
    from telegram.ext import AIORateLimiter, ApplicationBuilder

    from vigil.actors.core.protocol import TargetMoved
    from vigil.adapters.telegram.access import Gate, TelegramAdmins
    from vigil.adapters.telegram.handlers import TelegramHandlers
    from vigil.adapters.telegram.receive.keys import chat_key, target_for
    from vigil.adapters.telegram.receive.order import PerChatOrder
    from vigil.adapters.telegram.receive.polling import Poller
    from vigil.adapters.telegram.receive.receiver import UpdateReceiver
    from vigil.adapters.telegram.receive.webhook import WebhookServer, start_webhook
    from vigil.adapters.telegram.send.outbox import TelegramOutbox
    from vigil.commands import COMMANDS
    from vigil.control.dispatch import Control
    from vigil.model.anthropic_model import AnthropicModel
    from vigil.ops.retention import Retention
    from vigil.ops.systemd import Notifier
    from vigil.ports import Reply
    from vigil.runtime import Runtime

    log = get_logger(__name__)
    notifier = Notifier(settings.notify_socket)
    holder: dict[str, Runtime] = {}
    outbox = TelegramOutbox(
        on_failure=lambda key, permanent, reason, ref: holder["runtime"].on_delivery_failure(
            key, permanent, reason, ref),
        on_moved=lambda key, chat_id: holder["runtime"].submit(TargetMoved(key=key, chat_id=chat_id)),
        on_retry=lambda reason: holder["runtime"].metrics.delivery_retry(reason))
    model = AnthropicModel(settings.model_timeout_s, settings.model_max_retries)
    model.warm_up()
    runtime = holder["runtime"] = Runtime(settings, {"tg": outbox}, model)
    outbox.on_prompt = runtime.deps.approvals.posted
    control = Control(runtime)
    gate = Gate(settings, runtime.allowance)
    admins = TelegramAdmins()  # who administers each group, for vigil/policy/roles.py
    runtime.roles.admins.attach("tg", admins)
    app = (ApplicationBuilder()
           .token(settings.telegram_bot_token or "")
           .base_url(settings.telegram_base_url)
           .base_file_url(settings.telegram_base_file_url)
           .rate_limiter(AIORateLimiter(max_retries=8))
           # Long enough that a slow answer rarely times out after Telegram took the message.
           .connect_timeout(10).read_timeout(20).write_timeout(20).pool_timeout(10)
           # Chats side by side, each in its own order: a slow command in one chat delays no other.
           .concurrent_updates(PerChatOrder())
           # Updates come through UpdateReceiver, confirmed once durable: PTB's Updater would confirm them at once.
           .updater(None)
           .build())
    handlers = TelegramHandlers(runtime, control, outbox, gate)
    handlers.register(app)
    receiver = UpdateReceiver(app, runtime.store)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers hand store work to threads (asyncio.to_thread); with chats handled side by side, a few slow
    # commands must not use up the default pool (cores + 4 threads) that every other chat's commands need.
    loop.set_default_executor(ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="tg-handler"))
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    try:
        await app.initialize()
    except InvalidToken as exc:
        runtime.store.close()
        raise StartupError(f"Telegram refused TELEGRAM_BOT_TOKEN ({exc}); check the token from @BotFather") from None
    except NetworkError as exc:
        runtime.store.close()
        raise StartupError(f"cannot reach Telegram at {settings.telegram_base_url} ({exc})") from None
    handlers.bot_id = app.bot.id
    handlers.bot_username = app.bot.username
    outbox.attach(loop, app.bot)
    admins.attach(loop, app.bot)
    runtime.start()
    runtime.disk.start(lambda admin, text: outbox.send(chat_key(admin), target_for(admin, None), Reply(text=text)))
    retention = Retention.start_for(control.cleanups, settings.retention_s)  # None when VIGIL_RETENTION is off
    watchdog: asyncio.Task[Any] | None = None
    webhook: WebhookServer | None = None
    poller: Poller | None = None
    try:
        await app.bot.set_my_commands([BotCommand(c.name, c.summary[:256]) for c in COMMANDS])
        await app.start()
        await receiver.replay()  # before anything new: each chat's held updates keep their place
        receiver.start()
        if settings.webhook_url:
            webhook = await start_webhook(settings, app, receiver, ALLOWED_UPDATES)
        else:
            # The webhook is deleted first (getUpdates is refused while one is set), keeping what Telegram queued.
            poller = Poller(app.bot, receiver, ALLOWED_UPDATES)
            await poller.start()
        mode = "webhook" if webhook is not None else "polling"
        notifier.ready(f"{mode} as @{app.bot.username}")
        log.info("service.ready", bot=app.bot.username, sessions=runtime.store.session_count(), mode=mode)
        if settings.watchdog_usec:
            watchdog = asyncio.create_task(_watchdog(notifier, runtime, settings.watchdog_usec / 2e6))
        await stop.wait()
    finally:
        notifier.stopping()
        log.info("service.stopping")
        if watchdog is not None:
            watchdog.cancel()
        if webhook is not None:  # no new updates; those being taken in are answered once durable
            await webhook.stop(SHUTDOWN_GRACE_S)
        if poller is not None:
            await poller.stop()
        # Albums gathering or downloading go to their sessions before these stop; what is cut short stays held.
        await handlers.albums.close(SHUTDOWN_GRACE_S)
        await receiver.close(SHUTDOWN_GRACE_S)
        if app.running:
            await app.stop()
        if retention is not None:
            await asyncio.to_thread(retention.stop)
        await asyncio.to_thread(runtime.shutdown, SHUTDOWN_GRACE_S, False)
        left = await outbox.drain(DRAIN_S)
        if left:
            log.warning("service.undelivered_at_exit", deliveries=left)
        # Replies Telegram has not taken yet (flood control, an outage) are sent after the restart.
        await asyncio.to_thread(runtime.record_undelivered, outbox.unfinished())
        await asyncio.to_thread(runtime.store.close)
        handlers.intake.close()
        await app.shutdown()
        log.info("service.stopped")
    return 0


async def _watchdog(notifier: Any, runtime: Any, period: float) -> None:
    while True:
        if runtime.healthy():
            notifier.watchdog()
        await asyncio.sleep(period)
