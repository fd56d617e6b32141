"""getUpdates: how updates reach a polling bot, with Telegram's long-poll rules (webhooks: webhook.py).

A newer getUpdates ends a waiting one with 409 Conflict (two pollers are two bot instances); a poll whose
client hung up (PTB cancels it on stop) delivers nothing, so no update is lost; ``allowed_updates``
persists between calls, as at Telegram. While a webhook is set, getUpdates is refused with 409.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Final

from tests.standins.bot_api.state import World
from tests.standins.bot_api.wire import ApiError, Request, allowed_updates, as_int

# Update types Telegram leaves out when allowed_updates is empty or unset.
_OPT_IN_UPDATES: Final = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_WEBHOOK_ACTIVE: Final = ("Conflict: can't use getUpdates method while webhook is active; "
                           "use deleteWebhook to delete the webhook first")
_CONFLICT: Final = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"


class ClientGone:
    """Marker result: the long poll's client hung up before anything arrived."""


def get_updates(world: World, req: Request) -> Any:
    offset = as_int(req.params.get("offset")) or 0
    limit = as_int(req.params.get("limit")) or 100
    limit = max(1, min(100, limit))
    timeout = max(0.0, float(as_int(req.params.get("timeout")) or 0))
    allowed = allowed_updates(req)
    deadline = time.monotonic() + timeout
    with world.cond:
        if world.webhook is not None:
            raise ApiError(409, _WEBHOOK_ACTIVE)
        if allowed is not None:
            world.allowed_updates = allowed  # persists, as at Telegram
        # A newer getUpdates terminates an older waiting one with 409 Conflict.
        world.poll_generation += 1
        generation = world.poll_generation
        world.cond.notify_all()
        if offset > 0:
            world.updates = [u for u in world.updates if u["update_id"] >= offset]
        elif offset < 0:
            world.updates = world.updates[offset:]
        world.polls_waiting += 1
        try:
            while True:
                if req.client_gone():
                    return ClientGone()
                if generation != world.poll_generation:
                    # PTB cancels its poll and at once sends a final getUpdates; give the
                    # hang-up a moment to arrive so that is not mistaken for a second poller.
                    grace = time.monotonic() + 0.1
                    while time.monotonic() < grace:
                        if req.client_gone():
                            return ClientGone()
                        world.cond.wait(0.01)
                    raise ApiError(409, _CONFLICT)
                ready = [u for u in world.updates if wanted(world, u)][:limit]
                if ready or world.stopping:
                    return copy.deepcopy(ready)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                # Bounded waits notice a hung-up client (PTB cancels its poll on stop).
                world.cond.wait(min(remaining, 0.2))
        finally:
            world.polls_waiting -= 1


def wanted(world: World, update: dict[str, Any]) -> bool:
    kind = next(k for k in update if k != "update_id")
    if world.allowed_updates:
        return kind in world.allowed_updates
    return kind not in _OPT_IN_UPDATES
