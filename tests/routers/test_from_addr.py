"""FromAddrMultiplexRouter: many single-address transports presented as one."""

from __future__ import annotations

from ray_dispatch.testing import RouterHarness, make_ack, make_inbound

MAPPINGS = {"alice@example.org": "xmpp_a", "bob@example.org": "xmpp_b"}


def mux_config(router_config, **keys):
    keys.setdefault("fromaddr_mappings", MAPPINGS)
    return router_config("FromAddrMultiplexRouter", transports=("xmpp_a", "xmpp_b"), exposed=("muxed",), **keys)


async def test_inbound_and_events_reach_the_one_application_renamed(router_config):
    async with RouterHarness(mux_config(router_config)) as h:
        await h.dispatch_inbound(make_inbound("to alice", to_addr="alice@example.org", transport_name="xmpp_a"))
        await h.dispatch_inbound(make_inbound("to bob", to_addr="bob@example.org", transport_name="xmpp_b"))
        await h.dispatch_event(make_ack("unknown-id", transport_name="xmpp_b"))
        received = h.inbound_to("muxed")
        assert [(m.content, m.transport_name) for m in received] == [("to alice", "muxed"), ("to bob", "muxed")]
        (event,) = h.events_to("muxed")
        assert event.transport_name == "muxed"


async def test_outbound_picks_the_transport_by_from_addr(router_config):
    async with RouterHarness(mux_config(router_config)) as h:
        inbound = make_inbound("hi", from_addr="+2783", to_addr="bob@example.org", transport_name="xmpp_b")
        await h.dispatch_inbound(inbound)
        (received,) = h.inbound_to("muxed")
        await h.dispatch_outbound(received.reply("hello from bob"), "muxed")
        await h.dispatch_outbound(make_inbound("from alice", from_addr="alice@example.org"), "muxed")
        assert [(m.content, m.transport_name) for m in h.outbound_to("xmpp_b")] == [("hello from bob", "xmpp_b")]
        assert [(m.content, m.transport_name) for m in h.outbound_to("xmpp_a")] == [("from alice", "xmpp_a")]


async def test_event_for_a_sent_message_returns_renamed(router_config):
    async with RouterHarness(mux_config(router_config)) as h:
        sent = make_inbound("x", from_addr="alice@example.org", transport_name="muxed")
        await h.dispatch_outbound(sent, "muxed")
        await h.dispatch_event(make_ack(sent, transport_name="xmpp_a"))
        (event,) = h.events_to("muxed")
        assert event.user_message_id == sent.message_id and event.transport_name == "muxed"


async def test_unmapped_from_addr_is_a_failure(router_config):
    async with RouterHarness(mux_config(router_config)) as h:
        await h.dispatch_outbound(make_inbound("who?", from_addr="carol@example.org"), "muxed")
        (failure,) = h.failures
        assert failure.reason == (
            "no fromaddr_mappings entry for from_addr 'carol@example.org'"
            " (mapped: ['alice@example.org', 'bob@example.org'])"
        )
        assert failure.direction == "outbound" and h.outbound_to("xmpp_a") == []


async def test_trace_explains_inbound_and_outbound(router_config):
    async with RouterHarness(mux_config(router_config)) as h:
        inbound = await h.dispatch_inbound(make_inbound(transport_name="xmpp_a"), trace=True)
        assert "inbound from 'xmpp_a' -> the only exposed name 'muxed'" in inbound.trace
        assert "transport_name 'xmpp_a' rewritten to 'muxed'" in inbound.trace
        outbound = await h.dispatch_outbound(make_inbound(from_addr="bob@example.org"), "muxed", trace=True)
        assert any("fromaddr_mappings['bob@example.org'] -> transport 'xmpp_b'" in s for s in outbound.trace)


async def test_bad_config_names_the_key(router_config, config_error):
    await config_error(
        router_config("FromAddrMultiplexRouter", transports=("xmpp_a",), fromaddr_mappings={}),
        "exposed_names",
        "exactly one exposed name",
        "['app1', 'app2']",
    )
    await config_error(
        router_config("FromAddrMultiplexRouter", transports=("xmpp_a",), exposed=("muxed",)),
        "fromaddr_mappings",
        "Field required",
    )
    await config_error(
        mux_config(router_config, fromaddr_mappings={"alice@example.org": "xmpp_c"}),
        "fromaddr_mappings.alice@example.org",
        "'xmpp_c' is not in transport_names",
    )
