"""``reply`` builds from a valid message without pydantic, and gives exactly what validation gives.

The reference is ``_validated_reply``: the constructor that validates every
field (what ``reply`` always did). Ids and timestamps differ between any two
replies, so they are compared by shape; everything else field by field.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from ray_dispatch.core.errors import InvalidMessage
from ray_dispatch.core.message import TransportUserMessage, new_message_id, utcnow

FRESH = ("message_id", "timestamp")


def inbound(**fields: Any) -> TransportUserMessage:
    base: dict[str, Any] = {
        "to_addr": "12345",
        "from_addr": "+27831234567",
        "transport_name": "sms",
        "transport_type": "sms",
        "provider": "mtn",
        "helper_metadata": {"load_balancer": {"transport_names": ["sms_a"]}, "ratio": 0.5},
        "transport_metadata": {"smsc": {"seq": 7, "when": datetime(2026, 1, 2, 3, 4, 5)}},
        "session_event": "new",
        "content": "hi",
        "note": {"kept": True},  # an unknown field: a reply does not carry it
    }
    return TransportUserMessage(**{**base, **fields})


def comparable(message: TransportUserMessage) -> dict[str, Any]:
    """Everything a message is, but the fields fresh for each message."""
    return {
        "dict": {k: v for k, v in message.__dict__.items() if k not in FRESH},
        "order": list(message.__dict__),
        "fields_set": set(message.__pydantic_fields_set__),
        "extra": message.__pydantic_extra__,
        "private": message.__pydantic_private__,
        "payload_keys": list(message.payload()),
        "json_keys": list(TransportUserMessage.from_json(message.to_json()).payload()),
        "json": re.sub(r'"(message_id|timestamp)": "[^"]*"', "", message.to_json()),
        "absent": message.absent_keys(),
    }


@pytest.mark.parametrize("content", ["hello back", "", None])
@pytest.mark.parametrize("continue_session", [True, False])
@pytest.mark.parametrize(
    "source",
    [
        {},
        {"group": "#channel", "provider": None, "helper_metadata": {}, "transport_metadata": {}},
        {"to_addr": None, "transport_name": None, "transport_type": None, "to_addr_type": "msisdn"},
    ],
)
def test_a_reply_is_field_by_field_what_the_validating_constructor_builds(
    content: str | None, continue_session: bool, source: dict[str, Any]
) -> None:
    msg = inbound(**source)
    msg.set_routing_endpoint("sms_in")
    fast = msg.reply(content, continue_session)
    checked = msg._validated_reply(content, continue_session, {})

    assert comparable(fast) == comparable(checked)
    assert type(fast) is TransportUserMessage and fast.model_dump() == {
        **checked.model_dump(),
        **{k: fast[k] for k in FRESH},
    }
    assert fast.routing_metadata == {"endpoint_name": "sms_in"} and fast.in_reply_to == msg.message_id


def test_the_assembled_reply_is_taken_without_validation() -> None:
    # Guards the fast path itself: the comparison above would pass if reply() still validated.
    msg = inbound()
    assert msg._assembled_reply("x", True) is not None


def test_a_reply_without_a_routing_endpoint_goes_to_default() -> None:
    assert inbound().reply("x").routing_metadata == {"endpoint_name": "default"}


def test_a_reply_shares_no_mutable_metadata_with_its_message() -> None:
    msg = inbound()
    reply = msg.reply("x")
    reply.helper_metadata["load_balancer"]["transport_names"].append("sms_b")
    reply.transport_metadata["smsc"]["seq"] = 8
    reply.routing_metadata["endpoint_name"] = "elsewhere"
    assert msg.helper_metadata["load_balancer"]["transport_names"] == ["sms_a"]
    assert msg.transport_metadata["smsc"]["seq"] == 7
    assert msg.get_routing_endpoint() == "default"


@pytest.mark.parametrize("content", [5, 1.5, ["a"], {"text": "x"}])
def test_a_reply_with_content_that_is_not_a_string_is_refused_in_one_line(content: Any) -> None:
    with pytest.raises(InvalidMessage) as caught:
        inbound().reply(content)
    text = str(caught.value)
    assert "\n" not in text and "field 'content'" in text and text.startswith("invalid user_message:")


def test_a_reply_from_a_message_whose_field_was_set_to_a_bad_value_is_still_refused() -> None:
    msg = inbound()
    msg.from_addr = 27831234567  # type: ignore[assignment] - attributes are not validated on assignment
    with pytest.raises(InvalidMessage, match="field 'to_addr'"):
        msg.reply("x")
    odd = inbound()
    odd.transport_metadata["socket"] = object()
    with pytest.raises(InvalidMessage, match="transport_metadata"):
        odd.reply("x")


def test_a_str_subclass_content_goes_through_validation() -> None:
    class Text(str):
        pass

    reply = inbound().reply(Text("x"))
    assert reply.content == "x"


def test_overrides_still_go_through_validation() -> None:
    with pytest.raises(InvalidMessage, match="field 'session_event'"):
        inbound().reply("x", session_event="later")
    assert inbound().reply("x", note="n")["note"] == "n"


def test_new_ids_have_uuid4s_shape_and_do_not_repeat() -> None:
    ids = [new_message_id() for _ in range(3000)]  # crosses several refills of the id buffer
    assert len(set(ids)) == len(ids)
    for value in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", value) and uuid.UUID(hex=value).version == 4
        assert uuid.UUID(hex=value).variant == uuid.RFC_4122


def test_a_forked_child_does_not_reuse_its_parents_ids() -> None:
    new_message_id()  # the parent has ids read ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_message_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child not in {new_message_id() for _ in range(300)}


def test_utcnow_is_naive_utc() -> None:
    now = utcnow()
    aware = datetime.now(UTC).replace(tzinfo=None)
    assert now.tzinfo is None and abs((aware - now).total_seconds()) < 60
