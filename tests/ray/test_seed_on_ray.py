"""The seed topology on Ray: SMS and XMPP into my_application, replies back out, acks to the sender."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import ray

import ray_dispatch
from ray_dispatch.api import Deployment

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def seed(ray_session: None) -> Iterator[Deployment]:
    dep = ray_dispatch.deploy("examples/seed.yaml", name="seed-test", health_interval=0.5)
    yield dep
    dep.shutdown()


def _take_sent(dep: Deployment, transport: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Wait (bounded) until ``transport`` holds ``count`` sent messages; return and forget them.

    ``MemoryTransport.wait_for_sent`` counts messages sent in total, so after a
    ``sent(clear=True)`` it would return at once; this counts the ones kept.
    """
    handle = dep.endpoint(transport)
    deadline = time.monotonic() + timeout
    while len(ray.get(handle.sent.remote())) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return ray.get(handle.sent.remote(clear=True))


def _app_received(dep: Deployment) -> dict[str, list[dict[str, Any]]]:
    merged: dict[str, list[dict[str, Any]]] = {"messages": [], "events": []}
    for rid in dep.replica_ids("my_application"):
        got = ray.get(dep.endpoint("my_application", rid).received.remote(clear=True))
        merged["messages"] += got["messages"]
        merged["events"] += got["events"]
    return merged


def test_sms_and_xmpp_reach_the_app_and_replies_leave_by_their_transport(seed: Deployment) -> None:
    sms = ray.get(seed.endpoint("smpp_transport").inject.remote("hello sms", from_addr="+27820000001"))
    xmpp = ray.get(seed.endpoint("xmpp_transport").inject.remote("hello xmpp", from_addr="alice@example.org"))
    sms_out = _take_sent(seed, "smpp_transport", 1)
    xmpp_out = _take_sent(seed, "xmpp_transport", 1)
    assert [m["in_reply_to"] for m in sms_out] == [sms["message_id"]]
    assert [m["in_reply_to"] for m in xmpp_out] == [xmpp["message_id"]]
    assert sms_out[0]["to_addr"] == "+27820000001" and sms_out[0]["content"] == "hello sms"
    assert xmpp_out[0]["to_addr"] == "alice@example.org" and xmpp_out[0]["transport_type"] == "xmpp"


def test_acks_reach_the_replica_pool_of_the_app_that_sent_the_message(seed: Deployment) -> None:
    ray.get(seed.endpoint("smpp_transport").inject.remote("ack me", from_addr="+27820000002"))
    [reply] = _take_sent(seed, "smpp_transport", 1)
    # Acks of earlier tests' replies may still be on their way: look at the ones about this reply.
    about_reply: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while not about_reply and time.monotonic() < deadline:
        about_reply += [e for e in _app_received(seed)["events"] if e["user_message_id"] == reply["message_id"]]
        time.sleep(0.02)
    assert [e["event_type"] for e in about_reply] == ["ack"]


def test_send_reports_destinations_and_unknown_endpoint_is_a_clear_error(seed: Deployment) -> None:
    result = seed.send("xmpp_transport", "via api", from_addr="bob@example.org")
    assert result["destinations"] == ["inbound:my_application"]
    assert result["failures"] == []
    with pytest.raises(ray_dispatch.ConfigError, match="unknown endpoint 'nope'"):
        seed.send("nope", "x")
    assert [r["content"] for r in _take_sent(seed, "xmpp_transport", 1)] == ["via api"]


def test_invalid_message_is_refused_and_the_deployment_keeps_running(seed: Deployment) -> None:
    with pytest.raises(ray.exceptions.RayTaskError, match="to_addr"):
        ray.get(seed.endpoint("smpp_transport").inject.remote("bad", to_addr=12345))
    ok = seed.send("smpp_transport", "still fine")
    assert ok["destinations"] == ["inbound:my_application"]
    assert [r["content"] for r in _take_sent(seed, "smpp_transport", 1)] == ["still fine"]


def test_unroutable_outbound_becomes_a_failure_record_that_can_be_replayed(seed: Deployment) -> None:
    seed.purge_failures()
    result = seed.send("my_application", "lost", transport_name="no_such_transport")
    assert result["destinations"] == []
    [failure] = result["failures"]
    assert "no_such_transport" in failure["reason"]
    [record] = seed.failures()
    assert record["failure_id"] == failure["failure_id"] and record["direction"] == "outbound"
    assert seed.purge_failures() == 1
    assert seed.failures() == []
