"""The hop count is per message, even when messages share a metadata dict object."""

from __future__ import annotations

from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.testing import MemoryOutbox, make_inbound

CONFIG = {
    "router_class": "routers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app"],
    "route_mappings": {"sms": "app"},
}


async def test_messages_sharing_routing_metadata_count_their_own_hops() -> None:
    dispatcher = Dispatcher(CONFIG, MemoryOutbox())
    await dispatcher.start()
    shared: dict[str, object] = {}
    messages = [make_inbound(str(i), transport_name="sms") for i in range(15)]
    for msg in messages:
        msg.routing_metadata = shared  # as after unpickling a batch whose payloads shared one dict
    outcomes = [await dispatcher.dispatch_inbound_message(msg) for msg in messages]
    assert all(o.destinations == ["app"] for o in outcomes), [o.failures[0].reason for o in outcomes if o.failures]
    assert shared == {}
