"""`MessagesAPI`, the face of the Messages API stand-in: start it, script it, read what it was asked.

It owns the `State` and the server, and wires `server.Router` into the loopback server; everything
about answering lives in the parts behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.standins.messages_api.connection import MessagesServer
from tests.standins.messages_api.content import RecordedRequest
from tests.standins.messages_api.responders import Responder, Rule
from tests.standins.messages_api.server import Router
from tests.standins.messages_api.state import State


class MessagesAPI:
    """The stand-in server. See the package docstring for what it answers and refuses."""

    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.base_url = ""
        self._state = State()
        self._server: MessagesServer | None = None

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every ``POST /v1/messages`` that passed auth, in arrival order."""
        return self._state.requests

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The requests the stand-in refused as malformed (status, type, message, path, body)."""
        return self._state.errors

    @property
    def served(self) -> dict[str, str]:
        """The server tool blocks and citations served so far, as JSON, by id (see `server_tools`)."""
        with self._state.lock:
            return dict(self._state.served)

    @property
    def min_cache_tokens(self) -> int:
        """Prompt-cache entries shorter than this many tokens are not cached (0: every prefix is)."""
        return self._state.min_cache_tokens

    @min_cache_tokens.setter
    def min_cache_tokens(self, value: int) -> None:
        self._state.min_cache_tokens = value

    # ---- lifecycle ----

    def start(self) -> MessagesAPI:
        self._state.stopping.clear()
        self._server = MessagesServer(Router(self._state, self.api_key).handle)
        self.base_url = f"http://127.0.0.1:{self._server.port}"
        self._server.serve_in_thread(f"messages-api:{self._server.port}")
        return self

    def stop(self) -> None:
        # Released hangs, delays and slow streams see the event and end their requests.
        self._state.stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.close()

    def __enter__(self) -> MessagesAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- test controls ----

    def add_rule(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        responder: Responder | Callable[[dict[str, Any]], Responder],
        times: int | None = None,
    ) -> None:
        """Answer requests whose body satisfies ``predicate`` with ``responder`` (or with what a callable
        responder returns for the body), for the next ``times`` matching requests (None = forever).

        A predicate that raises counts as not matching, so ``lambda b: b["tools"][0]...`` is fine."""
        with self._state.lock:
            self._state.rules.append(Rule(predicate, responder, times))

    def think_by_default(self, model: str) -> None:
        """Make `model` think (adaptively) in every answer to a request that does not say `thinking`."""
        with self._state.lock:
            self._state.served[f"think-default:{model}"] = "adaptive"

    def clear_rules(self) -> None:
        with self._state.lock:
            self._state.rules.clear()

    def clear_cache(self) -> None:
        """Forget every prompt-cache entry (as if they had all expired)."""
        with self._state.lock:
            self._state.cache.clear()

    def wait_for_requests(self, n: int, timeout: float = 10) -> list[RecordedRequest]:
        """Block until at least ``n`` requests were recorded; returns a snapshot of them all."""
        with self._state.arrived:
            if not self._state.arrived.wait_for(lambda: len(self._state.requests) >= n, timeout=timeout):
                texts = [r.last_user_text()[:60] for r in self._state.requests]
                got = len(self._state.requests)
                raise AssertionError(f"expected {n} requests within {timeout}s, got {got}: {texts}")
            return list(self._state.requests)
