"""ContentKeywordRouter: keyword rules, fallback, outbound by from_addr, routing memory for events."""

from __future__ import annotations

import pytest

from ray_dispatch.core.stores.routing import MemoryStore
from ray_dispatch.testing import RouterHarness, make_ack, make_inbound, make_nack

RULES = [
    {"app": "app1", "keyword": "FOO"},
    {"app": "app2", "keyword": "foo", "to_addr": "12345", "prefix": "+256"},
]


def keyword_config(router_config, **keys):
    keys.setdefault("rules", RULES)
    keys.setdefault("transport_mappings", {"12345": "sms", "*120#": "ussd"})
    return router_config("ContentKeywordRouter", exposed=("app1", "app2", "fallback"), **keys)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_every_matching_rule_gets_an_independent_copy(router_config):
    async with RouterHarness(keyword_config(router_config)) as h:
        outcome = await h.dispatch_inbound(make_inbound("Foo bar", to_addr="12345", from_addr="+256771"))
        assert outcome.destinations == ["app1", "app2"]
        h.inbound_to("app1")[0]["content"] = "changed"
        assert h.inbound_to("app2")[0].content == "Foo bar"


async def test_to_addr_and_prefix_must_both_match(router_config):
    async with RouterHarness(keyword_config(router_config)) as h:
        await h.dispatch_inbound(make_inbound("foo", to_addr="12345", from_addr="+27821"))
        await h.dispatch_inbound(make_inbound("foo", to_addr="999", from_addr="+256771"))
        assert len(h.inbound_to("app1")) == 2
        assert h.inbound_to("app2") == []


async def test_prefix_matches_only_at_the_start_of_from_addr(router_config):
    rules = [{"app": "app2", "keyword": "foo", "prefix": "256"}]
    async with RouterHarness(keyword_config(router_config, rules=rules, fallback_application="fallback")) as h:
        await h.dispatch_inbound(make_inbound("foo start", from_addr="256771"))
        await h.dispatch_inbound(make_inbound("foo inside", from_addr="27256771"))  # 256 inside, not at the start
        await h.dispatch_inbound(make_inbound("foo end", from_addr="771256"))
        assert [m.content for m in h.inbound_to("app2")] == ["foo start"]
        assert [m.content for m in h.inbound_to("fallback")] == ["foo inside", "foo end"]


async def test_keyword_mappings_add_simple_rules_case_insensitively(router_config):
    config = keyword_config(router_config, rules=[], keyword_mappings={"app2": "Quiz"})
    async with RouterHarness(config) as h:
        await h.dispatch_inbound(make_inbound("QUIZ please"))
        await h.dispatch_inbound(make_inbound("  quiz\tleading whitespace"))
        await h.dispatch_inbound(make_inbound("quizzes"))
        assert [m.content for m in h.inbound_to("app2")] == ["QUIZ please", "  quiz\tleading whitespace"]
        (failure,) = h.failures
        assert failure.reason.startswith("no rule matched keyword 'quizzes'")


async def test_unmatched_and_empty_content_go_to_the_fallback(router_config):
    async with RouterHarness(keyword_config(router_config, fallback_application="fallback")) as h:
        for content in ("bar", "", None, "   "):
            await h.dispatch_inbound(make_inbound(content))
        assert [m.content for m in h.inbound_to("fallback")] == ["bar", "", None, "   "]
        assert h.inbound_to("app1") == [] and h.failures == []


async def test_no_match_without_fallback_is_a_failure(router_config):
    async with RouterHarness(keyword_config(router_config)) as h:
        await h.dispatch_inbound(make_inbound("bar", to_addr="12345", from_addr="+27821"))
        await h.dispatch_inbound(make_inbound(None))
        first, second = h.failures
        assert first.reason == (
            "no rule matched keyword 'bar' (to_addr '12345', from_addr '+27821') and no fallback_application"
        )
        assert second.reason.startswith("no keyword (empty content)")


async def test_outbound_by_from_addr_and_events_return_to_the_sender(router_config):
    async with RouterHarness(keyword_config(router_config)) as h:
        by_app2 = make_inbound("reply", from_addr="12345", transport_name="app2")
        by_app1 = make_inbound("menu", from_addr="*120#", transport_name="app1")
        await h.dispatch_outbound(by_app2, "app2")
        await h.dispatch_outbound(by_app1, "app1")
        assert [m.content for m in h.outbound_to("sms")] == ["reply"]
        assert [m.content for m in h.outbound_to("ussd")] == ["menu"]
        await h.dispatch_event(make_ack(by_app2, transport_name="sms"))
        await h.dispatch_event(make_nack(by_app1, transport_name="ussd"))
        assert [e.user_message_id for e in h.events_to("app2")] == [by_app2.message_id]
        assert [e.event_type for e in h.events_to("app1")] == ["nack"]


async def test_routing_memory_outlives_the_dispatcher_return_route_then_expires(router_config):
    clock = FakeClock()
    config = keyword_config(router_config, expire_routing_memory=100, return_route_ttl=1)
    async with RouterHarness(config, store=MemoryStore(clock=clock)) as h:
        sent = make_inbound("hi", from_addr="12345")
        await h.dispatch_outbound(sent, "app2")
        clock.now += 50
        outcome = await h.dispatch_event(make_ack(sent, transport_name="sms"), trace=True)
        assert outcome.destinations == ["app2"]
        assert f"routing memory: message {sent.message_id!r} was sent by 'app2'" in outcome.trace
        clock.now += 100
        await h.dispatch_event(make_ack(sent, transport_name="sms"))
        (failure,) = h.failures
        assert failure.direction == "event"
        assert f"no routing memory for message {sent.message_id!r}" in failure.reason
        assert "expire_routing_memory 100 s" in failure.reason


async def test_unmapped_from_addr_is_a_failure(router_config):
    async with RouterHarness(keyword_config(router_config)) as h:
        await h.dispatch_outbound(make_inbound("x", from_addr="555"), "app1")
        (failure,) = h.failures
        assert failure.reason == "no transport_mappings entry for from_addr '555' (mapped: ['*120#', '12345'])"


async def test_trace_says_what_matched_and_what_did_not(router_config):
    async with RouterHarness(keyword_config(router_config, fallback_application="fallback")) as h:
        outcome = await h.dispatch_inbound(make_inbound("foo", to_addr="12345", from_addr="+27821"), trace=True)
        assert "rules[0] (app1): keyword 'foo' matched first word 'foo'" in outcome.trace
        assert (
            "rules[1] (app2): keyword 'foo' matched first word 'foo', to_addr '12345' matched '12345',"
            " prefix '+256' did not match from_addr '+27821'"
        ) in outcome.trace
        missed = await h.dispatch_inbound(make_inbound("zzz"), trace=True)
        assert "no rule matched keyword 'zzz' -> fallback_application 'fallback'" in missed.trace


async def test_bad_config_names_the_key(router_config, config_error):
    await config_error(keyword_config(router_config, rules=[{"keyword": "foo"}]), "rules.0.app", "Field required")
    await config_error(keyword_config(router_config, rules=[{"app": "app1"}]), "rules.0.keyword", "Field required")
    await config_error(
        keyword_config(router_config, rules=[{"app": "app1", "keyword": "two words"}]),
        "rules.0.keyword",
        "must be one word",
    )
    await config_error(
        keyword_config(router_config, rules=[{"app": "app1", "keyword": "x", "prefx": "+27"}]), "rules.0.prefx"
    )
    await config_error(
        keyword_config(router_config, rules=[{"app": "nope", "keyword": "x"}]),
        "rules.0.app",
        "'nope' is not in exposed_names",
    )
    await config_error(
        keyword_config(router_config, keyword_mappings={"ghost": "x"}), "keyword_mappings", "'ghost' is not in"
    )
    await config_error(
        keyword_config(router_config, fallback_application="ghost"), "fallback_application", "'ghost' is not in"
    )
    await config_error(
        keyword_config(router_config, transport_mappings={"123": "fax"}), "transport_mappings.123", "'fax' is not in"
    )
    await config_error(
        keyword_config(router_config, expire_routing_memory=-1), "expire_routing_memory", "greater than or equal to 0"
    )


@pytest.mark.parametrize("never", [0, "0"])
async def test_expire_routing_memory_zero_remembers_forever_as_in_vumi(router_config, never):
    clock = FakeClock()
    config = keyword_config(router_config, expire_routing_memory=never, return_route_ttl=1)
    async with RouterHarness(config, store=MemoryStore(clock=clock)) as h:
        sent = make_inbound("hi", from_addr="12345")
        await h.dispatch_outbound(sent, "app2")
        clock.now += 10 * 365 * 24 * 3600
        outcome = await h.dispatch_event(make_ack(sent, transport_name="sms"))
        assert outcome.destinations == ["app2"] and h.failures == []
