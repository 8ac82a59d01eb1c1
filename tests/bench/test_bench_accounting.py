"""The benchmark's accounting: a flow reports a rate only if every message (and ack) arrived exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from bench import run_bench
from bench.run_bench import account_delivery, account_flow, account_sink, best_round


def sink(unique: int, duplicates: int = 0, acks_unique: int = 0, ack_duplicates: int = 0) -> dict[str, Any]:
    """What a ``SinkApplication.results()`` says, reduced to the counts the accounting reads."""
    return {"unique": unique, "duplicates": duplicates, "acks_unique": acks_unique, "ack_duplicates": ack_duplicates}


def test_a_complete_flow_with_replies_counts_three_routed_messages_each() -> None:
    result = account_flow(100, True, [sink(60, acks_unique=60), sink(40, acks_unique=40)], seconds=2.0)
    assert result["complete"] is True and result["missing"] == 0 and result["duplicates"] == 0
    assert result["routed"] == 300 and result["routed_msgs_per_s"] == 150 and result["conversations_per_s"] == 50


def test_a_stalled_flow_says_what_is_missing_and_reports_no_rate() -> None:
    # The deadline passed with 3 messages never delivered and 5 replies never acked.
    result = account_flow(100, True, [sink(97, acks_unique=95)], seconds=60.0)
    assert result["complete"] is False and result["missing"] == 8
    assert result["routed"] is None and result["routed_msgs_per_s"] is None and result["conversations_per_s"] is None


def test_duplicate_acks_do_not_stand_in_for_missing_ones() -> None:
    # 105 acks arrived, but 10 of them repeat a reply already acked: only 95 replies were acked.
    result = account_flow(100, True, [sink(100, acks_unique=95, ack_duplicates=10)], seconds=1.0)
    assert (result["complete"], result["missing"], result["duplicates"]) == (False, 5, 10)
    assert result["routed_msgs_per_s"] is None


def test_duplicates_alone_make_a_flow_incomplete() -> None:
    result = account_flow(100, False, [sink(100, duplicates=2)], seconds=1.0)
    assert (result["complete"], result["missing"], result["duplicates"]) == (False, 0, 2)
    assert result["routed_msgs_per_s"] is None


def test_inbound_only_ignores_acks() -> None:
    result = account_flow(100, False, [sink(100)], seconds=0.5)
    assert result["complete"] is True and result["routed"] == 100 and result["routed_msgs_per_s"] == 200


def test_the_best_round_is_the_fastest_complete_one() -> None:
    fast_but_lossy = account_flow(100, False, [sink(90)], seconds=0.1)
    slow = account_flow(100, False, [sink(100)], seconds=1.0)
    quick = account_flow(100, False, [sink(100)], seconds=0.5)
    best = best_round([fast_but_lossy, slow, quick])
    assert best["routed_msgs_per_s"] == 200 and best["rounds_msgs_per_s"] == [None, 100, 200]


def test_with_no_complete_round_the_best_says_so_and_has_no_rate() -> None:
    best = best_round([account_flow(100, False, [sink(50)], seconds=1.0)])
    assert best["complete"] is False and best["missing"] == 50 and best["routed_msgs_per_s"] is None


def test_the_whole_run_says_incomplete_and_skips_overload_without_a_complete_inbound_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stalled = best_round([account_flow(100, False, [sink(97)], seconds=60.0)])
    lossy = best_round([account_flow(100, True, [sink(100, acks_unique=99)], seconds=1.0)])
    latency = {"p50": 1.0, "p99": 2.0}
    canned = {
        "run_baseline": {"1000": {"msgs_per_s": 1000}, "light_load_latency_ms": latency},
        "run_dispatch": {"with_acks": lossy, "inbound_only": stalled},
        "run_keyword": account_flow(100, True, [sink(100, acks_unique=100)], seconds=1.0),
        "run_light_load": {"latency_ms": latency},
        "run_dispatcher_replicas": {"1": lossy, "2": lossy, "two_over_one": None},
    }
    for name, value in canned.items():
        monkeypatch.setattr(run_bench, name, lambda _sizes, value=value: value)

    def no_overload(*_: Any) -> dict[str, Any]:
        raise AssertionError("overload ran against an unknown capacity")

    monkeypatch.setattr(run_bench, "run_overload", no_overload)
    monkeypatch.setattr(run_bench, "run_latency_under_load", no_overload)
    monkeypatch.setattr(run_bench.ray, "is_initialized", lambda: True)
    result = run_bench.run_bench(run_bench.BenchSizes.tiny())
    assert result["complete"] is False
    assert result["dispatch_msgs_per_s"] is None and result["ratio"] is None
    assert result["inbound_only_msgs_per_s"] is None and result["keyword_msgs_per_s"] == 300
    assert result["overload_lost"] is None and result["overload_peak_rss_mb"] is None
    assert "skipped" in result["scenarios"]["e_overload"]
    assert "skipped" in result["scenarios"]["f_latency_under_load"]
    assert result["overload_queueing_delay_p99_ms"] is None
    assert result["latency_under_load"]["80%"] == {
        "offered_rate": None,
        "complete": False,
        "p50_ms": None,
        "p99_ms": None,
    }
    assert result["cpu_us_per_msg"] is None and result["scale_out_model"] is None
    assert result["dispatchers_1_vs_2"] == {"1": None, "2": None, "two_over_one": None}
    assert not any(result["targets"][key]["met"] for key in ("dispatch_msgs_per_s", "ratio", "overload_lost"))


def test_a_baseline_round_that_lost_or_repeated_messages_is_incomplete() -> None:
    before = {"unique": 100, "duplicates": 0}
    assert account_delivery(50, before, {"unique": 150, "duplicates": 0}) == {
        "complete": True,
        "missing": 0,
        "duplicates": 0,
    }
    assert account_delivery(50, before, {"unique": 147, "duplicates": 0}) == {
        "complete": False,
        "missing": 3,
        "duplicates": 0,
    }
    assert account_delivery(50, before, {"unique": 150, "duplicates": 2})["complete"] is False


def test_an_incomplete_flow_reports_no_cpu_per_message_nor_latency() -> None:
    # What _flow and _paced do with an incomplete account: no per-message figure from a partial run.
    blank = run_bench._no_latency({"count": 10, "p50": 1.0, "p90": 2.0, "p99": 3.0, "mean": 1.5, "max": 4.0})
    assert blank == {"count": 10, "p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    assert account_sink(10, {"unique": 9, "duplicates": 0}) == {"complete": False, "missing": 1, "duplicates": 0}
    assert account_sink(10, {"unique": 10, "duplicates": 1})["complete"] is False


def test_the_targets_compare_against_the_blob_baseline_and_the_raw_latency() -> None:
    result = {
        "baseline_blob_msgs_per_s": 100_000,
        "dispatch_msgs_per_s": 120_000,
        "ratio_to_blob": 1.2,
        "ratio": 1.5,
        "inbound_only_msgs_per_s": 79_000,  # just under 0.8 x the blob baseline
        "keyword_msgs_per_s": 50_000,
        "cpu_us_per_msg": {"transport": 2.0, "dispatcher": 5.5, "application": 2.0, "total": 9.5},
        "baseline_latency_p50_ms": 2.0,
        "latency_p50_ms": 2.3,
        "latency_p99_ms": 9.0,
        "latency_under_load": {"80%": {"p99_ms": 49.0}},
        "overload_peak_rss_mb": 300.0,
        "overload_lost": 0,
        "overload_queueing_delay_p99_ms": 1200.0,
    }
    met = {key: value["met"] for key, value in run_bench.targets(result).items()}
    assert met == {
        "dispatch_msgs_per_s": True,
        "ratio_to_blob": True,
        "ratio": True,
        "inbound_only_msgs_per_s": False,
        "keyword_msgs_per_s": True,
        "dispatcher_cpu_us_per_msg": False,
        "latency_p50_ms": True,
        "latency_p99_ms": True,
        "latency_under_load_80_p99_ms": True,
        "overload_peak_rss_mb": True,
        "overload_lost": True,
        "overload_queueing_delay_p99_ms": False,
    }
