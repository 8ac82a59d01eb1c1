"""explain(): step-by-step traces of one routing decision, as text and HTML."""

from __future__ import annotations

import pickle

import pytest

from ray_dispatch.core.dispatcher import TRACE_KINDS, TraceStep
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.testing import RouterHarness, make_ack, make_inbound
from ray_dispatch.tools import BadRecord, Explanation, explain, explain_async
from ray_dispatch.tools.explain import describe_message


def test_simple_match_lists_router_decision_and_each_publish(simple_config):
    msg = make_inbound("hi", transport_name="xmpp")
    result = explain(simple_config, msg)
    assert result.destinations == ["inbound:app1", "inbound:app2"]
    assert [s.kind for s in result.steps] == ["receive", "router", "publish", "publish"]
    assert result.steps_of("router") == ["route_mappings['xmpp'] -> ['app1', 'app2']"]
    assert result.steps_of("publish") == ["published inbound to 'app1'", "published inbound to 'app2'"]
    assert msg.message_id in result.steps[0].text and "'xmpp'" in result.steps[0].text
    assert result.failures == [] and result.delivered
    assert result.result == "delivered to inbound:app1, inbound:app2"


def test_simple_non_match_gives_the_reason(simple_config):
    result = explain(simple_config, make_inbound("hi", transport_name="ussd"))
    assert result.destinations == [] and not result.delivered
    assert [s.kind for s in result.steps] == ["receive", "failure"]
    assert "no route_mappings entry for transport 'ussd'" in result.steps[-1].text
    assert len(result.failures) == 1 and result.failures[0].stage == "route"
    assert result.result.startswith("failed at route: no route_mappings entry for transport 'ussd'")


def test_middleware_hooks_appear_in_order(simple_config):
    config = {**simple_config, "middleware": [{"log": "ray_dispatch.middleware.LoggingMiddleware"}]}
    result = explain(config, make_inbound("hi", transport_name="sms"))
    assert [s.kind for s in result.steps] == ["receive", "middleware", "router", "middleware", "publish"]
    assert result.steps[1].text == "middleware 'log': consume inbound on 'sms'"
    assert result.steps[3].text == "middleware 'log': publish inbound on 'app1'"


def test_outbound_is_inferred_from_an_exposed_endpoint(simple_config):
    reply = make_inbound("hi", transport_name="sms").reply("hello back")
    result = explain(simple_config, reply, endpoint="app2")
    assert result.direction == "outbound" and result.endpoint == "app2"
    assert result.destinations == ["outbound:sms"]
    assert result.steps_of("router") == ["outbound: transport_name 'sms' -> transport 'sms'"]


def test_events_and_traffic_records_are_explained(simple_config):
    ack = make_ack("some-id", transport_name="sms")
    assert explain(simple_config, ack).destinations == ["event:app1"]
    record = {"endpoint": "xmpp", "direction": "inbound", "message": make_inbound(transport_name="xmpp").to_dict()}
    assert explain(simple_config, record).destinations == ["inbound:app1", "inbound:app2"]


def test_invalid_message_is_explained_not_raised(simple_config):
    result = explain(simple_config, {"content": "no addresses", "transport_name": "sms"})
    assert result.destinations == []
    (step,) = result.steps_of("failure")
    assert "failure at validate" in step and "'to_addr'" in step and "'transport_type'" in step
    assert "not a valid Vumi message" in result.steps[0].text


def test_bad_arguments_raise_clear_errors(simple_config):
    with pytest.raises(ValueError, match="direction must be one of"):
        explain(simple_config, make_inbound(), direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(BadRecord, match="outbound record needs 'endpoint'"):
        explain(simple_config, make_inbound(), direction="outbound")
    with pytest.raises(ConfigError, match="route_mappings"):
        explain({**simple_config, "route_mappings": {"nope": "app1"}}, make_inbound())


def test_content_keyword_rules_report_matches_and_non_matches(examples):
    msg = make_inbound("SCORE 2-1", from_addr="+27821234567", to_addr="31337", transport_name="sms_za")
    result = explain(examples / "multi_country.yaml", msg)
    assert result.destinations == ["inbound:football_app"]
    router = result.steps_of("router")
    assert any("prefix '+234' did not match from_addr '+27821234567'" in s for s in router)
    assert any("prefix '+27' matched" in s for s in router)
    fallback = explain(examples / "multi_country.yaml", make_inbound("hello?", transport_name="sms_ke"))
    assert fallback.destinations == ["inbound:helpdesk"]
    assert "fallback_application 'helpdesk'" in fallback.steps_of("router")[-1]


def test_text_and_html_renderings(simple_config):
    result = explain(simple_config, make_inbound("<b>bold</b> & more", transport_name="sms"))
    text = str(result)
    assert text.splitlines()[0].split() == ["#", "step", "what", "happened"]
    assert "route_mappings['sms'] -> ['app1']" in text
    assert text.endswith("result: delivered to inbound:app1")
    html = result._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == len(result.steps) + 1
    assert "<b>bold" not in html and "&lt;b&gt;bold&lt;/b&gt; &amp; more" in html
    data = result.to_dict()
    assert data["destinations"] == ["inbound:app1"] and data["steps"][1]["kind"] == "router"
    assert repr(result) == "<Explanation inbound on 'sms': delivered to inbound:app1>"


async def test_works_inside_a_running_event_loop(simple_config):
    msg = make_inbound(transport_name="sms")
    assert explain(simple_config, msg).destinations == ["inbound:app1"]
    assert (await explain_async(simple_config, msg)).destinations == ["inbound:app1"]


async def test_from_outcome_explains_a_harness_dispatch(simple_config):
    async with RouterHarness(simple_config) as h:
        msg = make_inbound(transport_name="sms")
        traced = await h.dispatch_inbound(msg, trace=True)
        result = Explanation.from_outcome(traced, msg)
        assert result.steps_of("publish") == ["published inbound to 'app1'"]
        with pytest.raises(ValueError, match="trace=True"):
            Explanation.from_outcome(await h.dispatch_inbound(msg))


def test_trace_steps_are_strings_with_a_kind_and_survive_pickling(simple_config):
    step = TraceStep("published inbound to 'app1'", "publish")
    assert step == "published inbound to 'app1'" and step.kind == "publish"
    copy = pickle.loads(pickle.dumps(step))
    assert copy == step and copy.kind == "publish" and isinstance(copy, TraceStep)
    result = explain(simple_config, make_inbound(transport_name="ussd"))
    assert {s.kind for s in result.steps[1:]} <= set(TRACE_KINDS)


def test_describe_message_is_short():
    long = make_inbound("x" * 100, message_id="abc")
    assert describe_message(long) == f"user_message abc from +27831234567 to 12345: {'x' * 39 + '…'!r}"
    assert describe_message(make_ack("abc", event_id="e1")) == "ack event e1 about abc"
