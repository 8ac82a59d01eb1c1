"""LoadTransport and SinkApplication on Ray, and the benchmark's JSON (tiny sizes; timings never asserted)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import ray

from bench import run_bench as bench
from ray_dispatch.api import Deployment, deploy

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def flow(ray_session: None) -> Iterator[Deployment]:
    dep = deploy(bench.simple_config(reply=False), name="loadgen-test", namespace=bench.NAMESPACE)
    yield dep
    dep.shutdown()


def test_sink_counts_exactly_the_messages_the_load_transport_generated(flow: Deployment) -> None:
    load, sink = flow.endpoint("load"), flow.endpoint("sink")
    ray.get(sink.reset.remote())
    generated = ray.get(load.generate.remote(700, run="exact"))
    result = ray.get(sink.wait_for.remote(700, 0, 30))
    assert (generated["offered"], generated["confirmed"], generated["failed"]) == (700, 700, 0)
    assert result["unique"] == 700 and result["duplicates"] == 0
    assert result["per_prefix"] == {generated["prefix"]: 700}
    assert result["latency_ms"]["count"] == 700 and result["latency_ms"]["p50"] is not None


def test_replies_flow_out_and_every_ack_returns_to_the_application(flow: Deployment) -> None:
    load, sink = flow.endpoint("load"), flow.endpoint("sink")
    ray.get(sink.reset.remote())
    ray.get(sink.configure.remote(True))
    try:
        ray.get(load.generate.remote(150, run="acks"))
        result = ray.get(sink.wait_for.remote(150, 150, 30))
    finally:
        ray.get(sink.configure.remote(False))
    transport = ray.get(load.results.remote())
    assert result["unique"] == 150 and result["replies"] == 150
    assert transport["outbound_received"] == 150
    assert result["acks"] == 150 and result["other_events"] == 0
    assert result["acks_unique"] == 150 and result["ack_duplicates"] == 0


def test_paced_generation_and_dispatcher_status_report_rates_and_latency(flow: Deployment) -> None:
    load, sink = flow.endpoint("load"), flow.endpoint("sink")
    ray.get(sink.reset.remote())
    generated = ray.get(load.generate.remote(30, rate=200.0, run="paced"))
    result = ray.get(sink.wait_for.remote(30, 0, 30))
    status = ray.get(flow.dispatchers[0].status.remote())
    assert generated["offered"] == 30 and result["unique"] == 30
    metrics = status["metrics"]
    assert metrics["batches"] > 0 and metrics["batch_latency_ms"]["p50"] is not None
    assert "inbound" in metrics["e2e_latency_ms"]
    assert metrics["rates"]["received"]["inbound:load"] > 0
    assert isinstance(ray.get(flow.dispatchers[0].ping.remote())["pid"], int)


def test_generate_refuses_a_run_without_an_end(flow: Deployment) -> None:
    with pytest.raises(ray.exceptions.RayTaskError, match="count or duration"):
        ray.get(flow.endpoint("load").generate.remote())


def test_bench_json_has_every_key_and_loses_nothing(ray_session: None) -> None:
    result = bench.run_bench(bench.BenchSizes.tiny())
    for key in (
        "baseline_msgs_per_s",
        "baseline_blob_msgs_per_s",
        "dispatch_msgs_per_s",
        "ratio",
        "ratio_to_blob",
        "latency_p50_ms",
        "latency_p99_ms",
        "latency_under_load",
        "overload_peak_rss_mb",
        "overload_lost",
        "overload_queueing_delay_p50_ms",
        "overload_queueing_delay_p99_ms",
        "cpu_us_per_msg",
        "dispatchers_1_vs_2",
        "scale_out_model",
        "machine",
        "targets",
        "scenarios",
        "notes",
        "complete",
    ):
        assert key in result, key
    assert result["complete"] is True
    assert result["machine"]["cpus"] and result["machine"]["date"]
    scenarios = result["scenarios"]
    assert set(scenarios) == {
        "a_baseline",
        "b_dispatch",
        "c_keyword",
        "d_light_load",
        "e_overload",
        "f_latency_under_load",
        "g_dispatcher_replicas",
    }
    baseline = scenarios["a_baseline"]
    assert baseline["received_unique"] == baseline["sent"] and baseline["duplicates"] == 0
    blob = baseline["blob"]["1000"]
    assert (blob["complete"], blob["missing"], blob["duplicates"]) == (True, 0, 0)
    assert result["baseline_blob_msgs_per_s"] == blob["msgs_per_s"] > 0
    assert set(blob["cpu_us_per_msg"]) == {"source", "forwarder", "sink", "total"}
    assert blob["blob_bytes_per_msg"] > 100  # a whole wire payload per message went through as bytes
    assert result["ratio_to_blob"] > 0
    flows = (
        *scenarios["b_dispatch"].values(),
        scenarios["c_keyword"],
        scenarios["g_dispatcher_replicas"]["1"],
        scenarios["g_dispatcher_replicas"]["2"],
    )
    for flow in flows:
        assert (flow["complete"], flow["missing"], flow["duplicates"]) == (True, 0, 0), flow
        assert flow["routed_msgs_per_s"] > 0 and flow["routed"] in (flow["messages"], 3 * flow["messages"])
        assert set(flow["cpu_us_per_msg"]) == {"transport", "dispatcher", "application", "total"}
    with_acks = scenarios["b_dispatch"]["with_acks"]
    assert with_acks["received_unique"] == with_acks["messages"] and with_acks["acks"] == with_acks["messages"]
    assert result["cpu_us_per_msg"] == with_acks["cpu_us_per_msg"] and result["cpu_us_per_msg"]["total"] > 0
    keyword = scenarios["c_keyword"]
    assert keyword["per_app"]["app_a"] + keyword["per_app"]["app_b"] == keyword["messages"]
    assert keyword["per_app"]["app_a"] > 0 and keyword["per_app"]["app_b"] > 0
    assert keyword["acks"] == keyword["messages"] and keyword["failure_records"] == 0
    two = scenarios["g_dispatcher_replicas"]["2"]
    assert result["dispatchers_1_vs_2"]["2"] == two["routed_msgs_per_s"]
    assert result["dispatchers_1_vs_2"]["two_over_one"] > 0
    for level in ("50%", "80%"):
        loaded = scenarios["f_latency_under_load"][level]
        assert (loaded["complete"], loaded["missing"], loaded["duplicates"]) == (True, 0, 0), loaded
        assert loaded["received_unique"] == loaded["messages"] > 0
        assert result["latency_under_load"][level]["p99_ms"] == loaded["latency_ms"]["p99"] is not None
    light = scenarios["d_light_load"]
    assert (light["complete"], light["missing"], light["duplicates"]) == (True, 0, 0)
    overload = scenarios["e_overload"]
    assert overload["lost"] == result["overload_lost"] == 0
    assert (overload["complete"], overload["missing"], overload["duplicates"]) == (True, 0, 0)
    assert overload["received_unique"] == overload["sent"] > 0
    assert result["overload_queueing_delay_p99_ms"] == overload["queueing_delay_ms"]["p99"] is not None
    assert result["overload_peak_rss_mb"] > 0
    model = result["scale_out_model"]
    assert model["cpu_us_per_msg_total"] == pytest.approx(result["cpu_us_per_msg"]["total"], abs=0.05)
    assert set(model["predicted_msgs_per_s"]) >= {"2", "4", "8"}
    assert set(result["targets"]) >= {"ratio_to_blob", "dispatcher_cpu_us_per_msg", "latency_under_load_80_p99_ms"}
