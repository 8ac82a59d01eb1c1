"""Kill an application replica in the middle of 10,000 messages: none is lost."""

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
        ray.kill(victim, no_restart=False)
        sent_ids = ray.get(sending, timeout=180)
        received = ray.get(ledger.ids.remote())
        lost = set(sent_ids) - set(received)
        assert not lost, f"{len(lost)} of {N} messages lost"
        assert len(sent_ids) == N
        failures = dep.failures()
        assert failures == [], failures[:3]
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
