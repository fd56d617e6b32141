"""The metrics port below `vigil run`: the setting, null when off, and what the Prometheus side counts and shows.

Runtimes here run on the fakes (scripted model, recording outbox) over a real LMDB store; `/metrics` is
fetched over HTTP from the runtime's own server and read with prometheus_client's parser. The end-to-end
checks through the stand-ins are in tests/test_metrics_e2e.py.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import HarnessFactory, key_of
from vigil.actors.core.registry import Registry
from vigil.actors.engine.slots import QuerySlots
from vigil.config.settings import SettingsError, load_settings
from vigil.errors import StartupError
from vigil.ports import ModelError, ModelResponse, TokenUsage
from vigil.store.store import LmdbStore
from vigil.telemetry.metrics import NULL_METRICS, call_figures, model_label, skip_label
from vigil.telemetry.prometheus import PromMetrics


class WebUsage(TokenUsage, frozen=True, kw_only=True):
    """TokenUsage as the web tools' part may extend it."""

    web_searches: int = 0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def fetch(address: tuple[str, int], path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=10) as response:
        return str(response.read().decode())


@pytest.mark.parametrize(("raw", "parsed"), [("127.0.0.1:9464", "127.0.0.1:9464"), ("[::1]:9464", "::1:9464"),
                                             ("0.0.0.0:0", "0.0.0.0:0"), ("off", None), ("", None)])
def test_the_listen_setting_reads_host_and_port(raw: str, parsed: str | None) -> None:
    env = {"VIGIL_DATA_DIR": "/tmp/vigil-metrics-data", "VIGIL_METRICS_LISTEN": raw}
    assert load_settings(env).metrics_listen == parsed


@pytest.mark.parametrize("raw", ["9464", "localhost", "127.0.0.1:", ":9464", "127.0.0.1:65536", "host:port",
                                 "::1:9464", "[nonsense]:9464"])
def test_a_bad_listen_setting_is_named(raw: str) -> None:
    with pytest.raises(SettingsError, match="VIGIL_METRICS_LISTEN"):
        load_settings({"VIGIL_DATA_DIR": "/tmp/vigil-metrics-data", "VIGIL_METRICS_LISTEN": raw})


def test_metrics_are_off_by_default_and_cost_nothing(make: HarnessFactory) -> None:
    assert load_settings({"VIGIL_DATA_DIR": "/tmp/vigil-metrics-data"}).metrics_listen is None
    harness = make()
    runtime = harness.runtime
    assert runtime.metrics is NULL_METRICS and runtime.metrics.address is None
    assert runtime.deps.metrics is NULL_METRICS
    assert isinstance(runtime.store, LmdbStore) and runtime.store.writer.on_commit is None, "no timing of commits"


def test_turns_model_calls_and_commits_are_counted_and_served(make: HarnessFactory) -> None:
    harness = make(metrics_listen="127.0.0.1:0")
    address = harness.runtime.metrics.address
    assert address is not None and address[1] > 0
    for word in ("one", "two", "three"):
        harness.say(key_of(41), f"turn {word}")
        assert harness.drain(key_of(41))
    harness.say(key_of(42), "another chat")
    assert harness.drain(key_of(42))
    shown = samples(fetch(address))
    assert shown[("vigil_turns_total", (("kind", "user"), ("outcome", "done")))] == 4
    assert shown[("vigil_turns_total", (("kind", "heartbeat"), ("outcome", "done")))] == 0, "present from the start"
    assert shown[("vigil_turn_seconds_count", (("kind", "user"),))] == 4
    assert shown[("vigil_turn_first_text_seconds_count", (("kind", "user"),))] == 4
    assert shown[("vigil_model_calls_total", (("outcome", "ok"),))] == 4
    assert shown[("vigil_model_tokens_total", (("kind", "input"),))] > 0
    assert shown[("vigil_store_commit_seconds_count", ())] >= 1
    assert shown[("vigil_live_sessions", ())] == 2
    assert shown[("vigil_sessions_spawned_total", ())] == 2
    assert shown[("vigil_store_bytes", ())] > 0
    buckets = [v for (name, labels), v in shown.items()
               if name == "vigil_turn_seconds_bucket" and ("kind", "user") in labels]
    assert buckets == sorted(buckets) and buckets[-1] == 4, "buckets are cumulative, +Inf holds every turn"
    with pytest.raises(urllib.error.HTTPError) as refused:
        fetch(address, "/")
    assert refused.value.code == 404

    harness.shutdown()
    with pytest.raises(urllib.error.URLError):
        fetch(address)  # closed with the runtime


def prom(store: LmdbStore) -> PromMetrics:
    return PromMetrics("127.0.0.1:0", Registry(), store, QuerySlots(2))


def test_labels_are_closed_sets(store: LmdbStore) -> None:
    metrics = prom(store)
    usage = WebUsage(input_tokens=100, output_tokens=10, web_searches=3)
    metrics.model_call("claude-sonnet-5-5", ModelResponse(content=(), stop_reason="end_turn", usage=usage), None)
    typed = "claude-whatever-a-user-typed-into-model"
    metrics.model_call(typed, ModelResponse(content=(), stop_reason="end_turn", usage=usage, model=typed), None)
    metrics.heartbeat_skipped("outside active hours")
    metrics.heartbeat_skipped("a reason added later, in a sentence")
    metrics.heartbeat_skipped("limit")
    metrics.schedule("fired")
    metrics.delivery_failed(True)
    metrics.delivery_retry("flood")
    metrics.turn("scheduled", "done", 1.0)  # a turn kind added by another part: a series of its own
    metrics.start()
    try:
        assert metrics.address is not None
        shown = samples(fetch(metrics.address))
    finally:
        metrics.close()
    assert shown[("vigil_web_searches_total", ())] == 6, "counted when the usage carries them"
    costs = {dict(labels)["model"] for (name, labels) in shown if name == "vigil_model_cost_dollars_total"}
    assert costs == {"claude-sonnet-5-5", "other"}
    assert shown[("vigil_heartbeats_skipped_total", (("reason", "outside_hours"),))] == 1
    assert shown[("vigil_heartbeats_skipped_total", (("reason", "other"),))] == 1
    assert shown[("vigil_heartbeats_skipped_total", (("reason", "limit"),))] == 1
    assert shown[("vigil_schedules_total", (("outcome", "fired"),))] == 1
    assert shown[("vigil_schedules_total", (("outcome", "skipped"),))] == 0
    assert shown[("vigil_delivery_failures_total", (("kind", "permanent"),))] == 1
    assert shown[("vigil_delivery_retries_total", (("reason", "flood"),))] == 1
    assert shown[("vigil_turns_total", (("kind", "scheduled"), ("outcome", "done")))] == 1
    assert skip_label("messages waiting") == "messages_waiting" and skip_label("anything") == "other"
    assert model_label("claude-haiku-4-5-20251001") == "claude-haiku-4-5-20251001" and model_label(typed) == "other"


def test_a_model_call_is_filed_by_how_it_ended() -> None:
    usage = TokenUsage(input_tokens=5, output_tokens=2)
    done = ModelResponse(content=(), stop_reason="end_turn", usage=usage, model="claude-opus-5-5")
    cut = ModelResponse(content=(), stop_reason="cancelled", usage=usage)
    assert call_figures("claude-sonnet-5-5", done, None) == ("ok", "claude-opus-5-5", usage)
    assert call_figures("claude-sonnet-5-5", cut, None) == ("cancelled", "claude-sonnet-5-5", usage)
    overloaded = ModelError("busy", "overloaded", partial=cut)
    assert call_figures("claude-sonnet-5-5", None, overloaded) == ("overloaded", "claude-sonnet-5-5", usage)
    assert call_figures("m", None, ModelError("no", "auth")) == ("auth", "m", None)
    assert call_figures("m", None, RuntimeError("bug")) == ("internal", "m", None)


def test_an_address_in_use_is_a_startup_error(store: LmdbStore) -> None:
    first = prom(store)
    first.start()
    try:
        assert first.address is not None
        second = PromMetrics(f"127.0.0.1:{first.address[1]}", Registry(), store, QuerySlots(2))
        with pytest.raises(StartupError, match=r"VIGIL_METRICS_LISTEN=127\.0\.0\.1:\d+: cannot listen there"):
            second.start()
    finally:
        first.close()
