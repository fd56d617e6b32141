"""What the Messages API stand-in remembers between requests, under one lock: the requests it recorded,
the refusals it gave, the rules a test added, the prompt cache, the ``[[error=...]]`` counts and the
server tool blocks it served.

One lock guards it all, because requests arrive on the server's threads while the test thread adds
rules and waits; ``arrived`` wakes `MessagesAPI.wait_for_requests`, ``stopping`` ends hangs,
delays and slow streams on `stop()`.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.standins.messages_api.content import RecordedRequest
from tests.standins.messages_api.responders import Rule


class State:
    """The stand-in's memory; `MessagesAPI` exposes ``requests``, ``errors`` and ``min_cache_tokens``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.stopping = threading.Event()
        self.requests: list[RecordedRequest] = []
        self.errors: list[dict[str, Any]] = []
        # Prompt-cache entries shorter than this many tokens are not cached (the real API's minimum is
        # 1024+ tokens depending on the model); 0 by default so small test prompts cache too.
        self.min_cache_tokens = 0
        self.rules: list[Rule] = []
        self.cache: set[str] = set()
        # How often each turn's [[error=STATUS times=K]] has failed so far.
        self.error_counts: dict[str, int] = {}
        # Every server tool block and citation served, as JSON (see `server_tools`): sent back unchanged.
        self.served: dict[str, str] = {}
