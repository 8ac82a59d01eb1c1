"""The wire between actors: one msgpack blob per batch, encoded and decoded by msgspec.

A batch crosses an actor hop as ONE ``bytes`` object: a msgpack array of
items, each an array ``[direction, values, absent, extra]``:

- ``direction``: ``inbound``, ``outbound`` or ``event``;
- ``values``: every declared field of the message's class, in the order the
  class declares them (no field names on the wire: ~140 bytes for an SMS
  instead of ~370 with names, and faster to decode; both ends run the same code);
- ``absent``: the optional fields (``OPTIONAL_KEYS``) that are not in the
  message's payload, so that the payload keeps exactly Vumi's key set;
- ``extra``: Vumi's unknown fields, kept beside the declared ones so that
  decoding stays typed.

Timestamps travel as msgspec writes naive datetimes (ISO text); a datetime
nested in metadata arrives as that text, as it would through Vumi's JSON.

Decoding *is* the hostile-input check: each item is decoded against a typed
schema built from the message classes' own field annotations (a field that
gains a type there is checked on the wire too), and ``Message.from_decoded``
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
import operator
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Annotated, Any, NamedTuple, Union

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


_NAMES: dict[Direction, tuple[str, ...]] = {direction: tuple(cls.model_fields) for direction, cls in _CLASSES.items()}
_DEFAULTS = {
    direction: {
        name: None if info.is_required() else info.get_default(call_default_factory=True)
        for name, info in cls.model_fields.items()
    }
    for direction, cls in _CLASSES.items()
}
_VALUES_OF = {cls.KIND: operator.itemgetter(*cls.model_fields) for cls in _CLASSES.values()}


def _names_for(direction: Any) -> tuple[str, ...]:
    """The declared field names of ``direction``'s class (a user message's for anything unknown)."""
    return _NAMES["event"] if direction == "event" else _NAMES["inbound"]


_FINITE = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]  # refuses nan and inf
TYPED_JSON_DEPTH = 6
"""How deep the fast schema types metadata and unknown fields; deeper ones take the checked path."""


def _json_type(depth: int) -> Any:
    """JSON-like values (string keys, finite floats) nested at most ``depth`` levels, as a msgspec type."""
    scalar: Any = str | int | _FINITE | bool | None
    shape = scalar
    for _ in range(depth):
        shape = Union[scalar, dict[str, shape], list[shape]]  # type: ignore[valid-type]  # noqa: UP007
    return shape


def _item_types(json_values: Any) -> tuple[type, type, type]:
    """The item structs for inbound, outbound and event items; ``json_values`` types metadata and extras."""

    def values_of(cls: type[Message]) -> Any:
        annotations = []
        for info in cls.model_fields.values():
            metadata = info.annotation == dict[str, Any]
            annotations.append(dict[str, json_values] if metadata else info.annotation)
        return tuple.__class_getitem__(tuple(annotations))

    def item(tag: Direction, cls: type[Message]) -> type:
        fields = [("values", values_of(cls)), ("absent", list[str]), ("extra", dict[str, json_values])]
        return msgspec.defstruct(f"_{tag.title()}", fields, array_like=True, tag=tag)  # type: ignore[no-any-return]

    return item("inbound", TransportUserMessage), item("outbound", TransportUserMessage), item("event", TransportEvent)


_TYPED = _item_types(_json_type(TYPED_JSON_DEPTH))
"""Fast path: every value typed, metadata too (to a depth): a batch that decodes needs no walk in Python."""
_CHECKED = _item_types(Any)
"""Item by item: metadata and extras decode as anything and ``Message.from_decoded`` checks them."""
_DIRECTION_OF: dict[type, Direction] = {
    kind: direction for kinds in (_TYPED, _CHECKED) for kind, direction in zip(kinds, _CLASSES)
}
_encode = msgspec.msgpack.Encoder().encode
_decode_batch = msgspec.msgpack.Decoder(list[Union[_TYPED]]).decode  # type: ignore[valid-type]  # noqa: UP007
_decode_raw_items = msgspec.msgpack.Decoder(list[msgspec.Raw]).decode
_decode_item = msgspec.msgpack.Decoder(Union[_CHECKED]).decode  # type: ignore[valid-type]  # noqa: UP007
_decode_plain = msgspec.msgpack.Decoder().decode


# -- sending -----------------------------------------------------------------------------


def encode_item(direction: Direction, message: Message) -> bytes:
    """Encode one message for a batch (a snapshot: later changes to ``message`` are not shipped).

    Raises:
        TypeError, UnicodeEncodeError: a value msgpack cannot carry (validation lets none through).
    """
    values = _VALUES_OF[message.KIND](message.__dict__)
    return _encode((direction, values, message.absent_keys(), message.extra_fields))


def encode_plain_item(direction: Any, payload: Any) -> bytes:
    """Encode any ``(direction, payload dict)`` in the item layout, unchecked (tests and fuzzers write hostile items).

    A declared field the payload lacks is listed as absent (with its default value, None if it has none).
    """
    if not isinstance(payload, dict):
        return _encode((direction, payload, [], {}))
    names = _names_for(direction)
    defaults = _DEFAULTS["event" if direction == "event" else "inbound"]
    values = [payload[name] if name in payload else defaults[name] for name in names]
    absent = [name for name in names if name not in payload]
    return _encode((direction, values, absent, {k: v for k, v in payload.items() if k not in names}))


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


def decode_batch(batch: bytes | Sequence[Any], hops: int = 0) -> tuple[list[Received], list[Refused]]:
    """Decode and check a batch; return its messages (in order) and the items refused.

    ``hops`` is the batch's envelope: how many dispatcher passes its items
    made that their ``routing_metadata`` does not count yet (a batch from a
    dispatcher says 1: it forwards items as they arrived); each decoded
    message's ``routing_metadata["hops"]`` is raised by it.

    Raises:
        InvalidMessage: ``batch`` is neither a msgpack array (the blob is not
            a batch at all, so no item can be told apart) nor a list.
    """
    if not isinstance(batch, (bytes, bytearray, memoryview)):
        if not isinstance(batch, (list, tuple)):
            raise InvalidMessage(f"a batch is msgpack bytes or a list, not {type(batch).__name__}")
        return _count_hops(_validate_plain(batch), hops)
    try:
        items: list[Any] = _decode_batch(batch)
    except msgspec.MsgspecError:
        return _count_hops(_decode_one_by_one(batch), hops)
    received: list[Received] = []
    refused: list[Refused] = []
    for index, item in enumerate(items):
        direction = _DIRECTION_OF[type(item)]
        try:
            received.append((direction, _from_item(direction, item, json_checked=True)))
        except InvalidMessage as exc:
            refused.append(
                Refused(index, (direction, _payload_of(direction, item.values, item.absent, item.extra)), str(exc))
            )
    return _count_hops((received, refused), hops)


def _count_hops(decoded: tuple[list[Received], list[Refused]], hops: int) -> tuple[list[Received], list[Refused]]:
    """Add the envelope's ``hops`` to each decoded message's ``routing_metadata["hops"]`` (a new dict each)."""
    if hops:
        for _, message in decoded[0]:
            fields = message.__dict__  # as pydantic's setattr would, without its per-call cost
            counted = fields["routing_metadata"].get("hops", 0)
            fields["routing_metadata"] = {
                **fields["routing_metadata"],
                "hops": (counted if isinstance(counted, int) else 0) + hops,
            }
            message.__pydantic_fields_set__.add("routing_metadata")
    return decoded


class ValidBatch(Sequence[Received]):
    """A blob whose items all decode and pass every rule, indexable as ``(direction, message)`` built on demand.

    ``valid_batch`` makes one. Its ``runs`` (consecutive items of one
    direction) can be routed whole without a ``Message`` per item: the router
    sees one sample, the dispatcher reads the few field values it needs and
    forwards the items' bytes as they arrived.
    """

    __slots__ = ("_items", "_raw", "blob")

    def __init__(self, blob: bytes, items: list[Any]) -> None:
        self.blob = blob
        self._items = items
        self._raw: list[msgspec.Raw] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        item = self._items[index]
        direction = _DIRECTION_OF[type(item)]
        return direction, _from_item(direction, item, json_checked=True)

    def runs(self) -> list[Run]:
        """The batch cut into runs of consecutive items of one direction, in order."""
        items = self._items
        runs: list[Run] = []
        start = 0
        for index in range(1, len(items) + 1):
            if index == len(items) or type(items[index]) is not type(items[start]):
                runs.append(Run(self, _DIRECTION_OF[type(items[start])], start, index))
                start = index
        return runs

    def raw_items(self) -> list[msgspec.Raw]:
        """Each item's bytes as they arrived (what ``encode_item`` made)."""
        if self._raw is None:
            self._raw = _decode_raw_items(self.blob)
        return self._raw


class Run(Sequence[Received]):
    """Consecutive items of one direction in a ``ValidBatch`` (``ValidBatch.runs``)."""

    __slots__ = ("batch", "direction", "start", "stop")

    def __init__(self, batch: ValidBatch, direction: Direction, start: int, stop: int) -> None:
        self.batch = batch
        self.direction = direction
        self.start = start
        self.stop = stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.batch[self.start + index % len(self)]

    def __iter__(self) -> Iterator[Received]:
        direction = self.direction
        for item in self.batch._items[self.start : self.stop]:
            yield direction, _from_item(direction, item, json_checked=True)

    def message(self, index: int) -> Message:
        """The message at ``index``, built now."""
        return self[index][1]  # type: ignore[no-any-return]

    def values(self, name: str) -> list[Any]:
        """Every item's value of declared field ``name``, in order.

        Raises:
            KeyError: ``name`` is not a declared field of the items' class.
        """
        position = _POSITION[self.direction][name]
        return [item.values[position] for item in self.batch._items[self.start : self.stop]]

    def highest_hops(self) -> int:
        """The largest ``routing_metadata["hops"]`` of the items (one that is not an integer counts as 0)."""
        counts = [metadata.get("hops", 0) for metadata in self.values("routing_metadata")]
        return max((hops for hops in counts if isinstance(hops, int)), default=0)

    def raw_items(self) -> list[msgspec.Raw]:
        """Each item's bytes as they arrived, for forwarding untouched."""
        return self.batch.raw_items()[self.start : self.stop]

    def messages(self) -> BlobMessages:
        """The messages, each built when asked from the blob alone (what a record of the run keeps)."""
        return BlobMessages(self.batch.blob, self.start, len(self))


class BlobMessages(Sequence[Message]):
    """``count`` messages of a valid blob from position ``start``, each decoded when indexed (nothing else kept)."""

    __slots__ = ("_count", "blob", "start")

    def __init__(self, blob: bytes, start: int, count: int) -> None:
        self.blob = blob
        self.start = start
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -self._count <= index < self._count:
            raise IndexError(index)
        item = _decode_item(_decode_raw_items(self.blob)[self.start + index % self._count])
        return _from_item(_DIRECTION_OF[type(item)], item, json_checked=False)


_POSITION = {direction: {name: i for i, name in enumerate(names)} for direction, names in _NAMES.items()}


def valid_batch(batch: Any) -> ValidBatch | None:
    """``batch`` as a ``ValidBatch``, or None when it is not a blob or an item is not valid.

    What is None takes ``decode_batch``, which tells the valid items from the
    refused ones and says why.
    """
    if not isinstance(batch, (bytes, bytearray, memoryview)):
        return None
    try:
        items: list[Any] = _decode_batch(batch)
    except msgspec.MsgspecError:
        return None
    try:
        for item in items:
            direction = _DIRECTION_OF[type(item)]
            cls = _CLASSES[direction]
            if (
                _HAS_FIELD_RULES[direction]
                or item.extra
                or item.values[_STAMP_AT[direction]].tzinfo is not None
                or not cls.OPTIONAL_KEYS.issuperset(item.absent)
            ):  # else none of the rules can fail: skip building the payload
                cls.check_decoded(dict(zip(_NAMES[direction], item.values)), item.absent, item.extra, json_checked=True)
    except InvalidMessage:
        return None
    return ValidBatch(bytes(batch), items)


_HAS_FIELD_RULES = {
    direction: cls.check_field_rules.__func__ is not Message.check_field_rules.__func__  # type: ignore[attr-defined]
    for direction, cls in _CLASSES.items()
}
_STAMP_AT = {direction: positions["timestamp"] for direction, positions in _POSITION.items()}


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
            received.append((direction, _from_item(direction, item, json_checked=False)))
        except msgspec.ValidationError as exc:
            refused.append(Refused(index, plain_item(raw), _describe(exc, raw)))
        except (msgspec.DecodeError, InvalidMessage) as exc:
            refused.append(Refused(index, plain_item(raw), str(exc)))
    return received, refused


def _from_item(direction: Direction, item: Any, json_checked: bool) -> Message:
    payload = dict(zip(_NAMES[direction], item.values))
    return _CLASSES[direction].from_decoded(payload, item.absent, item.extra, json_checked=json_checked)


def _payload_of(direction: Any, values: Any, absent: Any, extra: Any) -> dict[str, Any]:
    """The payload an item's parts say (as plain data), for failure records and refusals."""
    names = _names_for(direction)
    gone = set(absent) if isinstance(absent, list) and all(isinstance(a, str) for a in absent) else set()
    payload = {name: value for name, value in zip(names, values) if name not in gone}
    if isinstance(extra, dict):
        payload.update(extra)
    return payload


_PARTS = {"[1]": "the declared fields", "[2]": "the list of absent fields", "[3]": "the unknown fields"}


def _describe(error: msgspec.ValidationError, raw: msgspec.Raw) -> str:
    """``Expected `str`, got `int` - at `$[1][13]``` -> ``invalid message: field 'content': expected ...``."""
    text, _, where = str(error).partition(" - at `")
    path = where.rstrip("`").rpartition("$")[2]
    detail = f"{text[:1].lower()}{text[1:]}" + (" (a field name)" if where.startswith("key`") else "")
    part = _PARTS.get(path[:3])
    if part is None:
        return f"invalid batch item: {text}" + (f" (at {path})" if path else "")
    if path.startswith("[1][") and path[4:].split("]")[0].isdigit():
        item = plain_item(raw)
        names = _names_for(item[0] if isinstance(item, tuple) else None)
        position = int(path[4:].split("]")[0])
        if position < len(names):
            return f"invalid message: field {names[position]!r}: {detail}"
    return f"invalid message: {part}: {detail}"


def plain_item(raw: bytes | msgspec.Raw) -> Any:
    """One encoded item as plain data: ``(direction, payload dict)`` when it has the item layout, else
    whatever it holds; its bytes if it is not even msgpack (for failure records, refusals and tests)."""
    try:
        item = _decode_plain(raw)
    except msgspec.DecodeError:
        return bytes(raw)
    if not (isinstance(item, list) and len(item) == 4 and isinstance(item[1], list)):
        return item
    payload = _payload_of(item[0], item[1], item[2], item[3])
    stamp = payload.get("timestamp")
    if isinstance(stamp, str):  # as the wire writes it; validation reads Vumi's text only
        with contextlib.suppress(msgspec.ValidationError):
            payload["timestamp"] = msgspec.convert(stamp, datetime)
    return (item[0], payload)


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
