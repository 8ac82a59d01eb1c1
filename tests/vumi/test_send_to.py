"""An outbound message made the way Vumi's ``ApplicationWorker.send_to`` makes it is routed."""

from __future__ import annotations

from typing import Any

from ray_dispatch.core.message import TransportUserMessage
from ray_dispatch.testing import RouterHarness, make_ack

CONFIG: dict[str, Any] = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["my_app"],
    "route_mappings": {"sms": "my_app"},
}


def sent_like_send_to(content: str = "hello") -> TransportUserMessage:
    """``TransportUserMessage.send(to_addr, content)`` with an empty ``send_to`` config, endpoint 'default'."""
    msg = TransportUserMessage(
        to_addr="+27831234567", content=content, from_addr=None, transport_name=None, transport_type=None
    )
    msg.set_routing_endpoint("default")
    return msg


async def test_send_to_message_goes_out_by_the_applications_transport_mapping() -> None:
    async with RouterHarness({**CONFIG, "transport_mappings": {"my_app": "sms"}}) as h:
        outcome = await h.dispatch_outbound(sent_like_send_to(), "my_app")
        assert outcome.failures == []
        (sent,) = h.outbound_to("sms")
        assert sent.content == "hello" and sent.transport_name is None

        await h.dispatch_event(make_ack(sent, transport_name="sms"))
        assert [e.user_message_id for e in h.events_to("my_app")] == [sent.message_id]


async def test_send_to_message_without_a_mapping_fails_naming_the_fix() -> None:
    async with RouterHarness(CONFIG) as h:
        await h.dispatch_outbound(sent_like_send_to(), "my_app")
        assert h.outbound_to("sms") == []
        (failure,) = h.failures
        assert "has no transport_name" in failure.reason
        assert "transport_mappings: {my_app: <transport name>}" in failure.reason


async def test_send_to_message_with_a_transport_name_goes_by_it() -> None:
    async with RouterHarness(CONFIG) as h:
        msg = sent_like_send_to()
        msg["transport_name"] = "sms"  # send_to config {default: {transport_name: sms}}
        await h.dispatch_outbound(msg, "my_app")
        assert [m.message_id for m in h.outbound_to("sms")] == [msg.message_id]
