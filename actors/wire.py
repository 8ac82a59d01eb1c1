"""The wire between actors: one msgpack blob per batch, encoded and decoded by msgspec.

A batch crosses an actor hop as ONE ``bytes`` object: a msgpack array whose
items are ``[direction, fields, extra]`` arrays, ``direction`` being
``inbound``, ``outbound`` or ``event``, ``fields`` the message's declared
fields that are present in its payload (``Message.declared_payload``) and
``extra`` its unknown fields (Vumi keeps them, so do we; carried beside the
declared ones so that decoding stays typed). Timestamps travel as msgspec
writes naive datetimes (ISO text); a datetime nested in metadata arrives as
that text, as it would through Vumi's JSON.

Decoding *is* the hostile-input check: each item is decoded against a typed
schema derived from the message classes' own field annotations (a field
gains a type there, the wire checks it too), and ``Message.from_decoded``
then applies the rules types cannot say (JSON-only metadata and extras,
naive UTC timestamps, what an event type needs). The whole batch is decoded
in one call; only when that fails is it decoded again item by item, so one
malformed item is refused on its own and the others still arrive.

Senders encode each message when it is queued (``encode_item``: a snapshot,
reused as it is on retries) and join the items of a batch when it is shipped
(``encode_batch``); receivers call ``decode_batch``. A receiver may also be
called with a plain list of ``(direction, payload dict)`` items (a caller
that is not one of our senders): those are validated by the models
themselves, item by item.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, NotRequired, Required, TypedDict

import msgspec

from ray_dispatch.core.errors import InvalidMessage
from ray_dispatch.core.message import Message, TransportEvent, TransportUserMessage
from ray_dispatch.core.stores.failures import DIRECTIONS, Direction

Received = tuple[Direction, Message]
"""A decoded item: its direction and the message."""


class Refused(NamedTuple):
    """A batch item that did not decode into a valid message."""

    position: int
    """Its index in the batch."""
    item: Any
    """What it holds, decoded as plain data (``(direction, payload dict)`` when it has that shape)."""
    reason: str
    """One line naming the problem (the field, when one is to blame)."""


_CLASSES: dict[Direction, type[Message]] = {
    "inbound": TransportUserMessage,
    "outbound": TransportUserMessage,
    "event": TransportEvent,
}


def _fields_schema(cls: type[Message]) -> Any:
    """A ``TypedDict`` of ``cls``'s declared fields with their own annotations; only ``OPTIONAL_KEYS`` may be absent."""
    fields = {
        name: NotRequired[info.annotation] if name in cls.OPTIONAL_KEYS else Required[info.annotation]
        for name, info in cls.model_fields.items()
    }
    return TypedDict(f"{cls.__name__}Fields", fields)  # type: ignore[operator]


_USER_FIELDS = _fields_schema(TransportUserMessage)
_EVENT_FIELDS = _fields_schema(TransportEvent)


class _Inbound(msgspec.Struct, array_like=True, tag="inbound"):
    fields: _USER_FIELDS  # type: ignore[valid-type]
    extra: dict[str, Any]


class _Outbound(msgspec.Struct, array_like=True, tag="outbound"):
    fields: _USER_FIELDS  # type: ignore[valid-type]
    extra: dict[str, Any]


class _Event(msgspec.Struct, array_like=True, tag="event"):
    fields: _EVENT_FIELDS  # type: ignore[valid-type]
    extra: dict[str, Any]


_Item = _Inbound | _Outbound | _Event
_DIRECTION_OF: dict[type, Direction] = {_Inbound: "inbound", _Outbound: "outbound", _Event: "event"}
_encode = msgspec.msgpack.Encoder().encode
_decode_batch = msgspec.msgpack.Decoder(list[_Item]).decode  # type: ignore[valid-type]
_decode_raw_items = msgspec.msgpack.Decoder(list[msgspec.Raw]).decode
_decode_item = msgspec.msgpack.Decoder(_Item).decode  # type: ignore[valid-type]
_decode_plain = msgspec.msgpack.Decoder().decode


# -- sending -----------------------------------------------------------------------------


def encode_item(direction: Direction, message: Message) -> bytes:
    """Encode one message for a batch (a snapshot: later changes to ``message`` are not shipped).

    Raises:
        TypeError, UnicodeEncodeError: a value msgpack cannot carry (validation lets none through).
    """
    return _encode((direction, message.declared_payload(), message.extra_fields))


def encode_batch(items: Sequence[bytes]) -> bytes:
    """Join ``encode_item`` results into the batch blob (a msgpack array of them)."""
    count = len(items)
    if count < 16:
        header = bytes((0x90 | count,))
    elif count < 1 << 16:
        header = b"\xdc" + count.to_bytes(2, "big")
    else:
        header = b"\xdd" + count.to_bytes(4, "big")
    return header + b"".join(items)


# -- receiving ---------------------------------------------------------------------------


def decode_batch(batch: bytes | Sequence[Any]) -> tuple[list[Received], list[Refused]]:
    """Decode and check a batch; return its messages (in order) and the items refused.

    Raises:
        InvalidMessage: ``batch`` is neither a msgpack array (the blob is not
            a batch at all, so no item can be told apart) nor a list.
    """
    if not isinstance(batch, (bytes, bytearray, memoryview)):
        if not isinstance(batch, (list, tuple)):
            raise InvalidMessage(f"a batch is msgpack bytes or a list, not {type(batch).__name__}")
        return _validate_plain(batch)
    try:
        items = _decode_batch(batch)
    except msgspec.MsgspecError:
        return _decode_one_by_one(batch)
    received: list[Received] = []
    refused: list[Refused] = []
    for index, item in enumerate(items):
        direction = _DIRECTION_OF[type(item)]
        try:
            received.append((direction, _CLASSES[direction].from_decoded(item.fields, item.extra)))
        except InvalidMessage as exc:
            refused.append(Refused(index, (direction, {**item.fields, **item.extra}), str(exc)))
    return received, refused


def _decode_one_by_one(blob: bytes | bytearray | memoryview) -> tuple[list[Received], list[Refused]]:
    try:
        raw_items = _decode_raw_items(blob)
    except msgspec.MsgspecError as exc:
        raise InvalidMessage(f"invalid batch: not a msgpack array ({exc})") from None
    received: list[Received] = []
    refused: list[Refused] = []
    for index, raw in enumerate(raw_items):
        try:
            item = _decode_item(raw)
            direction = _DIRECTION_OF[type(item)]
            received.append((direction, _CLASSES[direction].from_decoded(item.fields, item.extra)))
        except msgspec.ValidationError as exc:
            refused.append(Refused(index, _plain_item(raw), _describe(exc)))
        except (msgspec.DecodeError, InvalidMessage) as exc:
            refused.append(Refused(index, _plain_item(raw), str(exc)))
    return received, refused


def _describe(error: msgspec.ValidationError) -> str:
    """``Expected `str`, got `int` - at `$.fields.content``` -> ``invalid message: field 'content': expected ...``."""
    text, _, where = str(error).partition(" - at `")
    path = where.rstrip("`").removeprefix("$")
    if path.startswith("[1]") or path.startswith("[2]"):  # inside the fields or the extra map
        name = path[3:].lstrip(".").split(".")[0].split("[")[0]
        if name.startswith("`") or not name:
            return f"invalid message: {text}"
        return f"invalid message: field {name!r}: {text[:1].lower()}{text[1:]}"
    return f"invalid batch item: {text}" + (f" (at {path})" if path else "")


def _plain_item(raw: msgspec.Raw) -> Any:
    """The item as plain data, ``(direction, payload)`` when it has that shape; its bytes if not even msgpack."""
    try:
        item = _decode_plain(raw)
    except msgspec.DecodeError:
        return bytes(raw)
    if isinstance(item, list) and len(item) == 3 and isinstance(item[1], dict) and isinstance(item[2], dict):
        payload = {**item[1], **item[2]}
        stamp = payload.get("timestamp")
        if isinstance(stamp, str):  # as the wire writes it; validation reads Vumi's text only
            with contextlib.suppress(msgspec.ValidationError):
                payload["timestamp"] = msgspec.convert(stamp, datetime)
        return (item[0], payload)
    return item


def _validate_plain(items: Sequence[Any]) -> tuple[list[Received], list[Refused]]:
    """Validate ``(direction, payload dict)`` items with the models themselves (callers that are not our senders)."""
    received: list[Received] = []
    refused: list[Refused] = []
    for index, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and item[0] in DIRECTIONS):
            refused.append(Refused(index, item, "batch item is not a (direction, payload) pair"))
            continue
        direction, payload = item
        try:
            received.append((direction, _CLASSES[direction].from_dict(payload)))
        except InvalidMessage as exc:
            refused.append(Refused(index, item, str(exc)))
    return received, refused


def message_key(direction: str, message: Message | dict[str, Any]) -> str:
    """Return the id a receiver dedupes on: ``event_id`` for events, else ``message_id``."""
    if direction == "event":
        return str(message.get("event_id"))
    return str(message.get("message_id"))


# -- payload dicts for the Python API ------------------------------------------------------


def to_wire(msg: Message) -> dict[str, Any]:
    """Return the payload dict of ``msg`` (shallow; only the keys present), as endpoints hand to Python callers."""
    return msg.payload()


def from_wire(payload: dict[str, Any]) -> Message:
    """Rebuild a message from a ``to_wire`` payload without validating it again.

    Only for payloads produced by ``to_wire`` from a valid message (load
    generators stamping a validated template); untrusted input goes through
    ``message_from_dict``.

    Raises:
        KeyError: the payload lacks ``message_type`` or a declared field.
    """
    classes: dict[str, type[Message]] = {"user_message": TransportUserMessage, "event": TransportEvent}
    return classes[payload["message_type"]].from_trusted_payload(payload)
