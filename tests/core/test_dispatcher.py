"""The Dispatcher core, through the harness: return routes, failure records, copies, hops, replay, drops, traces."""

from __future__ import annotations

from typing import Any

import pytest

from ray_dispatch.core.dispatcher import Dispatcher, TraceStep
from ray_dispatch.core.message import Message
from ray_dispatch.core.stores.failures import MemoryFailureStore
from ray_dispatch.core.stores.routing import MemoryStore
from ray_dispatch.testing import MemoryOutbox, RouterHarness, make_ack, make_delivery_report, make_inbound, make_nack

from .helpers import (
    DroppingRouter,
    ExplodingRouter,
    FakeClock,
    GateRouter,
    HoardingRouter,
    MisdirectingRouter,
    ObservingRouter,
    ReturnsDictOnPublish,
    RewritingRouter,
    SloppyExplainRouter,
    Tagger,
    class_path,
    router_config,
    simple_config,
)

# -- return routes ----------------------------------------------------------------


async def test_events_go_back_to_the_application_that_sent_the_message(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        await h.dispatch_outbound(make_inbound("from app2", transport_name="sms"), "app2")
        (sent,) = h.outbound_to("sms")
        outcome = await h.dispatch_event(make_ack(sent))
        await h.dispatch_event(make_delivery_report(sent, "failed"))
        await h.dispatch_event(make_nack(sent, "throttled"))

    # route_mappings would send sms events to app1; the sender was app2.
    assert outcome.destinations == ["app2"]
    assert [e.event_type for e in h.events_to("app2")] == ["ack", "delivery_report", "nack"]
    assert h.events_to("app1") == [] and h.failures == []


async def test_event_about_an_unknown_message_follows_the_router(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        await h.dispatch_event(make_ack("never-seen", transport_name="sms"))
        await h.dispatch_event(make_ack("never-seen-either", transport_name="xmpp"))
    assert [e.user_message_id for e in h.events_to("app1")] == ["never-seen", "never-seen-either"]
    assert [e.user_message_id for e in h.events_to("app2")] == ["never-seen-either"]


async def test_return_route_wins_even_where_the_router_has_no_event_route(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        await h.dispatch_outbound(make_inbound(transport_name="ussd"), "app1")
        (sent,) = h.outbound_to("ussd")
        routed = await h.dispatch_event(make_ack(sent))
        unroutable = await h.dispatch_event(make_ack("unknown-id", transport_name="ussd"))

    assert routed.destinations == ["app1"] and routed.failures == []
    (record,) = unroutable.failures
    assert record.reason == "no route_mappings entry for transport 'ussd' (event)"
    assert record.direction == "event" and record.endpoint == "ussd" and record.error_type == "NoRoute"
    assert h.failures == [record]


async def test_return_route_expires_after_its_ttl_and_the_router_takes_over(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    async with RouterHarness(simple_config(return_route_ttl=60), store=store) as h:
        await h.dispatch_outbound(make_inbound(transport_name="sms"), "app2")
        (sent,) = h.outbound_to("sms")

        clock.advance(59)
        await h.dispatch_event(make_ack(sent))
        clock.advance(1)
        await h.dispatch_event(make_delivery_report(sent))

    assert [e.event_type for e in h.events_to("app2")] == ["ack"]
    assert [e.event_type for e in h.events_to("app1")] == ["delivery_report"]  # via route_mappings


async def test_return_route_overrides_a_router_that_drops_events() -> None:
    async with RouterHarness(router_config(DroppingRouter)) as h:
        await h.dispatch_outbound(make_inbound(transport_name="sms"), "app2")
        known = await h.dispatch_event(make_ack(h.outbound_to("sms")[0]))
        unknown = await h.dispatch_event(make_ack("other", transport_name="sms"))

    assert known.destinations == ["app2"] and known.dropped is None
    assert unknown.destinations == [] and unknown.dropped == "events are dropped by design"
    assert h.failures == []


# -- failure records ---------------------------------------------------------------


async def test_message_from_an_unknown_endpoint_is_a_failure(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        inbound = await h.dispatch_inbound(make_inbound(transport_name="fax"))
        outbound = await h.dispatch_outbound(make_inbound(transport_name="sms"), "app9")
        event = await h.dispatch_event(make_ack("m1", transport_name="sms"), "app1")

    assert inbound.failures[0].reason == (
        "inbound message arrived on 'fax', which is not in transport_names ['sms', 'ussd', 'xmpp']"
    )
    assert outbound.failures[0].reason == (
        "outbound message arrived on 'app9', which is not in exposed_names ['app1', 'app2']"
    )
    assert "event message arrived on 'app1', which is not in transport_names" in event.failures[0].reason
    assert [f.error_type for f in h.failures] == ["UnknownEndpoint"] * 3
    assert [f.endpoint for f in h.failures] == ["fax", "app9", "app1"]


async def test_unroutable_messages_are_failures_that_say_why(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        inbound = await h.dispatch_inbound(make_inbound("lost", transport_name="ussd"))
        outbound = await h.dispatch_outbound(make_inbound(transport_name="gsm"), "app1")

    (rec_in,) = inbound.failures
    assert rec_in.reason == "no route_mappings entry for transport 'ussd' (inbound message)"
    assert (rec_in.direction, rec_in.endpoint, rec_in.stage) == ("inbound", "ussd", "route")
    assert rec_in.message.content == "lost"
    (rec_out,) = outbound.failures
    assert rec_out.reason == "outbound transport_name 'gsm' is not in transport_names ['sms', 'xmpp', 'ussd']"
    assert (rec_out.direction, rec_out.endpoint) == ("outbound", "app1")


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"to_addr": "1", "from_addr": "2", "transport_name": "sms"}, "field 'transport_type': Field required"),
        ({"to_addr": "1", "from_addr": "2", "transport_name": "sms", "transport_type": 4}, "field 'transport_type'"),
        ({"transport_name": "sms", "session_event": "later"}, "field 'session_event'"),
        ([1, 2], "expected a JSON object, got list"),
        ("not a message", "expected a JSON object, got str"),
        (None, "expected a JSON object, got NoneType"),
        (make_ack("m1", transport_name="sms"), "expected a user_message for inbound, got a event"),
    ],
)
async def test_invalid_payloads_are_failures_naming_the_field(
    config: dict[str, Any], payload: Any, needle: str
) -> None:
    async with RouterHarness(config) as h:
        outcome = await h.dispatch_inbound(payload)
        await h.dispatch_inbound(make_inbound("after", transport_name="sms"))

    (record,) = outcome.failures
    assert needle in record.reason
    assert record.stage == "validate" and record.error_type == "InvalidMessage" and record.direction == "inbound"
    assert [m.content for m in h.inbound_to("app1")] == ["after"]


async def test_invalid_event_payload_is_a_failure() -> None:
    async with RouterHarness(simple_config()) as h:
        outcome = await h.dispatch_event({"event_type": "ack", "user_message_id": "m1", "transport_name": "sms"})
    (record,) = outcome.failures
    assert "event_type 'ack' needs the field 'sent_message_id'" in record.reason
    assert record.endpoint == "sms" and record.direction == "event"
    assert record.message == {"event_type": "ack", "user_message_id": "m1", "transport_name": "sms"}


async def test_router_exceptions_are_failures_and_others_still_flow() -> None:
    async with RouterHarness(router_config(ExplodingRouter)) as h:
        boom = await h.dispatch_inbound(make_inbound("boom", transport_name="sms"))
        fine = await h.dispatch_inbound(make_inbound("fine", transport_name="sms"))

    (record,) = boom.failures
    assert record.reason == "RuntimeError: router exploded" and record.error_type == "RuntimeError"
    assert record.stage == "route" and record.message.content == "boom"
    assert fine.destinations == ["app1"] and len(h.failures) == 1


async def test_publishing_to_an_unknown_endpoint_or_the_wrong_kind_is_a_failure() -> None:
    async with RouterHarness(router_config(MisdirectingRouter)) as h:
        nowhere = await h.dispatch_inbound(make_inbound("nowhere", transport_name="sms"))
        wrong_kind = await h.dispatch_inbound(make_inbound("as-event", transport_name="sms"))

    (rec,) = nowhere.failures
    assert rec.reason == "router published inbound to 'no_such_app', which is not in exposed_names ['app1', 'app2']"
    assert (rec.stage, rec.destination, rec.endpoint) == ("publish", "no_such_app", "sms")
    (rec2,) = wrong_kind.failures
    assert rec2.reason == "TypeError: publish_inbound_event to 'app1' needs a TransportEvent, got TransportUserMessage"
    assert h.inbound_to("app1") == [] and h.events_to("app1") == []


async def test_an_outbox_that_refuses_is_a_deliver_failure_for_that_copy_only(config: dict[str, Any]) -> None:
    class RefusingOutbox(MemoryOutbox):
        async def deliver(self, direction: Any, endpoint: str, message: Message) -> None:
            if endpoint == "app2":
                raise ConnectionError("app2 is down")
            await super().deliver(direction, endpoint, message)

    outbox = RefusingOutbox()
    dispatcher = Dispatcher(config, outbox)
    await dispatcher.start()
    outcome = await dispatcher.dispatch_inbound_message(make_inbound(transport_name="xmpp"))
    await dispatcher.stop()

    assert outcome.destinations == ["app1"] and len(outbox.delivered["inbound", "app1"]) == 1
    (record,) = outcome.failures
    assert record.reason == "ConnectionError: app2 is down"
    assert (record.stage, record.destination, record.endpoint) == ("deliver", "app2", "xmpp")
    assert dispatcher.stats.failed == {("inbound", "app2"): 1}


# -- copies: fan-out, delivered messages, the caller's message ------------------------------------


async def test_fan_out_copies_are_independent(config: dict[str, Any]) -> None:
    msg = make_inbound(transport_name="xmpp", helper_metadata={"tags": ["a"]})
    async with RouterHarness(config) as h:
        outcome = await h.dispatch_inbound(msg)

    (to_app1,) = h.inbound_to("app1")
    (to_app2,) = h.inbound_to("app2")
    assert outcome.destinations == ["app1", "app2"]
    assert to_app1 == to_app2 and to_app1 is not to_app2
    to_app1.helper_metadata["tags"].append("changed by app1")
    to_app1.content = "changed"
    assert to_app2.helper_metadata == {"tags": ["a"]} and to_app2.content == "hello"
    assert msg.helper_metadata == {"tags": ["a"]}


async def test_mutating_a_delivered_message_changes_nothing_else() -> None:
    config = simple_config(middleware=[{"odd": class_path(ReturnsDictOnPublish)}])
    async with RouterHarness(config) as h:
        msg = make_inbound("fan", transport_name="xmpp", helper_metadata={"k": [1]})
        await h.dispatch_inbound(msg)  # app1 gets it; the copy for app2 fails in publish middleware
        reply = make_inbound("out", transport_name="sms", helper_metadata={"k": [1]})
        await h.dispatch_outbound(reply, "app2")

        (to_app1,) = h.inbound_to("app1")
        (sent,) = h.outbound_to("sms")
        for delivered in (to_app1, sent):
            delivered.helper_metadata["k"].append("mutated")
            delivered.content = "mutated"
            delivered.message_id = "forged"

        (record,) = h.failures
        assert record.message.helper_metadata == {"k": [1]} and record.message.content == "fan"
        assert msg.helper_metadata == {"k": [1]} and reply.message_id != "forged"
        # The return route remembers the id the app sent, not the delivered object.
        await h.dispatch_event(make_ack(reply.message_id, transport_name="sms"))
        assert [e.user_message_id for e in h.events_to("app2")] == [reply.message_id]
        # Replaying the failed copy sends what failed, not what app1 did to its own copy.
        replayed = await h.dispatcher.replay_failure(record.failure_id)
        assert replayed.deliveries[0].message.content == "fan"


async def test_the_callers_message_is_never_changed() -> None:
    msg = make_inbound("original", transport_name="sms", helper_metadata={"k": []})
    before = msg.to_dict()
    async with RouterHarness(router_config(RewritingRouter)) as h:
        await h.dispatch_inbound(msg)

    assert msg.to_dict() == before  # no hop count, no rewrites, no helper_metadata entries
    (delivered,) = h.inbound_to("app1")
    assert delivered.transport_name == "app1" and delivered.helper_metadata == {"k": [], "seen": ["rewriter"]}
    # The router contract: a publish takes the message as it is when the hook returns.
    assert delivered.content == "changed after publishing"
    assert delivered.routing_metadata["hops"] == 1


async def test_the_callers_dict_payload_is_never_changed(config: dict[str, Any]) -> None:
    payload = make_inbound(transport_name="sms", helper_metadata={"lb": {"names": ["x"]}}).to_dict()
    before = repr(payload)
    async with RouterHarness(config) as h:
        await h.dispatch_inbound(payload)
        h.inbound_to("app1")[0].helper_metadata["lb"]["names"].append("y")
    assert repr(payload) == before


async def test_the_same_message_can_be_dispatched_any_number_of_times(config: dict[str, Any]) -> None:
    msg = make_inbound(transport_name="sms")
    async with RouterHarness(config) as h:
        for _ in range(25):
            await h.dispatch_inbound(msg)
    assert len(h.inbound_to("app1")) == 25 and h.failures == []
    assert all(m.routing_metadata["hops"] == 1 for m in h.inbound_to("app1"))


# -- hop limit ---------------------------------------------------------------------------


async def test_hop_limit_turns_a_loop_into_a_routing_loop_failure() -> None:
    async with RouterHarness(simple_config(max_hops=5)) as h:
        msg = make_inbound("echo", transport_name="sms")
        passes = 0
        while True:
            outcome = await h.dispatch_inbound(msg)
            if outcome.failures:
                break
            passes += 1
            msg = outcome.deliveries[0].message  # the app sends what it got straight back out...
            out = await h.dispatch_outbound(msg, "app1")
            if out.failures:
                outcome = out
                break
            passes += 1
            msg = out.deliveries[0].message  # ...and the transport loops it back in
            assert passes < 50, "the hop limit never triggered"

    (record,) = outcome.failures
    assert passes == 5
    assert record.reason == "routing loop: message passed through the dispatcher 6 times (max_hops 5)"
    assert record.error_type == "RoutingLoop" and record.stage == "validate"


async def test_hop_count_travels_in_routing_metadata(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        ok = await h.dispatch_inbound(make_inbound(transport_name="sms", routing_metadata={"hops": 9}))
        looped = await h.dispatch_inbound(make_inbound(transport_name="sms", routing_metadata={"hops": 10}))
    assert ok.deliveries[0].message.routing_metadata["hops"] == 10
    assert looped.failures[0].error_type == "RoutingLoop"


# -- replay ------------------------------------------------------------------------------


async def test_replay_delivers_a_fixed_failure_and_removes_its_record() -> None:
    async with RouterHarness(router_config(GateRouter)) as h:
        await h.dispatcher.store.set("gate", "closed")
        failed = await h.dispatch_inbound(make_inbound("wait for me", transport_name="sms"))
        (record,) = failed.failures
        assert record.reason == "the gate is closed"

        again = await h.dispatcher.replay_failure(record.failure_id)  # still closed
        (second,) = again.failures
        assert second.attempts == 2 and second.failure_id != record.failure_id
        assert h.failures == [second]  # replaced, not piled up

        await h.dispatcher.store.set("gate", "open")
        done = await h.dispatcher.replay_failure(second.failure_id)

    assert done.destinations == ["app1"] and done.failures == []
    assert h.failures == []
    assert [m.content for m in h.inbound_to("app1")] == ["wait for me"]
    assert h.inbound_to("app1")[0].routing_metadata["hops"] == 1  # hops restart on replay


async def test_replay_from_another_endpoint_and_of_unknown_ids(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        failed = await h.dispatch_outbound(make_inbound(transport_name="sms"), "app9")
        (record,) = failed.failures
        done = await h.dispatcher.replay_failure(record.failure_id, endpoint="app2")
        with pytest.raises(KeyError, match="no failure record with id 'nope'"):
            await h.dispatcher.replay_failure("nope")
    assert done.destinations == ["sms"] and h.failures == []


async def test_replaying_a_payload_that_never_parsed_fails_again_once(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        failed = await h.dispatch_inbound({"transport_name": "sms"})
        again = await h.dispatcher.replay_failure(failed.failures[0].failure_id)
    assert [f.attempts for f in h.failures] == [2]
    assert again.failures[0].message == {"transport_name": "sms"}


# -- drops, publish outside dispatch, current endpoint, lifecycle -------------------------------------------


async def test_router_drop_is_counted_not_a_failure() -> None:
    async with RouterHarness(router_config(DroppingRouter)) as h:
        dropped = await h.dispatch_inbound(make_inbound("drop", transport_name="sms"))
        kept = await h.dispatch_inbound(make_inbound("keep", transport_name="sms"))
        stats = h.dispatcher.stats.to_dict()
    assert dropped.dropped == "dropped by design" and dropped.deliveries == [] and dropped.failures == []
    assert kept.destinations == ["app1"] and h.failures == []
    assert stats["dropped"] == {"dropped by design": 1}


async def test_publishing_or_dropping_outside_dispatch_raises() -> None:
    async with RouterHarness(router_config(HoardingRouter)) as h:
        with pytest.raises(RuntimeError, match="outside dispatch"):
            h.dispatcher.publish_inbound_message("app1", make_inbound())
        with pytest.raises(RuntimeError, match="outside dispatch"):
            h.dispatcher.drop("no message")
        await h.dispatch_inbound(make_inbound("kept", transport_name="sms"))
        with pytest.raises(RuntimeError, match=r"publish \(inbound to 'app1'\) called outside dispatch"):
            h.router.publish_later()  # type: ignore[attr-defined]
    assert len(h.inbound_to("app1")) == 1


async def test_async_router_sees_the_arrival_endpoint_and_its_lifecycle() -> None:
    harness = RouterHarness(router_config(ObservingRouter))
    async with harness as h:
        assert h.router.state == "set up"  # type: ignore[attr-defined]
        await h.dispatch_inbound(make_inbound(transport_name="sms"))
        await h.dispatch_inbound(make_inbound(transport_name="sms"), "xmpp")
        assert h.dispatcher.current_endpoint() is None
    assert h.router.state == "torn down"  # type: ignore[attr-defined]
    assert h.router.arrivals == ["sms", "xmpp"]  # type: ignore[attr-defined]


async def test_stats_count_received_published_and_failed(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        await h.dispatch_inbound(make_inbound(transport_name="xmpp"))
        await h.dispatch_inbound(make_inbound(transport_name="ussd"))
        await h.dispatch_outbound(make_inbound(transport_name="sms"), "app1")
        stats = h.dispatcher.stats.to_dict()
    assert stats["received"] == {"inbound:ussd": 1, "inbound:xmpp": 1, "outbound:app1": 1}
    assert stats["published"] == {"inbound:app1": 1, "inbound:app2": 1, "outbound:sms": 1}
    assert stats["failed"] == {"inbound:ussd": 1}


# -- traces -------------------------------------------------------------------------------


async def test_trace_lists_middleware_router_decisions_and_publishes() -> None:
    config = router_config(ObservingRouter, middleware=[{"tag": class_path(Tagger)}])
    async with RouterHarness(config) as h:
        traced = await h.dispatch_inbound(make_inbound("hi", transport_name="xmpp"), trace=True)
        untraced = await h.dispatch_inbound(make_inbound("hi", transport_name="xmpp"))

    assert untraced.trace is None
    trace = traced.trace
    assert trace is not None and all(isinstance(step, TraceStep) for step in trace)
    assert [(step.kind, str(step)) for step in trace] == [
        ("middleware", "middleware 'tag': consume inbound on 'xmpp'"),
        ("router", "observed 'hi' from 'xmpp'"),
        ("router", "route_mappings['xmpp'] -> ['app1', 'app2']"),
        ("middleware", "middleware 'tag': publish inbound on 'app1'"),
        ("publish", "published inbound to 'app1'"),
        ("middleware", "middleware 'tag': publish inbound on 'app2'"),
        ("publish", "published inbound to 'app2'"),
    ]


async def test_trace_shows_failures_and_return_routes(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        failed = await h.dispatch_inbound(make_inbound(transport_name="ussd"), trace=True)
        await h.dispatch_outbound(make_inbound(transport_name="ussd"), "app2")
        returned = await h.dispatch_event(make_ack(h.outbound_to("ussd")[0]), trace=True)

    assert failed.trace is not None and returned.trace is not None
    assert [s.kind for s in failed.trace] == ["failure"]
    assert str(failed.trace[0]) == "failure at route: no route_mappings entry for transport 'ussd' (inbound message)"
    kinds = [s.kind for s in returned.trace]
    assert kinds == ["router", "return_route", "publish"]
    assert "goes back to 'app2', which sent it" in str(returned.trace[1])


# -- failure store wiring ---------------------------------------------------------------------------


async def test_failures_land_in_the_given_failure_store(config: dict[str, Any]) -> None:
    failures = MemoryFailureStore()
    dispatcher = Dispatcher(config, MemoryOutbox(), failures=failures)
    await dispatcher.start()
    await dispatcher.dispatch_inbound_message(make_inbound(transport_name="ussd"))
    await dispatcher.stop()
    (record,) = await failures.list()
    assert record.endpoint == "ussd" and record.to_dict()["message"]["transport_name"] == "ussd"


async def test_tracing_never_changes_routing_even_with_a_bad_explain_format() -> None:
    async with RouterHarness(router_config(SloppyExplainRouter)) as h:
        traced = await h.dispatch_inbound(make_inbound(transport_name="sms"), trace=True)
        plain = await h.dispatch_inbound(make_inbound(transport_name="sms"))
    assert traced.destinations == plain.destinations == ["app1"] and h.failures == []
    assert traced.trace is not None and str(traced.trace[0]) == "100% sure: %d ('not a number',)"


async def test_a_message_nested_too_deep_is_a_failure_not_an_exception() -> None:
    config = simple_config(middleware=[{"log": "vumi.middleware.LoggingMiddleware"}])
    payload = make_inbound("deep", transport_name="xmpp").to_dict()
    nested: Any = "bottom"
    for _ in range(5000):
        nested = [nested]
    payload["deep"] = nested
    async with RouterHarness(config) as h:
        outcome = await h.dispatch_inbound(payload)
        after = await h.dispatch_inbound(make_inbound("after", transport_name="xmpp"))
    (record,) = outcome.failures
    assert "nested more than 100 levels deep" in record.reason
    assert record.stage == "validate" and record.endpoint == "xmpp"
    assert after.destinations == ["app1", "app2"]
