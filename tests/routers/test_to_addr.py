"""ToAddrRouter: inbound by regex on to_addr, every match a copy; events via return routes."""

from __future__ import annotations

from ray_dispatch.testing import RouterHarness, make_ack, make_delivery_report, make_inbound

MAPPINGS = {"app1": r"1\d+", "app2": r"12"}


async def test_every_matching_pattern_gets_an_independent_copy(router_config):
    async with RouterHarness(router_config("ToAddrRouter", toaddr_mappings=MAPPINGS)) as h:
        outcome = await h.dispatch_inbound(make_inbound("both", to_addr="12345"))
        assert sorted(outcome.destinations) == ["app1", "app2"]
        await h.dispatch_inbound(make_inbound("only app1", to_addr="1999"))
        assert [m.content for m in h.inbound_to("app1")] == ["both", "only app1"]
        assert [m.content for m in h.inbound_to("app2")] == ["both"]
        h.inbound_to("app1")[0]["content"] = "mutated"
        assert h.inbound_to("app2")[0].content == "both"


async def test_pattern_is_anchored_at_the_start_only(router_config):
    async with RouterHarness(router_config("ToAddrRouter", toaddr_mappings={"app1": "12"})) as h:
        await h.dispatch_inbound(make_inbound("prefix match", to_addr="12999"))
        await h.dispatch_inbound(make_inbound("inside only", to_addr="9912"))
        assert [m.content for m in h.inbound_to("app1")] == ["prefix match"]
        (failure,) = h.failures
        assert "to_addr '9912' matches none of the toaddr_mappings patterns" in failure.reason
        assert "'app1': '12'" in failure.reason


async def test_no_to_addr_is_a_failure_not_a_crash(router_config):
    async with RouterHarness(router_config("ToAddrRouter", toaddr_mappings=MAPPINGS)) as h:
        await h.dispatch_inbound(make_inbound("group chat", to_addr=None))
        (failure,) = h.failures
        assert failure.reason.startswith("to_addr None matches none")


async def test_event_reaches_the_application_that_sent_the_message(router_config):
    async with RouterHarness(router_config("ToAddrRouter", toaddr_mappings=MAPPINGS)) as h:
        sent = make_inbound("outbound from app2", transport_name="sms")
        await h.dispatch_outbound(sent, "app2")
        await h.dispatch_event(make_ack(sent))
        await h.dispatch_event(make_delivery_report(sent))
        assert [e.event_type for e in h.events_to("app2")] == ["ack", "delivery_report"]
        assert h.events_to("app1") == [] and h.failures == []


async def test_event_about_an_unknown_message_is_a_failure(router_config):
    async with RouterHarness(router_config("ToAddrRouter", toaddr_mappings=MAPPINGS)) as h:
        await h.dispatch_event(make_ack("never-sent"))
        (failure,) = h.failures
        assert failure.direction == "event"
        assert "'never-sent'" in failure.reason and "no return route" in failure.reason


async def test_outbound_goes_by_transport_name(router_config):
    config = router_config("ToAddrRouter", toaddr_mappings=MAPPINGS, transport_mappings={"alias": "ussd"})
    async with RouterHarness(config) as h:
        await h.dispatch_outbound(make_inbound("a", transport_name="sms"), "app1")
        await h.dispatch_outbound(make_inbound("b", transport_name="alias"), "app1")
        await h.dispatch_outbound(make_inbound("c", transport_name="fax"), "app1")
        assert [m.content for m in h.outbound_to("sms")] == ["a"]
        assert [m.content for m in h.outbound_to("ussd")] == ["b"]
        (failure,) = h.failures
        assert "'fax'" in failure.reason


async def test_trace_says_which_patterns_matched(router_config):
    async with RouterHarness(router_config("ToAddrRouter", toaddr_mappings=MAPPINGS)) as h:
        outcome = await h.dispatch_inbound(make_inbound(to_addr="1999"), trace=True)
        assert r"toaddr_mappings['app1']: pattern '1\\d+' matched to_addr '1999'" in outcome.trace
        assert "toaddr_mappings['app2']: pattern '12' did not match to_addr '1999'" in outcome.trace


async def test_bad_config_names_the_key(router_config, config_error):
    await config_error(router_config("ToAddrRouter"), "toaddr_mappings", "Field required")
    await config_error(
        router_config("ToAddrRouter", toaddr_mappings={"nope": "1"}),
        "toaddr_mappings",
        "'nope' is not in exposed_names",
    )
    await config_error(
        router_config("ToAddrRouter", toaddr_mappings={"app1": "(unclosed"}),
        "toaddr_mappings.app1",
        "'(unclosed' is not a valid regular expression",
    )
