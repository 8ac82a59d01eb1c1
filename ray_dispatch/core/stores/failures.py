"""Failure records: what happens to a message that cannot be routed or delivered.

Nothing is silently dropped. A message the dispatcher cannot route, or an
endpoint cannot take, becomes a ``FailureRecord`` kept in a ``FailureStore``
where it can be listed, inspected, replayed and purged.

``FailureStore`` is the async interface; ``MemoryFailureStore`` is the
embedded default and ``ray_dispatch.redis_failures.RedisFailureStore`` the
durable, shared one. Records cross process boundaries as
``FailureRecord.to_dict()`` / ``FailureRecord.from_dict()``.
"""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ray_dispatch.core.errors import InvalidMessage
from ray_dispatch.core.message import VUMI_DATE_FORMAT, Message, TransportEvent, TransportUserMessage, utcnow
from ray_dispatch.core.stores.routing import IN_PROCESS_STATE, UNKNOWN_STATE

Direction = Literal["inbound", "event", "outbound"]
DIRECTIONS: tuple[Direction, ...] = ("inbound", "event", "outbound")

RAW_PAYLOAD = "raw"
"""``message_kind`` of a record whose message never parsed (the payload as received)."""

_MESSAGE_CLASSES: dict[str, type[Message]] = {
    TransportUserMessage.KIND: TransportUserMessage,
    TransportEvent.KIND: TransportEvent,
}
_MAX_DEPTH = 64
_MAX_REPR = 4096
MAX_REASON_CHARS = 2000
"""Reasons longer than this are cut (a hostile 1 MB endpoint name must not make a 1 MB reason)."""


def json_safe(value: Any, depth: int = 0) -> Any:
    """Return a JSON-encodable stand-in for an arbitrary (possibly hostile) payload.

    JSON types pass through; dict keys that are not strings become their
    ``repr``; datetimes become Vumi timestamps; bytes and other objects become a ``repr`` cut at 4096
    characters; non-finite floats become strings; nesting deeper than 64
    levels is cut with a marker. Used for payloads that never parsed.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, datetime):
        return value.strftime(VUMI_DATE_FORMAT)
    if depth >= _MAX_DEPTH:
        return f"<nested deeper than {_MAX_DEPTH} levels: cut>"
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else repr(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    text = repr(value)
    if len(text) > _MAX_REPR:
        size = f"{len(value)} items, " if isinstance(value, (bytes, bytearray)) else ""
        text = f"{text[:_MAX_REPR]}... ({size}{len(text)} characters of repr, cut)"
    return text


def _message_payload(message: Any) -> tuple[str, Any]:
    """Return (message_kind, JSON-encodable payload) for a record's message."""
    if isinstance(message, Message):
        try:
            return message.KIND, json.loads(message.to_json())
        except (TypeError, ValueError, RecursionError):
            return message.KIND, json_safe({key: message[key] for key in message.keys()})  # noqa: SIM118
    return RAW_PAYLOAD, json_safe(message)


@dataclass
class FailureRecord:
    """One message that could not be routed or delivered.

    Attributes:
        reason: human-readable cause, e.g. ``"no route_mappings entry for transport 'sms'"``
            (cut after ``MAX_REASON_CHARS`` characters).
        direction: ``inbound`` (transport to app), ``event`` or ``outbound``.
        endpoint: the endpoint the message arrived on.
        destination: the endpoint it was being published or delivered to, if it got that far.
        message: the message (or, for unparseable input, the raw payload).
        error_type: the exception class name behind the failure, if any.
        stage: where it failed: ``validate``, ``middleware``, ``route``, ``publish`` or ``deliver``.
        generation: the config generation it was routed under (None: not known).
    """

    reason: str
    direction: Direction
    endpoint: str | None
    message: Message | Any
    error_type: str | None = None
    stage: str = "route"
    destination: str | None = None
    failure_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: datetime = field(default_factory=utcnow)
    attempts: int = 1
    generation: int | None = None

    def __post_init__(self) -> None:
        reason = str(self.reason)
        if len(reason) > MAX_REASON_CHARS:
            reason = f"{reason[:MAX_REASON_CHARS]}... ({len(reason)} characters, cut)"
        self.reason = reason

    @property
    def failed_at(self) -> str | None:
        """The endpoint where it failed: the destination if it got that far, else the one it arrived on."""
        return self.destination or self.endpoint

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-encodable dict: the message as its Vumi JSON payload.

        ``message_kind`` says what ``message`` holds: ``user_message`` or
        ``event`` (a parsed message, timestamps as Vumi strings) or ``raw``
        (a payload that never parsed, made JSON-safe by ``json_safe``).
        """
        kind, message = _message_payload(self.message)
        return {
            "failure_id": self.failure_id,
            "reason": self.reason,
            "direction": self.direction,
            "endpoint": json_safe(self.endpoint),
            "destination": self.destination,
            "stage": self.stage,
            "error_type": self.error_type,
            "attempts": self.attempts,
            "generation": self.generation,
            "timestamp": self.timestamp.isoformat(sep=" "),
            "message_kind": kind,
            "message": message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FailureRecord:
        """Rebuild a record from ``to_dict`` output (parsed messages become messages again).

        Raises:
            ValueError: ``data`` lacks a field or has a malformed one; the text names it.
        """
        missing = [k for k in ("failure_id", "reason", "direction", "timestamp") if k not in data]
        if missing:
            raise ValueError(f"not a failure record: missing field {missing[0]!r}")
        if data["direction"] not in DIRECTIONS:
            raise ValueError(f"not a failure record: field 'direction' is {data['direction']!r}")
        try:
            timestamp = datetime.fromisoformat(str(data["timestamp"]))
        except ValueError:
            raise ValueError(f"not a failure record: field 'timestamp' is {data['timestamp']!r}") from None
        message = data.get("message")
        message_class = _MESSAGE_CLASSES.get(str(data.get("message_kind")))
        if message_class is not None and isinstance(message, dict):
            # A payload that no longer validates stays inspectable as stored.
            with contextlib.suppress(InvalidMessage):
                message = message_class.from_dict(message)
        return cls(
            reason=str(data["reason"]),
            direction=data["direction"],
            endpoint=data.get("endpoint"),
            message=message,
            error_type=data.get("error_type"),
            stage=str(data.get("stage", "route")),
            destination=data.get("destination"),
            failure_id=str(data["failure_id"]),
            timestamp=timestamp,
            attempts=int(data.get("attempts", 1)),
            generation=data["generation"] if isinstance(data.get("generation"), int) else None,
        )

    def matches(self, direction: Direction | None = None, endpoint: str | None = None) -> bool:
        """Whether this record passes a ``list`` filter (``None`` matches anything)."""
        return (direction is None or self.direction == direction) and (endpoint is None or self.endpoint == endpoint)


class FailureStore(ABC):
    """Where failure records are kept: the async interface every failure store implements.

    ``add`` must not lose a record because the backing service is down: a
    durable store keeps it locally until it can be written (see
    ``RedisFailureStore``). The other methods may raise
    ``ray_dispatch.core.errors.StoreUnavailable``.
    """

    @abstractmethod
    async def add(self, record: FailureRecord) -> FailureRecord:
        """Keep ``record`` (replacing one with the same id, in place); return it."""

    @abstractmethod
    async def list(
        self, direction: Direction | None = None, endpoint: str | None = None, *, limit: int | None = None
    ) -> list[FailureRecord]:
        """Return records oldest first, filtered by direction and arrival endpoint, at most ``limit``."""

    @abstractmethod
    async def get(self, failure_id: str) -> FailureRecord:
        """Return one record.

        Raises:
            KeyError: no record has that id.
        """

    @abstractmethod
    async def remove(self, failure_ids: Iterable[str]) -> int:
        """Remove the given records; return how many existed."""

    @abstractmethod
    async def purge(self) -> int:
        """Remove every record; return how many there were."""

    @abstractmethod
    async def count(self) -> int:
        """Return how many records are kept."""

    async def count_by_endpoint(self) -> dict[str, int]:
        """Return how many records are kept per ``"direction:endpoint"``, the endpoint being where each failed.

        Where a record failed is its ``destination`` if it got that far, else the
        endpoint it arrived on (``"direction:"`` when neither is known). The
        default reads every record (``list``); a store may count faster.

        Raises:
            StoreUnavailable: the store cannot be reached.
        """
        counts: dict[str, int] = {}
        for record in await self.list():
            key = f"{record.direction}:{record.failed_at or ''}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. The default does nothing."""

    def state(self) -> dict[str, Any]:
        """Whether the store's server is reachable, as ``RoutingStore.state`` (default ``unknown``)."""
        return dict(UNKNOWN_STATE)


class MemoryFailureStore(FailureStore):
    """In-memory, bounded failure store (oldest dropped past ``max_records``): the default.

    ``dropped`` counts records evicted by the bound, so even that is visible.
    Besides the async interface it offers synchronous ``records``/``clear``
    for the in-process harness and notebooks.
    """

    def __init__(self, max_records: int = 100_000) -> None:
        self.max_records = max_records
        self._records: OrderedDict[str, FailureRecord] = OrderedDict()
        self.dropped = 0

    def state(self) -> dict[str, Any]:
        """Always ``{"state": "ok"}``: the store is this process."""
        return dict(IN_PROCESS_STATE)

    async def add(self, record: FailureRecord) -> FailureRecord:
        self._records[record.failure_id] = record
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)
            self.dropped += 1
        return record

    def records(
        self, direction: Direction | None = None, endpoint: str | None = None, *, limit: int | None = None
    ) -> list[FailureRecord]:
        """Return records oldest first, filtered as ``list`` does (synchronous)."""
        found = [r for r in self._records.values() if r.matches(direction, endpoint)]
        return found if limit is None else found[:limit]

    async def list(
        self, direction: Direction | None = None, endpoint: str | None = None, *, limit: int | None = None
    ) -> list[FailureRecord]:
        return self.records(direction, endpoint, limit=limit)

    async def get(self, failure_id: str) -> FailureRecord:
        try:
            return self._records[failure_id]
        except KeyError:
            raise KeyError(f"no failure record with id {failure_id!r}") from None

    async def remove(self, failure_ids: Iterable[str]) -> int:
        return sum(self._records.pop(fid, None) is not None for fid in failure_ids)

    def clear(self) -> int:
        """Remove every record now; return how many there were (synchronous ``purge``)."""
        count = len(self._records)
        self._records.clear()
        return count

    async def purge(self) -> int:
        return self.clear()

    async def count(self) -> int:
        return len(self._records)

    def __len__(self) -> int:
        return len(self._records)
