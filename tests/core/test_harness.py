"""RouterHarness: the public API from issue 2, and the message factories."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from ray_dispatch.core.errors import ConfigError, InvalidMessage
from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.stores.failures import FailureRecord
from ray_dispatch.testing import RouterHarness, make_ack, make_delivery_report, make_inbound, make_nack
from routers.simple import SimpleDispatchRouter

from .helpers import ObservingRouter, SetupRefusingRouter, router_config


async def test_the_documented_api_end_to_end(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        assert isinstance(h.router, SimpleDispatchRouter)
        await h.dispatch_inbound(make_inbound("one", transport_name="sms"))
        await h.dispatch_inbound(make_inbound("two", transport_name="xmpp"))
        await h.dispatch_inbound(make_inbound("three", transport_name="sms"))
        reply = h.inbound_to("app1")[0].reply("re: one")
        await h.dispatch_outbound(reply, "app1")
        await h.dispatch_event(make_ack(reply))
        await h.dispatch_inbound(make_inbound("lost", transport_name="ussd"))

        assert [m.content for m in h.inbound_to("app1")] == ["one", "two", "three"]
        assert [m.content for m in h.inbound_to("app2")] == ["two"]
        assert [m.content for m in h.outbound_to("sms")] == ["re: one"]
        assert [e.user_message_id for e in h.events_to("app1")] == [reply.message_id]
        assert h.inbound_to("nobody") == [] and h.outbound_to("xmpp") == [] and h.events_to("app2") == []

        (record,) = h.failures
        assert isinstance(record, FailureRecord) and isinstance(record.reason, str)
        assert (record.direction, record.endpoint, record.message.content) == ("inbound", "ussd", "lost")

        h.clear()
        assert h.inbound_to("app1") == [] and h.outbound_to("sms") == [] and h.failures == []
        # clear() keeps routing state: the return route for the reply still works.
        await h.dispatch_event(make_delivery_report(reply))
        assert [e.event_type for e in h.events_to("app1")] == ["delivery_report"]


async def test_delivered_lists_are_snapshots(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        await h.dispatch_inbound(make_inbound(transport_name="sms"))
        listed = h.inbound_to("app1")
        listed.clear()
        assert len(h.inbound_to("app1")) == 1


async def test_config_from_a_yaml_path(tmp_path: Path, config: dict[str, Any]) -> None:
    path = tmp_path / "dispatcher.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    async with RouterHarness(str(path)) as h:
        await h.dispatch_inbound(make_inbound(transport_name="xmpp"))
    assert len(h.inbound_to("app1")) == 1 and len(h.inbound_to("app2")) == 1


async def test_entering_runs_setup_routing_and_leaving_tears_it_down() -> None:
    harness = RouterHarness(router_config(ObservingRouter))
    assert not hasattr(harness.router, "state")
    async with harness as h:
        assert h is harness and h.router.state == "set up"  # type: ignore[attr-defined]
    assert harness.router.state == "torn down"  # type: ignore[attr-defined]


async def test_without_async_with_the_first_dispatch_sets_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ray_dispatch.messages")
    config = router_config(ObservingRouter, middleware=[{"log": "vumi.middleware.LoggingMiddleware"}])
    h = RouterHarness(config)
    await h.dispatch_inbound(make_inbound("shell", transport_name="sms"))
    await h.dispatch_inbound(make_inbound("again", transport_name="sms"))
    assert h.router.state == "set up" and h.failures == []  # type: ignore[attr-defined]
    assert [m.content for m in h.inbound_to("app1")] == ["shell", "again"]
    assert len([r for r in caplog.records if r.name == "ray_dispatch.messages"]) == 4
    await h.close()
    assert h.router.state == "torn down"  # type: ignore[attr-defined]


async def test_setup_refusal_surfaces_on_the_first_dispatch_too() -> None:
    h = RouterHarness(router_config(SetupRefusingRouter, target="app1"))
    for _ in range(2):
        with pytest.raises(ConfigError, match="target: 'app1' refused at setup"):
            await h.dispatch_inbound(make_inbound(transport_name="sms"))


def test_an_invalid_config_fails_on_construction() -> None:
    with pytest.raises(ConfigError, match="route_mappings"):
        RouterHarness({"router_class": "routers.SimpleDispatchRouter", "transport_names": ["sms"]})


async def test_dict_payloads_and_explicit_endpoints(config: dict[str, Any]) -> None:
    payload = make_inbound("as dict", transport_name="sms").to_dict()
    async with RouterHarness(config) as h:
        await h.dispatch_inbound(payload)
        await h.dispatch_outbound(make_inbound(transport_name="xmpp").to_dict(), "app2")
        await h.dispatch_event(make_ack("some-id", transport_name="sms").to_dict())
        # The endpoint defaults to the message's transport_name; given, it is what the message arrived on.
        from_fax = make_inbound("from fax", transport_name="fax")
        by_default = await h.dispatch_inbound(from_fax)
        on_sms = await h.dispatch_inbound(from_fax, "sms")

    assert [m.content for m in h.inbound_to("app1")] == ["as dict"]
    assert all(isinstance(m, TransportUserMessage) for m in h.inbound_to("app1"))
    assert len(h.outbound_to("xmpp")) == 1 and isinstance(h.events_to("app1")[0], TransportEvent)
    assert "arrived on 'fax', which is not in transport_names" in by_default.failures[0].reason
    # Accepted on sms; SimpleDispatchRouter then routes by transport_name, as Vumi's does.
    assert on_sms.failures[0].reason == "no route_mappings entry for transport 'fax' (inbound message)"
    assert on_sms.failures[0].endpoint == "sms"


async def test_dispatch_never_raises_for_bad_input(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        for junk in (None, 42, "text", b"bytes", [], {}, {"transport_name": 7}, object()):
            await h.dispatch_inbound(junk)  # type: ignore[arg-type]
            await h.dispatch_event(junk)  # type: ignore[arg-type]
            await h.dispatch_outbound(junk, "app1")  # type: ignore[arg-type]
    assert len(h.failures) == 24
    assert all(f.stage == "validate" and f.error_type == "InvalidMessage" for f in h.failures)


# -- factories -----------------------------------------------------------------------


def test_make_inbound_defaults_and_overrides() -> None:
    msg = make_inbound()
    assert (msg.content, msg.to_addr, msg.from_addr) == ("hello", "12345", "+27831234567")
    assert (msg.transport_name, msg.transport_type) == ("sms", "sms")
    custom = make_inbound(None, to_addr=None, transport_name="xmpp", transport_type="xmpp", session_event="new", x=1)
    assert custom.content is None and custom.to_addr is None and custom.session_event == "new" and custom["x"] == 1


def test_event_factories_for_a_message_or_an_id() -> None:
    msg = make_inbound(transport_name="xmpp", transport_type="xmpp")

    acked = make_ack(msg)
    assert (acked.event_type, acked.user_message_id, acked.sent_message_id) == ("ack", msg.message_id, "remote-id")
    assert (acked.transport_name, acked.transport_type) == ("xmpp", "xmpp")

    nacked = make_nack("m-1", "throttled", transport_name="sms")
    assert (nacked.event_type, nacked.user_message_id, nacked.nack_reason) == ("nack", "m-1", "throttled")
    assert nacked.transport_name == "sms"

    for status in ("pending", "failed", "delivered"):
        report = make_delivery_report(msg, status)
        assert report.delivery_status == status and report.user_message_id == msg.message_id
    assert make_ack("m-2").transport_name == "sms"
    assert make_ack(msg, transport_name="other", sent_message_id="abc").sent_message_id == "abc"

    with pytest.raises(InvalidMessage, match="field 'delivery_status'"):
        make_delivery_report(msg, "lost")
