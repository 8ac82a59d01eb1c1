"""Vumi's messages: each real Vumi payload parses and round-trips to Vumi's exact key set."""

from __future__ import annotations

import json
from typing import Any

import pytest

from actors.wire import checked_from_wire, from_wire, to_wire
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


@pytest.mark.parametrize("name", sorted(VUMI_MESSAGES))
def test_the_wire_between_actors_keeps_the_key_set(name: str) -> None:
    msg = message_from_dict(dict(VUMI_MESSAGES[name]))
    rebuilt = from_wire(to_wire(msg))

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
def test_payload_without_optional_keys_takes_the_checked_shortcut(name: str) -> None:
    msg = message_from_dict(dict(VUMI_MESSAGES[name]))
    rebuilt = checked_from_wire(to_wire(msg))
    assert rebuilt is not None and set(rebuilt.keys()) == set(msg.keys())


def test_checked_shortcut_leaves_a_payload_it_refuses_unchanged() -> None:
    payload = to_wire(message_from_dict(dict(VUMI_MESSAGES["ussd_ack"])))
    del payload["sent_message_id"]  # an ack needs it: full validation must see the payload as sent
    payload["x_custom"] = 1
    before = dict(payload)
    assert checked_from_wire(payload) is None
    assert payload == before
