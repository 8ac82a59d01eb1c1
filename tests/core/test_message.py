"""TransportUserMessage / TransportEvent: defaults, validation, dict access, copies, Vumi JSON, replies."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ray_dispatch.core.errors import DispatchError, InvalidMessage
from ray_dispatch.core.message import (
    VUMI_DATE_FORMAT,
    TransportEvent,
    TransportUserMessage,
    message_from_dict,
    message_from_json,
    parse_timestamp,
    utcnow,
)

# An outbound SMS reply as Vumi 0.5 put it on the wire (a dispatcher's logging middleware
# printed exactly this shape): no provider / address-type fields (older producers omit
# them), an endpoint in routing_metadata and application data in helper_metadata.
VUMI_OUTBOUND_JSON = """{
  "transport_name": "smpp_transport_10010",
  "in_reply_to": "b5c53932b13b44538b99728e66d23062",
  "group": null,
  "from_addr": "10010",
  "timestamp": "2014-04-15 18:04:32.161446",
  "to_addr": "218918510226",
  "content": "Your balance is 10 credits",
  "routing_metadata": {"endpoint_name": "default"},
  "message_version": "20110921",
  "transport_type": "sms",
  "helper_metadata": {"rapidsms": {"rapidsms_msg_id": "8b34b0971f9c412d84a2c58a9af5ed65"}},
  "transport_metadata": {},
  "session_event": null,
  "message_id": "8b34b0971f9c412d64a2c58a9af5ed65",
  "message_type": "user_message"
}"""

# An inbound USSD session start from a Vumi Go deployment, with Go's own routing keys.
VUMI_USSD_INBOUND_JSON = (
    '{"transport_name": "mtn_nigeria_ussd_transport", "transport_metadata": {"session_id": "7712"},'
    ' "group": null, "from_addr": "+2348031234567", "timestamp": "2013-09-10 19:24:03.289543",'
    ' "provider": "mtn_nigeria", "to_addr": "*120*8864*1203#", "content": "",'
    ' "routing_metadata": {"go_hops": [], "endpoint_name": "default"}, "message_version": "20110921",'
    ' "transport_type": "ussd", "in_reply_to": null, "session_event": "new",'
    ' "message_id": "af266289e40949388b5a8cacb4a2d13a", "message_type": "user_message"}'
)

# An ack as a Vumi transport published it (timestamp without microseconds, as some producers send).
VUMI_ACK_JSON = (
    '{"transport_name": "ussd_transport", "event_type": "ack", "event_id": "4d1a6e1e3f3b4c6c9c1d0f6b2a7e9d10",'
    ' "sent_message_id": "remote-1515", "helper_metadata": {}, "routing_metadata": {},'
    ' "message_version": "20110921", "timestamp": "2016-01-05 10:11:12", "transport_metadata": {},'
    ' "user_message_id": "075a32dae1e44424be461d09b71056fd", "message_type": "event"}'
)

REQUIRED = {"to_addr": "+27831234567", "from_addr": "12345", "transport_name": "sms", "transport_type": "sms"}


def user_msg(**fields: Any) -> TransportUserMessage:
    return TransportUserMessage(**{**REQUIRED, **fields})


def ack(**fields: Any) -> TransportEvent:
    return TransportEvent(**{"user_message_id": "m1", "event_type": "ack", "sent_message_id": "r1", **fields})


# -- defaults -----------------------------------------------------------------


def test_user_message_defaults_are_vumis() -> None:
    before = utcnow()
    msg = user_msg()
    after = utcnow()

    assert uuid.UUID(hex=msg.message_id).version == 4 and len(msg.message_id) == 32
    assert before <= msg.timestamp <= after and msg.timestamp.tzinfo is None
    assert msg.message_version == "20110921"
    assert msg.message_type == "user_message"
    assert msg.helper_metadata == {} and msg.routing_metadata == {} and msg.transport_metadata == {}
    for name in ("in_reply_to", "session_event", "content", "group", "provider", "to_addr_type", "from_addr_type"):
        assert msg[name] is None, name


def test_each_message_gets_its_own_id_and_metadata_dicts() -> None:
    first, second = user_msg(), user_msg()
    first.helper_metadata["x"] = 1
    first.routing_metadata["y"] = 2
    first.transport_metadata["z"] = 3

    assert first.message_id != second.message_id
    assert second.helper_metadata == {} and second.routing_metadata == {} and second.transport_metadata == {}


def test_event_defaults() -> None:
    event = ack()

    assert uuid.UUID(hex=event.event_id).version == 4
    assert event.message_type == "event" and event.message_version == "20110921"
    assert event.helper_metadata == {} and event.routing_metadata == {} and event.transport_metadata == {}
    assert event.nack_reason is None and event.delivery_status is None
    assert ack().event_id != event.event_id


# -- validation -----------------------------------------------------------------


@pytest.mark.parametrize("field", ["to_addr", "from_addr", "transport_name", "transport_type"])
def test_user_message_needs_each_required_field(field: str) -> None:
    fields = {k: v for k, v in REQUIRED.items() if k != field}
    with pytest.raises(InvalidMessage, match=rf"field '{field}': Field required"):
        TransportUserMessage(**fields)


def test_addresses_may_be_none_but_must_be_given() -> None:
    msg = user_msg(to_addr=None, from_addr=None)
    assert msg.to_addr is None and msg.from_addr is None


@pytest.mark.parametrize("session_event", [None, "new", "resume", "close"])
def test_valid_session_events(session_event: str | None) -> None:
    assert user_msg(session_event=session_event).session_event == session_event


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"session_event": "bye"}, "session_event"),
        ({"content": 5}, "content"),
        ({"to_addr": ["a"]}, "to_addr"),
        ({"transport_name": 5}, "transport_name"),
        ({"message_type": "event"}, "message_type"),
        ({"message_version": "20120101"}, "message_version"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": "2024-01-02T03:04:05"}, "timestamp"),
        ({"helper_metadata": None}, "helper_metadata"),
        ({"routing_metadata": []}, "routing_metadata"),
        ({"message_id": None}, "message_id"),
    ],
)
def test_invalid_user_message_field_is_named(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidMessage, match=rf"invalid user_message: .*field '{field}'"):
        user_msg(**fields)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"user_message_id": None}, "field 'user_message_id'"),
        ({"event_type": "read"}, "field 'event_type'"),
        ({"event_type": "ack", "sent_message_id": None}, "'sent_message_id'"),
        ({"event_type": "nack", "sent_message_id": None}, "'nack_reason'"),
        ({"event_type": "delivery_report", "sent_message_id": None}, "'delivery_status'"),
        ({"event_type": "delivery_report", "delivery_status": "lost"}, "field 'delivery_status'"),
        ({"message_type": "user_message"}, "field 'message_type'"),
    ],
)
def test_invalid_event_field_is_named(fields: dict[str, Any], needle: str) -> None:
    payload = {"user_message_id": "m1", "event_type": "ack", "sent_message_id": "r1", **fields}
    payload = {k: v for k, v in payload.items() if v is not None or k not in ("user_message_id", "sent_message_id")}
    with pytest.raises(InvalidMessage, match="invalid event: ") as info:
        TransportEvent(**payload)
    assert needle in str(info.value)


def test_event_without_user_message_id_or_event_type_names_both() -> None:
    with pytest.raises(InvalidMessage) as info:
        TransportEvent()
    assert "field 'user_message_id': Field required" in str(info.value)
    assert "field 'event_type': Field required" in str(info.value)


@pytest.mark.parametrize("status", ["pending", "failed", "delivered"])
def test_delivery_report_statuses(status: str) -> None:
    event = TransportEvent(user_message_id="m1", event_type="delivery_report", delivery_status=status)
    assert event.delivery_status == status


def test_nack_needs_only_a_reason() -> None:
    event = TransportEvent(user_message_id="m1", event_type="nack", nack_reason="throttled")
    assert event.nack_reason == "throttled" and event.sent_message_id is None


def test_invalid_message_is_a_value_error_and_a_dispatch_error() -> None:
    with pytest.raises(ValueError):
        TransportUserMessage()
    assert issubclass(InvalidMessage, DispatchError)


@pytest.mark.parametrize("payload", [None, 5, "text", ["a"], (1, 2)])
def test_from_dict_refuses_non_objects(payload: Any) -> None:
    with pytest.raises(InvalidMessage, match=f"expected a JSON object, got {type(payload).__name__}"):
        TransportUserMessage.from_dict(payload)


def test_from_dict_refuses_non_string_field_names() -> None:
    with pytest.raises(InvalidMessage, match="field names must be strings"):
        TransportUserMessage.from_dict({**REQUIRED, 7: "x"})


def test_field_named_self_is_just_an_unknown_field() -> None:
    msg = TransportUserMessage.from_dict({**REQUIRED, "self": 1})
    assert msg["self"] == 1


@pytest.mark.parametrize("text", ["", "{", "not json", b"\xff\xfe\x00", "[1, 2]", "null", '"str"'])
def test_from_json_refuses_non_messages_with_invalid_message(text: str | bytes) -> None:
    with pytest.raises(InvalidMessage, match="invalid user_message"):
        TransportUserMessage.from_json(text)


def test_message_from_dict_picks_the_class_by_message_type() -> None:
    assert isinstance(message_from_dict(user_msg().to_dict()), TransportUserMessage)
    assert isinstance(message_from_dict(ack().to_dict()), TransportEvent)
    assert isinstance(message_from_dict(dict(REQUIRED)), TransportUserMessage)  # Vumi's default type
    with pytest.raises(InvalidMessage, match="field 'message_type': 'metric'"):
        message_from_dict({**REQUIRED, "message_type": "metric"})
    with pytest.raises(InvalidMessage, match="expected a JSON object"):
        message_from_dict([])  # type: ignore[arg-type]


def test_message_from_json_parses_both_kinds() -> None:
    assert isinstance(message_from_json(VUMI_ACK_JSON), TransportEvent)
    assert isinstance(message_from_json(VUMI_OUTBOUND_JSON.encode()), TransportUserMessage)
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        message_from_json("{")


# -- unknown fields, item and attribute access --------------------------------------


def test_unknown_fields_are_kept_and_round_trip() -> None:
    payload = {**REQUIRED, "x-custom": {"nested": [1, {"a": None}]}, "priority": 3}
    msg = TransportUserMessage.from_dict(payload)

    assert msg["x-custom"] == {"nested": [1, {"a": None}]}
    assert msg.priority == 3  # type: ignore[attr-defined]
    again = TransportUserMessage.from_json(msg.to_json())
    assert again["x-custom"] == payload["x-custom"] and again["priority"] == 3
    assert again == msg


def test_item_and_attribute_access_are_the_same_field() -> None:
    msg = user_msg(content="hi")
    assert msg["content"] == msg.content == "hi"

    msg["content"] = "via item"
    assert msg.content == "via item"
    msg.content = "via attribute"
    assert msg["content"] == "via attribute"
    assert json.loads(msg.to_json())["content"] == "via attribute"


def test_setitem_adds_unknown_fields_and_delitem_removes_them() -> None:
    msg = user_msg()
    assert "tag" not in msg

    msg["tag"] = ["a"]
    assert "tag" in msg and msg["tag"] == ["a"] and msg.get("tag") == ["a"]
    assert json.loads(msg.to_json())["tag"] == ["a"]

    del msg["tag"]
    assert "tag" not in msg and "tag" not in json.loads(msg.to_json())
    with pytest.raises(KeyError):
        del msg["tag"]
    with pytest.raises(KeyError, match="declared fields cannot be deleted"):
        del msg["content"]


def test_get_contains_and_missing_keys() -> None:
    msg = user_msg()
    assert "content" in msg and "message_id" in msg and "nope" not in msg
    assert msg.get("nope") is None and msg.get("nope", 5) == 5
    assert msg.get("content", "default") is None  # present with value None: not the default
    with pytest.raises(KeyError):
        msg["nope"]


def test_keys_items_and_dict_agree_with_to_dict() -> None:
    msg = user_msg(extra_field="e")
    assert list(msg.keys()) == list(msg.to_dict())
    assert dict(msg.items()) == msg.to_dict() == dict(msg)
    assert "extra_field" in list(msg.keys())


# -- copies and equality ---------------------------------------------------------


def test_copy_is_equal_deep_and_independent() -> None:
    msg = user_msg(
        helper_metadata={"lb": {"transport_names": ["sms"]}},
        transport_metadata={"session": {"id": 1}},
        extra={"list": [[1], [2]]},
    )
    dup = msg.copy()
    assert dup == msg and dup is not msg and type(dup) is TransportUserMessage

    dup.helper_metadata["lb"]["transport_names"].append("xmpp")
    dup.transport_metadata["session"]["id"] = 2
    dup["extra"]["list"][0].append(99)
    dup.routing_metadata["hops"] = 1
    dup.content = "changed"
    dup["new"] = True

    assert msg.helper_metadata == {"lb": {"transport_names": ["sms"]}}
    assert msg.transport_metadata == {"session": {"id": 1}}
    assert msg["extra"] == {"list": [[1], [2]]}
    assert msg.routing_metadata == {} and msg.content is None and "new" not in msg


def test_copy_does_not_share_containers_hidden_in_tuples_or_dict_subclasses() -> None:
    from collections import OrderedDict

    msg = user_msg(helper_metadata={"t": ([1],), "od": OrderedDict(a=[1])})
    dup = msg.copy()
    dup.helper_metadata["t"][0].append(2)
    dup.helper_metadata["od"]["a"].append(2)
    assert msg.helper_metadata["t"] == ([1],) and msg.helper_metadata["od"]["a"] == [1]


def test_original_changes_do_not_reach_the_copy() -> None:
    msg = user_msg(helper_metadata={"a": {"b": 1}})
    dup = msg.copy()
    msg.helper_metadata["a"]["b"] = 2
    assert dup.helper_metadata == {"a": {"b": 1}}


def test_event_copy_is_an_independent_event() -> None:
    event = ack(helper_metadata={"k": [1]})
    dup = event.copy()
    dup.helper_metadata["k"].append(2)
    assert isinstance(dup, TransportEvent) and event.helper_metadata == {"k": [1]}


def test_to_dict_is_an_independent_copy() -> None:
    msg = user_msg(helper_metadata={"a": [1]})
    payload = msg.to_dict()
    payload["helper_metadata"]["a"].append(2)
    assert msg.helper_metadata == {"a": [1]}


def test_equality_is_by_payload() -> None:
    stamp = datetime(2024, 5, 6, 7, 8, 9, 10)
    first = user_msg(message_id="abc", timestamp=stamp, content="hi")
    second = user_msg(message_id="abc", timestamp=stamp, content="hi")
    assert first == second

    assert first != user_msg(message_id="abc", timestamp=stamp, content="other")
    assert first != user_msg(message_id="abc", timestamp=stamp, content="hi", extra=1)
    assert first != first.to_dict()  # like Vumi: a message never equals a plain dict
    assert ack(timestamp=stamp) != first


# -- Vumi JSON --------------------------------------------------------------------


def test_to_json_writes_vumi_timestamps() -> None:
    msg = user_msg(timestamp=datetime(2024, 1, 2, 3, 4, 5, 6))
    assert json.loads(msg.to_json())["timestamp"] == "2024-01-02 03:04:05.000006"
    on_the_second = user_msg(timestamp=datetime(2024, 1, 2, 3, 4, 5))
    assert json.loads(on_the_second.to_json())["timestamp"] == "2024-01-02 03:04:05.000000"
    assert datetime.strptime("2024-01-02 03:04:05.000006", VUMI_DATE_FORMAT) == msg.timestamp


def test_timestamps_before_year_1000_keep_four_digits_and_round_trip() -> None:
    msg = user_msg(timestamp=datetime(999, 12, 31, 23, 59, 59, 1))
    assert json.loads(msg.to_json())["timestamp"] == "0999-12-31 23:59:59.000001"
    assert TransportUserMessage.from_json(msg.to_json()) == msg


def test_timestamps_parse_with_and_without_microseconds() -> None:
    assert parse_timestamp("2016-01-05 10:11:12") == datetime(2016, 1, 5, 10, 11, 12)
    assert parse_timestamp("2016-01-05 10:11:12.000250") == datetime(2016, 1, 5, 10, 11, 12, 250)
    assert user_msg(timestamp="2016-01-05 10:11:12").timestamp == datetime(2016, 1, 5, 10, 11, 12)
    for bad in ("2016-13-05 10:11:12", "2016-01-05T10:11:12", "", "10:11:12"):
        with pytest.raises(ValueError, match="not in the format"):
            parse_timestamp(bad)


def test_timezone_aware_timestamps_become_naive_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    msg = user_msg(timestamp=datetime(2024, 1, 1, 12, 0, tzinfo=plus_two))
    assert msg.timestamp == datetime(2024, 1, 1, 10, 0) and msg.timestamp.tzinfo is None
    assert TransportUserMessage.from_json(msg.to_json()) == msg


def test_real_vumi_message_parses() -> None:
    msg = TransportUserMessage.from_json(VUMI_OUTBOUND_JSON)

    assert msg.timestamp == datetime(2014, 4, 15, 18, 4, 32, 161446)
    assert msg.to_addr == "218918510226" and msg.from_addr == "10010"
    assert msg.in_reply_to == "b5c53932b13b44538b99728e66d23062"
    assert msg.helper_metadata["rapidsms"]["rapidsms_msg_id"] == "8b34b0971f9c412d84a2c58a9af5ed65"
    assert msg.get_routing_endpoint() == "default"
    assert msg.provider is None and msg.to_addr_type is None  # absent in older producers


@pytest.mark.parametrize("text", [VUMI_OUTBOUND_JSON, VUMI_USSD_INBOUND_JSON, VUMI_ACK_JSON])
def test_real_vumi_json_survives_a_round_trip(text: str) -> None:
    msg = message_from_json(text)
    original = json.loads(text)
    written = json.loads(msg.to_json())

    for key, value in original.items():
        if key == "timestamp" and len(value) == 19:  # written back with Vumi's microseconds
            assert written[key] == value + ".000000"
        else:
            assert written[key] == value, key
    assert message_from_json(msg.to_json()) == msg


def test_real_vumi_ussd_keeps_go_routing_metadata() -> None:
    msg = TransportUserMessage.from_json(VUMI_USSD_INBOUND_JSON)
    assert msg.routing_metadata == {"go_hops": [], "endpoint_name": "default"}
    assert msg.session_event == "new" and msg.content == "" and msg.provider == "mtn_nigeria"
    assert msg.transport_metadata == {"session_id": "7712"}


def test_real_vumi_ack_parses() -> None:
    event = TransportEvent.from_json(VUMI_ACK_JSON)
    assert event.event_type == "ack" and event.sent_message_id == "remote-1515"
    assert event.user_message_id == "075a32dae1e44424be461d09b71056fd"
    assert event.timestamp == datetime(2016, 1, 5, 10, 11, 12)


def test_json_round_trip_keeps_every_field() -> None:
    msg = user_msg(
        content="héllo ☃",
        session_event="resume",
        group="#chan",
        provider="vodacom",
        to_addr_type="msisdn",
        helper_metadata={"a": [1, 2.5, None, True]},
        routing_metadata={"endpoint_name": "sms_out"},
        transport_metadata={"smpp": {"id": 1}},
    )
    assert TransportUserMessage.from_json(msg.to_json()) == msg
    assert TransportUserMessage.from_json(msg.to_json().encode("utf-8")) == msg


# -- replies ----------------------------------------------------------------------


def inbound_for_reply(**fields: Any) -> TransportUserMessage:
    return user_msg(
        to_addr="12345",
        from_addr="+27831234567",
        group=None,
        provider="mtn",
        helper_metadata={"load_balancer": {"transport_names": ["sms_a"]}},
        transport_metadata={"smsc": {"seq": 7}},
        session_event="new",
        content="hi",
        **fields,
    )


def test_reply_swaps_addresses_and_keeps_the_transport() -> None:
    msg = inbound_for_reply()
    reply = msg.reply("hello back")

    assert reply.to_addr == "+27831234567" and reply.from_addr == "12345"
    assert reply.in_reply_to == msg.message_id and reply.message_id != msg.message_id
    assert reply.content == "hello back"
    assert (reply.transport_name, reply.transport_type) == (msg.transport_name, msg.transport_type)
    assert reply.transport_metadata == {"smsc": {"seq": 7}}
    assert reply.provider == "mtn" and reply.group is None
    assert reply.session_event is None  # continue the session
    assert reply.helper_metadata == {"load_balancer": {"transport_names": ["sms_a"]}}


def test_reply_metadata_is_a_deep_copy() -> None:
    msg = inbound_for_reply()
    reply = msg.reply("x")
    reply.helper_metadata["load_balancer"]["transport_names"].pop()
    reply.transport_metadata["smsc"]["seq"] = 8

    assert msg.helper_metadata == {"load_balancer": {"transport_names": ["sms_a"]}}
    assert msg.transport_metadata == {"smsc": {"seq": 7}}


def test_reply_with_continue_session_false_closes_the_session() -> None:
    assert inbound_for_reply().reply("bye", continue_session=False).session_event == "close"


def test_reply_keyword_overrides_allowed_fields() -> None:
    msg = inbound_for_reply()
    reply = msg.reply("x", continue_session=False, session_event="resume", helper_metadata={}, note="n")
    assert reply.session_event == "resume"  # an explicit session_event wins over continue_session
    assert reply.helper_metadata == {} and reply["note"] == "n"


@pytest.mark.parametrize(
    "field",
    [
        "to_addr",
        "from_addr",
        "group",
        "in_reply_to",
        "provider",
        "transport_name",
        "transport_type",
        "transport_metadata",
    ],
)
def test_reply_refuses_to_override_protected_fields(field: str) -> None:
    with pytest.raises(TypeError, match=f"'{field}' may not be overridden"):
        inbound_for_reply().reply("x", **{field: "other"})
    with pytest.raises(TypeError, match=f"'{field}' may not be overridden"):
        inbound_for_reply().reply_group("x", **{field: "other"})


def test_reply_goes_out_the_endpoint_it_came_in_on() -> None:
    msg = inbound_for_reply()
    msg.set_routing_endpoint("sms_in")
    assert msg.reply("x").get_routing_endpoint() == "sms_in"
    assert msg.reply("x").routing_metadata == {"endpoint_name": "sms_in"}
    assert inbound_for_reply().reply("x").routing_metadata == {"endpoint_name": "default"}


def test_reply_group_addresses_the_group() -> None:
    in_group = inbound_for_reply(extra="x")
    in_group.group = "#channel"
    group_reply = in_group.reply_group("to all")
    assert group_reply.to_addr is None and group_reply.group == "#channel"
    assert group_reply.from_addr == "12345" and group_reply.in_reply_to == in_group.message_id

    no_group = inbound_for_reply().reply_group("to you", continue_session=False)
    assert no_group.to_addr == "+27831234567" and no_group.session_event == "close"


def test_reply_to_a_message_without_addresses() -> None:
    msg = user_msg(to_addr=None, from_addr="+1", group="#g")
    assert msg.reply("x").to_addr == "+1" and msg.reply("x").from_addr is None


def test_user_is_the_from_addr() -> None:
    assert user_msg(from_addr="+27830000000").user() == "+27830000000"
    assert user_msg(from_addr=None).user() is None


# -- routing endpoint -------------------------------------------------------------


def test_routing_endpoint_get_and_set() -> None:
    msg = user_msg()
    assert msg.get_routing_endpoint() == "default" and "endpoint_name" not in msg.routing_metadata

    msg.set_routing_endpoint("sms_out")
    assert msg.routing_metadata["endpoint_name"] == "sms_out" and msg.get_routing_endpoint() == "sms_out"

    msg.set_routing_endpoint(None)
    assert msg.routing_metadata["endpoint_name"] == "default" and msg.get_routing_endpoint() == "default"
    msg.set_routing_endpoint()
    assert msg.get_routing_endpoint() == "default"


def test_routing_endpoint_null_on_the_wire_reads_as_default() -> None:
    msg = user_msg(routing_metadata={"endpoint_name": None})
    assert msg.get_routing_endpoint() == "default"


def test_events_have_routing_endpoints_too() -> None:
    event = ack()
    event.set_routing_endpoint("app_events")
    assert event.get_routing_endpoint() == "app_events"


def test_repr_names_the_class_and_content() -> None:
    text = repr(user_msg(content="visible"))
    assert text.startswith("<TransportUserMessage ") and "'visible'" in text
