"""Cumulative histogram buckets in ``actors.metrics``: what ``/metrics`` exports as histograms."""

from __future__ import annotations

from datetime import timedelta

import pytest

from actors import metrics
from actors.metrics import BATCH_SIZE_BOUNDARIES, LATENCY_BOUNDARIES_MS, BucketCounts, DispatcherMetrics
from ray_dispatch.core.dispatcher import DispatcherStats
from ray_dispatch.core.message import utcnow

NOW = 100.0


def clock() -> float:
    """A monotonic clock that stands still: batches arrive ``NOW - started`` seconds before they are done."""
    return NOW


def test_a_value_counts_in_the_first_bucket_whose_bound_is_at_least_it() -> None:
    counts = BucketCounts([1, 5, 10])
    for value in (0.2, 1, 1.5, 5, 10, 11, 500):
        counts.observe(value)
    assert counts.to_dict() == {
        "buckets": [[1, 2], [5, 4], [10, 5]],  # cumulative: le=1 holds 0.2 and 1 (bounds are inclusive)
        "count": 7,  # the +Inf bucket: 11 and 500 are above every bound
        "sum": pytest.approx(528.7),
    }


def test_adding_bucket_counts_adds_every_bucket_count_and_sum() -> None:
    one, other = BucketCounts([1, 5]), BucketCounts([1, 5])
    one.observe(1)
    other.observe(3)
    other.observe(9)
    one.add(other)
    assert one.to_dict() == {"buckets": [[1, 1], [5, 2]], "count": 3, "sum": 13.0}


def test_dispatcher_snapshot_has_latency_and_received_batch_size_buckets() -> None:
    dm = DispatcherMetrics("dep", DispatcherStats(), lambda: {"bucket_app": 0}, clock=clock)
    old = utcnow() - timedelta(milliseconds=40)
    dm.batch_done("bucket_sms", [("inbound", {"timestamp": old}), ("inbound", {"timestamp": old})], NOW - 0.004)
    dm.batch_done("bucket_sms", [("inbound", {"timestamp": old})], NOW - 0.030)
    histograms = dm.snapshot()["histograms"]
    latency = dict((b, n) for b, n in histograms["batch_latency_ms"]["bucket_sms"]["buckets"])
    assert histograms["batch_latency_ms"]["bucket_sms"]["count"] == 2
    assert latency[3] == 0 and latency[5] == 1 and latency[50] == 2  # 4 ms, then 30 ms
    assert histograms["batch_latency_ms"]["bucket_sms"]["sum"] == pytest.approx(34.0)
    sizes = histograms["batch_size"]["received"]["bucket_sms"]
    assert sizes["count"] == 2 and sizes["sum"] == 3.0 and sizes["buckets"][:2] == [[1, 1], [2, 2]]
    e2e = histograms["e2e_latency_ms"]["inbound"]
    assert e2e["count"] == 2 and e2e["sum"] >= 80.0
    assert [b for b, _ in e2e["buckets"]] == LATENCY_BOUNDARIES_MS


def test_published_batch_sizes_and_queue_depth_add_up_the_replicas_of_each_pool_endpoint() -> None:
    dm = DispatcherMetrics("dep", DispatcherStats(), lambda: {"bucket_pool": 0}, clock=clock)
    # what the senders of this process report (actors.sender calls the observer DispatcherMetrics installed)
    metrics._observe_sender_batch("bucket_pool[0]", 4, 7)
    metrics._observe_sender_batch("bucket_pool[1]", 30, 5)
    metrics._observe_sender_batch("bucket_pool[1]", 2, 1)
    metrics._observe_sender_batch("bucket_elsewhere[0]", 9, 9)  # not one of this dispatcher's endpoints
    histograms = dm.snapshot()["histograms"]
    published = histograms["batch_size"]["published"]
    assert list(published) == ["bucket_pool"]
    assert published["bucket_pool"]["count"] == 3 and published["bucket_pool"]["sum"] == 36.0
    assert [b for b, _ in published["bucket_pool"]["buckets"]] == BATCH_SIZE_BOUNDARIES
    assert histograms["queue_depth"] == {"bucket_pool": 8}  # each replica's last: 7 + 1


def test_creating_dispatcher_metrics_makes_senders_report_batches() -> None:
    from actors import sender

    sender.set_batch_observer(None)
    DispatcherMetrics("dep", DispatcherStats(), dict, clock=clock)
    assert sender._batch_observer is metrics._observe_sender_batch
