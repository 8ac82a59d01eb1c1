"""Autoscaling on Ray: an application endpoint grows under a load ramp, shrinks when it stops, loses nothing.

The application (``SlowSink``) spends a few milliseconds per message and
replies to each, so the transport's sent replies show that every message was
consumed (by whichever replica, also one removed later).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from ray_dispatch.api import Deployment
from tests.waiting import wait_for

pytestmark = pytest.mark.ray

MESSAGES = 3000

CONFIG: dict[str, Any] = {
    "router_class": "routers.simple.SimpleDispatchRouter",
    "transport_names": ["ramp_in"],
    "exposed_names": ["ramp_app"],
    "route_mappings": {"ramp_in": "ramp_app"},
    "endpoints": {
        "ramp_in": {"class": "actors.builtin.MemoryTransport"},
        "ramp_app": {
            "class": "tests.helpers_apps.SlowSink",
            "config": {"delay": 0.004, "reply": True},
            "autoscaling": {
                "min_replicas": 1,
                "max_replicas": 3,
                "target_pending_per_replica": 50,
                "upscale_delay_s": 0.5,
                "downscale_delay_s": 1.5,
                "interval_s": 0.2,
            },
        },
    },
}


@pytest.fixture(scope="module")
def dep(ray_session: None) -> Iterator[Deployment]:
    deployment = Deployment.start(CONFIG, name="autoscaling_test")
    try:
        yield deployment
    finally:
        deployment.shutdown()


def _scaling(dep: Deployment) -> dict[str, Any]:
    return dep.status()["endpoints"]["ramp_app"]["autoscaling"]


def test_an_endpoint_grows_under_load_and_shrinks_after_it_losing_nothing(dep: Deployment) -> None:
    assert dep.replica_ids("ramp_app") == ["0"], "starts at min_replicas"
    transport = dep.endpoint("ramp_in")
    batch = [{"content": f"m{i}", "from_addr": f"+2783{i % 50:07d}", "to_addr": "1234"} for i in range(MESSAGES)]
    ids = ray.get(transport.inject_many.remote(batch, wait=False))

    assert wait_for(lambda: len(dep.replica_ids("ramp_app")) > 1, timeout=60, interval=0.2), (
        "a second replica under load"
    )
    grown = _scaling(dep)["last_decision"]
    assert grown["current"] == 1 and grown["target"] > 1
    assert "above the target 50" in grown["reason"]

    def answered() -> set[str]:
        return {m["in_reply_to"] for m in ray.get(transport.sent.remote())}

    assert wait_for(lambda: answered() >= set(ids), timeout=120, interval=0.2), "a reply to every message"
    assert answered() == set(ids), "every message was consumed and answered"

    assert wait_for(lambda: dep.replica_ids("ramp_app") == ["0"], timeout=60, interval=0.2), (
        "back to min_replicas after the load"
    )
    shrunk = _scaling(dep)
    assert shrunk["current"] == 1 and shrunk["last_decision"]["target"] == 1
    assert "below the target" in shrunk["last_decision"]["reason"]
    assert dep.failures() == [], "scaling down drained the replicas it removed"


def test_status_shows_the_bounds_and_what_the_load_asks_for(dep: Deployment) -> None:
    state = _scaling(dep)
    assert (state["min_replicas"], state["max_replicas"], state["target_pending_per_replica"]) == (1, 3, 50)
    assert state["pending"] == 0 and state["target"] == 1 and state["error"] is None


def test_a_restarted_autoscaler_carries_on_from_the_running_replicas(dep: Deployment) -> None:
    from actors.autoscaler import find_autoscaler

    dep.scale("ramp_app", 3)  # by hand, above what the (absent) load asks for
    ray.kill(find_autoscaler(dep.name, dep.namespace), no_restart=False)
    assert wait_for(lambda: dep.replica_ids("ramp_app") == ["0"], timeout=60, interval=0.2), (
        "the restarted autoscaler scaling down"
    )
    assert _scaling(dep)["last_decision"]["current"] == 3


def test_an_applied_config_changes_the_autoscaling_bounds(dep: Deployment) -> None:
    changed = copy.deepcopy(CONFIG)
    changed["endpoints"]["ramp_app"]["autoscaling"]["max_replicas"] = 2
    dep.apply(changed)
    assert _scaling(dep)["max_replicas"] == 2
