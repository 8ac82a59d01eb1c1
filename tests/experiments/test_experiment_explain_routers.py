"""explain() for each builtin router: what matched, and why a non-matching message went nowhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from ray_dispatch.core.message import TransportUserMessage
from ray_dispatch.testing import make_ack, make_inbound
from ray_dispatch.tools import explain


@dataclass
class Case:
    router: str
    keys: dict[str, Any]
    match: Any  # (message, endpoint or None)
    destinations: list[str]
    because: str  # in the router's steps for the match
    miss: Any
    why_not: str  # in the explanation of the miss
    miss_delivered: bool = False
    exposed: tuple[str, ...] = ("app1", "app2")


def reply_via(transport_names: list[str]) -> TransportUserMessage:
    original = make_inbound("hi", transport_name="app1", message_id="orig")
    original.helper_metadata["load_balancer"] = {"transport_names": transport_names}
    return original.reply("back")


CASES = [
    Case(
        "SimpleDispatchRouter",
        {"route_mappings": {"sms": "app1"}},
        (make_inbound(transport_name="sms"), None),
        ["inbound:app1"],
        "route_mappings['sms'] -> ['app1']",
        (make_inbound(transport_name="ussd"), None),
        "no route_mappings entry for transport 'ussd'",
    ),
    Case(
        "TransportToTransportRouter",
        {"route_mappings": {"sms": "ussd"}},
        (make_inbound(transport_name="sms"), None),
        ["outbound:ussd"],
        "route_mappings['sms'] -> transports ['ussd']",
        (make_ack("x", transport_name="sms"), None),
        "dropped: TransportToTransportRouter drops events",
    ),
    Case(
        "ToAddrRouter",
        {"toaddr_mappings": {"app1": "^1", "app2": "^2"}},
        (make_inbound(to_addr="123", transport_name="sms"), None),
        ["inbound:app1"],
        "toaddr_mappings['app2']: pattern '^2' did not match to_addr '123'",
        (make_inbound(to_addr="999", transport_name="sms"), None),
        "to_addr '999' matches none of the toaddr_mappings patterns",
    ),
    Case(
        "FromAddrMultiplexRouter",
        {"fromaddr_mappings": {"+2782": "ussd"}},
        (make_inbound(from_addr="+2782", transport_name="app1"), "app1"),
        ["outbound:ussd"],
        "fromaddr_mappings['+2782'] -> transport 'ussd'",
        (make_inbound(from_addr="+999", transport_name="app1"), "app1"),
        "no fromaddr_mappings entry for from_addr '+999'",
        exposed=("app1",),
    ),
    Case(
        "UserGroupingRouter",
        {"group_mappings": {"g1": "app1", "g2": "app2"}},
        (make_inbound(from_addr="+27820000001", transport_name="sms"), None),
        ["inbound:app1"],
        "group_mappings['g1'] -> 'app1'",
        (make_inbound(from_addr=None, transport_name="sms"), None),
        "groups users by from_addr, and this message has none",
    ),
    Case(
        "ContentKeywordRouter",
        {"keyword_mappings": {"app1": "hi", "app2": "news"}},
        (make_inbound("Hi there", transport_name="sms"), None),
        ["inbound:app1"],
        "keyword 'news' did not match first word 'hi'",
        (make_inbound("bye", transport_name="sms"), None),
        "no rule matched keyword 'bye'",
    ),
    Case(
        "RedirectRouter",
        {"redirect_inbound": {"sms": "app2"}},
        (make_inbound(transport_name="sms"), None),
        ["inbound:app2"],
        "redirect_inbound['sms'] -> 'app2'",
        (make_inbound(transport_name="ussd"), None),
        "no redirect_inbound entry for transport 'ussd'",
    ),
    Case(
        "LoadBalancingRouter",
        {},
        (reply_via(["ussd"]), "app1"),
        ["outbound:ussd"],
        "reply_affinity: reply to 'orig' goes back through 'ussd'",
        (reply_via(["gone"]), "app1"),
        "carries no known transport name; round-robin",
        miss_delivered=True,
        exposed=("app1",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.router for c in CASES])
def test_builtin_router_explains_match_and_miss(case: Case):
    config = {
        "router_class": f"routers.{case.router}",
        "transport_names": ["sms", "ussd"],
        "exposed_names": list(case.exposed),
        **case.keys,
    }
    message, endpoint = case.match
    matched = explain(config, message, endpoint)
    assert matched.destinations == case.destinations, matched
    assert any(case.because in step for step in matched.steps_of("router")), matched
    message, endpoint = case.miss
    missed = explain(config, message, endpoint)
    assert missed.delivered == case.miss_delivered, missed
    assert case.why_not in missed.to_text(), missed
    if not case.miss_delivered:
        assert missed.failures or missed.dropped, missed
