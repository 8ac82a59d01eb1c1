"""Ray-free parts of the benchmark tooling: id counting, latency summaries, rates, the sender hook, status text."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from actors import sender as sender_module
from actors.loadgen import IdCounter, LoadTransportConfig, build_templates, stamped
from actors.metrics import DispatcherMetrics, LatencyReservoir, RecentLatencies, latency_summary, percentile
from actors.sender import BatchSender, SenderOptions
from ray_dispatch.cli import _print_status
from ray_dispatch.core.dispatcher import DispatcherStats
from ray_dispatch.core.message import utcnow


def test_id_counter_counts_each_sequence_number_once_per_prefix() -> None:
    ids = IdCounter()
    fresh = [ids.add(f"run1-load-0-{seq}") for seq in (0, 1, 9000, 1)]
    assert fresh == [True, True, True, False]
    assert ids.add("run1-load-1-1") is True  # another prefix: another bitmap
    assert ids.add("0f3a9c") is True and ids.add("0f3a9c") is False  # not <prefix>-<seq>: kept in a set
    assert (ids.unique, ids.duplicates) == (5, 2)
    assert ids.per_prefix() == {"run1-load-0": 3, "run1-load-1": 1}


def test_reservoir_stays_bounded_and_keeps_count_and_max() -> None:
    reservoir = LatencyReservoir(capacity=100, seed=7)
    for i in range(10_000):
        reservoir.add(i / 1000)
    assert len(reservoir.samples) == 100
    summary = reservoir.summary()
    assert summary["count"] == 10_000
    assert summary["max"] == pytest.approx(9999.0)
    assert 2000 < summary["p50"] < 8000  # a uniform sample of 0..10 s has its median near 5 s


def test_latency_summary_percentiles_in_milliseconds() -> None:
    samples = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    summary = latency_summary(samples)
    assert (summary["p50"], summary["p99"], summary["max"]) == (50.0, 99.0, 100.0)
    assert latency_summary([])["p50"] is None
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 0.5)


def test_recent_latencies_forget_old_values() -> None:
    recent = RecentLatencies(window=3)
    for value in (1.0, 1.0, 1.0, 0.001, 0.001, 0.001):
        recent.add(value)
    summary = recent.summary()
    assert (summary["count"], summary["window"], summary["max"]) == (6, 3, 1.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_dispatcher_metrics_rates_over_the_last_interval_and_latencies() -> None:
    clock = FakeClock()
    stats = DispatcherStats()
    pending = {"sink": 7}
    metrics = DispatcherMetrics("dep", stats, lambda: pending, interval=1.0, clock=clock)
    stats.received["inbound", "load"] += 500
    stats.published["inbound", "sink"] += 500
    clock.now += 2.0
    metrics.sample()
    assert metrics.rates["received"] == {"inbound:load": 250.0}
    assert metrics.rates["published"] == {"inbound:sink": 250.0}
    stats.received["inbound", "load"] += 100
    clock.now += 1.0
    old = utcnow() - timedelta(milliseconds=40)
    batch = [("inbound", {"timestamp": old, "message_id": "a"}), ("inbound", {"timestamp": old})]
    metrics.batch_done("load", batch, started=clock.now - 0.005)
    snapshot = metrics.snapshot()
    assert snapshot["rates"]["received"] == {"inbound:load": 100.0}  # the second interval only
    assert snapshot["batches"] == 1 and snapshot["mean_batch"] == 2.0
    assert snapshot["batch_latency_ms"]["p50"] == pytest.approx(5.0)
    assert snapshot["e2e_latency_ms"]["inbound"]["p50"] >= 40.0
    assert snapshot["pending"] == {"sink": 7}


def test_dispatcher_metrics_ignore_batches_without_a_usable_timestamp() -> None:
    metrics = DispatcherMetrics("dep", DispatcherStats(), dict, clock=FakeClock())
    metrics.batch_done("load", [("inbound", {"timestamp": "2024-01-01 00:00:00.000000"})], started=99.0)
    metrics.batch_done("load", [], started=99.0)
    assert metrics.e2e_latency == {} and metrics.batches == 2


async def test_every_sender_reports_its_batches_to_the_observer() -> None:
    seen: list[tuple[str, int, int]] = []
    sender_module.set_batch_observer(lambda name, size, queued: seen.append((name, size, queued)))
    gate = asyncio.Event()

    async def call(batch: list[Any], order: Any) -> None:
        await gate.wait()

    try:
        sender = BatchSender("app[0]", call, SenderOptions(max_in_flight=1, max_batch=3, max_wait=0))
        futures = [await sender.send(0)]
        await asyncio.sleep(0)
        futures += [await sender.send(i) for i in range(1, 6)]
        gate.set()
        await asyncio.gather(*futures)
        await sender.close()
    finally:
        sender_module.set_batch_observer(None)
    assert [size for _, size, _ in seen] == [1, 3, 2]
    assert seen[1] == ("app[0]", 3, 2)  # two items were still queued when the batch of three left
    assert Counter(name for name, _, _ in seen) == {"app[0]": 3}


def test_status_text_shows_rates_and_latencies(capsys: pytest.CaptureFixture[str]) -> None:
    summary = {"count": 10, "p50": 1.25, "p99": 7.5, "window": 10}
    info = {
        "name": "dep",
        "namespace": "ns",
        "dispatchers": [
            {
                "dispatcher": 0,
                "router": "SimpleDispatchRouter",
                "node_id": "abc",
                "failures": 0,
                "stats": {"received": {"inbound:load": 10}, "published": {"inbound:sink": 10}},
                "metrics": {
                    "interval_s": 1.0,
                    "rates": {"received": {"inbound:load": 1234.0}, "published": {"inbound:sink": 1200.0}},
                    "batch_latency_ms": summary,
                    "e2e_latency_ms": {"inbound": summary},
                    "batches": 3,
                    "mean_batch": 3.3,
                },
            }
        ],
        "endpoints": {
            "load": {"role": "transport", "replicas": {}},
            "sink": {"role": "application", "replicas": {}},
        },
    }
    _print_status(info)
    out = capsys.readouterr().out
    assert "from it inbound 1,234/s" in out
    assert "to it inbound 1,200/s" in out
    assert "p50 1.25 ms, p99 7.50 ms" in out
    assert "batches: 3 (mean 3.3 messages)" in out


def test_stamped_payloads_share_no_dict_with_their_template_or_each_other() -> None:
    (template,) = build_templates("load", LoadTransportConfig(templates=1))
    first, second = stamped(template, "r-load-0-0"), stamped(template, "r-load-0-1")
    for key in ("helper_metadata", "routing_metadata", "transport_metadata"):
        assert first[key] is not second[key] and first[key] is not template[key], key
    first["routing_metadata"]["hops"] = 1  # as the dispatcher does on arrival
    assert "hops" not in second["routing_metadata"] and "hops" not in template["routing_metadata"]
    assert (first["message_id"], second["message_id"]) == ("r-load-0-0", "r-load-0-1")
    assert isinstance(first["transport_metadata"]["sent_at"], float)
