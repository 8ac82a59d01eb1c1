"""The batch wire (``actors.wire``): one msgpack blob per batch, decoding is the check (no Ray)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from actors.builtin import EchoApplication
from actors.wire import (
    TYPED_JSON_DEPTH,
    decode_batch,
    encode_batch,
    encode_item,
    encode_plain_item,
    plain_item,
    valid_batch,
)
from ray_dispatch.core.errors import InvalidMessage
from ray_dispatch.core.message import MAX_NESTING
from ray_dispatch.testing import make_ack, make_inbound


def test_a_batch_is_one_blob_that_decodes_to_equal_messages_with_their_unknown_fields_and_key_sets() -> None:
    inbound = make_inbound("hi", helper_metadata={"session": {"step": 2}})
    inbound["x_custom"] = {"kept": [1, 2]}
    ack = make_ack(inbound)
    blob = encode_batch([encode_item("inbound", inbound), encode_item("event", ack)])
    assert isinstance(blob, bytes)
    received, refused = decode_batch(blob)
    assert refused == []
    assert [(d, m.to_dict()) for d, m in received] == [("inbound", inbound.to_dict()), ("event", ack.to_dict())]
    assert [set(m.keys()) for _, m in received] == [set(inbound.keys()), set(ack.keys())]
    assert received[0][1]["x_custom"] == {"kept": [1, 2]} and received[0][1].content == "hi"


def test_an_item_is_a_snapshot_taken_when_it_is_encoded() -> None:
    message = make_inbound("before")
    item = encode_item("inbound", message)
    message.content = "after"
    message.helper_metadata["late"] = True
    ((_, decoded),), _ = decode_batch(encode_batch([item]))
    assert decoded.content == "before" and "late" not in decoded.helper_metadata


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"content": 5}, "field 'content'"),
        ({"timestamp": "yesterday"}, "field 'timestamp'"),
        ({"session_event": "bogus"}, "field 'session_event'"),
        ({"message_version": "1"}, "field 'message_version'"),
        ({"helper_metadata": {"k": float("nan")}}, "field 'helper_metadata'"),
        ({"transport_metadata": {"k": b"\xff"}}, "field 'transport_metadata'"),
        ({"x_custom": {1: "int key"}}, "['x_custom']: key 1 is not a string"),
        ({3: "an int field name"}, "the unknown fields: expected `str`, got `int` (a field name)"),
        ({"x_deep": {"a": [{"b": msgspec.msgpack.Ext(1, b"")}]}}, "['x_deep']['a'][0]['b']: Ext is not a JSON value"),
        ({"from_addr": b"\xc3\x28"}, "field 'from_addr'"),
    ],
)
def test_a_malformed_item_is_refused_alone_naming_the_field(change: dict[str, Any], named: str) -> None:
    good = [make_inbound(f"good {i}") for i in range(3)]
    bad = {**make_inbound("bad").payload(), **change}
    items = [encode_item("inbound", good[0]), encode_plain_item("inbound", bad)]
    items += [encode_item("inbound", m) for m in good[1:]]
    received, refused = decode_batch(encode_batch(items))
    assert [m.content for _, m in received] == ["good 0", "good 1", "good 2"]
    ((position, item, reason),) = refused
    assert position == 1 and named in reason and "\n" not in reason
    assert item[0] == "inbound" and item[1]["content"] == bad["content"]


def test_an_ack_without_sent_message_id_and_a_missing_required_field_are_refused_on_decode() -> None:
    ack = make_ack(make_inbound("x")).payload()
    del ack["sent_message_id"]
    user = make_inbound("y").payload()
    del user["to_addr"]
    _, refused = decode_batch(encode_batch([encode_plain_item("event", ack), encode_plain_item("inbound", user)]))
    assert [r.reason for r in refused] == [
        "invalid event: event_type 'ack' needs the field 'sent_message_id'",
        "invalid user_message: field 'to_addr': Field required",
    ]


def test_a_blob_that_is_not_an_array_is_refused_whole() -> None:
    with pytest.raises(InvalidMessage, match="not a msgpack array"):
        decode_batch(msgspec.msgpack.encode({"not": "a batch"}))


def test_plain_item_reads_an_item_back_as_its_payload() -> None:
    message = make_inbound("hi")
    direction, payload = plain_item(encode_item("outbound", message))
    assert direction == "outbound" and payload == message.payload()


async def test_an_endpoint_refuses_the_malformed_item_by_index_and_handles_the_others() -> None:
    app = EchoApplication("app", {"reply": False})
    bad = {**make_inbound("bad").payload(), "session_event": "sideways"}
    items = [encode_item("inbound", make_inbound("one")), encode_plain_item("inbound", bad)]
    items.append(encode_item("inbound", make_inbound("three")))
    rejected = await app.receive("dispatcher", encode_batch(items), None)
    assert [index for index, _ in rejected] == [1] and "field 'session_event'" in rejected[0][1]
    assert [m["content"] for m in (await app.received())["messages"]] == ["one", "three"]
    assert app.counters["malformed_refused"] == 1


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def test_metadata_deeper_than_the_typed_fast_path_still_arrives_and_too_deep_is_refused() -> None:
    deep = make_inbound("deep", helper_metadata={"d": _nested(TYPED_JSON_DEPTH + 5)})
    aware = make_inbound("aware", transport_metadata={"at": datetime(2024, 1, 2, 3, 4, tzinfo=UTC)})
    too_deep = {**make_inbound("too deep").payload(), "helper_metadata": {"d": _nested(MAX_NESTING + 1)}}
    items = [encode_item("inbound", deep), encode_item("inbound", aware), encode_plain_item("inbound", too_deep)]
    received, refused = decode_batch(encode_batch(items))
    assert [m.to_dict() for _, m in received] == [deep.to_dict(), aware.to_dict()]
    ((position, _, reason),) = refused
    assert position == 2 and "field 'helper_metadata'" in reason and "nested more than" in reason


def test_a_valid_blob_is_cut_into_runs_of_one_direction_whose_items_are_forwarded_byte_for_byte() -> None:
    first, second = (
        make_inbound("one", from_addr="+1"),
        make_inbound("two", from_addr="+2", routing_metadata={"hops": 3}),
    )
    first["x_custom"] = "kept"
    ack = make_ack(first)
    items = [encode_item("inbound", first), encode_item("inbound", second), encode_item("event", ack)]
    valid = valid_batch(encode_batch(items))
    assert valid is not None and len(valid) == 3
    inbound, events = valid.runs()
    assert (inbound.direction, len(inbound), events.direction, len(events)) == ("inbound", 2, "event", 1)
    assert inbound.values("from_addr") == ["+1", "+2"] and events.values("user_message_id") == [first.message_id]
    assert inbound.highest_hops() == 3 and events.highest_hops() == 0
    assert [bytes(raw) for raw in inbound.raw_items()] == items[:2]  # untouched: what the sender encoded
    assert inbound.message(0).to_dict() == first.to_dict() and events[0][1].to_dict() == ack.to_dict()
    kept = inbound.messages()  # what a recent-outcomes record keeps: built again from the bytes when asked
    assert len(kept) == 2 and kept[1].to_dict() == second.to_dict() and kept[-1].content == "two"


@pytest.mark.parametrize(
    "item",
    [
        encode_plain_item("inbound", {**make_inbound("x").payload(), "content": 5}),  # a wrong type
        encode_plain_item("event", {**make_ack("m").payload(), "sent_message_id": None}),  # an ack without its id
        encode_plain_item("inbound", {**make_inbound("x").payload(), "in_reply_to": "y", "x": float("nan")}),
    ],
)
def test_a_blob_with_one_invalid_item_is_not_a_valid_batch_and_decode_batch_names_it(item: bytes) -> None:
    blob = encode_batch([encode_item("inbound", make_inbound("fine")), item])
    assert valid_batch(blob) is None
    received, refused = decode_batch(blob)
    assert len(received) == 1 and [r.position for r in refused] == [1]


def test_the_envelope_adds_its_hops_to_each_decoded_message() -> None:
    counted, fresh = make_inbound("a", routing_metadata={"hops": 2, "endpoint_name": "x"}), make_inbound("b")
    blob = encode_batch([encode_item("inbound", counted), encode_item("inbound", fresh)])
    received, _ = decode_batch(blob, hops=1)
    assert [m.routing_metadata for _, m in received] == [{"hops": 3, "endpoint_name": "x"}, {"hops": 1}]
    received, _ = decode_batch(blob)
    assert [m.routing_metadata for _, m in received] == [{"hops": 2, "endpoint_name": "x"}, {}]
