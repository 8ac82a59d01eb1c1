"""A Redis outage on Ray: inbound and replies keep flowing, acks become failure records, status shows it.

``SimpleDispatchRouter`` routes inbound without the store; ``EchoApplication``
replies (outbound: the dispatcher writes a return route); ``MemoryTransport``
acks each reply (an event: the dispatcher reads the return route). With
redis-server killed before the stream, every inbound message and every reply
must still be routed, and every ack must become a failure record, nearly all
of them refused at once by the open circuit breaker (counted from their
reasons). Once Redis is back, the next store operation after the cool-down
closes the breaker and acks find their way home through the store again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import ray

from ray_dispatch.api import Deployment
from tests.redis_server import RedisServer, redis_server_available
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

N = 1_000
THRESHOLD = 3
RESET = 30.0  # long: probes (which wait for the dead server) are few; the test counts the rest


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    if not redis_server_available():
        pytest.fail("redis-server is not on PATH: install the Debian package redis-server")
    with RedisServer() as server:
        yield server


def config(redis_url: str) -> dict[str, Any]:
    return {
        "router_class": "routers.SimpleDispatchRouter",
        "transport_names": ["sms"],
        "exposed_names": ["echo"],
        "route_mappings": {"sms": "echo"},
        "store": {
            "class": "ray_dispatch.redis_store.RedisStore",
            "url": redis_url,
            "prefix": "redis-outage",
            "operation_timeout": 2.0,
            "breaker": {"failure_threshold": THRESHOLD, "reset_timeout": RESET},
        },
        "endpoints": {
            "sms": {"class": "actors.builtin.MemoryTransport", "config": {"keep": N + 100}},
            "echo": {"class": "actors.builtin.EchoApplication", "config": {"keep": N + 100}},
        },
    }


def test_a_redis_outage_stops_only_what_needs_the_store_and_status_shows_it(
    ray_session: None, redis: RedisServer
) -> None:
    dep = Deployment.start(config(redis.url), name="redis-outage", health_interval=1.0)
    try:
        sms, echo = dep.endpoint("sms"), dep.endpoint("echo")
        assert dep.status()["dispatchers"][0]["store"]["state"] == "ok"
        redis.kill()

        inbound = [{"content": f"hi {i}", "from_addr": f"+2787{i:05d}", "to_addr": "100"} for i in range(N)]
        ray.get(sms.inject_many.remote(inbound), timeout=300)

        def replies() -> int:
            return len(ray.get(sms.sent.remote(), timeout=30))

        assert wait_for(lambda: replies() >= N, 300), f"{replies()} of {N} replies were sent while Redis was down"
        assert wait_for(lambda: len(dep.failures()) >= N, 300), f"{len(dep.failures())} of {N} acks recorded"
        received = ray.get(echo.received.remote(), timeout=30)
        assert (len(received["messages"]), received["events"]) == (N, [])

        failures = dep.failures()
        assert {(r["direction"], r["stage"], r["error_type"]) for r in failures} == {
            ("event", "route", "StoreUnavailable")
        }
        at_once = [r for r in failures if "circuit open since" in r["reason"]]
        assert len(at_once) >= N - 10, f"only {len(at_once)} of {N} acks were refused at once by the breaker"
        info = dep.status()["dispatchers"][0]
        assert info["store"]["state"] in ("open", "half-open") and info["store"]["url"] == redis.url
        assert info["stats"]["return_routes_not_stored"] == N

        print(f"\nredis down: {N} inbound and {N} replies routed, {len(at_once)} of {N} acks refused at once")
        redis.restart()
        probe = [{"content": "after", "from_addr": "+27870000001", "to_addr": "100"}]

        def closed() -> bool:
            ray.get(sms.inject_many.remote(probe), timeout=60)  # its reply's return route is the probe
            return dep.status()["dispatchers"][0]["store"]["state"] == "ok"

        assert wait_for(closed, RESET + 120, interval=2.0), dep.status()["dispatchers"][0]["store"]
        # The store is used again: a reply's ack comes home through its stored return route.
        assert wait_for(lambda: ray.get(echo.received.remote(), timeout=30)["events"], 60)
    finally:
        dep.shutdown(timeout=10)
