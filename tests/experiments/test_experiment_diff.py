"""diff(): the same traffic through two configs; exactly the changed routes are reported."""

from __future__ import annotations

import json
from collections import Counter

from ray_dispatch.testing import make_ack, make_inbound
from ray_dispatch.tools import diff, diff_async


def traffic() -> list:
    """12 inbound (4 per transport), 2 replies from app1 and their acks, one junk line."""
    items: list = [
        make_inbound(f"m{i}", transport_name=("sms", "xmpp", "ussd")[i % 3], message_id=f"in-{i}") for i in range(12)
    ]
    for i in range(2):
        reply = make_inbound("r", transport_name="sms", message_id=f"out-{i}")
        items.append({"endpoint": "app1", "direction": "outbound", "message": reply.to_dict()})
        items.append(make_ack(f"out-{i}", transport_name="sms"))
    items.append("not json")
    return items


def test_equivalent_configs_report_nothing(simple_config):
    same = {**simple_config, "route_mappings": {"xmpp": ["app1", "app2"], "sms": ["app1"]}}  # reordered, list form
    result = diff(simple_config, same, traffic())
    assert result.equivalent and result.changed == 0 and result.changes == [] and not result.transitions
    assert result.messages == 16 and result.unchanged == 16 and result.bad_lines == 1
    assert "0 routed differently, 16 the same" in result.to_text()


def test_finds_exactly_the_changed_routes(simple_config):
    new = {**simple_config, "route_mappings": {"sms": "app2", "xmpp": ["app1", "app2"], "ussd": "app1"}}
    result = diff(simple_config, new, traffic())
    changed_ids = sorted(c.message_id for c in result.changes)
    sms_ids = [f"in-{i}" for i in range(0, 12, 3)]
    ussd_ids = [f"in-{i}" for i in range(2, 12, 3)]
    assert changed_ids == sorted(sms_ids + ussd_ids)  # xmpp, replies and acks (return routes) are unchanged
    assert result.changed == 8 and result.messages == 16
    assert result.transitions == Counter({("inbound:app1", "inbound:app2"): 4, ("(failed)", "inbound:app1"): 4})
    sms = next(c for c in result.changes if c.message_id == "in-0")
    assert sms.old == ("inbound:app1",) and sms.new == ("inbound:app2",)
    assert [s.text for s in sms.old_steps if s.kind == "router"] == ["route_mappings['sms'] -> ['app1']"]
    assert [s.text for s in sms.new_steps if s.kind == "router"] == ["route_mappings['sms'] -> ['app2']"]
    ussd = next(c for c in result.changes if c.message_id == "in-2")
    assert ussd.old == ("(failed)",) and "no route_mappings entry for transport 'ussd'" in ussd.old_steps[-1].text
    assert ussd.line == 3 and ussd.endpoint == "ussd" and ussd.direction == "inbound"


def test_counts_every_change_but_keeps_max_changes(simple_config):
    new = {**simple_config, "route_mappings": {"sms": "app2", "xmpp": "app2"}}
    result = diff(simple_config, new, traffic(), max_changes=3)
    assert result.changed == 8 and len(result.changes) == 3
    assert result.transitions == Counter(
        {("inbound:app1", "inbound:app2"): 4, ("inbound:app1, inbound:app2", "inbound:app2"): 4}
    )


async def test_renderings_and_async(simple_config):
    new = {**simple_config, "route_mappings": {"sms": "app2"}}
    result = await diff_async(simple_config, new, traffic())
    text = result.to_text(limit=1)
    assert "changed messages (first 1 of 8):" in text and "old: inbound:app1" in text
    assert "router: route_mappings['sms'] -> ['app2']" in text
    data = json.loads(json.dumps(result.to_dict()))
    assert data["changed"] == 8 and data["changes"][0]["new"] == ["inbound:app2"]
    html = result._repr_html_()
    assert "inbound:app2" in html and "<table>" in html
    assert repr(result) == "<ConfigDiff 16 messages: 8 routed differently>"


def test_each_side_keeps_its_own_state(examples):
    """The example traffic through the same config twice is equivalent, return routes and all."""
    config = examples / "multi_country.yaml"
    result = diff(config, config, examples / "traffic_multi_country.jsonl")
    assert result.equivalent and result.messages == 308 and result.bad_lines == 1
