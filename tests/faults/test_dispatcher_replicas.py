"""Two dispatcher replicas sharing routing state on Redis: traffic spread, state shared, one killed for good -> 0 lost.

The transport's link spreads users over both dispatchers (sticky per user).
User groups (``UserGroupingRouter``) and return routes live in Redis, so
either dispatcher routes a user, and an event, the same way. Killing one
dispatcher with ``no_restart=True`` mid-stream makes the link hand that
dispatcher's unconfirmed batches to the other; the applications drop the
duplicates by message id.
"""

from __future__ import annotations

from typing import Any

import pytest
import ray

from ray_dispatch.api import Deployment
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

LEDGER = "ledger-test_dispatcher_replicas"  # the ledger fixture's name for this module
WARM_UP = 2_000
N = 10_000
USERS = 200


def config(redis_url: str) -> dict[str, Any]:
    return {
        "router_class": "routers.UserGroupingRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app_a", "app_b"],
        "group_mappings": {"group1": "app_a", "group2": "app_b"},
        "store": {
            "class": "ray_dispatch.redis_store.RedisStore",
            "url": redis_url,
            "prefix": "two-dispatchers",
        },
        "dispatcher": {"replicas": 2, "batching": {"backoff": 0.05, "max_attempts": 10}},
        "endpoints": {
            "sms": {"class": "actors.builtin.MemoryTransport", "config": {"auto_ack": False}},
            **{
                name: {"class": "actors.testing.LedgerApplication", "config": {"ledger": LEDGER, "delay": 0.002}}
                for name in ("app_a", "app_b")
            },
        },
    }


def messages(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {"content": str(i), "from_addr": f"+2785{i % USERS:05d}", "to_addr": "1", "message_id": f"m-{i}"}
        for i in range(start, start + count)
    ]


def groups(ledger: Any) -> dict[str, set[str]]:
    """Which application endpoint(s) each user's inbound messages reached."""
    arrivals = ray.get(ledger.__ray_call__.remote(lambda self: list(self.arrivals)), timeout=30)
    found: dict[str, set[str]] = {}
    for replica, direction, _, user in arrivals:
        if direction == "inbound" and user:
            found.setdefault(user, set()).add(replica.split(":")[0])
    return found


def inbound_received(dispatcher: Any) -> int:
    status = ray.get(dispatcher.status.remote(), timeout=30)
    return int(status["stats"]["received"].get("inbound:sms", 0))


def test_two_dispatchers_share_the_load_and_the_state_and_one_dies_without_loss(ledger: Any, redis_url: str) -> None:
    dep = Deployment.start(config(redis_url), name="two-dispatchers", health_interval=0.5)
    try:
        first, second = dep.dispatchers
        sms = dep.endpoint("sms")

        # Spread: both dispatchers route part of the users.
        warm_ids = ray.get(sms.inject_many.remote(messages(0, WARM_UP)), timeout=120)
        counts = [inbound_received(d) for d in dep.dispatchers]
        assert sum(counts) == WARM_UP and min(counts) > WARM_UP // 10, counts
        before = groups(ledger)
        assert len(before) == USERS and all(len(g) == 1 for g in before.values())
        assert {next(iter(g)) for g in before.values()} == {"app_a", "app_b"}

        # Shared return routes: an outbound routed by one dispatcher, its ack by the other.
        out = {
            "to_addr": "+27850000",
            "from_addr": "1",
            "content": "hi",
            "transport_name": "sms",
            "transport_type": "sms",
        }
        sent = ray.get(first.inject.remote("outbound", "app_b", out), timeout=30)
        assert sent["destinations"] == ["outbound:sms"], sent
        ack = {"message_type": "event", "event_type": "ack", "user_message_id": sent["message_id"]}
        ack |= {"sent_message_id": "smsc-1", "transport_name": "sms"}
        routed = ray.get(second.inject.remote("event", "sms", ack), timeout=30)
        assert routed["destinations"] == ["event:app_b"], routed

        # Kill one dispatcher for good in the middle of the stream.
        sending = sms.inject_many.remote(messages(WARM_UP, N))
        assert wait_for(lambda: len(ray.get(ledger.ids.remote(), timeout=30)) > WARM_UP + N // 4, 90), "no traffic"
        ray.kill(first, no_restart=True)
        at_kill = len(ray.get(ledger.ids.remote(), timeout=30))
        sent_ids = ray.get(sending, timeout=180)
        assert at_kill < WARM_UP + N, "the kill came after the stream had ended"
        assert len(sent_ids) == N

        received = set(ray.get(ledger.ids.remote(), timeout=30))
        lost = (set(warm_ids) | set(sent_ids)) - received
        assert not lost, f"{len(lost)} of {WARM_UP + N} messages lost, e.g. {sorted(lost)[:5]}"
        assert dep.failures() == [], "no failure records (and the dead dispatcher does not break the listing)"
        assert dep.purge_failures() == 0
        # Each user sends N / USERS messages after the warm-up, so on its own the survivor would route
        # exactly N / WARM_UP times its warm-up count; more means it took over the dead one's users.
        assert inbound_received(second) > counts[1] * (1 + N // WARM_UP), "the survivor took over no user"
        after = groups(ledger)
        assert after == before, "every user stayed in the group Redis remembered, whichever dispatcher routed it"
        sms_info = ray.get(sms.ping.remote(), timeout=30)
        assert sms_info["undeliverable"] == 0
    finally:
        dep.shutdown(timeout=10)
