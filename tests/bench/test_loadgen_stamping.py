"""LoadTransport stamps messages and acks from validated templates without validating again (no Ray).

What it builds must be exactly what validation builds from the same payload.
"""

from __future__ import annotations

import pytest

from actors.loadgen import (
    SENT_AT,
    LoadTransport,
    LoadTransportConfig,
    build_templates,
    stamped,
    stamped_message,
    template_messages,
)
from actors.wire import from_wire
from ray_dispatch.core.message import Message, TransportEvent, TransportUserMessage, message_from_dict
from tests.transports.conftest import RecordingLink


def as_validated(message: Message) -> Message:
    """The message validation builds from ``message``'s payload (the reference)."""
    return message_from_dict(message.payload())


def test_a_generated_message_is_what_validation_builds_from_its_payload() -> None:
    transport = LoadTransport("load", {"templates": 3, "users": 3})
    first, second = transport._message("run", 4), transport._message("run", 7)
    for message in (first, second):
        checked = as_validated(message)
        assert type(message) is TransportUserMessage and message.payload() == checked.payload()
        assert sorted(message.absent_keys()) == sorted(checked.absent_keys()) == ["from_addr_type", "to_addr_type"]
        assert isinstance(message.transport_metadata[SENT_AT], float) and message.timestamp.tzinfo is None
    assert (first.message_id, second.message_id) == ("run-4", "run-7")
    assert first.from_addr == "+27830000001" and second.from_addr == "+27830000001"  # templates cycle
    first.routing_metadata["hops"] = 1
    first.helper_metadata["x"] = 1
    assert second.routing_metadata == {} and second.helper_metadata == {}  # no dict shared between messages
    assert transport._templates[1].routing_metadata == {} and transport._templates[1].message_id != "run-4"


async def test_an_ack_is_what_validation_builds_from_its_payload() -> None:
    transport = LoadTransport("load")
    link = RecordingLink()
    transport.use_link(link)
    outbound = message_from_dict(
        {"to_addr": "+2782", "from_addr": "12345", "transport_name": "load", "transport_type": "sms"}
    )
    outbound.transport_metadata["sent_at"] = 1.5
    await transport.handle_outbound_message(outbound)  # type: ignore[arg-type]
    [(direction, ack)] = link.items
    assert direction == "event" and isinstance(ack, TransportEvent)
    assert ack.payload() == as_validated(ack).payload()
    assert (ack.event_type, ack.user_message_id, ack.sent_message_id) == (
        "ack",
        outbound.message_id,
        outbound.message_id,
    )
    assert ack.event_id == f"ack-{outbound.message_id}" and ack.transport_metadata == {"sent_at": 1.5}
    assert "routing_metadata" in ack.payload() and ack.transport_metadata is not outbound.transport_metadata


def test_a_trusted_copy_replaces_declared_fields_only() -> None:
    message = message_from_dict({"to_addr": "1", "from_addr": "2", "transport_name": "t", "transport_type": "sms"})
    message["note"] = {"kept": True}
    copy = message.trusted_copy(content="new", to_addr_type="msisdn")
    assert copy.content == "new" and copy["note"] == {"kept": True} and message.content is None
    assert "to_addr_type" in copy.payload() and "to_addr_type" not in message.payload()
    copy["other"] = 1
    assert "other" not in message.extra_fields
    with pytest.raises(KeyError, match="'colour' is not a declared field of TransportUserMessage"):
        message.trusted_copy(colour="red")


def test_a_stamped_template_message_is_what_the_payload_path_built() -> None:
    config = LoadTransportConfig(templates=2, users=2, keywords=["alpha"])
    payload, template = build_templates("load", config)[1], template_messages("load", config)[1]
    before = from_wire(stamped(payload, "run-1"))  # how LoadTransport built messages before
    after = stamped_message(template, "run-1")
    fresh = ("timestamp", "transport_metadata")
    assert {k: v for k, v in after.payload().items() if k not in fresh} == {
        k: v for k, v in before.payload().items() if k not in fresh
    }
    assert list(after.payload()) == list(before.payload()) and after.content == "alpha hello from the load generator"
    assert after.absent_keys() == before.absent_keys()  # the payload presence the fields set decides
    assert list(after.transport_metadata) == list(before.transport_metadata) == [SENT_AT]
