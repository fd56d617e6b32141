"""setWebhook, deleteWebhook and getWebhookInfo, with Telegram's rules.

While a webhook is set, getUpdates answers 409 (see `updates.get_updates`) and `webhook.Deliverer` POSTs
each update to the URL instead. The URL must be https on ports 443, 80, 88 or 8443, as Telegram's own
servers require, except on loopback, where plain http and any port are taken: that is what a local Bot
API server allows, and where the tests' vigil listens. The secret token is 1 to 256 characters of
``A-Za-z0-9_-``. Setting or deleting a webhook keeps the pending updates unless ``drop_pending_updates``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final
from urllib.parse import urlsplit

from tests.standins.bot_api.model import Webhook
from tests.standins.bot_api.state import World
from tests.standins.bot_api.wire import Request, allowed_updates, as_bool, as_int, bad

_SECRET: Final = re.compile(r"[A-Za-z0-9_-]*")
_PORTS: Final = (443, 80, 88, 8443)


def set_webhook(world: World, req: Request) -> Any:
    url = str(req.params.get("url", "")).strip()
    if "url" not in req.params:
        raise bad('parameter "url" is required')
    if as_bool(req.params.get("drop_pending_updates")):
        world.updates.clear()
    if not url:  # Telegram: an empty URL removes the webhook
        world.webhook = None
        return True
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad("bad webhook: An HTTPS URL must be provided for webhook")
    if not _loopback(parts.hostname):
        if parts.scheme != "https":
            raise bad("bad webhook: An HTTPS URL must be provided for webhook")
        if (parts.port or 443) not in _PORTS:
            raise bad("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
    secret = req.params.get("secret_token")
    if secret is not None:
        secret = str(secret)
        if len(secret) > 256:
            raise bad("secret token is too long")
        if not secret or not _SECRET.fullmatch(secret):
            raise bad("secret token contains unallowed characters")
    max_connections = as_int(req.params.get("max_connections"))
    if max_connections is None:
        max_connections = 40
    if not 1 <= max_connections <= 100:
        raise bad("bad webhook: max_connections must be between 1 and 100")
    allowed = allowed_updates(req)
    if allowed is not None:
        world.allowed_updates = allowed  # one setting, shared with getUpdates
    world.webhook = Webhook(url=url, secret_token=secret, max_connections=max_connections,
                            ip_address=req.params.get("ip_address"))
    world.cond.notify_all()
    return True


def delete_webhook(world: World, req: Request) -> Any:
    if as_bool(req.params.get("drop_pending_updates")):
        world.updates.clear()
    world.webhook = None
    world.cond.notify_all()
    return True


def get_webhook_info(world: World, req: Request) -> Any:
    hook = world.webhook
    info: dict[str, Any] = {"url": hook.url if hook else "", "has_custom_certificate": False,
                            "pending_update_count": len(world.updates)}
    if hook is not None:
        info["max_connections"] = hook.max_connections
        if world.allowed_updates:
            info["allowed_updates"] = list(world.allowed_updates)
        failed = [d for d in world.webhook_deliveries if not d.accepted]
        if failed:
            info["last_error_date"] = int(failed[-1].time)
            info["last_error_message"] = failed[-1].error or f"Wrong response from the webhook: {failed[-1].status}"
    return info


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
