"""SimpleDispatchRouter: fixed route_mappings, fan-out copies, outbound by transport_name."""

from __future__ import annotations

from pathlib import Path

from ray_dispatch.testing import RouterHarness, make_ack, make_inbound

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed.yaml"


async def test_string_mapping_routes_inbound_and_events(router_config):
    config = router_config("SimpleDispatchRouter", route_mappings={"sms": "app1", "ussd": "app2"})
    async with RouterHarness(config) as h:
        sms, ussd = make_inbound("via sms"), make_inbound("via ussd", transport_name="ussd")
        await h.dispatch_inbound(sms)
        await h.dispatch_inbound(ussd)
        await h.dispatch_event(make_ack("never-sent-here", transport_name="ussd"))
        assert [m.content for m in h.inbound_to("app1")] == ["via sms"]
        assert [m.content for m in h.inbound_to("app2")] == ["via ussd"]
        assert [e.user_message_id for e in h.events_to("app2")] == ["never-sent-here"]
        assert h.events_to("app1") == [] and h.failures == []


async def test_list_mapping_fans_out_independent_copies(router_config):
    config = router_config("SimpleDispatchRouter", route_mappings={"sms": ["app1", "app2"]})
    async with RouterHarness(config) as h:
        msg = make_inbound("hello all")
        outcome = await h.dispatch_inbound(msg)
        assert outcome.destinations == ["app1", "app2"]
        (first,), (second,) = h.inbound_to("app1"), h.inbound_to("app2")
        assert first.message_id == second.message_id == msg.message_id
        first["content"] = "changed"
        first.helper_metadata["seen_by"] = "app1"
        assert second.content == "hello all" and second.helper_metadata == {}


async def test_outbound_uses_transport_name_and_transport_mappings(router_config):
    config = router_config(
        "SimpleDispatchRouter", route_mappings={"sms": "app1"}, transport_mappings={"sms_alias": "ussd"}
    )
    async with RouterHarness(config) as h:
        await h.dispatch_outbound(make_inbound("direct", transport_name="sms"), "app1")
        await h.dispatch_outbound(make_inbound("aliased", transport_name="sms_alias"), "app1")
        assert [m.content for m in h.outbound_to("sms")] == ["direct"]
        assert [m.content for m in h.outbound_to("ussd")] == ["aliased"]
        assert h.outbound_to("ussd")[0].transport_name == "sms_alias"


async def test_unknown_outbound_transport_is_a_failure(router_config):
    config = router_config("SimpleDispatchRouter", route_mappings={"sms": "app1"})
    async with RouterHarness(config) as h:
        outcome = await h.dispatch_outbound(make_inbound("lost", transport_name="telegram"), "app1")
        assert outcome.deliveries == []
        (failure,) = h.failures
        assert failure.direction == "outbound" and failure.endpoint == "app1"
        assert "'telegram'" in failure.reason and "transport_names" in failure.reason
        assert failure.message.content == "lost"


async def test_unmapped_inbound_transport_is_a_failure(router_config):
    config = router_config("SimpleDispatchRouter", route_mappings={"sms": "app1"})
    async with RouterHarness(config) as h:
        await h.dispatch_inbound(make_inbound(transport_name="ussd"))
        (failure,) = h.failures
        assert failure.reason == "no route_mappings entry for transport 'ussd' (inbound message)"
        assert h.inbound_to("app1") == []


async def test_event_returns_to_the_sender_not_the_mapping(router_config):
    config = router_config("SimpleDispatchRouter", route_mappings={"sms": "app1"})
    async with RouterHarness(config) as h:
        sent = make_inbound("from app2")
        await h.dispatch_outbound(sent, "app2")
        await h.dispatch_event(make_ack(sent))
        assert [e.user_message_id for e in h.events_to("app2")] == [sent.message_id]
        assert h.events_to("app1") == []


async def test_bad_config_names_the_key(router_config, config_error):
    await config_error(router_config("SimpleDispatchRouter"), "route_mappings", "Field required")
    await config_error(
        router_config("SimpleDispatchRouter", route_mappings={"sms": ["app1", "nope"]}),
        "route_mappings.sms",
        "'nope' is not in exposed_names",
    )
    await config_error(
        router_config("SimpleDispatchRouter", route_mappings={"fax": "app1"}),
        "route_mappings",
        "'fax' is not in transport_names",
    )
    await config_error(
        router_config("SimpleDispatchRouter", route_mappings={"sms": "app1"}, transport_mappings={"x": "fax"}),
        "transport_mappings.x",
        "'fax' is not in transport_names",
    )


async def test_seed_yaml_routes_both_transports_and_replies_go_back():
    async with RouterHarness(SEED) as h:
        sms = make_inbound("sms hi", transport_name="smpp_transport")
        xmpp = make_inbound("xmpp hi", transport_name="xmpp_transport", transport_type="xmpp")
        await h.dispatch_inbound(sms)
        await h.dispatch_inbound(xmpp)
        received = h.inbound_to("my_application")
        assert [m.content for m in received] == ["sms hi", "xmpp hi"]
        for msg in received:
            await h.dispatch_outbound(msg.reply(f"re: {msg.content}"), "my_application")
        assert [m.content for m in h.outbound_to("smpp_transport")] == ["re: sms hi"]
        assert [m.content for m in h.outbound_to("xmpp_transport")] == ["re: xmpp hi"]
        assert h.failures == []
