"""A rate-limited endpoint holds up only its own traffic, not the dispatcher's routing.

``rate_limit`` paces the calls to one endpoint. The messages waiting for it
must wait in that endpoint's queue: a dispatcher that waited for the tokens
while routing would hold every other endpoint's traffic behind them (one
batch of ``N`` messages at ``RATE`` per second held routing for ``N / RATE``
seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import ray

from ray_dispatch.api import Deployment
from tests.deployed import deployed
from tests.waiting import wait_for

pytestmark = pytest.mark.ray

N, RATE = 300, 10  # the slow application's backlog takes N / RATE = 30 s to drain
CONFIG: dict[str, Any] = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["sms", "chat"],
    "exposed_names": ["slow_app", "fast_app"],
    "route_mappings": {"sms": ["slow_app"], "chat": ["fast_app"]},
    "transport_mappings": {"slow_app": "sms", "fast_app": "chat"},
    "endpoints": {
        "sms": {"class": "actors.builtin.MemoryTransport"},
        "chat": {"class": "actors.builtin.MemoryTransport"},
        "slow_app": {"class": "actors.builtin.EchoApplication", "config": {"reply": False}, "rate_limit": RATE},
        "fast_app": {"class": "actors.builtin.EchoApplication", "config": {"reply": False}},
    },
}


@pytest.fixture
def dep(ray_session: None) -> Iterator[Deployment]:
    # shutdown does not wait for the slow application's backlog
    with deployed(CONFIG, "rate-limit-test", "rate_limit_tests", shutdown_timeout=1) as deployment:
        yield deployment


def test_a_rate_limited_backlog_does_not_hold_up_another_endpoints_traffic(dep: Deployment) -> None:
    slow, fast = dep.endpoint("slow_app"), dep.endpoint("fast_app")

    def slow_received() -> int:
        return len(ray.get(slow.received.remote())["messages"])

    backlog = [{"content": f"slow {i}", "from_addr": f"+2782{i:07d}", "to_addr": "100"} for i in range(N)]
    ray.get(dep.endpoint("sms").inject_many.remote(backlog, wait=False))
    assert wait_for(lambda: slow_received() > 0, 60), "the slow application got nothing"

    chat = dep.endpoint("chat")
    sent = ray.get(chat.inject.remote("fast one", wait=True), timeout=120)  # returns once routed and delivered
    got = ray.get(fast.received.remote())["messages"]
    passed = [m["content"] for m in ray.get(slow.received.remote())["messages"]]

    assert [m["message_id"] for m in got] == [sent["message_id"]]
    assert len(passed) < N // 2, f"the chat message waited for the slow backlog ({len(passed)} of {N} passed first)"
    assert passed == [f"slow {i}" for i in range(len(passed))], "the slow application gets its backlog in order"
