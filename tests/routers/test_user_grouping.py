"""UserGroupingRouter: round-robin group assignment per from_addr, sticky, kept in the store."""

from __future__ import annotations

import asyncio
import logging

from ray_dispatch.core.stores.routing import MemoryStore
from ray_dispatch.testing import RouterHarness, make_ack, make_inbound

GROUPS = {"group_b": "app2", "group_a": "app1"}


def grouping_config(router_config, **keys):
    keys.setdefault("group_mappings", GROUPS)
    return router_config("UserGroupingRouter", **keys)


async def send_from(h, *users):
    for user in users:
        await h.dispatch_inbound(make_inbound(f"from {user}", from_addr=user))


def senders(h, app):
    return [m.from_addr for m in h.inbound_to(app)]


async def test_new_users_round_robin_in_sorted_group_order_then_stick(router_config):
    async with RouterHarness(grouping_config(router_config)) as h:
        await send_from(h, "u1", "u2", "u3", "u1", "u2", "u4")
        assert senders(h, "app1") == ["u1", "u3", "u1"]
        assert senders(h, "app2") == ["u2", "u2", "u4"]
        assert h.failures == []


async def test_assignments_live_in_the_routing_store_under_namespaced_keys(router_config):
    store = MemoryStore()
    async with RouterHarness(grouping_config(router_config, dispatcher_name="ab_test"), store=store) as h:
        await send_from(h, "u1", "u2")
    assert await store.get("ab_test:user_grouping:user:u1") == "group_a"
    assert await store.get("ab_test:user_grouping:user:u2") == "group_b"
    assert await store.get("ab_test:user_grouping:round-robin") == 2
    async with RouterHarness(grouping_config(router_config, dispatcher_name="ab_test"), store=store) as again:
        await send_from(again, "u2", "u3")
        assert senders(again, "app2") == ["u2"]
        assert senders(again, "app1") == ["u3"]


class YieldingStore(MemoryStore):
    """A MemoryStore that yields to the event loop on every call, as a networked store would."""

    async def get(self, key, default=None):
        await asyncio.sleep(0)
        return await super().get(key, default)

    async def set(self, key, value, ttl=None):
        await asyncio.sleep(0)
        await super().set(key, value, ttl)

    async def incr(self, key, amount=1):
        await asyncio.sleep(0)
        return await super().incr(key, amount)


async def test_concurrent_first_messages_from_one_user_get_one_group(router_config):
    async with RouterHarness(grouping_config(router_config), store=YieldingStore()) as h:
        await asyncio.gather(*(h.dispatch_inbound(make_inbound(f"m{n}", from_addr="u1")) for n in range(4)))
        await send_from(h, "u2")
        assert senders(h, "app1") == ["u1"] * 4
        assert senders(h, "app2") == ["u2"]


async def test_a_group_removed_from_the_config_is_reassigned(router_config):
    store = MemoryStore()
    await store.set("user_grouping:user:u1", "group_gone")
    async with RouterHarness(grouping_config(router_config), store=store) as h:
        outcome = await h.dispatch_inbound(make_inbound(from_addr="u1"), trace=True)
        assert outcome.destinations == ["app1"]
        assert "from_addr 'u1' was in group 'group_gone', which group_mappings no longer has" in outcome.trace
    assert await store.get("user_grouping:user:u1") == "group_a"


async def test_message_without_from_addr_is_a_failure(router_config):
    async with RouterHarness(grouping_config(router_config)) as h:
        await h.dispatch_inbound(make_inbound(from_addr=None))
        (failure,) = h.failures
        assert "groups users by from_addr" in failure.reason and failure.direction == "inbound"


async def test_events_return_to_sender_else_follow_route_mappings(router_config):
    async with RouterHarness(grouping_config(router_config, route_mappings={"sms": "app1"})) as h:
        sent = make_inbound("from app2")
        await h.dispatch_outbound(sent, "app2")
        await h.dispatch_event(make_ack(sent))
        await h.dispatch_event(make_ack("unknown", transport_name="sms"))
        await h.dispatch_event(make_ack("unknown", transport_name="ussd"))
        assert [e.user_message_id for e in h.events_to("app2")] == [sent.message_id]
        assert [e.user_message_id for e in h.events_to("app1")] == ["unknown"]
        (failure,) = h.failures
        assert failure.reason == "no route_mappings entry for transport 'ussd' (event)"


async def test_outbound_goes_by_transport_name(router_config):
    async with RouterHarness(grouping_config(router_config, transport_mappings={"alias": "ussd"})) as h:
        await h.dispatch_outbound(make_inbound("a", transport_name="sms"), "app1")
        await h.dispatch_outbound(make_inbound("b", transport_name="alias"), "app2")
        assert [m.content for m in h.outbound_to("sms")] == ["a"]
        assert [m.content for m in h.outbound_to("ussd")] == ["b"]


async def test_trace_explains_assignment_and_memory(router_config):
    async with RouterHarness(grouping_config(router_config)) as h:
        first = await h.dispatch_inbound(make_inbound(from_addr="u1"), trace=True)
        assert "from_addr 'u1' is new: round-robin turn 0 over ['group_a', 'group_b'] assigns group 'group_a'" in (
            first.trace
        )
        again = await h.dispatch_inbound(make_inbound(from_addr="u1"), trace=True)
        assert "from_addr 'u1' is in group 'group_a' (remembered)" in again.trace
        assert "group_mappings['group_a'] -> 'app1'" in again.trace


async def test_vumi_redis_keys_are_accepted_with_a_warning(router_config, caplog):
    config = grouping_config(router_config, redis_manager={"host": "localhost"}, dispatcher_name="vumi")
    with caplog.at_level(logging.WARNING, logger="routers"):
        async with RouterHarness(config) as h:
            await send_from(h, "u1")
            assert senders(h, "app1") == ["u1"]
    assert "'redis_manager' is ignored" in caplog.text


async def test_bad_config_names_the_key(router_config, config_error):
    await config_error(router_config("UserGroupingRouter"), "group_mappings", "Field required")
    await config_error(grouping_config(router_config, group_mappings={}), "group_mappings", "at least 1")
    await config_error(
        grouping_config(router_config, group_mappings={"a": "app9"}),
        "group_mappings.a",
        "'app9' is not in exposed_names",
    )
