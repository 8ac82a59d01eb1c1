"""TransportToTransportRouter: inbound from one transport goes outbound through others."""

from __future__ import annotations

from ray_dispatch.testing import RouterHarness, make_ack, make_inbound


def t2t_config(router_config, **keys):
    return router_config("TransportToTransportRouter", transports=("sms", "ussd", "xmpp"), exposed=(), **keys)


async def test_inbound_goes_out_through_the_mapped_transports(router_config):
    config = t2t_config(router_config, route_mappings={"sms": ["ussd", "xmpp"], "ussd": "sms"})
    async with RouterHarness(config) as h:
        await h.dispatch_inbound(make_inbound("bridge me", transport_name="sms"))
        await h.dispatch_inbound(make_inbound("and back", transport_name="ussd"))
        assert [m.content for m in h.outbound_to("ussd")] == ["bridge me"]
        assert [m.content for m in h.outbound_to("xmpp")] == ["bridge me"]
        assert [m.content for m in h.outbound_to("sms")] == ["and back"]
        copy_a, copy_b = h.outbound_to("ussd")[0], h.outbound_to("xmpp")[0]
        copy_a.transport_metadata["touched"] = True
        assert copy_b.transport_metadata == {}
        assert h.failures == []


async def test_events_are_dropped_by_design_not_failures(router_config):
    config = t2t_config(router_config, route_mappings={"sms": "ussd"})
    async with RouterHarness(config) as h:
        outcome = await h.dispatch_event(make_ack("some-id", transport_name="ussd"))
        assert outcome.deliveries == [] and outcome.failures == []
        assert outcome.dropped is not None and "cannot receive" in outcome.dropped
        assert h.failures == []


async def test_outbound_is_dropped_by_design(router_config):
    config = router_config("TransportToTransportRouter", exposed=("app1",), route_mappings={"sms": "ussd"})
    async with RouterHarness(config) as h:
        outcome = await h.dispatch_outbound(make_inbound("stray"), "app1")
        assert outcome.deliveries == [] and outcome.failures == []
        assert outcome.dropped is not None and "no application" in outcome.dropped


async def test_unmapped_transport_is_a_failure(router_config):
    config = t2t_config(router_config, route_mappings={"sms": "ussd"})
    async with RouterHarness(config) as h:
        await h.dispatch_inbound(make_inbound("nowhere", transport_name="xmpp"))
        (failure,) = h.failures
        assert failure.reason == "no route_mappings entry for transport 'xmpp' (mapped: ['sms'])"
        assert failure.direction == "inbound" and failure.endpoint == "xmpp"


async def test_trace_explains_the_mapping(router_config):
    config = t2t_config(router_config, route_mappings={"sms": ["ussd", "xmpp"]})
    async with RouterHarness(config) as h:
        outcome = await h.dispatch_inbound(make_inbound(transport_name="sms"), trace=True)
        assert "route_mappings['sms'] -> transports ['ussd', 'xmpp']" in outcome.trace


async def test_bad_config_names_the_key(router_config, config_error):
    await config_error(t2t_config(router_config), "route_mappings", "Field required")
    await config_error(
        t2t_config(router_config, route_mappings={"sms": ["ussd", "fax"]}),
        "route_mappings.sms.1",
        "'fax' is not in transport_names",
    )
    await config_error(t2t_config(router_config, route_mappings={"sms": []}), "route_mappings.sms", "at least 1")
    await config_error(
        router_config("TransportToTransportRouter", route_mappings={"sms": "app1"}),
        "route_mappings.sms.0",
        "'app1' is not in transport_names",
    )
