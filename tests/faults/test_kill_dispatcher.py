"""Kill the dispatcher actor mid-stream: none lost; with Redis, routing state survives it.

The applications are rate-limited so the stream lasts seconds whatever the data
path's speed: the kill must land while messages are still undelivered, and the
test checks that it did (count at the kill, the restarted dispatcher routed part
of the stream, the transport retried) instead of passing vacuously on a fast path.
"""

from __future__ import annotations

from typing import Any

import pytest
import ray

import ray_dispatch
from ray_dispatch.api import Deployment
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

N = 10_000
RATE = 1_000  # messages per second to each application: 10,000 take >= 4 s after the first bursts
LEDGER = "ledger-test_kill_dispatcher"  # the ledger fixture's name for this module


def _config(namespace: str, store: dict[str, Any] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "router_class": "routers.UserGroupingRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app_a", "app_b"],
        "group_mappings": {"group1": "app_a", "group2": "app_b"},
        "endpoints": {
            "sms": {"class": "actors.builtin.MemoryTransport"},
            **{
                name: {
                    "class": "actors.testing.LedgerApplication",
                    "config": {"ledger": LEDGER, "namespace": namespace},
                    "rate_limit": RATE,
                }
                for name in ("app_a", "app_b")
            },
        },
        "dispatcher": {"batching": {"backoff": 0.1, "max_attempts": 40}},
    }
    if store:
        config["store"] = store
    return config


def test_killing_the_dispatcher_mid_stream_loses_nothing(ledger: Any) -> None:
    namespace = ray.get_runtime_context().namespace
    dep: Deployment = ray_dispatch.deploy(_config(namespace), name="kill-dispatcher", health_interval=0.5)
    try:
        sms = dep.endpoint("sms")
        pid_before = _dispatcher_pid(dep)
        messages = [{"content": str(i), "from_addr": f"+2783{i % 100:05d}", "to_addr": "1"} for i in range(N)]
        sending = sms.inject_many.remote(messages)
        assert wait_for(lambda: len(ray.get(ledger.ids.remote())) > N // 4, 60), "traffic did not start"
        ray.kill(dep.dispatchers[0], no_restart=False)
        at_kill = len(set(ray.get(ledger.ids.remote())))  # read after the kill: an upper bound of the count at it
        sent_ids = ray.get(sending, timeout=240)
        assert len(sent_ids) == N
        assert at_kill < N, f"the kill came after the stream had ended ({at_kill} of {N} already delivered)"
        lost = set(sent_ids) - set(ray.get(ledger.ids.remote()))
        assert not lost, f"{len(lost)} of {N} messages lost"

        assert wait_for(lambda: _restarted(dep, pid_before), 60), "Ray did not restart the dispatcher"
        # The restarted dispatcher routed the rest of the stream, and what the transport sent again: up to all
        # of it, since a batch is confirmed only when every message in it is (those share app batches with later ones).
        assert _inbound_received(dep) > 0, "the restarted dispatcher routed nothing: the stream had ended"
        link = _link_stats(sms)
        assert link["retries"] > 0 or link["rejoined"] > 0, f"the transport never sent a batch again: {link}"
    finally:
        dep.shutdown()


def test_with_redis_return_routes_and_user_groups_survive_a_dispatcher_restart(ledger: Any, redis_url: str) -> None:
    namespace = ray.get_runtime_context().namespace
    store = {"class": "ray_dispatch.redis_store.RedisStore", "url": redis_url, "prefix": "killtest"}
    dep: Deployment = ray_dispatch.deploy(_config(namespace, store), name="kill-dispatcher-redis", health_interval=0.5)
    try:
        users = [f"+2784{i:05d}" for i in range(20)]
        for user in users:
            dep.send("sms", "hi", from_addr=user)
        groups_before = _groups(ledger)
        outbound = dep.send("app_b", "hello", to_addr=users[0], transport_name="sms")
        assert outbound["destinations"] == ["outbound:sms"]

        pid_before = _dispatcher_pid(dep)
        ray.kill(dep.dispatchers[0], no_restart=False)
        assert wait_for(lambda: _restarted(dep, pid_before), 60), "Ray did not restart the dispatcher"
        assert _inbound_received(dep) == 0, "the restarted dispatcher starts from empty counters"

        ray.get(ledger.clear.remote())
        for user in reversed(users):  # a fresh round-robin would now give users[-1] the first group
            dep.send("sms", "again", from_addr=user)
        groups_after = _groups(ledger)
        assert groups_after == groups_before and len(set(groups_before.values())) == 2
        ack = dep.send(
            "sms",
            direction="event",
            event_type="ack",
            user_message_id=outbound["message_id"],
            sent_message_id="smsc-1",
        )
        assert ack["destinations"] == ["event:app_b"], ack
    finally:
        dep.shutdown()


def _groups(ledger: Any) -> dict[str, str]:
    """Which application replica each user's inbound messages reached."""
    arrivals = ray.get(ledger.__ray_call__.remote(lambda self: list(self.arrivals)))
    return {user: replica for replica, direction, _, user in arrivals if direction == "inbound" and user}


def _dispatcher_pid(dep: Deployment) -> int | None:
    """The process id of the (only) dispatcher (it changes when Ray restarts the actor); None while it restarts."""
    try:
        return int(ray.get(dep.dispatchers[0].ping.remote(), timeout=60)["pid"])
    except ray.exceptions.ActorUnavailableError:
        return None


def _restarted(dep: Deployment, pid_before: int | None) -> bool:
    """Whether the dispatcher answers again from another process than ``pid_before``."""
    pid = _dispatcher_pid(dep)
    return pid is not None and pid != pid_before


def _inbound_received(dep: Deployment) -> int:
    """How many inbound messages the dispatcher's current incarnation received from ``sms``."""
    status = ray.get(dep.dispatchers[0].status.remote(), timeout=60)
    return int(status["stats"]["received"].get("inbound:sms", 0))


def _link_stats(transport: Any) -> dict[str, int]:
    """The transport's link to the dispatcher: batch retries and how often a given-up dispatcher rejoined."""

    def read(self: Any) -> dict[str, int]:
        (stats,) = self._link.pool.stats().values()
        return {"retries": stats["retries"], "rejoined": self.counters["dispatcher_rejoined"]}

    return dict(ray.get(transport.__ray_call__.remote(read), timeout=60))
