"""``Dispatcher.route_whole`` / ``settle_whole``: a batch routed with one decision and forwarded as it arrived."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray_dispatch.core.dispatcher import RETURN_ROUTE_PREFIX, Dispatcher, ForwardedRun
from ray_dispatch.core.errors import DeliveryError, StoreError
from ray_dispatch.core.message import Message, TransportUserMessage
from ray_dispatch.core.receipts import BatchReceipt
from ray_dispatch.core.stores.routing import MemoryStore
from ray_dispatch.testing import MemoryOutbox, make_ack, make_inbound
from routers.simple import SimpleDispatchRouter

from .helpers import Tagger, class_path, router_config, simple_config


def values_of(messages: list[Message]) -> Callable[[str], list[Any]]:
    """What the Ray shell gives ``route_whole``: each message's value of a declared field, in order."""
    return lambda name: [m.__dict__[name] for m in messages]


async def started(config: dict[str, Any]) -> Dispatcher:
    dispatcher = Dispatcher(config, MemoryOutbox(), hops_in_envelope=True)
    await dispatcher.start()
    return dispatcher


async def route_whole(
    dispatcher: Dispatcher, direction: Any, endpoint: str, messages: list[Message], hops: int = 0
) -> ForwardedRun | None:
    return await dispatcher.route_whole(
        direction, endpoint, messages[0], values_of(messages), hops, deliverable=lambda _: True
    )


def users(count: int, **fields: Any) -> list[Message]:
    return [make_inbound(f"hi {i}", from_addr=f"+2782{i:07d}", **fields) for i in range(count)]


async def test_a_batch_from_one_transport_is_routed_whole_and_counted() -> None:
    dispatcher = await started(simple_config())
    whole = await route_whole(dispatcher, "inbound", "sms", users(5))
    assert whole == ForwardedRun("inbound", "sms", ["app1"] * 5, dispatcher.generation)
    assert dispatcher.stats.received["inbound", "sms"] == 5
    assert dispatcher.stats.forwarded_as_arrived == 5
    assert dispatcher.stats.published["inbound", "app1"] == 0  # counted when confirmed (settle_whole)


async def test_a_batch_whose_decision_fields_differ_is_not_forwarded_as_arrived_and_nothing_is_counted() -> None:
    dispatcher = await started(simple_config())
    mixed = users(3) + users(1, transport_name="ussd")
    assert await route_whole(dispatcher, "inbound", "sms", mixed) is None
    assert dispatcher.stats.received == {} and dispatcher.stats.forwarded_as_arrived == 0


async def test_a_fan_out_a_router_without_batch_fields_and_a_direction_change_are_not_forwarded_as_arrived() -> None:
    fan_out = await started(simple_config())
    assert await route_whole(fan_out, "inbound", "xmpp", users(2, transport_name="xmpp")) is None  # two apps

    per_message = await started(router_config(ByContent))
    assert await route_whole(per_message, "inbound", "sms", users(2)) is None

    transport_to_transport = await started(
        {
            "router_class": "routers.TransportToTransportRouter",
            "transport_names": ["t1", "t2"],
            "route_mappings": {"t1": "t2"},
        }
    )
    assert await route_whole(transport_to_transport, "inbound", "t1", users(2, transport_name="t1")) is None


class ByContent(SimpleDispatchRouter):
    """Overrides a hook without saying what its decision depends on."""

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        self.dispatcher.publish_inbound_message("app1", msg)


class Stamping(SimpleDispatchRouter):
    """Declares batch decisions but changes the message in place (so the items cannot be forwarded as they are)."""

    BATCH_DECISION_FIELDS = SimpleDispatchRouter.BATCH_DECISION_FIELDS

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        msg.helper_metadata["stamped"] = True
        super().dispatch_inbound_message(msg)


async def test_a_router_that_changes_the_sample_in_place_gets_the_batch_message_by_message() -> None:
    dispatcher = await started(router_config(Stamping))
    assert await route_whole(dispatcher, "inbound", "sms", users(3)) is None


async def test_a_batch_that_would_pass_max_hops_is_routed_message_by_message() -> None:
    dispatcher = await started(simple_config(max_hops=3))
    assert await route_whole(dispatcher, "inbound", "sms", users(2), hops=2) is not None
    assert await route_whole(dispatcher, "inbound", "sms", users(2), hops=3) is None


async def test_outbound_return_routes_are_written_at_once_and_events_follow_them_back() -> None:
    dispatcher = await started(simple_config())
    replies = [m.reply("ok") for m in users(3)]
    whole = await route_whole(dispatcher, "outbound", "app2", replies)
    assert whole is not None and whole.destinations == ["sms"] * 3
    stored = await dispatcher.store.get_many([RETURN_ROUTE_PREFIX + r.message_id for r in replies])
    assert stored == ["app2", "app2", "app2"]

    acks: list[Message] = [make_ack(r, transport_name="sms") for r in replies]
    back = await route_whole(dispatcher, "event", "sms", acks)
    assert back is not None and back.destinations == ["app2"] * 3  # their return route, not the router's app1

    unknown: list[Message] = [make_ack("never-sent", transport_name="sms")]
    mixed = acks[:1] + unknown
    assert await route_whole(dispatcher, "event", "sms", mixed) is None  # return routes disagree


async def test_settling_counts_what_was_confirmed_and_records_each_refused_item_at_stage_deliver() -> None:
    dispatcher = await started(simple_config())
    messages = users(4)
    whole = await route_whole(dispatcher, "inbound", "sms", messages)
    assert whole is not None
    receipt = BatchReceipt()
    slots = receipt.add_many(4)
    receipt.settle(slots, refused={2: DeliveryError("'app1' refused it: bad content")})
    records = await dispatcher.settle_whole(whole, receipt, lambda index: messages[index])
    assert list(records) == [2]
    (record,) = await dispatcher.failures.list()
    assert record.stage == "deliver" and record.destination == "app1" and record.endpoint == "sms"
    assert record.reason == "'app1' refused it: bad content"
    assert record.message["message_id"] == messages[2].message_id
    assert dispatcher.stats.published["inbound", "app1"] == 3


async def test_with_hops_in_the_envelope_the_dispatcher_checks_the_limit_and_leaves_the_count_to_the_receiver() -> None:
    outbox = MemoryOutbox()
    dispatcher = Dispatcher(simple_config(max_hops=2), outbox, hops_in_envelope=True)
    await dispatcher.start()
    ok = make_inbound(routing_metadata={"hops": 1})
    looped = make_inbound(routing_metadata={"hops": 2})
    for message in (ok, looped):
        await dispatcher.settle(await dispatcher.route("inbound", message, "sms"))
    assert [m.routing_metadata for m in outbox.delivered["inbound", "app1"]] == [{"hops": 1}]  # as it arrived
    (record,) = await dispatcher.failures.list()
    assert record.error_type == "RoutingLoop" and record.message["message_id"] == looped.message_id


async def route_grouped(dispatcher: Dispatcher, direction: Any, endpoint: str, messages: list[Message]) -> Any:
    return await dispatcher.route_grouped(
        direction, endpoint, messages, values_of(messages), 0, deliverable=lambda _: True
    )


def keyword_config(**extra: Any) -> dict[str, Any]:
    return {
        "router_class": "routers.ContentKeywordRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app1", "app2"],
        "keyword_mappings": {"app1": "alpha", "app2": "beta"},
        "transport_mappings": {"12345": "sms"},
        **extra,
    }


async def test_a_router_deciding_per_message_gets_its_run_grouped_by_destination_and_asked_once_each() -> None:
    dispatcher = await started(keyword_config())
    messages = [make_inbound(word, from_addr=f"+{i}") for i, word in enumerate(["alpha 1", "beta", "Alpha 2"])]
    grouped = await route_grouped(dispatcher, "inbound", "sms", messages)
    assert grouped == ForwardedRun("inbound", "sms", ["app1", "app2", "app1"], dispatcher.generation)
    assert dispatcher.stats.forwarded_as_arrived == 3 and dispatcher.stats.received["inbound", "sms"] == 3

    receipt = BatchReceipt()
    receipt.settle(receipt.add_many(3))
    assert await dispatcher.settle_whole(grouped, receipt, lambda index: messages[index]) == {}
    assert dispatcher.stats.published == {("inbound", "app1"): 2, ("inbound", "app2"): 1}


async def test_a_run_with_one_message_that_cannot_be_forwarded_follows_its_decisions_message_by_message() -> None:
    outbox = MemoryOutbox()
    dispatcher = Dispatcher(keyword_config(), outbox, hops_in_envelope=True)
    await dispatcher.start()
    messages = [make_inbound("alpha 1"), make_inbound("nothing matches"), make_inbound("beta 2")]
    outcomes = await route_grouped(dispatcher, "inbound", "sms", messages)
    assert isinstance(outcomes, list) and len(outcomes) == 3
    await dispatcher.settle(*outcomes)
    assert [o.destinations for o in outcomes] == [["app1"], [], ["app2"]]
    assert [m.content for m in outbox.delivered["inbound", "app1"]] == ["alpha 1"]
    (record,) = await dispatcher.failures.list()
    assert record.stage == "route" and record.message["content"] == "nothing matches"
    assert dispatcher.stats.forwarded_as_arrived == 0


async def test_grouped_events_follow_their_own_return_routes() -> None:
    dispatcher = await started(keyword_config())
    first, second = make_inbound("alpha").reply("one"), make_inbound("beta").reply("two")
    for sender, reply in (("app1", first), ("app2", second)):
        assert await route_grouped(dispatcher, "outbound", sender, [reply]) is not None
    acks: list[Message] = [make_ack(first, transport_name="sms"), make_ack(second, transport_name="sms")]
    grouped = await route_grouped(dispatcher, "event", "sms", acks)
    assert isinstance(grouped, ForwardedRun) and grouped.destinations == ["app1", "app2"]


async def test_grouping_is_not_tried_when_middleware_touches_messages() -> None:
    config = keyword_config(middleware=[{"tag": class_path(Tagger)}])
    dispatcher = await started(config)
    assert await route_grouped(dispatcher, "inbound", "sms", [make_inbound("alpha")]) is None


class RefusingWrites(MemoryStore):
    """A store that answers but refuses every write (not an outage: ``StoreError``)."""

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        raise StoreError(f"refused SET {key}")

    async def set_many(self, values: Any, ttl: float | None = None) -> None:
        raise StoreError("refused a pipeline of SET")


async def test_a_store_refusing_the_return_routes_sends_the_run_message_by_message_each_failure_recorded() -> None:
    dispatcher = Dispatcher(simple_config(), MemoryOutbox(), store=RefusingWrites(), hops_in_envelope=True)
    await dispatcher.start()
    replies = [m.reply("ok") for m in users(2)]
    assert await route_whole(dispatcher, "outbound", "app1", replies) is None
    outcomes = await route_grouped(dispatcher, "outbound", "app1", replies)
    assert isinstance(outcomes, list)
    await dispatcher.settle(*outcomes)
    records = await dispatcher.failures.list()
    assert sorted(r.message["message_id"] for r in records) == sorted(r.message_id for r in replies)
    assert all("refused SET" in r.reason for r in records)
    assert dispatcher.stats.forwarded_as_arrived == 0
