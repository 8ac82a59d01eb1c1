"""Explain by message id: what a running dispatcher did with a recent message, and why.

A dispatcher keeps a ``RecentOutcomes`` ring of the last N messages it
routed (the ``recent_outcomes`` config key, default 10,000; 0 turns it off).
Recording costs a dict insertion per message: the ring keeps references to
the message and to the ``DispatchOutcome`` the core returned anyway, and
builds the readable ``RecordedOutcome`` (destinations, failure reasons,
drop) only when someone asks.

Tracing every message would cost far more, so the full trace is made on
request: ``explain_recorded`` runs the recorded message again through a
harness built from the dispatcher's own config, traced. The harness reads
the live routing store through a ``ShadowStore`` (it never writes to it), so
return routes and user groups are looked up as they are *now*; a router
that keeps state can decide differently than it did at the time, and the
result says so, next to what actually happened::

    live = await explain_recorded(config, recent.get("msg-1"), live_store=store)
    print(live)            # what happened, the re-run's steps, whether they agree

None of this imports Ray; ``DispatcherActor.explain_message`` and
``Deployment.explain`` use it on Ray.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ray_dispatch.config import DispatcherConfig, load_config
from ray_dispatch.dispatcher import DispatchOutcome
from ray_dispatch.errors import ConfigError
from ray_dispatch.failures import Direction, FailureRecord
from ray_dispatch.message import Message
from ray_dispatch.store import JSONValue, MemoryStore, RoutingStore
from ray_dispatch.testing import RouterHarness

from ._render import html_table, text_table
from .explain import ConfigSource, Explanation, Step, describe_message

CONFIG_KEY = "recent_outcomes"
"""The top-level config key: how many recent messages each dispatcher remembers for ``explain``."""

DEFAULT_RECENT_OUTCOMES = 10_000


def recent_outcomes_size(config: ConfigSource) -> int:
    """The ``recent_outcomes`` value of ``config`` (default 10,000; 0 turns explain-by-id off).

    Raises:
        ConfigError: the value is not a whole number >= 0 (names the key and the file).
    """
    loaded = load_config(config)
    value = loaded.raw.get(CONFIG_KEY, DEFAULT_RECENT_OUTCOMES)
    if type(value) is not int or value < 0:
        where = f"{loaded.source}: " if loaded.source else ""
        raise ConfigError(
            f"{where}{CONFIG_KEY}: must be a whole number of messages >= 0 (0 turns explain-by-id off), got {value!r}"
        )
    return value


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


_Entry = tuple[Direction, str, Any, DispatchOutcome, float]
"""(direction, endpoint, message, outcome, seen at)."""


class RecentOutcomes:
    """The outcomes of the last ``capacity`` messages a dispatcher routed, found by message id.

    ``add`` is on the hot path, so it only appends references (the message
    and the ``DispatchOutcome`` the core returned anyway, no copies, no
    formatting) to a bounded deque that drops the oldest entry by itself.
    Finding a message scans the deque from the newest entry (a few
    milliseconds for 10,000), which happens only when someone asks; a message
    id seen twice (a replayed failure) answers with its latest outcome.

    Args:
        capacity: how many messages to remember; 0 remembers none.
        clock: wall-clock seconds (injectable for tests).
    """

    def __init__(self, capacity: int = DEFAULT_RECENT_OUTCOMES, clock: Any = time.time) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0 (got {capacity})")
        self.capacity = capacity
        self._clock = clock
        self._entries: deque[_Entry] = deque(maxlen=capacity)
        self._append = self._entries.append
        self._late: dict[str, list[FailureRecord]] = {}

    def add(self, direction: Direction, endpoint: str, message: Any, outcome: DispatchOutcome) -> None:
        """Remember what became of ``message``, which arrived on ``endpoint`` (forgets the oldest beyond capacity)."""
        self._append((direction, endpoint, message, outcome, self._clock()))

    def add_late_failure(self, direction: Direction, message: Any, record: FailureRecord) -> None:
        """Note that ``message``, a copy the dispatcher routed and handed over, could not be delivered (``record``).

        Kept for the latest ``capacity`` message ids that had such failures.
        """
        key = message_id_of(direction, message)
        if key is None or not self.capacity:
            return
        self._late.setdefault(key, []).append(record)
        if len(self._late) > self.capacity:
            del self._late[next(iter(self._late))]

    def get(self, message_id: str) -> RecordedOutcome | None:
        """What became of the message (or event) with this id, if it is among the remembered ones."""
        for direction, endpoint, message, outcome, seen_at in reversed(self._entries):
            if message_id_of(direction, message) == message_id:
                delivered = [d.message for d in outcome.deliveries]  # this dispatch's copies, not a replay's
                late = [r for r in self._late.get(message_id, []) if any(r.message is m for m in delivered)]
                return RecordedOutcome.from_outcome(message_id, direction, endpoint, message, outcome, seen_at, late)
        return None

    def ids(self) -> list[str]:
        """The remembered message ids, oldest first."""
        return [i for i in (message_id_of(e[0], e[2]) for e in self._entries) if i is not None]

    def __len__(self) -> int:
        return len(self._entries)

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

    @classmethod
    def from_outcome(
        cls,
        message_id: str,
        direction: Direction,
        endpoint: str,
        message: Any,
        outcome: DispatchOutcome,
        seen_at: float,
        late_failures: list[FailureRecord] | tuple[()] = (),
    ) -> RecordedOutcome:
        """Build the record from what the dispatcher kept (and failures that came after delivery)."""
        failures = [
            {"failure_id": f.failure_id, "stage": f.stage, "reason": f.reason, "destination": f.destination}
            for f in [*outcome.failures, *late_failures]
        ]
        trace = None if outcome.trace is None else [Step(getattr(s, "kind", "router"), str(s)) for s in outcome.trace]
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


@dataclass
class LiveExplanation:
    """Explain-by-id: what a running dispatcher did with a message, and a traced re-run of it.

    Attributes:
        recorded: what actually happened (from the dispatcher's ring of recent outcomes).
        rerun: the message run again through a harness built from the dispatcher's config.
        agrees: whether the re-run routed it as the dispatcher did (``RecordedOutcome.route``).
        state_reads: routing-store keys the re-run read from the live store.
        notes: caveats, in words (state-dependent decisions, delivery failures the harness cannot see).
        deployment: the deployment's name, if known.
        dispatcher: the dispatcher replica that routed it, if known.
    """

    recorded: RecordedOutcome
    rerun: Explanation
    agrees: bool
    state_reads: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    deployment: str | None = None
    dispatcher: int | None = None

    @property
    def where(self) -> str:
        """``deployment 'x' (dispatcher 0)``, or ``the dispatcher``."""
        if self.deployment is None:
            return "the dispatcher"
        index = f" (dispatcher {self.dispatcher})" if self.dispatcher is not None else ""
        return f"deployment {self.deployment!r}{index}"

    def to_text(self) -> str:
        """Both sides as text: what happened, the live trace if any, the re-run's steps, the verdict."""
        rec = self.recorded
        out = [
            describe_message(rec.message)
            if rec.direction == "event"
            else f"{rec.direction} {describe_message(rec.message)}",
            f"arrived on {rec.endpoint!r} at {_iso(rec.seen_at)}, routed by {self.where}",
            f"what happened: {rec.result}",
        ]
        if rec.trace is not None:
            out += ["", "trace recorded live:", _steps_table(rec.trace)]
        out += ["", "re-run now with the dispatcher's config:", _steps_table(self.rerun.steps)]
        out.append(f"re-run result: {self.rerun.result}")
        out += ["", self.verdict]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    @property
    def verdict(self) -> str:
        """One line: whether the re-run agrees with what happened."""
        if self.agrees:
            return "the re-run routes it as the dispatcher did."
        return (
            f"the re-run routes it DIFFERENTLY: live {_route_text(self.recorded.route)},"
            f" re-run {_route_text(_rerun_route(self.rerun))}."
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: ``recorded``, ``rerun``, ``agrees``, ``verdict``, ``notes``..."""
        return {
            "deployment": self.deployment,
            "dispatcher": self.dispatcher,
            "message_id": self.recorded.message_id,
            "recorded": self.recorded.to_dict(),
            "rerun": self.rerun.to_dict(),
            "agrees": self.agrees,
            "verdict": self.verdict,
            "state_reads": list(self.state_reads),
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"<LiveExplanation {self.recorded.message_id}: {self.recorded.result}; agrees={self.agrees}>"

    def _repr_html_(self) -> str:
        rec = self.recorded
        rows: list[tuple[object, ...]] = [
            ("live", "arrived", f"{rec.direction} on {rec.endpoint!r} at {_iso(rec.seen_at)}")
        ]
        rows += [("live", s.kind, s.text) for s in rec.trace or []]
        rows.append(("live", "result", rec.result))
        rows += [("re-run", s.kind, s.text) for s in self.rerun.steps]
        rows.append(("re-run", "result", self.rerun.result))
        rows += [("", "note", n) for n in self.notes]
        caption = f"{describe_message(rec.message)} — {self.verdict}"
        return html_table(("side", "step", "what happened"), rows, caption=caption)


async def explain_recorded(
    config: DispatcherConfig | Mapping[str, Any],
    recorded: RecordedOutcome,
    *,
    live_store: RoutingStore | None = None,
    deployment: str | None = None,
    dispatcher: int | None = None,
) -> LiveExplanation:
    """Run a recorded message again, traced, through a harness built from ``config``; compare.

    Args:
        config: the dispatcher's config (the same one it routes with).
        recorded: what the dispatcher did (``RecentOutcomes.get``).
        live_store: the dispatcher's routing store, read (never written) by the
            re-run; None runs it against an empty in-memory store.
        deployment, dispatcher: shown in the result.

    Raises:
        ConfigError: the config is invalid (it is not, if a dispatcher runs with it).
    """
    shadow = ShadowStore(live_store if live_store is not None else MemoryStore())
    payload = arrived_copy(recorded.message)
    async with RouterHarness(config, store=shadow) as harness:
        outcome = await harness.dispatcher.dispatch(recorded.direction, payload, recorded.endpoint, trace=True)
    rerun = Explanation.from_outcome(outcome, payload)
    agrees = _rerun_route(rerun) == recorded.route
    return LiveExplanation(
        recorded=recorded,
        rerun=rerun,
        agrees=agrees,
        state_reads=list(shadow.live_reads),
        notes=_notes(recorded, rerun, shadow.live_reads, agrees, live_store is not None),
        deployment=deployment,
        dispatcher=dispatcher,
    )


def _notes(recorded: RecordedOutcome, rerun: Explanation, reads: list[str], agrees: bool, live: bool) -> list[str]:
    notes = [
        "the re-run is a fresh harness with this dispatcher's config; it delivers nothing and"
        + (" reads the live routing store without writing to it." if live else " starts with an empty routing store.")
    ]
    if reads:
        shown = ", ".join(repr(k) for k in reads[:3]) + (", ..." if len(reads) > 3 else "")
        notes.append(
            f"the re-run read {len(reads)} routing-store key(s) as they are now ({shown}); a router that keeps"
            " state (user groups, round robins, return routes) may have decided differently when the message"
            " was routed."
        )
    elif not agrees:
        notes.append(
            "routers that keep state (user groups, round robins, return routes) decide from the store as it is"
            " now, and the config's middleware runs again: either can explain the difference."
        )
    if any(f["stage"] == "deliver" for f in recorded.failures):
        notes.append("delivery failures happen after routing and cannot show in the re-run.")
    return notes


def _rerun_route(rerun: Explanation) -> tuple[str, ...]:
    route = sorted(rerun.destinations)
    if rerun.failures:
        route.append("(failed)")
    if rerun.dropped is not None:
        route.append("(dropped)")
    return tuple(route)


def _route_text(route: tuple[str, ...]) -> str:
    return ", ".join(route) or "nowhere"


def _steps_table(steps: list[Step]) -> str:
    return text_table(("#", "step", "what happened"), [(i, s.kind, s.text) for i, s in enumerate(steps, 1)])


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = [
    "CONFIG_KEY",
    "DEFAULT_RECENT_OUTCOMES",
    "LiveExplanation",
    "RecentOutcomes",
    "RecordedOutcome",
    "ShadowStore",
    "arrived_copy",
    "explain_recorded",
    "message_id_of",
    "recent_outcomes_size",
]
