"""Every Vumi router class path in a config resolves to our router, which then routes."""

from __future__ import annotations

import pytest

import routers
from ray_dispatch.testing import RouterHarness, make_inbound

# Router name -> (minimal router keys, the exposed names it needs)
MINIMAL = {
    "SimpleDispatchRouter": ({"route_mappings": {"sms": "app1"}}, ("app1",)),
    "TransportToTransportRouter": ({"route_mappings": {"sms": "sms"}}, ("app1",)),
    "ToAddrRouter": ({"toaddr_mappings": {"app1": ".*"}}, ("app1",)),
    "FromAddrMultiplexRouter": ({"fromaddr_mappings": {}}, ("app1",)),
    "UserGroupingRouter": ({"group_mappings": {"a": "app1"}, "dispatcher_name": "d"}, ("app1",)),
    "ContentKeywordRouter": ({"fallback_application": "app1", "dispatcher_name": "d"}, ("app1",)),
    "RedirectRouter": ({"redirect_inbound": {"sms": "app1"}}, ("app1",)),
    "RedirectOutboundRouter": ({"redirect_inbound": {"sms": "app1"}}, ("app1",)),
    "LoadBalancingRouter": ({}, ("app1",)),
}

VUMI_PATHS = [
    *(f"vumi.dispatchers.{name}" for name in MINIMAL),
    *(f"vumi.dispatchers.base.{name}" for name in MINIMAL if name != "LoadBalancingRouter"),
    "vumi.dispatchers.load_balancer.LoadBalancingRouter",
]


def test_every_router_is_exported_and_covered():
    assert set(routers.__all__) == set(MINIMAL)


@pytest.mark.filterwarnings("ignore:RedirectOutboundRouter is deprecated:DeprecationWarning")
@pytest.mark.parametrize("path", VUMI_PATHS)
async def test_vumi_class_path_loads_our_router_and_routes(path):
    name = path.rpartition(".")[2]
    keys, exposed = MINIMAL[name]
    config = {"router_class": path, "transport_names": ["sms"], "exposed_names": list(exposed), **keys}
    async with RouterHarness(config) as h:
        assert type(h.router) is getattr(routers, name)
        outcome = await h.dispatch_inbound(make_inbound("hello", transport_name="sms"))
        assert outcome.failures == [] and len(outcome.deliveries) == 1
