"""Restart redis-server mid-stream: the dispatcher reconnects, and nothing is lost silently.

Every inbound message reaches ``EchoApplication`` (``ContentKeywordRouter``
routes inbound by keyword, without the store); its reply is outbound, and
routing an outbound message writes state to Redis twice (the dispatcher's
return route, which it goes without while Redis is down, and the router's
memory of the sender, which it cannot go without). Redis is killed in the
middle of the stream (the application is rate-limited so that the stream
lasts seconds however fast the data path is), stays down a moment, and comes
back empty on the same port. Every reply must then either have reached the transport or be a
failure record saying the store was unavailable; replaying those records
once Redis is back delivers them too.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from ray_dispatch.api import Deployment
from tests.redis_server import RedisServer, redis_server_available
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

N = 3_000
OUTAGE = 1.5  # seconds Redis stays down
RATE = 1_000  # messages per second to the application: the stream lasts >= 2 s whatever the data path's speed


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    if not redis_server_available():
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


def config(redis_url: str) -> dict[str, Any]:
    return {
        "router_class": "routers.ContentKeywordRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app"],
        "keyword_mappings": {"app": "echo"},
        "transport_mappings": {"100": "sms"},
        "store": {
            "class": "ray_dispatch.redis_store.RedisStore",
            "url": redis_url,
            "prefix": "redis-restart",
            "operation_timeout": 2.0,
        },
        "endpoints": {
            "sms": {
                "class": "actors.builtin.MemoryTransport",
                "config": {"auto_ack": False},
            },
            "app": {"class": "actors.builtin.EchoApplication", "config": {"keep": N + 1000}, "rate_limit": RATE},
        },
    }


def replies_routed(dep: Deployment) -> int:
    """Replies the dispatcher has routed so far (its own count: known before the transport has them)."""
    return int(dep.status()["dispatchers"][0]["stats"]["received"].get("outbound:app", 0))


def answered(sms: Any) -> list[str]:
    """``in_reply_to`` of every reply the transport was asked to send."""
    return [m["in_reply_to"] for m in ray.get(sms.sent.remote(), timeout=30)]


def test_a_redis_restart_mid_stream_loses_nothing_silently(redis: RedisServer) -> None:
    dep = Deployment.start(config(redis.url), name="redis-restart", health_interval=1.0)
    try:
        sms = dep.endpoint("sms")
        inbound = [{"content": f"echo {i}", "from_addr": f"+2787{i % 50:05d}", "to_addr": "100"} for i in range(N)]
        sending = sms.inject_many.remote(inbound)
        assert wait_for(lambda: replies_routed(dep) > N // 4, 90), "traffic did not start"
        redis.kill()  # as a crash: no clean shutdown
        time.sleep(OUTAGE)
        redis.restart()  # same port, empty dataset
        sent_ids = ray.get(sending, timeout=180)
        assert len(sent_ids) == N

        # Replies fail at once while the store's circuit breaker is open, so the stream may
        # end before its probe finds Redis back: keep sending until the breaker has closed.
        def reconnected() -> bool:
            more = [{"content": "echo after", "from_addr": "+27870000000", "to_addr": "100"}]
            sent_ids.extend(ray.get(sms.inject_many.remote(more), timeout=60))
            return bool(dep.status()["dispatchers"][0]["store"]["state"] == "ok")

        assert wait_for(reconnected, 60, interval=0.5), "the routing store's breaker did not close"

        def settled() -> bool:
            return len(answered(sms)) + len(dep.failures()) >= len(sent_ids)

        assert wait_for(settled, 90), (len(answered(sms)), len(dep.failures()))
        replies = Counter(answered(sms))
        failures = dep.failures()
        failed = Counter(r["message"]["in_reply_to"] for r in failures)
        assert set(replies) | set(failed) == set(sent_ids), "a message neither arrived nor became a failure record"
        assert not set(replies) & set(failed), "a failed reply was also delivered"
        assert max(replies.values()) == 1 and max(failed.values()) == 1

        assert failures, "the outage was not felt: no state write failed"
        for record in failures:
            assert (record["direction"], record["endpoint"], record["stage"]) == ("outbound", "app", "route")
            assert record["error_type"] == "StoreUnavailable" and redis.url in record["reason"], record["reason"]
        settled_after = len(replies) - len(answered_before_outage(replies, sent_ids, failed))
        assert settled_after > 0, "nothing was delivered after Redis came back: the dispatcher did not reconnect"

        for record in failures:
            replay = dep.replay_failure(record["failure_id"])
            assert replay == {"destinations": ["outbound:sms"], "failures": []}, replay
        assert dep.failures() == []
        assert wait_for(lambda: set(answered(sms)) == set(sent_ids), 30)
        assert len(answered(sms)) == len(sent_ids), "every reply reached the transport exactly once"
        print(
            f"\nredis restart: {len(sent_ids)} replies, {len(failures)} failure records during the outage, all replayed"
        )
    finally:
        dep.shutdown(timeout=10)


def answered_before_outage(replies: Counter[str], sent_ids: list[str], failed: Counter[str]) -> list[str]:
    """Replies to the messages sent before the first one whose reply failed (in sending order)."""
    first_failed = min(sent_ids.index(message_id) for message_id in failed)
    return [message_id for message_id in sent_ids[:first_failed] if message_id in replies]
