"""Routing state on Redis through the dispatcher: restarts, several replicas, outages."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from redis_server import RedisServer

from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.core.stores.redis_failures import RedisFailureStore
from ray_dispatch.core.stores.redis_routing import RedisStore
from ray_dispatch.core.stores.routing import MemoryStore, RoutingStore
from ray_dispatch.testing import MemoryOutbox, RouterHarness, make_ack, make_inbound

SIMPLE = {
    "router_class": "routers.simple.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app1", "app2"],
    "route_mappings": {"sms": "app1"},
}


def outbound(content: str = "hello") -> Any:
    """A message an application sends out through the ``sms`` transport."""
    return make_inbound(content, transport_name="sms", to_addr="+2783", from_addr="12345")


async def test_return_routes_survive_a_dispatcher_restart(redis_server: RedisServer, prefix: str) -> None:
    sent = outbound()
    async with RouterHarness(SIMPLE, store=RedisStore(redis_server.url, prefix=prefix)) as first:
        await first.dispatch_outbound(sent, "app2")
        assert [m.message_id for m in first.outbound_to("sms")] == [sent.message_id]

    async with RouterHarness(SIMPLE, store=RedisStore(redis_server.url, prefix=prefix)) as second:
        await second.dispatch_event(make_ack(sent))
        assert [e.user_message_id for e in second.events_to("app2")] == [sent.message_id]
        assert second.events_to("app1") == []
        assert second.failures == []


async def test_without_the_shared_store_the_event_would_follow_route_mappings() -> None:
    """Control for the test above: a fresh in-memory store has forgotten the sender."""
    sent = outbound()
    async with RouterHarness(SIMPLE, store=MemoryStore()) as first:
        await first.dispatch_outbound(sent, "app2")
    async with RouterHarness(SIMPLE, store=MemoryStore()) as second:
        await second.dispatch_event(make_ack(sent))
        assert second.events_to("app2") == []
        assert [e.user_message_id for e in second.events_to("app1")] == [sent.message_id]


async def test_replicas_sharing_a_prefix_route_each_others_events(redis_server: RedisServer, prefix: str) -> None:
    stores = [RedisStore(redis_server.url, prefix=prefix) for _ in range(2)]
    async with RouterHarness(SIMPLE, store=stores[0]) as a, RouterHarness(SIMPLE, store=stores[1]) as b:
        sent = [outbound(f"m{i}") for i in range(10)]
        for i, msg in enumerate(sent):  # outbound through alternate replicas...
            await (a if i % 2 else b).dispatch_outbound(msg, "app2")
        for i, msg in enumerate(sent):  # ...and each event through the other one
            await (b if i % 2 else a).dispatch_event(make_ack(msg))
        got = [e.user_message_id for e in a.events_to("app2") + b.events_to("app2")]
        assert sorted(got) == sorted(m.message_id for m in sent)
        assert a.events_to("app1") == b.events_to("app1") == []


async def test_other_prefix_does_not_share_return_routes(redis_server: RedisServer, prefix: str) -> None:
    sent = outbound()
    async with RouterHarness(SIMPLE, store=RedisStore(redis_server.url, prefix=prefix)) as first:
        await first.dispatch_outbound(sent, "app2")
    async with RouterHarness(SIMPLE, store=RedisStore(redis_server.url, prefix=prefix + "-other")) as other:
        await other.dispatch_event(make_ack(sent))
        assert other.events_to("app2") == []


USER_GROUPING = {
    "router_class": "routers.user_grouping.UserGroupingRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app_a", "app_b"],
    "group_mappings": {"a": "app_a", "b": "app_b"},
}
needs_user_grouping = pytest.mark.skipif(
    importlib.util.find_spec("routers.user_grouping") is None, reason="routers/user_grouping.py is not there yet"
)


async def groups_of(harness: RouterHarness, users: list[str]) -> dict[str, str]:
    """Send one message from each user; return user -> application it reached."""
    for user in users:
        outcome = await harness.dispatch_inbound(make_inbound(f"from {user}", from_addr=user, transport_name="sms"))
        assert outcome.failures == [], outcome.failures
    return {m.from_addr: app for app in ("app_a", "app_b") for m in harness.inbound_to(app)}  # type: ignore[misc]


async def routed_groups(store: RoutingStore, users: list[str]) -> dict[str, str]:
    async with RouterHarness(USER_GROUPING, store=store) as harness:
        return await groups_of(harness, users)


@needs_user_grouping
async def test_user_groups_survive_a_dispatcher_restart(redis_server: RedisServer, prefix: str) -> None:
    users = ["+2781", "+2782", "+2783", "+2784"]
    before = await routed_groups(RedisStore(redis_server.url, prefix=prefix), users)
    assert sorted(before.values()) == ["app_a", "app_a", "app_b", "app_b"]  # round-robin over two groups

    after = await routed_groups(RedisStore(redis_server.url, prefix=prefix), [*reversed(users), "+2785"])
    assert {u: after[u] for u in users} == before
    assert after["+2785"] == "app_a"  # the round-robin counter carried on: the fifth user gets turn 4 -> group a


@needs_user_grouping
async def test_user_groups_are_forgotten_with_a_fresh_memory_store() -> None:
    """Control for the test above: without a durable store, a restart reassigns groups."""
    users = ["+2781", "+2782"]
    before = await routed_groups(MemoryStore(), users)
    after = await routed_groups(MemoryStore(), list(reversed(users)))
    assert before != after


async def test_redis_outage_routes_outbound_without_its_return_route_and_records_its_events(
    own_redis: RedisServer, prefix: str
) -> None:
    async with RouterHarness(SIMPLE, store=RedisStore(own_redis.url, prefix=prefix)) as harness:
        await harness.dispatch_outbound(outbound("sent before the outage"), "app2")  # Redis up: route stored
        own_redis.stop(keep_dir=True)
        sent = outbound("sent while Redis is down")
        outcome = await harness.dispatch_outbound(sent, "app2")
        assert (outcome.destinations, outcome.failures) == (["sms"], [])  # routed; its return route is not stored
        assert harness.dispatcher.stats.return_routes_not_stored == 1
        assert harness.dispatcher.stats.to_dict()["return_routes_not_stored"] == 1

        inbound = await harness.dispatch_inbound(make_inbound("needs no state"))  # routing without the store
        assert inbound.destinations == ["app1"]

        event = await harness.dispatch_event(make_ack(sent))  # its return route cannot be read
        (failure,) = event.failures
        assert (failure.error_type, failure.stage, failure.endpoint) == ("StoreUnavailable", "route", "sms")
        assert own_redis.url in failure.reason
        assert harness.events_to("app1") == harness.events_to("app2") == []

        own_redis.restart()
        replayed = await harness.dispatcher.replay_failure(failure.failure_id)
        assert replayed.destinations == ["app1"]  # no return route was stored: the router decides
        assert harness.failures == []
        stored = outbound("sent after the outage")
        await harness.dispatch_outbound(stored, "app2")
        await harness.dispatch_event(make_ack(stored))
        assert [e.user_message_id for e in harness.events_to("app2")] == [stored.message_id]


async def test_failure_records_in_redis_can_be_replayed_by_another_dispatcher(
    redis_server: RedisServer, prefix: str
) -> None:
    first = Dispatcher(SIMPLE, MemoryOutbox(), failures=RedisFailureStore(redis_server.url, prefix=prefix))
    await first.start()
    unroutable = make_inbound("from an unmapped transport", transport_name="sms")
    outcome = await first.dispatch_inbound_message(unroutable, "voice")
    (failure,) = outcome.failures
    await first.stop()

    outbox = MemoryOutbox()
    second = Dispatcher(SIMPLE, outbox, failures=RedisFailureStore(redis_server.url, prefix=prefix))
    await second.start()
    try:
        (kept,) = await second.failures.list(direction="inbound", endpoint="voice")
        assert kept.failure_id == failure.failure_id
        assert kept.message.message_id == unroutable.message_id
        replayed = await second.replay_failure(kept.failure_id, "sms")
        assert replayed.destinations == ["app1"]
        assert [m.message_id for m in outbox.delivered["inbound", "app1"]] == [unroutable.message_id]
        assert await second.failures.count() == 0
    finally:
        await second.stop()
