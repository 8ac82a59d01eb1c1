"""Recent outcomes: what a dispatcher did with its last N messages, found by message id.

A dispatcher keeps a ``RecentOutcomes`` ring of the last N messages it
routed (the ``recent_outcomes`` config key, default 10,000; 0 turns it off).
It records per batch: one ``BatchRecord`` holds references to the batch's
messages and to the ``DispatchOutcome``s the core returned anyway (one deque
append per batch). Deliveries refused after hand-over reach the same
outcomes when the core settles them (``Dispatcher.settle``); then
``BatchRecord.compact`` keeps only what each outcome says (its destinations,
shared between messages routed alike, and the rare failure, drop or trace)
and lets the outcomes, their deliveries and receipts go. The readable
``RecordedOutcome`` is built only when someone asks.
``ray_dispatch.tools.recent`` re-runs a recorded message, traced, to explain it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ray_dispatch.core.dispatcher import DispatchOutcome
from ray_dispatch.core.message import Message
from ray_dispatch.core.stores.failures import Direction, FailureRecord
from ray_dispatch.core.stores.routing import JSONValue, MemoryStore, RoutingStore


@dataclass(frozen=True)
class Step:
    """One step of an explanation.

    Attributes:
        kind: ``receive`` (the message arrived), ``middleware``, ``router``,
            ``return_route``, ``publish``, ``drop`` or ``failure``
            (see ``ray_dispatch.core.dispatcher.TraceStep``).
        text: what happened, in words.
    """

    kind: str
    text: str


CONFIG_KEY = "recent_outcomes"
"""The top-level config key: how many recent messages each dispatcher remembers for ``explain``."""

DEFAULT_RECENT_OUTCOMES = 10_000


def message_id_of(direction: str, message: Any) -> str | None:
    """The id a message is remembered by: ``event_id`` for events, else ``message_id`` (None if it has none)."""
    if isinstance(message, Message):
        data: Any = message.__dict__
    elif type(message) is dict:
        data = message
    else:
        return None
    found = data.get("event_id" if direction == "event" else "message_id")
    return found if type(found) is str else None


class BatchRecord:
    """What became of one batch of messages that arrived on one endpoint (see the module docstring).

    Args:
        directions: the messages' direction, one for all or one each.
        endpoint: where they arrived.
        messages: the messages as routed (payload dicts if invalid), in order.
        outcomes: the core's outcome for each message, in order.
        seen_at: when they were routed (seconds since the epoch).
    """

    __slots__ = (
        "directions",
        "dropped",
        "endpoint",
        "failures",
        "generation",
        "ids",
        "messages",
        "outcomes",
        "routes",
        "seen_at",
        "traces",
    )

    def __init__(
        self,
        directions: Direction | list[Direction],
        endpoint: str,
        messages: Sequence[Any],
        outcomes: list[DispatchOutcome],
        seen_at: float,
    ) -> None:
        self.directions = directions
        self.endpoint = endpoint
        self.messages = messages
        self.ids: list[str] | None = None  # known without looking at the messages (a batch routed whole)
        self.outcomes: list[DispatchOutcome] | None = outcomes
        self.seen_at = seen_at
        self.routes: list[tuple[str, ...]] = []
        self.failures: dict[int, list[dict[str, Any]]] = {}
        self.dropped: dict[int, str] = {}
        self.traces: dict[int, list[Step]] = {}
        # A batch is routed wholly under one config generation (the switch waits between batches).
        self.generation: int | None = outcomes[0].generation if outcomes else None

    def __len__(self) -> int:
        return len(self.messages)

    def message_id(self, index: int) -> str | None:
        """The id of message ``index`` (see ``message_id_of``)."""
        if self.ids is not None:
            return self.ids[index]
        return message_id_of(self.direction(index), self.messages[index])

    def direction(self, index: int) -> Direction:
        """The direction of message ``index``."""
        directions = self.directions
        return directions if isinstance(directions, str) else directions[index]

    def compact(self) -> None:
        """Keep what the (settled) outcomes say and let them go; routes alike share one tuple. Once."""
        outcomes = self.outcomes
        if outcomes is None:
            return
        self.outcomes = None
        shared: dict[tuple[tuple[str, str], ...], tuple[str, ...]] = {}
        routes = self.routes
        for index, outcome in enumerate(outcomes):
            key = tuple((d.direction, d.endpoint) for d in outcome.deliveries)
            route = shared.get(key)
            if route is None:
                route = shared[key] = tuple(f"{d}:{e}" for d, e in key)
            routes.append(route)
            if outcome.failures:
                self.failures[index] = _failure_summaries(outcome)
            if outcome.dropped is not None:
                self.dropped[index] = outcome.dropped
            if outcome.trace is not None:
                self.traces[index] = _steps(outcome)

    def add_failures(self, found: Mapping[int, FailureRecord]) -> None:
        """Add the failure records of a batch routed whole, by index (``Dispatcher.settle_whole``)."""
        for index, record in found.items():
            self.failures.setdefault(index, []).append(_summary(record))

    def recorded(self, index: int, message_id: str) -> RecordedOutcome:
        """The readable record of message ``index``."""
        direction, message = self.direction(index), self.messages[index]
        if self.outcomes is not None:
            return RecordedOutcome.from_outcome(
                message_id, direction, self.endpoint, message, self.outcomes[index], self.seen_at
            )
        return RecordedOutcome(
            message_id=message_id,
            direction=direction,
            endpoint=self.endpoint,
            seen_at=self.seen_at,
            destinations=list(self.routes[index]),
            failures=[dict(f) for f in self.failures.get(index, [])],
            dropped=self.dropped.get(index),
            trace=self.traces.get(index),
            message=arrived_copy(message),
            generation=self.generation,
        )


def _failure_summaries(outcome: DispatchOutcome) -> list[dict[str, Any]]:
    return [_summary(f) for f in outcome.failures]


def _summary(record: FailureRecord) -> dict[str, Any]:
    return {
        "failure_id": record.failure_id,
        "stage": record.stage,
        "reason": record.reason,
        "destination": record.destination,
    }


def _steps(outcome: DispatchOutcome) -> list[Step]:
    return [Step(getattr(s, "kind", "router"), str(s)) for s in outcome.trace or []]


class RecentOutcomes:
    """The outcomes of the last ``capacity`` messages a dispatcher routed, found by message id.

    ``add_batch`` is on the hot path, so it only appends one ``BatchRecord``
    (references to the messages and outcomes, no copies, no formatting) per
    batch, and forgets the oldest records beyond ``capacity`` messages (the
    oldest record kept may be partly forgotten). Finding a message scans
    from the newest (a few milliseconds for 10,000), which happens only when
    someone asks; a message id seen twice (a replayed failure) answers with
    its latest outcome.

    Args:
        capacity: how many messages to remember; 0 remembers none.
        clock: wall-clock seconds (injectable for tests).
    """

    def __init__(self, capacity: int = DEFAULT_RECENT_OUTCOMES, clock: Any = time.time) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0 (got {capacity})")
        self.capacity = capacity
        self._clock = clock
        self._records: deque[BatchRecord] = deque()
        self._held = 0  # messages in _records
        self._skip = 0  # leading messages of the oldest record that are forgotten

    def add(self, direction: Direction, endpoint: str, message: Any, outcome: DispatchOutcome) -> None:
        """Remember what became of ``message``, which arrived on ``endpoint`` (forgets the oldest beyond capacity).

        ``outcome`` may still be unsettled: the delivery failures ``Dispatcher.settle``
        adds to it later show in ``get``.
        """
        self.add_batch(direction, endpoint, [message], [outcome])

    def add_batch(
        self,
        directions: Direction | list[Direction],
        endpoint: str,
        messages: list[Any],
        outcomes: list[DispatchOutcome],
    ) -> BatchRecord | None:
        """Remember a batch that arrived on ``endpoint``: its messages and their (maybe unsettled) outcomes.

        Returns the record (call its ``compact`` once the outcomes are settled),
        or None when nothing is remembered (capacity 0, or an empty batch).
        """
        if not self.capacity or not messages:
            return None
        record = BatchRecord(directions, endpoint, messages, outcomes, self._clock())
        self._keep(record)
        return record

    def add_whole(
        self,
        direction: Direction,
        endpoint: str,
        messages: Sequence[Any],
        ids: list[str],
        destinations: list[str],
        generation: int,
    ) -> BatchRecord | None:
        """Remember a run forwarded as it arrived, each message to its destination (``Dispatcher.route_whole``).

        ``messages`` may build each message only when asked (a record keeps
        the batch's bytes, not its messages); ``ids`` are their ids and
        ``destinations`` the endpoints they went to (in ``direction``), in
        order. Failures found when it settles go in the record's ``failures``.
        Returns the record, or None when nothing is remembered.
        """
        if not self.capacity or not ids:
            return None
        record = BatchRecord(direction, endpoint, messages, [], self._clock())
        record.outcomes = None
        record.ids = ids
        shared = {name: (f"{direction}:{name}",) for name in set(destinations)}
        record.routes = [shared[name] for name in destinations]
        record.generation = generation
        self._keep(record)
        return record

    def _keep(self, record: BatchRecord) -> None:
        """Append ``record``; forget the oldest messages beyond capacity."""
        self._records.append(record)
        self._held += len(record)
        excess = self._held - self._skip - self.capacity
        while excess > 0:
            oldest = len(self._records[0]) - self._skip
            if excess >= oldest:
                self._records.popleft()
                self._held -= oldest + self._skip
                self._skip = 0
                excess -= oldest
            else:
                self._skip += excess
                excess = 0

    def _newest_first(self) -> Any:
        """(record, index) of every remembered message, newest first."""
        records = self._records
        for position in range(len(records) - 1, -1, -1):
            record = records[position]
            first = self._skip if position == 0 else 0
            for index in range(len(record) - 1, first - 1, -1):
                yield record, index

    def get(self, message_id: str) -> RecordedOutcome | None:
        """What became of the message (or event) with this id, if it is among the remembered ones."""
        for record, index in self._newest_first():
            if record.message_id(index) == message_id:
                return record.recorded(index, message_id)
        return None

    def recorded(self, limit: int | None = None) -> list[RecordedOutcome]:
        """The last ``limit`` (default all) remembered messages that have an id, oldest first, as records."""
        found: list[RecordedOutcome] = []
        for record, index in self._newest_first():
            if limit is not None and len(found) >= limit:
                break
            message_id = record.message_id(index)
            if message_id is not None:
                found.append(record.recorded(index, message_id))
        found.reverse()
        return found

    def ids(self) -> list[str]:
        """The remembered message ids, oldest first."""
        found = [record.message_id(index) for record, index in self._newest_first()]
        return [i for i in reversed(found) if i is not None]

    def __len__(self) -> int:
        return self._held - self._skip

    def __contains__(self, message_id: object) -> bool:
        return isinstance(message_id, str) and self.get(message_id) is not None

    def not_found(self, message_id: str, where: str = "this dispatcher") -> KeyError:
        """The ``KeyError`` to raise for an id that is not remembered, saying why it may be missing."""
        if not self.capacity:
            return KeyError(f"{where} keeps no recent messages ({CONFIG_KEY}: 0); set {CONFIG_KEY} to explain by id")
        return KeyError(
            f"message id {message_id!r} is not among the last {len(self):,} messages {where} routed"
            f" (it remembers up to {CONFIG_KEY}: {self.capacity:,})"
        )


@dataclass
class RecordedOutcome:
    """What a live dispatcher actually did with one message (picklable, JSON-friendly via ``to_dict``).

    Attributes:
        message_id: its ``message_id`` (``event_id`` for events).
        direction: ``inbound``, ``event`` or ``outbound``.
        endpoint: the endpoint it arrived on.
        seen_at: when it was routed (seconds since the epoch).
        destinations: where the router sent copies, as ``"direction:endpoint"``,
            including copies whose delivery then failed (see ``failures``).
        failures: per failure record: ``failure_id``, ``stage``, ``reason``, ``destination``.
        dropped: the reason, if it was dropped on purpose.
        trace: the live trace, if the message was sent with tracing on (``send(trace=True)``).
        message: the message as routed (a payload dict if it was invalid).
        generation: the config generation that routed it.
    """

    message_id: str
    direction: Direction
    endpoint: str
    seen_at: float
    destinations: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    dropped: str | None = None
    trace: list[Step] | None = None
    message: Any = None
    generation: int | None = None

    @classmethod
    def from_outcome(
        cls,
        message_id: str,
        direction: Direction,
        endpoint: str,
        message: Any,
        outcome: DispatchOutcome,
        seen_at: float,
    ) -> RecordedOutcome:
        """Build the record from what the dispatcher kept (with the delivery failures settling found)."""
        failures = _failure_summaries(outcome)
        trace = None if outcome.trace is None else _steps(outcome)
        return cls(
            message_id=message_id,
            direction=direction,
            endpoint=endpoint,
            seen_at=seen_at,
            destinations=[f"{d.direction}:{d.endpoint}" for d in outcome.deliveries],
            failures=failures,
            dropped=outcome.dropped,
            trace=trace,
            message=arrived_copy(message),
            generation=outcome.generation,
        )

    @property
    def delivered(self) -> list[str]:
        """Destinations whose delivery did not fail afterwards."""
        failed = {f["destination"] for f in self.failures if f["stage"] == "deliver"}
        return [d for d in self.destinations if d.partition(":")[2] not in failed]

    @property
    def route(self) -> tuple[str, ...]:
        """Where the dispatcher routed it, comparable with a re-run: sorted destinations, failure before
        delivery as ``"(failed)"``, a drop as ``"(dropped)"`` (delivery failures are not routing decisions)."""
        route = sorted(self.destinations)
        if any(f["stage"] != "deliver" for f in self.failures):
            route.append("(failed)")
        if self.dropped is not None:
            route.append("(dropped)")
        return tuple(route)

    @property
    def result(self) -> str:
        """One line: where it went, or why it went nowhere."""
        parts = []
        if self.delivered:
            parts.append("delivered to " + ", ".join(self.delivered))
        if self.dropped is not None:
            parts.append(f"dropped: {self.dropped}")
        for failure in self.failures:
            where = f" (to {failure['destination']!r})" if failure["destination"] else ""
            parts.append(f"failed at {failure['stage']}{where}: {failure['reason']} [failure {failure['failure_id']}]")
        return "; ".join(parts) or "went nowhere"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the record."""
        message = self.message.to_dict() if isinstance(self.message, Message) else self.message
        return {
            "message_id": self.message_id,
            "direction": self.direction,
            "endpoint": self.endpoint,
            "seen_at": _iso(self.seen_at),
            "destinations": list(self.destinations),
            "delivered": self.delivered,
            "failures": [dict(f) for f in self.failures],
            "dropped": self.dropped,
            "result": self.result,
            "trace": None if self.trace is None else [{"kind": s.kind, "text": s.text} for s in self.trace],
            "message": message,
            "generation": self.generation,
        }


def arrived_copy(message: Any) -> Any:
    """An independent copy of ``message`` as it arrived: without the hop count the dispatcher added."""
    if isinstance(message, Message):
        copy = message.copy()
        copy.routing_metadata.pop("hops", None)
        return copy
    return message


class ShadowStore(RoutingStore):
    """A routing store that reads through to a live one and keeps its own writes.

    Lets a re-run see the live state (return routes, user groups) without
    changing it: ``set``, ``delete`` and ``incr`` only affect this store, and
    a key written or deleted here shadows the live one. ``live_reads`` lists
    the keys that were found in the live store.

    Args:
        live: the dispatcher's routing store (never written to).
    """

    _DELETED = object()

    def __init__(self, live: RoutingStore) -> None:
        self.live = live
        self.local = MemoryStore()
        self._shadowed: set[str] = set()
        self.live_reads: list[str] = []

    async def get(self, key: str, default: JSONValue = None) -> JSONValue:
        """The local value if this store wrote or deleted ``key``, else the live one."""
        if key in self._shadowed:
            return await self.local.get(key, default)
        missing = object()
        value = await self.live.get(key, missing)
        if value is missing:
            return default
        self.live_reads.append(key)
        return value

    async def set(self, key: str, value: JSONValue, ttl: float | None = None) -> None:
        """Store ``value`` here only."""
        self._shadowed.add(key)
        await self.local.set(key, value, ttl)

    async def delete(self, key: str) -> bool:
        """Hide ``key`` from later reads here; return whether it was visible."""
        existed = await self.get(key, self._DELETED) is not self._DELETED
        self._shadowed.add(key)
        await self.local.delete(key)
        return existed

    async def incr(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to the value as seen here (the live value the first time), stored here only.

        Raises:
            TypeError: the value, or ``amount``, is not an integer.
        """
        if key not in self._shadowed:
            current = await self.get(key)
            self._shadowed.add(key)
            if current is not None:
                await self.local.set(key, current)
        return await self.local.incr(key, amount)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
