"""Failure records: what happens to a message that cannot be routed or delivered.

Nothing is silently dropped. A message the dispatcher cannot route, or an
endpoint cannot take, becomes a ``FailureRecord`` kept in a ``FailureStore``
where it can be listed, inspected, replayed and purged.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ray_dispatch.message import Message, utcnow

Direction = Literal["inbound", "event", "outbound"]
DIRECTIONS: tuple[Direction, ...] = ("inbound", "event", "outbound")


@dataclass
class FailureRecord:
    """One message that could not be routed or delivered.

    Attributes:
        reason: human-readable cause, e.g. ``"no route_mappings entry for transport 'sms'"``.
        direction: ``inbound`` (transport to app), ``event`` or ``outbound``.
        endpoint: the endpoint the message arrived on.
        destination: the endpoint it was being published or delivered to, if it got that far.
        message: the message (or, for unparseable input, the raw payload).
        error_type: the exception class name behind the failure, if any.
        stage: where it failed: ``validate``, ``middleware``, ``route``, ``publish`` or ``deliver``.
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

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (the message as its Vumi payload)."""
        message = self.message.to_dict() if isinstance(self.message, Message) else self.message
        return {
            "failure_id": self.failure_id,
            "reason": self.reason,
            "direction": self.direction,
            "endpoint": self.endpoint,
            "destination": self.destination,
            "stage": self.stage,
            "error_type": self.error_type,
            "attempts": self.attempts,
            "timestamp": self.timestamp.isoformat(sep=" "),
            "message": message,
        }


class FailureStore:
    """In-memory, bounded store of failure records (oldest dropped past ``max_records``).

    ``dropped`` counts records evicted by the bound, so even that is visible.
    """

    def __init__(self, max_records: int = 100_000) -> None:
        self.max_records = max_records
        self._records: OrderedDict[str, FailureRecord] = OrderedDict()
        self.dropped = 0

    def add(self, record: FailureRecord) -> FailureRecord:
        """Keep ``record``; return it."""
        self._records[record.failure_id] = record
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)
            self.dropped += 1
        return record

    def list(self, direction: Direction | None = None, endpoint: str | None = None) -> list[FailureRecord]:
        """Return records, oldest first, optionally filtered by direction and endpoint."""
        return [
            r
            for r in self._records.values()
            if (direction is None or r.direction == direction) and (endpoint is None or r.endpoint == endpoint)
        ]

    def get(self, failure_id: str) -> FailureRecord:
        """Return one record.

        Raises:
            KeyError: no record has that id.
        """
        try:
            return self._records[failure_id]
        except KeyError:
            raise KeyError(f"no failure record with id {failure_id!r}") from None

    def remove(self, failure_ids: Iterable[str]) -> int:
        """Remove the given records; return how many existed."""
        return sum(self._records.pop(fid, None) is not None for fid in failure_ids)

    def purge(self) -> int:
        """Remove every record; return how many there were."""
        count = len(self._records)
        self._records.clear()
        return count

    def __len__(self) -> int:
        return len(self._records)
