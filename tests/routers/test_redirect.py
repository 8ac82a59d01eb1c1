"""RedirectRouter and its deprecated alias RedirectOutboundRouter."""

from __future__ import annotations

import pytest

from ray_dispatch.testing import RouterHarness, make_ack, make_inbound

REDIRECTS = {"redirect_inbound": {"sms": "app1", "ussd": "app2"}, "redirect_outbound": {"app1": "ussd"}}


async def test_inbound_and_events_are_redirected_with_transport_name_rewritten(router_config):
    async with RouterHarness(router_config("RedirectRouter", **REDIRECTS)) as h:
        await h.dispatch_inbound(make_inbound("via sms", transport_name="sms"))
        await h.dispatch_inbound(make_inbound("via ussd", transport_name="ussd"))
        await h.dispatch_event(make_ack("unknown-id", transport_name="ussd"))
        assert [(m.content, m.transport_name) for m in h.inbound_to("app1")] == [("via sms", "app1")]
        assert [(m.content, m.transport_name) for m in h.inbound_to("app2")] == [("via ussd", "app2")]
        (event,) = h.events_to("app2")
        assert event.transport_name == "app2" and event.user_message_id == "unknown-id"


async def test_outbound_is_redirected_by_the_sending_application(router_config):
    async with RouterHarness(router_config("RedirectRouter", **REDIRECTS)) as h:
        await h.dispatch_inbound(make_inbound("hi", transport_name="sms"))
        (received,) = h.inbound_to("app1")
        await h.dispatch_outbound(received.reply("hello"), "app1")
        assert [(m.content, m.transport_name) for m in h.outbound_to("ussd")] == [("hello", "app1")]
        assert h.outbound_to("sms") == []


async def test_missing_redirects_are_failures(router_config):
    config = router_config("RedirectRouter", redirect_inbound={"sms": "app1"})
    async with RouterHarness(config) as h:
        await h.dispatch_inbound(make_inbound(transport_name="ussd"))
        await h.dispatch_outbound(make_inbound("x", transport_name="app2"), "app2")
        inbound, outbound = h.failures
        assert inbound.reason == "no redirect_inbound entry for transport 'ussd' (mapped: ['sms'])"
        assert outbound.reason == "no redirect_outbound entry for application 'app2' (mapped: [])"
        assert (inbound.direction, outbound.direction) == ("inbound", "outbound")


async def test_event_for_a_sent_message_returns_to_its_sender(router_config):
    async with RouterHarness(router_config("RedirectRouter", **REDIRECTS)) as h:
        sent = make_inbound("out", transport_name="app1")
        await h.dispatch_outbound(sent, "app1")
        outcome = await h.dispatch_event(make_ack(sent, transport_name="sms"), trace=True)
        assert outcome.destinations == ["app1"]
        assert "redirect_inbound['sms'] -> 'app1'" in outcome.trace


async def test_bad_config_names_the_key(router_config, config_error):
    await config_error(
        router_config("RedirectRouter", redirect_inbound={"sms": "nope"}),
        "redirect_inbound.sms",
        "'nope' is not in exposed_names",
    )
    await config_error(
        router_config("RedirectRouter", redirect_outbound={"app1": "fax"}),
        "redirect_outbound.app1",
        "'fax' is not in transport_names",
    )
    await config_error(
        router_config("RedirectRouter", redirect_outbound={"sms": "sms"}),
        "redirect_outbound",
        "'sms' is not in exposed_names",
    )


async def test_redirect_outbound_router_is_a_deprecated_alias(router_config, caplog):
    config = router_config("RedirectOutboundRouter", **REDIRECTS)
    with pytest.warns(DeprecationWarning, match="use RedirectRouter"):
        async with RouterHarness(config) as h:
            await h.dispatch_inbound(make_inbound("in", transport_name="sms"))
            await h.dispatch_outbound(make_inbound("out", transport_name="app1"), "app1")
            assert [m.content for m in h.inbound_to("app1")] == ["in"]
            assert [m.content for m in h.outbound_to("ussd")] == ["out"]
    assert "RedirectOutboundRouter is deprecated" in caplog.text
