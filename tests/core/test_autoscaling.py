"""The autoscaling policy (with a hand-moved clock) and the ``autoscaling:`` config block."""

from __future__ import annotations

from typing import Any

import pytest

from ray_dispatch.core.autoscaling import AutoscalePolicy, AutoscalingSpec
from ray_dispatch.core.config import load_config
from ray_dispatch.core.errors import ConfigError

SPEC = AutoscalingSpec(
    min_replicas=1, max_replicas=4, target_pending_per_replica=100, upscale_delay_s=5, downscale_delay_s=30
)


def test_the_load_asks_for_pending_over_target_replicas_within_the_bounds() -> None:
    assert [SPEC.wanted(p) for p in (0, 1, 100, 101, 250, 10_000)] == [1, 1, 1, 2, 3, 4]


def test_it_scales_up_only_once_the_load_stayed_high_for_the_upscale_delay() -> None:
    policy = AutoscalePolicy("app", SPEC)
    assert policy.observe(0.0, replicas=1, pending=350) is None
    assert policy.observe(4.9, replicas=1, pending=350) is None
    decision = policy.observe(5.0, replicas=1, pending=350)
    assert decision is not None and (decision.current, decision.target) == (1, 4)
    assert decision.reason == "350 pending per replica stayed above the target 100 for 5 s"


def test_a_burst_shorter_than_the_delay_moves_nothing() -> None:
    policy = AutoscalePolicy("app", SPEC)
    assert policy.observe(0.0, 1, 500) is None
    assert policy.observe(3.0, 1, 10) is None  # the burst is over: the timer starts again
    assert policy.observe(6.0, 1, 500) is None
    assert policy.observe(10.0, 1, 500) is None
    assert policy.observe(11.0, 1, 500) is not None


def test_it_scales_down_only_after_the_downscale_delay_and_not_below_min() -> None:
    policy = AutoscalePolicy("app", SPEC)
    assert policy.observe(0.0, 3, 0) is None
    assert policy.observe(29.0, 3, 0) is None
    decision = policy.observe(30.0, 3, 0)
    assert decision is not None and decision.target == 1
    assert "below the target 100 for 30 s" in decision.reason


def test_a_count_outside_the_bounds_is_corrected_at_once() -> None:
    policy = AutoscalePolicy("app", SPEC)
    low = policy.observe(0.0, 0, 0)
    high = policy.observe(0.0, 6, 10_000)
    assert low is not None and (low.current, low.target) == (0, 1) and "min_replicas" in low.reason
    assert high is not None and (high.current, high.target) == (6, 4) and "max_replicas" in high.reason


def test_after_a_decision_the_next_needs_its_own_delay() -> None:
    policy = AutoscalePolicy("app", SPEC)
    policy.observe(0.0, 1, 350)
    assert policy.observe(5.0, 1, 350) is not None
    assert policy.observe(6.0, 2, 350) is None
    assert policy.observe(11.0, 2, 350) is not None


BASE: dict[str, Any] = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["t"],
    "exposed_names": ["a"],
    "route_mappings": {"t": "a"},
}


def _endpoint(spec: dict[str, Any]) -> Any:
    return load_config({**BASE, "endpoints": {"a": spec}}).endpoints["a"]


def test_an_autoscaled_endpoint_starts_with_min_replicas_unless_replicas_is_given() -> None:
    assert (
        _endpoint({"class": "actors.EchoApplication", "autoscaling": {"min_replicas": 2, "max_replicas": 5}}).replicas
        == 2
    )
    given = _endpoint({"class": "actors.EchoApplication", "replicas": 3, "autoscaling": {"max_replicas": 5}})
    assert given.replicas == 3


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        (
            {"class": "actors.EchoApplication", "replicas": 6, "autoscaling": {"max_replicas": 5}},
            "endpoints.a: replicas (6) is outside autoscaling's [min_replicas, max_replicas] = [1, 5]",
        ),
        ({"autoscaling": {"max_replicas": 5}}, "endpoints.a: autoscaling needs a 'class'"),
        (
            {"class": "actors.EchoApplication", "autoscaling": {"min_replicas": 3, "max_replicas": 2}},
            "endpoints.a.autoscaling: min_replicas (3) is more than max_replicas (2)",
        ),
        (
            {"class": "actors.EchoApplication", "autoscaling": {"max_replicas": 2, "upscale_delay": 1}},
            "endpoints.a.autoscaling.upscale_delay: unknown key; did you mean 'upscale_delay_s'?",
        ),
    ],
)
def test_a_bad_autoscaling_block_is_refused_naming_the_key(spec: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _endpoint(spec)
    assert line in str(caught.value)


class _Scaler:
    def __init__(self) -> None:
        self.refreshed = 0

    def replica_ids(self, endpoint: str) -> list[str]:
        return ["0"]

    def scale(self, endpoint: str, replicas: int) -> list[str]:
        return [str(i) for i in range(replicas)]

    def refresh_config(self) -> object:
        self.refreshed += 1
        return None


def test_an_applied_config_keeps_unchanged_policies_and_replaces_changed_ones() -> None:
    from actors.autoscaler import AutoscalerActor

    block = {"max_replicas": 3, "upscale_delay_s": 5}
    scaler = _Scaler()
    actor = AutoscalerActor("dep", "ns", {"a": block, "b": block}, lambda: scaler, autostart=False)
    actor._scaler = scaler
    kept = actor.policies["a"]
    actor.configure({"a": block, "b": {**block, "max_replicas": 6}, "c": block})
    assert actor.policies["a"] is kept, "unchanged: its timers go on"
    assert actor.policies["b"].spec.max_replicas == 6
    assert sorted(actor.policies) == ["a", "b", "c"] and scaler.refreshed == 1
    actor.configure({"c": block})
    assert sorted(actor.policies) == ["c"]
    assert set(actor.state()) == {"c"}
