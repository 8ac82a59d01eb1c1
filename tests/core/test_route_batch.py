"""``Dispatcher.route_batch``: one router decision per distinct value where the router allows it, same outcomes."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ray_dispatch.core.dispatcher import Dispatcher, DispatchOutcome
from ray_dispatch.core.message import Message, TransportUserMessage
from ray_dispatch.testing import MemoryOutbox, make_ack, make_inbound
from routers.content_keyword import ContentKeywordRouter
from routers.redirect import RedirectRouter
from routers.simple import SimpleDispatchRouter
from routers.user_grouping import UserGroupingRouter

from .helpers import Tagger, class_path, router_config, simple_config


class CountingRouter(SimpleDispatchRouter):
    """``SimpleDispatchRouter`` that counts how often it is asked (and says again what its decision depends on)."""

    BATCH_DECISION_FIELDS = SimpleDispatchRouter.BATCH_DECISION_FIELDS
    asked = 0

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Count, then route as ``SimpleDispatchRouter``."""
        type(self).asked += 1
        super().dispatch_inbound_message(msg)


class OverridingRouter(SimpleDispatchRouter):
    """Overrides a hook without saying what its decision depends on."""

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Route by content (so one decision per batch would be wrong)."""
        self.dispatcher.publish_inbound_message("app2" if msg.content == "2" else "app1", msg)


def summary(outcome: DispatchOutcome) -> tuple[Any, ...]:
    """What an outcome says, comparable between two dispatchers."""
    return (
        outcome.direction,
        outcome.endpoint,
        [
            (d.direction, d.endpoint, d.message.get("transport_name"), d.message.get("content"))
            for d in outcome.deliveries
        ],
        [(f.stage, f.reason, f.destination) for f in outcome.failures],
        outcome.dropped,
    )


async def both_ways(config: dict[str, Any], endpoint: str, items: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """Route ``items`` with ``route_batch`` and, on a second dispatcher, one by one; return both outcomes."""
    batch, single = Dispatcher(config, MemoryOutbox()), Dispatcher(config, MemoryOutbox())
    for dispatcher in (batch, single):
        await dispatcher.start()
    copies = [(d, m.copy() if isinstance(m, Message) else dict(m)) for d, m in items]
    batched = await batch.route_batch(endpoint, items)
    one_by_one = [await single.route(d, m, endpoint) for d, m in copies]
    await batch.settle(*batched)
    await single.settle(*one_by_one)
    assert [summary(o) for o in batched] == [summary(o) for o in one_by_one]
    assert batch.stats.to_dict() == single.stats.to_dict()
    return batched, batch


async def test_a_batch_is_routed_with_one_decision_per_transport_name_and_the_same_outcomes() -> None:
    items: list[tuple[Any, Any]] = [("inbound", make_inbound(str(n), transport_name="xmpp")) for n in range(6)]
    items.insert(2, ("inbound", make_inbound("lost", transport_name="ussd")))
    items.insert(4, ("inbound", {"message_type": "user_message", "message_id": "junk"}))
    items.append(("inbound", make_inbound("loop", transport_name="xmpp", routing_metadata={"hops": 10})))
    items.append(("inbound", make_inbound("lost again", transport_name="ussd")))
    CountingRouter.asked = 0
    outcomes, dispatcher = await both_ways(router_config(CountingRouter), "xmpp", items)
    routable = len(items) - 2  # the invalid payload and the looping message never reach the router
    assert CountingRouter.asked == 2 + routable, "the batch asked twice (xmpp, ussd); one by one, each time"
    assert [len(o.deliveries) for o in outcomes] == [2, 2, 0, 2, 0, 2, 2, 2, 0, 0]
    first = outcomes[0].deliveries
    assert first[0].message is not first[1].message, "each destination gets its own copy"
    assert [f.stage for o in outcomes for f in o.failures] == ["route", "validate", "validate", "route"]
    assert all(d.message["routing_metadata"]["hops"] == 1 for o in outcomes for d in o.deliveries)
    assert len(await dispatcher.failures.list()) == 4


async def test_a_redirect_rewrites_every_message_of_the_batch_as_it_did_the_first() -> None:
    config = router_config(RedirectRouter, redirect_inbound={"sms": "app2"}, redirect_outbound={"app2": "sms"})
    items = [("inbound", make_inbound(str(n), transport_name=name)) for n, name in enumerate(["sms", "sms", "xmpp"])]
    outcomes, _ = await both_ways(config, "sms", items)
    assert [d.message.transport_name for o in outcomes for d in o.deliveries] == ["app2", "app2", "app2"]


async def test_events_follow_their_return_routes_and_the_others_the_routers_decision() -> None:
    config = simple_config()
    sent = [make_inbound(f"out{n}", transport_name="sms") for n in range(2)]
    batch = Dispatcher(config, MemoryOutbox())
    await batch.start()
    replies = [("outbound", m.reply("hi")) for m in sent]
    await batch.settle(*await batch.route_batch("app2", replies))
    events = [("event", make_ack(r, transport_name="sms")) for _, r in replies]
    events.append(("event", make_ack("not-sent-here", transport_name="sms")))
    outcomes = await batch.route_batch("sms", events)
    await batch.settle(*outcomes)
    assert [o.destinations for o in outcomes] == [["app2"], ["app2"], ["app1"]]


def test_routers_say_which_directions_can_be_routed_per_batch() -> None:
    config = {"transport_names": ["sms"], "exposed_names": ["app1", "app2"]}
    simple = SimpleDispatchRouter(None, config)  # type: ignore[arg-type]
    assert [simple.batch_decision_fields(d) for d in ("inbound", "event", "outbound")] == [("transport_name",)] * 3
    assert ContentKeywordRouter(None, config).batch_decision_fields("inbound") is None  # type: ignore[arg-type]
    grouping = UserGroupingRouter(None, config)  # type: ignore[arg-type]
    assert grouping.batch_decision_fields("inbound") is None, "it overrides inbound routing (user groups)"
    assert grouping.batch_decision_fields("outbound") == ("transport_name",)
    assert OverridingRouter(None, config).batch_decision_fields("inbound") is None  # type: ignore[arg-type]


async def test_a_router_that_overrides_a_hook_without_saying_so_is_asked_for_each_message() -> None:
    items = [("inbound", make_inbound(str(n), transport_name="sms")) for n in range(3)]
    outcomes, _ = await both_ways(router_config(OverridingRouter), "sms", items)
    assert [o.destinations for o in outcomes] == [["app1"], ["app1"], ["app2"]]


async def test_middleware_that_touches_messages_routes_the_batch_one_by_one() -> None:
    config = router_config(
        CountingRouter,
        middleware=[{"tag": class_path(Tagger)}],
    )
    items = [("inbound", make_inbound(str(n), transport_name="sms")) for n in range(4)]
    CountingRouter.asked = 0
    outcomes, _ = await both_ways(config, "sms", items)
    assert CountingRouter.asked == 8, "asked for every message in both runs"
    assert all(d.message["mw_trail"] for o in outcomes for d in o.deliveries)


ROUTERS: list[dict[str, Any]] = [
    simple_config(transport_mappings={"alias": "xmpp"}),
    router_config(RedirectRouter, redirect_inbound={"sms": "app2", "xmpp": "app1"}, redirect_outbound={"app1": "ussd"}),
    simple_config(router_class="routers.from_addr.FromAddrMultiplexRouter", exposed_names=["app1"],
                  fromaddr_mappings={"+1": "sms", "+2": "xmpp"}),
    simple_config(router_class="routers.transport_to_transport.TransportToTransportRouter", exposed_names=[],
                  route_mappings={"sms": ["xmpp", "ussd"]}),
]  # fmt: skip
NAMES = st.sampled_from(["sms", "xmpp", "ussd", "app1", "app2", "alias", "nowhere"])


@st.composite
def arriving(draw: st.DrawFn) -> tuple[str, list[tuple[Any, Any]]]:
    """An endpoint and a batch of messages arriving on it: mixed names, addresses, hop counts, some events."""
    outbound = draw(st.booleans())
    endpoint = draw(st.sampled_from(["app1", "app2"] if outbound else ["sms", "xmpp", "ussd"]))
    items: list[tuple[Any, Any]] = []
    for _ in range(draw(st.integers(1, 12))):
        hops = draw(st.sampled_from([0, 0, 0, 9]))
        msg = make_inbound(
            draw(st.sampled_from(["a", "b"])),
            transport_name=draw(NAMES),
            from_addr=draw(st.sampled_from(["+1", "+2", "+3"])),
            routing_metadata={"hops": hops},
        )
        if outbound:
            items.append(("outbound", msg))
        elif draw(st.integers(0, 3)) == 0:
            items.append(("event", make_ack(msg, transport_name=draw(NAMES))))
        else:
            items.append(("inbound", msg))
    return endpoint, items


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.sampled_from(ROUTERS), case=arriving())
async def test_route_batch_gives_what_routing_one_by_one_gives(config: dict[str, Any], case: Any) -> None:
    endpoint, items = case
    await both_ways(config, endpoint, items)
