"""Kill an application replica in the middle of 10,000 messages: none is lost.

The application endpoint is rate-limited so the stream lasts seconds whatever the
data path's speed; the test checks that the kill landed mid-stream (count at the
kill), that Ray restarted the replica, and that the dispatcher handled it (it
retried the replica or marked it dead).
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
USERS = 200
RATE = 2_000  # messages per second to the application: 10,000 take >= 4 s after the first burst


def config(ledger: str, namespace: str) -> dict[str, Any]:
    return {
        "router_class": "routers.SimpleDispatchRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app"],
        "route_mappings": {"sms": "app"},
        "endpoints": {
            "sms": {"class": "actors.builtin.MemoryTransport", "config": {"auto_ack": False}},
            "app": {
                "class": "actors.testing.LedgerApplication",
                "replicas": 2,
                "policy": "sticky",
                "config": {"ledger": ledger, "namespace": namespace, "delay": 0.002},
                "batching": {"max_batch": 100, "backoff": 0.05},
                "rate_limit": RATE,
            },
        },
    }


def _messages() -> list[dict[str, Any]]:
    return [{"content": str(i), "from_addr": f"+2782{i % USERS:05d}", "to_addr": "100"} for i in range(N)]


def test_killing_an_app_replica_mid_stream_loses_nothing(ledger: Any, ledger_name: str) -> None:
    namespace = ray.get_runtime_context().namespace
    dep: Deployment = ray_dispatch.deploy(config(ledger_name, namespace), name="kill-app", health_interval=0.5)
    try:
        sms = dep.endpoint("sms")
        sending = sms.inject_many.remote(_messages())
        assert wait_for(lambda: len(ray.get(ledger.ids.remote())) > N // 4, 60), "traffic did not start"
        victim = dep.endpoint("app", "0")
        pid_before = ray.get(victim.ping.remote(), timeout=60)["pid"]
        ray.kill(victim, no_restart=False)
        at_kill = len(set(ray.get(ledger.ids.remote())))  # read after the kill: an upper bound of the count at it
        sent_ids = ray.get(sending, timeout=180)
        received = ray.get(ledger.ids.remote())
        lost = set(sent_ids) - set(received)
        assert not lost, f"{len(lost)} of {N} messages lost"
        assert len(sent_ids) == N
        assert at_kill < N, f"the kill came after the stream had ended ({at_kill} of {N} already delivered)"
        failures = dep.failures()
        assert failures == [], failures[:3]

        assert ray.get(victim.ping.remote(), timeout=60)["pid"] != pid_before, "Ray did not restart the replica"
        status = ray.get(dep.dispatchers[0].status.remote(), timeout=60)
        retries = status["endpoints"]["app"].get("0", {}).get("retries", 0)
        marked_dead = [d for d in status["dead_replicas"] if (d["endpoint"], d["replica_id"]) == ("app", "0")]
        # Ray reports calls to a restarting actor as unavailable (retried) or its death (evicted, then re-added).
        assert retries > 0 or marked_dead, f"the dispatcher never noticed the kill: {status['endpoints']['app']}"
    finally:
        dep.shutdown()


def test_per_user_order_holds_when_no_failure_intervenes(ledger: Any, ledger_name: str) -> None:
    namespace = ray.get_runtime_context().namespace
    dep: Deployment = ray_dispatch.deploy(config(ledger_name, namespace), name="order", health_interval=0.5)
    try:
        ray.get(ledger.clear.remote())
        sent_ids = ray.get(dep.endpoint("sms").inject_many.remote(_messages()), timeout=180)
        by_user = ray.get(ledger.by_user.remote())
        expected: dict[str, list[str]] = {}
        for i, message_id in enumerate(sent_ids):
            expected.setdefault(f"+2782{i % USERS:05d}", []).append(message_id)
        assert by_user == expected
        assert set(ray.get(ledger.replicas.remote())) == {"app:0", "app:1"}, "both replicas took users"
    finally:
        dep.shutdown()
