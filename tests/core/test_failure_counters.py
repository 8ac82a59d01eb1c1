"""Failure counters stay bounded under hostile input: unknown endpoint names share one counter."""

from __future__ import annotations

from ray_dispatch.testing import RouterHarness, make_inbound

CONFIG = {
    "router_class": "routers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app"],
    "route_mappings": {"sms": "app"},
}


async def test_junk_endpoint_names_do_not_grow_the_counters() -> None:
    async with RouterHarness(CONFIG) as h:
        for i in range(50):
            await h.dispatch_inbound(make_inbound(transport_name=f"junk-{i}" * 100))
        stats = h.dispatcher.stats.to_dict()
    assert stats["failed"] == {"inbound:(unknown endpoint)": 50}
    assert len(h.failures) == 50
