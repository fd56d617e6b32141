"""`/metrics` of a running `vigil run`, fetched over HTTP and read with prometheus_client's own parser.

The module's shared vigil serves its metrics on a loopback port it picks itself (`127.0.0.1:0`) and
logs where; the tests read that line, drive chats through the Bot API and Messages API stand-ins, and
wait (with a timeout) for the counters to move: a reply reaches Telegram a moment before its turn is
counted. Metrics off (the default) is checked on a vigil of its own: it listens on no port at all.
"""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import run_vigil
from tests.rig import Rig

pytestmark = pytest.mark.e2e

RIG_SETTINGS = {"VIGIL_METRICS_LISTEN": "127.0.0.1:0", "VIGIL_HEARTBEAT_MIN_INTERVAL": "1s"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics_url(rig: Rig) -> str:
    text = rig.running().err.wait_for(lambda t: '"metrics.serving"' in t, timeout=10, what="metrics.serving")
    line = next(line for line in text.splitlines() if '"metrics.serving"' in line)
    return str(json.loads(line)["url"])


def exposition(rig: Rig) -> str:
    with urllib.request.urlopen(metrics_url(rig), timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


def scrape(rig: Rig) -> Samples:
    """Every sample of `/metrics`, by (name, sorted labels), parsed by prometheus_client."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(exposition(rig)) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def wait_value(rig: Rig, at_least: float, name: str, **labels: str) -> Samples:
    """Scrapes until the sample reaches `at_least` (it moves just after the reply reached Telegram)."""
    def reached() -> Samples | None:
        samples = scrape(rig)
        return samples if value(samples, name, **labels) >= at_least else None

    return rig.bot.wait_for(reached, 10, f"{name}{labels} to reach {at_least}")


def test_turns_total_grows_by_exactly_the_number_of_turns_served(rig: Rig) -> None:
    tess = rig.person("Tess")
    before = scrape(rig)
    base = value(before, "vigil_turns_total", kind="user", outcome="done")
    for word in ("one", "two", "three"):
        rig.ask(tess.id, tess, f"count turn {word}", f"echo: count turn {word}")
    after = wait_value(rig, base + 3, "vigil_turns_total", kind="user", outcome="done")
    assert value(after, "vigil_turns_total", kind="user", outcome="done") == base + 3
    assert total(after, "vigil_turns_total") == total(before, "vigil_turns_total") + 3, "no other turn was counted"
    assert value(after, "vigil_turn_seconds_count", kind="user") == value(before, "vigil_turn_seconds_count",
                                                                         kind="user") + 3
    assert value(after, "vigil_turn_first_text_seconds_count", kind="user") == value(
        before, "vigil_turn_first_text_seconds_count", kind="user") + 3

    # Messages that arrive while a turn runs are answered together, in one turn: counted once.
    first = rig.say(tess.id, tess, "[[delay=2]] a slow one")
    rig.wait_request("a slow one")
    rig.say(tess.id, tess, "meanwhile A")
    rig.say(tess.id, tess, "meanwhile B")
    together = rig.answer(tess.id, first, "meanwhile B", timeout=15)
    assert "meanwhile A" in together.text, "both were answered in one turn"
    later = wait_value(rig, base + 5, "vigil_turns_total", kind="user", outcome="done")
    assert value(later, "vigil_turns_total", kind="user", outcome="done") == base + 5, "two turns, three messages"


def test_counters_move_with_traffic(rig: Rig) -> None:
    una = rig.person("Una")
    before = scrape(rig)
    rig.ask(una.id, una, "some traffic please", "echo: some traffic please")
    after = wait_value(rig, value(before, "vigil_model_calls_total", outcome="ok") + 1,
                       "vigil_model_calls_total", outcome="ok")
    assert value(after, "vigil_model_tokens_total", kind="input") > value(before, "vigil_model_tokens_total",
                                                                          kind="input")
    assert value(after, "vigil_model_tokens_total", kind="output") > value(before, "vigil_model_tokens_total",
                                                                           kind="output")
    assert total(after, "vigil_model_cost_dollars_total") > total(before, "vigil_model_cost_dollars_total")
    assert value(after, "vigil_live_sessions") >= 1
    assert value(after, "vigil_sessions_spawned_total") >= value(before, "vigil_sessions_spawned_total") + 1
    assert value(after, "vigil_store_commit_seconds_count") > value(before, "vigil_store_commit_seconds_count")
    assert value(after, "vigil_store_bytes") > 0
    assert value(after, "vigil_store_map_bytes") >= value(after, "vigil_store_bytes")
    for gauge in ("vigil_mailbox_depth", "vigil_pending_messages", "vigil_inbox_messages", "vigil_busy_sessions",
                  "vigil_model_calls_in_flight", "vigil_supervisor_mailbox_depth"):
        assert (gauge, ()) in after, f"{gauge} is exposed"

    # A heartbeat run by hand: a heartbeat turn, and a beat fired.
    rig.ask(una.id, una, "/heartbeat test", "Test beat")
    beat = wait_value(rig, value(before, "vigil_heartbeats_fired_total", decision="silent") + 1,
                      "vigil_heartbeats_fired_total", decision="silent")
    assert value(beat, "vigil_turns_total", kind="heartbeat", outcome="done") == value(
        before, "vigil_turns_total", kind="heartbeat", outcome="done") + 1

    # A bad gateway twice: two deliveries tried again, then the reply arrives.
    rig.bot.fail(times=2, status=502, method="sendMessage")
    rig.ask(una.id, una, "through the gateway", "echo: through the gateway", timeout=15)
    retried = wait_value(rig, value(before, "vigil_delivery_retries_total", reason="network") + 2,
                         "vigil_delivery_retries_total", reason="network")
    assert value(retried, "vigil_delivery_retries_total", reason="network") == value(
        before, "vigil_delivery_retries_total", reason="network") + 2

    # A user who blocked the bot: a delivery failed for good.
    vic = rig.person("Vic")
    rig.say(vic.id, vic, "[[delay=1]] are you there")
    rig.wait_request("are you there")
    rig.bot.block(vic.id)
    wait_value(rig, value(before, "vigil_delivery_failures_total", kind="permanent") + 1,
               "vigil_delivery_failures_total", kind="permanent")


def test_no_label_value_is_a_user_or_chat_id(rig: Rig) -> None:
    wes, xia = rig.person("Wes"), rig.person("Xia")
    group = rig.group("Metrics circle", supergroup=True)
    rig.ask(wes.id, wes, "private words", "echo: private words")
    rig.ask(group.id, xia, "@vigil_test_bot group words", "group words")
    rig.ask(xia.id, xia, "/model claude-sonnet-9-9", "Model for this chat")
    rig.ask(xia.id, xia, "under a model nobody prices", "echo: under a model nobody prices")
    wait_value(rig, 1e-9, "vigil_model_cost_dollars_total", model="other")
    text = exposition(rig)
    ids = {str(i) for i in (wes.id, xia.id, group.id, abs(group.id), rig.admin.id)}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for name, label in sample.labels.items():
                if name == "le":
                    continue  # a histogram's bucket bound
                assert label not in ids and not re.fullmatch(r"-?\d+", label), (sample.name, name, label)
                assert not any(i in label for i in ids), (sample.name, name, label)
                assert re.fullmatch(r"[a-z][a-z0-9_.-]*", label), (sample.name, name, label)
    models = {s.labels["model"] for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "vigil_model_cost_dollars_total"}
    assert "claude-sonnet-9-9" not in models, "a model name from /model that no price knows is 'other'"
    assert {"claude-sonnet-5-5", "other"} <= models


def test_only_the_metrics_path_is_served(rig: Rig) -> None:
    url = metrics_url(rig)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url.removesuffix("/metrics") + "/", timeout=10)
    assert refused.value.code == 404


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on: its socket inodes matched against the kernel's LISTEN table."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}", encoding="ascii") as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_metrics_are_off_by_default(pooled: Callable[..., Rig]) -> None:
    rig = pooled()
    yan = rig.person("Yan")
    rig.ask(yan.id, yan, "hello without metrics", "echo: hello without metrics")
    assert listening_ports(rig.running().process.pid) == set(), "vigil listens on no port without the setting"
    assert '"metrics.serving"' not in rig.running().err.text


def test_the_shared_vigil_listens_on_its_metrics_port_only(rig: Rig) -> None:
    port = int(metrics_url(rig).rsplit(":", 1)[1].split("/")[0])
    assert listening_ports(rig.running().process.pid) == {port}


def test_a_metrics_address_in_use_stops_the_start_with_one_line(fresh: Callable[..., Rig]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        rig = fresh(start=False, VIGIL_METRICS_LISTEN=address)
        result = run_vigil(["run"], rig.env, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"VIGIL_METRICS_LISTEN={address}: cannot listen there" in result.stderr
    assert "Traceback" not in result.stderr
