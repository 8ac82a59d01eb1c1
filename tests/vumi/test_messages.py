"""Vumi's messages: each real Vumi payload parses and round-trips to Vumi's exact key set."""

from __future__ import annotations

import json
from typing import Any

import pytest

from actors.wire import decode_batch, encode_batch, encode_item, encode_plain_item
from ray_dispatch.core.errors import InvalidMessage
from ray_dispatch.core.message import TransportEvent, TransportUserMessage, message_from_dict, message_from_json
from tests.vumi.fixtures import (
    USSD_ACK_AWARE_TIMESTAMP,
    VUMI_CONSTRUCTED_USER_MESSAGE_KEYS,
    VUMI_MESSAGES,
    vumi_round_trip_keys,
)


def _written(payload: dict[str, Any]) -> dict[str, Any]:
    return json.loads(message_from_json(json.dumps(payload)).to_json())  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(VUMI_MESSAGES))
def test_round_trip_gives_vumis_exact_keys_and_values(name: str) -> None:
    payload = VUMI_MESSAGES[name]
    written = _written(payload)

    assert set(written) == vumi_round_trip_keys(payload)
    assert {k: v for k, v in written.items() if k in payload} == payload


def _direction(msg: Any) -> Any:
    return "event" if msg.message_type == "event" else "inbound"


def _across_the_wire(msg: Any) -> Any:
    (received,), refused = decode_batch(encode_batch([encode_item(_direction(msg), msg)]))
    assert refused == [] and received[0] == _direction(msg)
    return received[1]


@pytest.mark.parametrize("name", sorted(VUMI_MESSAGES))
def test_the_wire_between_actors_keeps_the_key_set(name: str) -> None:
    msg = message_from_dict(dict(VUMI_MESSAGES[name]))
    rebuilt = _across_the_wire(msg)

    assert json.loads(rebuilt.to_json()) == json.loads(msg.to_json())
    assert set(rebuilt.keys()) == set(msg.keys()) == vumi_round_trip_keys(VUMI_MESSAGES[name])


def test_absent_optional_fields_read_as_their_defaults_and_are_not_in_the_message() -> None:
    msg = message_from_dict(dict(VUMI_MESSAGES["telnet_inbound"]))
    assert msg.to_addr_type is None and msg.routing_metadata == {}
    assert "to_addr_type" not in msg and "routing_metadata" not in msg and "provider" in msg


def test_setting_an_absent_field_puts_it_in_the_payload() -> None:
    msg = message_from_dict(dict(VUMI_MESSAGES["telnet_inbound"]))
    msg["to_addr_type"] = None
    msg.from_addr_type = "msisdn"
    msg.set_routing_endpoint("default")

    written = json.loads(msg.to_json())
    assert written["to_addr_type"] is None and written["from_addr_type"] == "msisdn"
    assert written["routing_metadata"] == {"endpoint_name": "default"}


def test_event_keeps_out_the_fields_it_did_not_have() -> None:
    written = _written(VUMI_MESSAGES["nack_minimal"])
    for key in ("sent_message_id", "delivery_status", "transport_type", "transport_name", "transport_metadata"):
        assert key not in written, key


def test_message_built_like_vumis_send_has_vumis_constructor_keys() -> None:
    # TransportUserMessage.send(to_addr, content): from_addr, transport_name, transport_type all None
    msg = TransportUserMessage(
        to_addr="+27831234567", content="hi", from_addr=None, transport_name=None, transport_type=None
    )
    assert set(json.loads(msg.to_json())) == VUMI_CONSTRUCTED_USER_MESSAGE_KEYS
    assert msg.transport_name is None and msg.transport_type is None


def test_reply_has_vumis_constructor_keys() -> None:
    original = message_from_dict(dict(VUMI_MESSAGES["telnet_inbound"]))
    reply = original.reply("pong")
    assert set(json.loads(reply.to_json())) == VUMI_CONSTRUCTED_USER_MESSAGE_KEYS


def test_transport_fields_must_be_given_even_when_none() -> None:
    payload = {k: v for k, v in VUMI_MESSAGES["telnet_inbound"].items() if k != "transport_type"}
    with pytest.raises(InvalidMessage, match="field 'transport_type': Field required"):
        TransportUserMessage.from_dict(payload)


def test_timestamp_vumi_cannot_parse_is_refused_naming_the_field() -> None:
    with pytest.raises(
        InvalidMessage, match=r"invalid event: field 'timestamp': timestamp '2016-01-05 10:11:12\.345678\+00:00'"
    ):
        TransportEvent.from_dict(dict(USSD_ACK_AWARE_TIMESTAMP))


@pytest.mark.parametrize("name", sorted(VUMI_MESSAGES))
def test_payload_without_optional_keys_decodes_with_the_same_keys_and_values(name: str) -> None:
    msg = message_from_dict(dict(VUMI_MESSAGES[name]))
    rebuilt = _across_the_wire(msg)
    assert set(rebuilt.keys()) == set(msg.keys()) and rebuilt.to_dict() == msg.to_dict()


def test_an_item_the_rules_refuse_is_refused_alone_naming_the_field_and_the_batch_still_decodes() -> None:
    ack = message_from_dict(dict(VUMI_MESSAGES["ussd_ack"]))
    user = message_from_dict(dict(VUMI_MESSAGES["telnet_inbound"]))
    payload = ack.payload()
    del payload["sent_message_id"]  # an ack needs it
    payload["x_custom"] = 1
    received, refused = decode_batch(encode_batch([encode_plain_item("event", payload), encode_item("inbound", user)]))
    assert [m.message_id for _, m in received] == [user.message_id]
    ((index, item, reason),) = refused
    assert index == 0 and "event_type 'ack' needs the field 'sent_message_id'" in reason
    assert item == ("event", payload)
