"""Property tests: valid messages survive Vumi JSON; junk never crashes the harness and never blocks good messages."""

from __future__ import annotations

import asyncio
import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ray_dispatch.core.errors import InvalidMessage
from ray_dispatch.core.message import (
    Message,
    TransportEvent,
    TransportUserMessage,
    message_from_dict,
    message_from_json,
)
from ray_dispatch.testing import RouterHarness, make_inbound

from .helpers import simple_config

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DECLARED = set(TransportUserMessage.model_fields) | set(TransportEvent.model_fields)
VUMI_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
metadata = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
extra_fields = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda k: k not in DECLARED), json_values, max_size=3
)
optional_text = st.none() | st.text(max_size=30)
naive_times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
aware_times = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)


@st.composite
def user_messages(draw: st.DrawFn) -> TransportUserMessage:
    fields: dict[str, Any] = {
        "to_addr": draw(optional_text),
        "from_addr": draw(optional_text),
        "transport_name": draw(st.text(max_size=20)),
        "transport_type": draw(st.text(max_size=10)),
        "content": draw(st.none() | st.text(max_size=200)),
        "session_event": draw(st.sampled_from([None, "new", "resume", "close"])),
        "timestamp": draw(naive_times | aware_times),
        "helper_metadata": draw(metadata),
        "routing_metadata": draw(metadata),
        "transport_metadata": draw(metadata),
    }
    for name in ("in_reply_to", "group", "provider", "to_addr_type", "from_addr_type"):
        if draw(st.booleans()):
            fields[name] = draw(optional_text)
    return TransportUserMessage(**fields, **draw(extra_fields))


@st.composite
def events(draw: st.DrawFn) -> TransportEvent:
    event_type = draw(st.sampled_from(["ack", "nack", "delivery_report"]))
    needed = {
        "ack": ("sent_message_id", st.text(max_size=20)),
        "nack": ("nack_reason", st.text(max_size=40)),
        "delivery_report": ("delivery_status", st.sampled_from(["pending", "failed", "delivered"])),
    }[event_type]
    return TransportEvent(
        user_message_id=draw(st.text(max_size=32)),
        event_type=event_type,
        transport_name=draw(optional_text),
        timestamp=draw(naive_times),
        helper_metadata=draw(metadata),
        **{needed[0]: draw(needed[1])},
        **draw(extra_fields),
    )


# -- valid messages survive Vumi JSON -------------------------------------------------------


@SETTINGS
@given(user_messages() | events())
def test_valid_messages_survive_to_json_from_json(msg: Message) -> None:
    text = msg.to_json()
    wire = json.loads(text)
    assert VUMI_TIMESTAMP.fullmatch(wire["timestamp"])

    again = type(msg).from_json(text)
    assert again == msg
    assert message_from_json(text) == msg
    assert message_from_dict(msg.to_dict()) == msg
    assert again.to_json() == text


@SETTINGS
@given(user_messages())
def test_copies_and_replies_of_valid_messages_are_independent(msg: TransportUserMessage) -> None:
    dup = msg.copy()
    assert dup == msg
    dup.helper_metadata["__probe__"] = [1]
    dup.routing_metadata.clear()
    assert "__probe__" not in msg.helper_metadata
    reply = msg.reply("r")
    assert reply.to_addr == msg.from_addr and reply.in_reply_to == msg.message_id
    assert reply.helper_metadata == msg.helper_metadata
    assert TransportUserMessage.from_json(reply.to_json()) == reply


@SETTINGS
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_text_parses_or_raises_invalid_message(text: str | bytes) -> None:
    try:
        parsed = message_from_json(text)
    except InvalidMessage as exc:
        assert str(exc).startswith("invalid ")
    else:
        assert isinstance(parsed, (TransportUserMessage, TransportEvent))


@SETTINGS
@given(json_values)
def test_any_json_value_parses_or_raises_invalid_message(value: Any) -> None:
    for cls in (TransportUserMessage, TransportEvent):
        try:
            parsed = cls.from_json(json.dumps(value))
        except InvalidMessage as exc:
            assert str(exc).startswith(f"invalid {cls.KIND}: ")
        else:
            assert isinstance(parsed, cls)


# -- junk never crashes the harness -------------------------------------------------------------

VALID_INBOUND = make_inbound(transport_name="sms").to_dict()
REQUIRED = ("to_addr", "from_addr", "transport_name", "transport_type")


@st.composite
def corrupted_messages(draw: st.DrawFn) -> Any:
    payload = dict(VALID_INBOUND)
    payload["timestamp"] = draw(st.sampled_from(["2024-01-02 03:04:05.000006", "2024-01-02 03:04:05"]))
    how = draw(st.sampled_from(["drop", "retype", "non_str_key", "huge", "deep", "nan", "bad_time", "event_type"]))
    if how == "drop":
        del payload[draw(st.sampled_from(REQUIRED))]
    elif how == "retype":
        field = draw(st.sampled_from(sorted(VALID_INBOUND)))
        payload[field] = draw(json_values | st.binary(max_size=8) | st.tuples(st.integers()))
    elif how == "non_str_key":
        payload[draw(st.integers() | st.none() | st.tuples(st.integers()))] = "x"
    elif how == "huge":
        payload["content"] = "x" * draw(st.integers(min_value=100_000, max_value=1_000_000))
        payload["helper_metadata"] = {str(i): list(range(20)) for i in range(draw(st.integers(0, 2000)))}
    elif how == "deep":
        nested: Any = "bottom"
        for _ in range(draw(st.integers(min_value=50, max_value=400) | st.just(3000))):
            nested = [nested]
        payload[draw(st.sampled_from(["helper_metadata", "extra"]))] = {"deep": nested}
    elif how == "nan":
        payload["score"] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    elif how == "bad_time":
        payload["timestamp"] = draw(
            st.text(max_size=30) | st.integers(min_value=10**20) | st.just("9999-99-99 99:99:99")
        )
    else:
        payload["message_type"] = "event"
        payload["event_type"] = draw(st.text(max_size=10))
    return payload


junk = (
    st.none()
    | st.integers()
    | st.floats()
    | st.text(max_size=50)
    | st.binary(max_size=50)
    | st.lists(json_values, max_size=5)
    | st.dictionaries(st.text(max_size=10), json_values, max_size=6)
    | corrupted_messages()
)


async def feed(items: list[tuple[str, Any]]) -> None:
    async with RouterHarness(simple_config()) as h:
        sent: list[str] = []
        for direction, item in items:
            if direction == "inbound":
                outcome = await h.dispatch_inbound(item)
            elif direction == "event":
                outcome = await h.dispatch_event(item)
            else:
                outcome = await h.dispatch_outbound(item, "app1")
            accounted = len(outcome.failures) + len(outcome.deliveries) + (outcome.dropped is not None)
            assert accounted >= 1, f"{direction} junk vanished without a trace: {item!r:.200}"
            for record in outcome.failures:
                assert isinstance(record.reason, str) and record.reason
                assert record.direction == direction
                json.dumps(record.to_dict())  # failure records stay inspectable, whatever came in
            if not isinstance(item, dict):
                (record,) = outcome.failures
                assert record.stage == "validate" and record.error_type == "InvalidMessage"

            good = make_inbound("good", transport_name="sms")
            sent.append(good.message_id)
            after = await h.dispatch_inbound(good)
            assert after.destinations == ["app1"], after.failures

        arrived = [m.message_id for m in h.inbound_to("app1") if m.content == "good"]
        assert arrived == sent


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["inbound", "event", "outbound"]), junk), min_size=1, max_size=6))
def test_junk_never_crashes_the_harness_and_good_messages_still_arrive(items: list[tuple[str, Any]]) -> None:
    asyncio.run(feed(items))
