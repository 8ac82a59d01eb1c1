"""A transport whose dispatcher is gone for good: what it could not hand over is a failure record, not a log line."""

from __future__ import annotations

from typing import Any

import pytest
import ray

from ray_dispatch.api import Deployment
from ray_dispatch.core.errors import DeliveryError
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray]

CONFIG: dict[str, Any] = {
    "router_class": "routers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app"],
    "route_mappings": {"sms": "app"},
    "endpoints": {
        "sms": {"class": "actors.builtin.MemoryTransport", "config": {"auto_ack": False}},
        "app": {"class": "actors.builtin.EchoApplication", "config": {"reply": False}},
    },
    # Few, short retries: the link gives up on a dead dispatcher within about a second.
    "dispatcher": {"batching": {"max_attempts": 3, "backoff": 0.05, "backoff_max": 0.2}},
}


def test_a_message_no_dispatcher_takes_becomes_an_undeliverable_record(ray_session: None) -> None:
    dep = Deployment.start(CONFIG, name="edge-undeliverable", health_interval=0.5)
    try:
        sms, app = dep.endpoint("sms"), dep.endpoint("app")
        delivered = ray.get(sms.inject.remote("before", wait=True), timeout=30)
        assert ray.get(app.wait_for.remote(1, 10), timeout=15)["messages"][0]["message_id"] == delivered["message_id"]
        assert ray.get(sms.undeliverable.remote(), timeout=10) == []

        ray.kill(dep.dispatchers[0], no_restart=True)
        lost = ray.get(sms.inject.remote("after the dispatcher died", wait=False), timeout=10)

        records = wait_for(lambda: ray.get(sms.undeliverable.remote(), timeout=10), 20)
        assert [r["message"]["message_id"] for r in records] == [lost["message_id"]]
        (record,) = records
        assert record["direction"] == "inbound" and record["endpoint"] == "sms"
        assert record["stage"] == "handoff" and record["destination"] == "dispatcher"
        assert record["reason"].startswith("transport 'sms' could not hand this inbound message to a dispatcher: ")
        assert record["error_type"] == "DeliveryError" and "no replicas" in record["reason"]
        assert record["message"]["content"] == "after the dispatcher died"
        info = ray.get(sms.ping.remote(), timeout=10)
        assert info["undeliverable"] == 1 and info["counters"]["send_failed"] == 1

        # Now the link knows no dispatcher is left: the caller is told at once (raised, not recorded).
        with pytest.raises(DeliveryError, match="no replicas"):
            ray.get(sms.inject.remote("later", wait=False), timeout=10)
        assert len(ray.get(sms.undeliverable.remote(clear=True), timeout=10)) == 1
        assert ray.get(sms.undeliverable.remote(), timeout=10) == []
    finally:
        dep.shutdown(timeout=5)
