"""Hypothesis strategies for hostile input: each case says what it is and what must happen.

A ``Case`` is either one message for the dispatcher (``dispatch``: inbound,
event or outbound, with the endpoint it arrives on) or one text for the
parse-only API (``parse``: ``message_from_json``). ``valid`` cases must be
delivered exactly once; the others must become exactly one failure record
(dispatch) or raise ``InvalidMessage`` (parse).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from hypothesis import strategies as st

from ray_dispatch.testing import make_ack, make_delivery_report, make_inbound, make_nack

TRANSPORT = "sms"
APP = "app"
ONE_MB = 1 << 20

Api = Literal["dispatch", "parse"]


@dataclass
class Case:
    """One input and what it is: ``kind`` names the hostility (or ``valid``)."""

    kind: str
    api: Api
    direction: str
    payload: Any
    endpoint: Any = TRANSPORT

    @property
    def valid(self) -> bool:
        """Whether this input must be delivered (or parse) rather than fail."""
        return self.kind.startswith("valid")

    @property
    def lenient(self) -> bool:
        """Whether the core may either deliver this input once or record one failure.

        Deeply nested metadata is accepted by message validation today (and a
        message published once is not copied, so nothing recurses); it must
        still never raise, be lost or be duplicated.
        """
        return self.kind == "deep_nesting"

    def __repr__(self) -> str:
        shown = "<user message with deeply nested metadata>" if self.lenient else repr(self.payload)
        shown = shown if len(shown) <= 300 else f"{shown[:300]}... ({len(shown)} characters)"
        return f"Case({self.kind}, {self.api}, {self.direction}, endpoint={repr(self.endpoint)[:60]}, payload={shown})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Print through ``repr`` (hypothesis' pretty printer would recurse into deep payloads)."""
        printer.text(repr(self))


USER_REQUIRED = ["to_addr", "from_addr", "transport_name", "transport_type"]
EVENT_REQUIRED = {"ack": "sent_message_id", "nack": "nack_reason", "delivery_report": "delivery_status"}

# Values no str / str|None field accepts (pydantic does not turn numbers, lists or maps into strings).
not_a_string = st.one_of(
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.binary(min_size=1, max_size=8).map(lambda b: b"\xff" + b),  # never valid UTF-8
)
not_a_mapping = st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3), st.booleans())
non_dict_payload = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=5),
    st.tuples(st.integers(), st.text(max_size=3)),
    st.builds(set, st.lists(st.integers(), max_size=3)),
    st.builds(object),
)
non_str_key = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.binary(max_size=4),
    st.tuples(st.integers()),
)
invalid_utf8 = st.binary(max_size=30).map(lambda b: b + b"\xc3\x28\xff")  # \xc3\x28 and \xff never decode
huge_text = st.integers(ONE_MB, ONE_MB + 64).map(lambda n: "x" * n)
small_text = st.text(max_size=20)
maybe_huge_text = st.integers(0, 15).flatmap(lambda n: huge_text if n == 0 else small_text)  # 1 in 16 is 1 MB
content = st.one_of(st.none(), maybe_huge_text)
not_an_event_type = st.one_of(small_text.filter(lambda t: t not in EVENT_REQUIRED), st.integers())
not_a_timestamp = st.one_of(small_text.map(lambda t: "not a time: " + t), st.lists(st.integers(), max_size=2))
unknown_name = st.one_of(small_text.filter(lambda t: t not in (TRANSPORT, APP)), st.integers(), maybe_huge_text)
user_typed_fields = st.sampled_from([*USER_REQUIRED, "content", "in_reply_to", "message_id", "group"])
event_wrong_field = st.one_of(
    st.tuples(st.just("user_message_id"), not_a_string),
    st.tuples(st.just("event_type"), not_an_event_type),
    st.tuples(st.just("helper_metadata"), not_a_mapping),
    st.tuples(st.just("timestamp"), not_a_timestamp),
)
directions = st.sampled_from(["inbound", "event", "outbound"])


def user_payload(text: str | None = "hi") -> dict[str, Any]:
    """A valid inbound user message payload from ``sms``."""
    return make_inbound(text, transport_name=TRANSPORT).to_dict()


def event_payload(event_type: str = "ack") -> dict[str, Any]:
    """A valid event payload (about message ``m1``) from ``sms``."""
    builders = {"ack": make_ack, "nack": make_nack, "delivery_report": make_delivery_report}
    return builders[event_type]("m1", transport_name=TRANSPORT).to_dict()


def nested(depth: int) -> dict[str, Any]:
    """A dict nested ``depth`` levels deep."""
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node["d"] = {}
        node = node["d"]
    return root


@st.composite
def wrong_type(draw: st.DrawFn) -> Case:
    """A user message or event whose typed field holds a value of the wrong type."""
    if draw(st.booleans()):
        payload = user_payload()
        field = draw(user_typed_fields)
        payload[field] = draw(not_a_string)
        if field == "transport_name" and draw(st.integers(0, 7)) == 0:
            payload[field] = ["x" * ONE_MB]  # a 1 MB string, in a list
        return Case("wrong_type", "dispatch", "inbound", payload)
    event = event_payload()
    field, value = draw(event_wrong_field)
    event[field] = value
    return Case("wrong_type", "dispatch", "event", event)


@st.composite
def missing_fields(draw: st.DrawFn) -> Case:
    """A user message or event with at least one required field removed."""
    if draw(st.booleans()):
        payload = user_payload(draw(content))
        for field in draw(st.lists(st.sampled_from(USER_REQUIRED), min_size=1, max_size=4, unique=True)):
            del payload[field]
        return Case("missing_field", "dispatch", "inbound", payload)
    event_type = draw(st.sampled_from(sorted(EVENT_REQUIRED)))
    event = event_payload(event_type)
    del event[draw(st.sampled_from(["user_message_id", "event_type", EVENT_REQUIRED[event_type]]))]
    return Case("missing_field", "dispatch", "event", event)


@st.composite
def unknown_endpoint(draw: st.DrawFn) -> Case:
    """A valid message on an endpoint the dispatcher does not have, or for an unmapped transport."""
    name = draw(unknown_name)
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return Case("unknown_endpoint", "dispatch", "inbound", user_payload(), endpoint=name)
    if choice == 1:  # arrives on sms, claims another transport_name: no route for it
        payload = user_payload()
        payload["transport_name"] = str(name)
        return Case("unknown_endpoint", "dispatch", "inbound", payload)
    if choice == 2:
        return Case("unknown_endpoint", "dispatch", "outbound", user_payload(), endpoint=name)
    return Case("unknown_endpoint", "dispatch", "event", event_payload(), endpoint=name)


@st.composite
def odd_shape(draw: st.DrawFn) -> Case:
    """Non-dict payloads, dicts with non-str keys, invalid UTF-8 where text belongs, deep nesting."""
    direction = draw(directions)
    endpoint = APP if direction == "outbound" else TRANSPORT
    shape = draw(st.integers(0, 4))
    if shape == 0:
        return Case("non_dict", "dispatch", direction, draw(non_dict_payload), endpoint)
    if shape == 1:
        payload = event_payload() if direction == "event" else user_payload()
        payload[draw(non_str_key)] = draw(small_text)
        return Case("non_str_key", "dispatch", direction, payload, endpoint)
    if shape == 2:
        payload = user_payload()
        payload[draw(st.sampled_from(["content", "to_addr", "transport_name"]))] = draw(invalid_utf8)
        return Case("invalid_utf8", "dispatch", "inbound", payload)
    if shape == 3:
        return Case("invalid_utf8", "dispatch", direction, draw(invalid_utf8), endpoint)
    payload = user_payload()
    payload[draw(st.sampled_from(["helper_metadata", "transport_metadata"]))] = nested(draw(st.integers(1200, 2000)))
    return Case("deep_nesting", "dispatch", "inbound", payload)


_GOOD_JSON = make_inbound("hi").to_json()
_FIXED_BAD_JSON = [
    _GOOD_JSON[: len(_GOOD_JSON) // 2],  # truncated
    _GOOD_JSON.replace('"', "'"),  # single quotes
    "[]",
    "null",
    "1",
    '"text"',
    "{}",
    '{"message_type": "event"}',
    '{"message_type": "carrier pigeon"}',
    "NaN",
    '{"content": "' + "x" * ONE_MB + '"',  # 1 MB, unterminated
]


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


bad_json = st.one_of(
    invalid_utf8, st.sampled_from(_FIXED_BAD_JSON), st.text(max_size=30).filter(lambda t: not _is_json_object(t))
)


@st.composite
def bad_json_text(draw: st.DrawFn) -> Case:
    """Text for ``message_from_json`` that is not JSON, not an object, or not a valid message."""
    return Case("bad_json", "parse", "inbound", draw(bad_json))


@st.composite
def valid_case(draw: st.DrawFn) -> Case:
    """A legitimate message: inbound (sometimes 1 MB or oddly nested), outbound, or valid JSON text.

    Events for earlier outbound messages are added by the test, which knows their ids.
    """
    which = draw(st.integers(0, 3))
    text = draw(content)
    if which == 0:
        return Case("valid_json", "parse", "inbound", make_inbound(text).to_json())
    msg = make_inbound(text, transport_name=TRANSPORT, helper_metadata=nested(draw(st.integers(0, 30))))
    if which == 1:
        return Case("valid_outbound", "dispatch", "outbound", msg.to_dict(), APP)
    return Case("valid_inbound", "dispatch", "inbound", msg.to_dict() if draw(st.booleans()) else msg)


hostile_case = st.one_of(wrong_type(), missing_fields(), unknown_endpoint(), odd_shape(), bad_json_text())
"""Any malformed input."""
any_case = st.integers(0, 3).flatmap(lambda n: valid_case() if n == 0 else hostile_case)
"""About one in four valid (hypothesis favours 0 a little, so nearer three in ten)."""


def batch(size: int) -> st.SearchStrategy[list[Case]]:
    """``size`` cases, about seven in ten hostile, in random order."""
    return st.lists(any_case, min_size=size, max_size=size)
