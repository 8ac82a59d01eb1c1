"""``render_metrics``: a fixed status snapshot, read back with prometheus_client's own parser."""

from __future__ import annotations

import copy
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ray_dispatch.console.prometheus import METRIC_NAMES, render_metrics, serve_metrics
from tests.prometheus.snapshot import STATUS


def _samples(status: dict[str, Any]) -> dict[str, list[tuple[dict[str, str], float]]]:
    body, _ = render_metrics(status)
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def _value(samples: list[tuple[dict[str, str], float]], **labels: str) -> list[float]:
    return [value for found, value in samples if all(found.get(k) == v for k, v in labels.items())]


def test_content_type_is_the_text_format_every_prometheus_reads() -> None:
    body, content_type = render_metrics(STATUS)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert body.startswith(b"# HELP ")


def test_every_family_is_written_with_its_type() -> None:
    body, _ = render_metrics(STATUS)
    types = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    # the parser names counter families without their _total suffix
    assert {name.removesuffix("_total") for name in METRIC_NAMES} == set(types)
    assert types["ray_dispatch_messages"] == "counter"
    assert types["ray_dispatch_endpoint_messages"] == "counter"
    assert types["ray_dispatch_batch_size"] == "histogram"
    assert types["ray_dispatch_batch_latency_ms"] == "histogram"
    assert types["ray_dispatch_e2e_latency_ms"] == "histogram"
    assert types["ray_dispatch_connection_state"] == "gauge"


def test_messages_by_deployment_dispatcher_endpoint_direction_and_stage() -> None:
    messages = _samples(STATUS)["ray_dispatch_messages_total"]
    assert {tuple(sorted(labels)) for labels, _ in messages} == {
        ("deployment", "direction", "dispatcher", "endpoint", "stage")
    }
    assert _value(messages, dispatcher="0", endpoint="sms", direction="inbound", stage="received") == [10]
    assert _value(messages, dispatcher="1", endpoint="sms", direction="inbound", stage="received") == [20]
    assert _value(messages, dispatcher="0", endpoint="app", direction="event", stage="published") == [4]
    assert _value(messages, dispatcher="1", endpoint="app", direction="inbound", stage="failed") == [2]
    assert {labels["deployment"] for labels, _ in messages} == {"shop"}
    assert _value(messages, dispatcher="2") == []  # the one that did not answer has no series


def test_endpoint_outcomes_per_replica_from_its_counters() -> None:
    outcomes = _samples(STATUS)["ray_dispatch_endpoint_messages_total"]
    assert _value(outcomes, endpoint="sms", replica="0", outcome="handled") == [14]
    assert _value(outcomes, endpoint="sms", replica="0", outcome="refused") == [2]
    assert _value(outcomes, endpoint="app", replica="0", outcome="handled") == [28]  # inbound 20 + events 8
    assert _value(outcomes, endpoint="app", replica="0", outcome="duplicate") == [1]
    assert _value(outcomes, endpoint="app", replica="1") == []  # dead: nothing to count
    assert _value(outcomes, endpoint="sms", role="transport", outcome="duplicate") == [0]


def test_histograms_have_cumulative_buckets_count_and_sum() -> None:
    samples = _samples(STATUS)
    buckets = samples["ray_dispatch_batch_size_bucket"]
    received = {
        labels["le"]: v for labels, v in buckets if (labels["stage"], labels["dispatcher"]) == ("received", "0")
    }
    assert received == {"1.0": 3, "2.0": 4, "5.0": 6, "+Inf": 6}
    assert _value(samples["ray_dispatch_batch_size_sum"], dispatcher="0", endpoint="app", stage="published") == [16.0]
    assert _value(samples["ray_dispatch_batch_size_count"], dispatcher="0", endpoint="app", stage="published") == [3]
    latency = samples["ray_dispatch_batch_latency_ms_bucket"]
    assert _value(latency, dispatcher="1", source="sms", le="+Inf") == [12]  # the count, 6 * 2
    assert _value(samples["ray_dispatch_e2e_latency_ms_sum"], dispatcher="0", direction="inbound") == [260.25]


def test_gauges_queue_depth_pending_failures_replicas_and_dispatchers_up() -> None:
    samples = _samples(STATUS)
    assert _value(samples["ray_dispatch_queue_depth"], dispatcher="1", endpoint="app") == [24]
    assert _value(samples["ray_dispatch_pending"], dispatcher="0", endpoint="app") == [3]
    assert _value(samples["ray_dispatch_pending"], dispatcher="0", endpoint="sms") == [0]
    assert samples["ray_dispatch_failure_records"] == [({"deployment": "shop", "dispatcher": "0"}, 5)]
    replicas = samples["ray_dispatch_replicas"]
    assert _value(replicas, endpoint="app", role="application", state="alive") == [1]
    assert _value(replicas, endpoint="app", state="dead") == [1]
    assert _value(replicas, endpoint="sms", state="alive") == [1]
    up = {labels["dispatcher"]: v for labels, v in samples["ray_dispatch_dispatcher_up"]}
    assert up == {"0": 1, "1": 1, "2": 0}


def test_connection_state_is_one_for_the_current_state_of_each_connection() -> None:
    states = _samples(STATUS)["ray_dispatch_connection_state"]
    ones = sorted((labels["connection"], labels["state"]) for labels, v in states if v == 1)
    assert ones == [("bind-0", "bound"), ("bind-1", "refused")]
    assert len(_value(states, connection="bind-0")) == len(_value(states, connection="bind-1")) > 2
    assert _value(states, endpoint="sms", replica="0", connection="bind-1", state="bound") == [0]


def test_a_state_outside_the_known_ones_still_gets_its_series() -> None:
    status = copy.deepcopy(STATUS)
    status["endpoints"]["sms"]["replicas"]["0"]["connections"] = [{"name": "custom", "state": "warming_up"}]
    states = _samples(status)["ray_dispatch_connection_state"]
    assert [(labels["state"], v) for labels, v in states if v == 1] == [("warming_up", 1)]


def test_each_call_renders_only_its_own_snapshot() -> None:
    render_metrics(STATUS)
    smaller = copy.deepcopy(STATUS)
    smaller["dispatchers"] = smaller["dispatchers"][:1]
    smaller["dispatchers"][0]["stats"]["received"] = {"inbound:sms": 1}
    messages = _samples(smaller)["ray_dispatch_messages_total"]
    assert _value(messages, stage="received") == [1]
    assert _value(messages, dispatcher="1") == []


def test_an_empty_snapshot_renders_families_without_series() -> None:
    samples = _samples({"name": "idle", "dispatchers": [], "endpoints": {}})
    assert samples == {}


async def test_serve_metrics_answers_a_scrape_with_a_fresh_status() -> None:
    import aiohttp

    class FakeDeployment:
        calls = 0

        def status(self) -> dict[str, Any]:
            FakeDeployment.calls += 1
            return STATUS

    runner, port = await serve_metrics(FakeDeployment(), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    assert response.status == 200
                    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                    body = await response.text()
    finally:
        await runner.cleanup()
    assert FakeDeployment.calls == 2
    assert body.encode() == render_metrics(STATUS)[0]


def test_the_readme_table_names_every_family_with_its_type_and_labels() -> None:
    from pathlib import Path

    from ray_dispatch.console.prometheus import FAMILIES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in readme.splitlines():
        if line.startswith("| `ray_dispatch_"):
            name, kind, labels = (cell.strip().strip("`") for cell in line.strip("|").split("|")[:3])
            rows[name] = (kind, tuple(label.strip() for label in labels.split(",")))
    assert rows == {family.name: (family.kind, family.labels) for family in FAMILIES}


async def test_serve_metrics_answers_503_with_the_reason_when_status_fails() -> None:
    import aiohttp

    class BrokenDeployment:
        def status(self) -> dict[str, Any]:
            raise ConnectionError("Ray is not running at 127.0.0.1:6379")

    runner, port = await serve_metrics(BrokenDeployment(), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
            status, text = response.status, await response.text()
    finally:
        await runner.cleanup()
    assert status == 503
    assert text == "deployment status failed: ConnectionError: Ray is not running at 127.0.0.1:6379\n"


def test_an_autoscaled_endpoint_shows_its_current_target_and_bounds() -> None:
    body, _ = render_metrics(STATUS)
    [family] = [
        f for f in text_string_to_metric_families(body.decode()) if f.name == "ray_dispatch_autoscaling_replicas"
    ]
    assert {s.labels["kind"]: s.value for s in family.samples if s.labels["endpoint"] == "app"} == {
        "current": 2,
        "target": 3,
        "min": 1,
        "max": 4,
    }
    assert all(s.labels["endpoint"] == "app" for s in family.samples), "only autoscaled endpoints"
