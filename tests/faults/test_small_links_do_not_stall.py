"""Links sized tiny, replies and acks on: the loop of full queues does not deadlock.

Transport → dispatcher → application → dispatcher → transport is a loop, and
every link on it is bounded. If an endpoint waited for room while answering
a batch (a reply, an ack), every queue on the loop could fill and each hop
wait for the next: with calls of 5 and one in flight it stalled after 15
replies. Answers never wait for room; what comes from outside does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from ray_dispatch.api import Deployment
from tests.deployed import deployed
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

N = 1_000
TINY = {"max_batch": 5, "max_queued": 10, "max_in_flight": 1, "max_wait": 0}
CONFIG: dict[str, Any] = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app"],
    "route_mappings": {"sms": ["app"]},
    "transport_mappings": {"app": "sms"},
    "dispatcher": {"batching": TINY},  # the endpoints' links to the dispatcher
    "endpoints": {
        "sms": {"class": "actors.builtin.MemoryTransport", "batching": TINY},  # the dispatcher's to them
        "app": {"class": "actors.builtin.EchoApplication", "batching": TINY},
    },
}


@pytest.fixture
def dep(ray_session: None) -> Iterator[Deployment]:
    with deployed(CONFIG, "tiny-links", "tiny_links_tests", shutdown_timeout=5) as deployment:
        yield deployment


def test_tiny_links_with_replies_and_acks_move_every_message_and_never_stall(dep: Deployment) -> None:
    sms, app = dep.endpoint("sms"), dep.endpoint("app")
    inbound = [{"content": f"m{i}", "from_addr": f"+2782{i % 20:07d}", "to_addr": "100"} for i in range(N)]
    sent_ids = ray.get(sms.inject_many.remote(inbound, wait=False), timeout=60)

    def replies() -> list[str]:
        return [m["in_reply_to"] for m in ray.get(sms.sent.remote())]

    def acks() -> list[str]:
        return [e["user_message_id"] for e in ray.get(app.received.remote())["events"]]

    assert wait_for(lambda: len(replies()) >= N and len(acks()) >= N, 180), (len(replies()), len(acks()))
    replied = Counter(replies())
    assert set(replied) == set(sent_ids) and max(replied.values()) == 1, "every message answered once"
    reply_ids = {m["message_id"] for m in ray.get(sms.sent.remote())}
    assert Counter(acks()) == Counter(reply_ids), "every reply acked once"
    assert dep.failures() == []
