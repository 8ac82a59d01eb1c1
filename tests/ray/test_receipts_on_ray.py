"""Receipts on Ray: the dispatcher settles what its endpoints confirmed or refused after hand-over.

One deployment: a MemoryTransport and a ``RefusingApp`` that refuses user
messages starting with ``refuse``. The refusal comes back with the batch's
confirmation, after the dispatcher handed the copy over, so it is the
receipt that fails; ``Dispatcher.settle`` records it at stage ``deliver``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import ray

from ray_dispatch.api import Deployment

pytestmark = pytest.mark.ray

NAME, NAMESPACE = "receipts-test", "receipts_tests"
CONFIG: dict[str, Any] = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["picky_app"],
    "route_mappings": {"sms": "picky_app"},
    "endpoints": {
        "sms": {"class": "actors.builtin.MemoryTransport"},
        "picky_app": {"class": "tests.helpers_apps.RefusingApp"},
    },
}


@pytest.fixture(scope="module")
def dep(ray_session: None) -> Iterator[Deployment]:
    with Deployment.start(CONFIG, name=NAME, namespace=NAMESPACE, health_interval=0) as deployment:
        yield deployment


def counts(dep: Deployment) -> tuple[int, int]:
    stats = dep.status()["dispatchers"][0]["stats"]
    return stats["published"].get("inbound:picky_app", 0), stats["failed"].get("inbound:picky_app", 0)


def test_a_refusal_after_hand_over_is_a_deliver_failure_and_never_counts_as_published(dep: Deployment) -> None:
    sms = dep.endpoint("sms")
    published, failed = counts(dep)
    taken = ray.get(sms.inject.remote("take me"))  # returns once the dispatcher settled it
    refused = ray.get(sms.inject.remote("refuse me"))
    assert counts(dep) == (published + 1, failed + 1)
    assert ray.get(dep.endpoint("picky_app").taken_ids.remote())[-1] == taken["message_id"]
    records = [f for f in dep.failures() if f["message"]["message_id"] == refused["message_id"]]
    assert [(r["stage"], r["endpoint"], r["destination"]) for r in records] == [("deliver", "sms", "picky_app")]
    assert records[0]["reason"] == "'picky_app[0]' refused it: ValueError: will not take 'refuse me'"

    recorded = dep.explain(refused["message_id"]).recorded  # explain by id sees what settling found
    assert recorded.destinations == ["inbound:picky_app"] and recorded.delivered == []
    assert [f["failure_id"] for f in recorded.failures] == [records[0]["failure_id"]]
    assert dep.explain(taken["message_id"]).recorded.delivered == ["inbound:picky_app"]


def test_send_reports_a_refused_copy_as_a_failure_not_a_destination(dep: Deployment) -> None:
    published, failed = counts(dep)
    sent = dep.send("sms", "refuse this too")
    assert sent["destinations"] == []
    assert [f["stage"] for f in sent["failures"]] == ["deliver"]
    ok = dep.send("sms", "fine")
    assert ok["destinations"] == ["inbound:picky_app"] and ok["failures"] == []
    assert counts(dep) == (published + 1, failed + 1)


def test_the_dispatcher_routes_each_id_once_within_a_batch_and_across_batches(dep: Deployment) -> None:
    sms = dep.endpoint("sms")

    def received() -> int:
        return int(dep.status()["dispatchers"][0]["stats"]["received"].get("inbound:sms", 0))

    before = received()

    def fields(*pairs: str) -> list[dict[str, str]]:
        return [{"content": f"take {n}", "message_id": n, "from_addr": "+1", "to_addr": "2"} for n in pairs]

    ray.get(sms.inject_many.remote(fields("d1", "d1", "d2")))
    ray.get(sms.inject_many.remote(fields("d2", "d3")))
    assert received() == before + 3, "d1 twice in one call, d2 in two: each routed once by the dispatcher"
    taken = ray.get(dep.endpoint("picky_app").taken_ids.remote())
    assert [i for i in taken if i in ("d1", "d2", "d3")] == ["d1", "d2", "d3"]


def test_a_batch_from_one_transport_is_forwarded_as_arrived_and_what_the_app_refuses_is_still_recorded(
    dep: Deployment,
) -> None:
    sms, app = dep.endpoint("sms"), dep.endpoint("picky_app")
    whole_before = dep.status()["dispatchers"][0]["stats"]["forwarded_as_arrived"]
    published, failed = counts(dep)
    fields = [
        {"content": f"{'refuse' if n == 7 else 'take'} {n}", "from_addr": f"+2782{n:07d}", "to_addr": "2"}
        for n in range(20)
    ]
    ids = ray.get(sms.inject_many.remote(fields))  # returns once the dispatcher settled every one

    assert dep.status()["dispatchers"][0]["stats"]["forwarded_as_arrived"] == whole_before + 20
    assert counts(dep) == (published + 19, failed + 1)
    taken = ray.get(app.taken_ids.remote())
    assert [i for i in taken if i in ids] == ids[:7] + ids[8:]
    assert ray.get(app.hops_of.remote(ids[3])) == 1  # forwarded as it arrived; the envelope's hop was added
    (record,) = [f for f in dep.failures() if f["message"]["message_id"] == ids[7]]
    assert (record["stage"], record["endpoint"], record["destination"]) == ("deliver", "sms", "picky_app")
    assert record["reason"] == "'picky_app[0]' refused it: ValueError: will not take 'refuse 7'"
    assert record["message"]["content"] == "refuse 7"

    refused = dep.explain(ids[7]).recorded  # the record of a whole batch keeps its bytes and builds this on demand
    assert refused.delivered == [] and [f["failure_id"] for f in refused.failures] == [record["failure_id"]]
    assert refused.message is not None and refused.message["content"] == "refuse 7"
    assert dep.explain(ids[3]).recorded.delivered == ["inbound:picky_app"]
