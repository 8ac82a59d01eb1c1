"""The seed's example: Vumi's two-transport, one-application dispatcher, loaded unchanged from YAML."""

from __future__ import annotations

import yaml

from ray_dispatch.core.config import load_config
from ray_dispatch.testing import RouterHarness, make_ack, make_delivery_report, make_inbound
from routers.simple import SimpleDispatchRouter

from .helpers import SEED_PATH


def sms(content: str, sender: str = "+27831234567") -> object:
    return make_inbound(content, from_addr=sender, to_addr="12345", transport_name="smpp_transport")


def xmpp(content: str, sender: str = "user@example.org/phone") -> object:
    return make_inbound(
        content, from_addr=sender, to_addr="bot@example.org", transport_name="xmpp_transport", transport_type="xmpp"
    )


def test_the_seed_file_is_vumis_config_with_string_route_mappings() -> None:
    raw = yaml.safe_load(SEED_PATH.read_text(encoding="utf-8"))
    assert raw["router_class"] == "vumi.dispatchers.SimpleDispatchRouter"
    assert raw["route_mappings"] == {"smpp_transport": "my_application", "xmpp_transport": "my_application"}

    config = load_config(SEED_PATH)
    assert config.transport_names == ["smpp_transport", "xmpp_transport"]
    assert config.exposed_names == ["my_application"]
    assert config.source == str(SEED_PATH)


async def test_sms_and_xmpp_reach_my_application_and_replies_leave_the_way_they_came() -> None:
    async with RouterHarness(SEED_PATH) as h:
        assert isinstance(h.router, SimpleDispatchRouter)
        await h.dispatch_inbound(sms("balance?"))
        await h.dispatch_inbound(xmpp("hello bot"))
        await h.dispatch_inbound(sms("stop", sender="+27839999999"))

        received = h.inbound_to("my_application")
        assert [(m.transport_name, m.content) for m in received] == [
            ("smpp_transport", "balance?"),
            ("xmpp_transport", "hello bot"),
            ("smpp_transport", "stop"),
        ]

        replies = [m.reply(f"re: {m.content}") for m in received]
        for reply in replies:
            await h.dispatch_outbound(reply, "my_application")

        out_sms = h.outbound_to("smpp_transport")
        out_xmpp = h.outbound_to("xmpp_transport")
        assert [(m.to_addr, m.content) for m in out_sms] == [
            ("+27831234567", "re: balance?"),
            ("+27839999999", "re: stop"),
        ]
        assert [(m.to_addr, m.from_addr, m.content) for m in out_xmpp] == [
            ("user@example.org/phone", "bot@example.org", "re: hello bot")
        ]
        assert [m.in_reply_to for m in out_sms + out_xmpp] == [
            received[0].message_id,
            received[2].message_id,
            received[1].message_id,
        ]
        assert all(m.transport_type == "xmpp" for m in out_xmpp)
        assert h.failures == []


async def test_acks_and_delivery_reports_reach_my_application() -> None:
    async with RouterHarness(SEED_PATH) as h:
        await h.dispatch_inbound(sms("hi"))
        await h.dispatch_inbound(xmpp("hi"))
        for msg in h.inbound_to("my_application"):
            await h.dispatch_outbound(msg.reply("hello"), "my_application")

        (sent_sms,) = h.outbound_to("smpp_transport")
        (sent_xmpp,) = h.outbound_to("xmpp_transport")
        await h.dispatch_event(make_ack(sent_sms, sent_message_id="smsc-1"))
        await h.dispatch_event(make_ack(sent_xmpp))
        await h.dispatch_event(make_delivery_report(sent_sms, "delivered"))

        events = h.events_to("my_application")
        assert [(e.event_type, e.user_message_id, e.transport_name) for e in events] == [
            ("ack", sent_sms.message_id, "smpp_transport"),
            ("ack", sent_xmpp.message_id, "xmpp_transport"),
            ("delivery_report", sent_sms.message_id, "smpp_transport"),
        ]
        assert events[0].sent_message_id == "smsc-1"
        assert h.failures == []


async def test_a_message_from_a_transport_the_seed_does_not_know_is_a_failure() -> None:
    async with RouterHarness(SEED_PATH) as h:
        outcome = await h.dispatch_inbound(make_inbound("hi", transport_name="sms"))
    (record,) = outcome.failures
    assert "arrived on 'sms', which is not in transport_names ['smpp_transport', 'xmpp_transport']" in record.reason
    assert h.inbound_to("my_application") == []
