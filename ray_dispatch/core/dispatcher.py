"""The dispatcher core: router + middleware + return routes + failure records.

``Dispatcher`` does everything between "a message arrived on endpoint X" and
"deliver this copy to endpoint Y", and nothing about how messages travel:
delivery goes through an ``Outbox`` (lists in the notebook harness, batched
actor calls on Ray). It imports no Ray.

For each message: validate it, check the source endpoint and the hop limit,
run consume middleware, ask the router (which calls ``publish_*``), apply the
return-route memory for events, then for each publish: check the destination,
copy, run publish middleware, hand to the outbox, which returns a receipt
(``ray_dispatch.core.receipts``). ``settle`` then awaits the receipts: a
confirmed copy counts as published, a refused one becomes a failure record
at stage ``deliver``. ``dispatch_*`` do both; ``route`` only hands over, for a
caller that routes many messages before it waits (the Ray shell settles a
whole batch at once). Anything that goes wrong becomes a ``FailureRecord``;
nothing raises out of ``dispatch_*``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ray_dispatch.core.config import DispatcherConfig, load_config, resolve_class
from ray_dispatch.core.errors import (
    ConfigError,
    DropMessage,
    InvalidMessage,
    NoRoute,
    RoutingLoop,
    StoreUnavailable,
    UnknownEndpoint,
)
from ray_dispatch.core.message import Message, TransportEvent, TransportUserMessage, clone_json
from ray_dispatch.core.middleware import BaseMiddleware, MiddlewareStack
from ray_dispatch.core.receipts import CONFIRMED, BatchReceipt, Receipt, Slot
from ray_dispatch.core.router import BaseDispatchRouter
from ray_dispatch.core.stores.failures import Direction, FailureRecord, FailureStore
from ray_dispatch.core.stores.routing import RoutingStore

logger = logging.getLogger(__name__)

RETURN_ROUTE_PREFIX = "return_route:"
_KIND: dict[str, type[Message]] = {
    "inbound": TransportUserMessage,
    "outbound": TransportUserMessage,
    "event": TransportEvent,
}
_PUBLISH_METHOD: dict[str, str] = {
    "inbound": "publish_inbound_message",
    "outbound": "publish_outbound_message",
    "event": "publish_inbound_event",
}


class Outbox(Protocol):
    """Where the dispatcher hands messages it has routed."""

    async def deliver(self, direction: Direction, endpoint: str, message: Message) -> Receipt | None:
        """Hand ``message`` over for ``endpoint``; return its receipt (None: confirmed already).

        The receipt settles when the destination confirmed the message, or
        raises why it did not (see ``ray_dispatch.core.receipts``).

        Raises:
            Exception: the message cannot be taken at all (recorded at stage ``deliver``).
        """


class BatchingOutbox(Outbox, Protocol):
    """An outbox that collects deliveries into destination batches until ``flush`` (the Ray outbox).

    Its receipts are ``Slot``s of ``BatchReceipt``s; the core calls ``flush``
    (through ``Dispatcher.flush``) after routing a batch, and ``settle`` calls
    it before waiting on a batch that was not handed over yet.
    """

    async def flush(self) -> None:
        """Hand every collected batch over to its destination."""


class TraceStep(str):
    """One line of a decision trace: a ``str`` that also says what kind of step it is.

    ``DispatchOutcome.trace`` holds these. Being a ``str``, a step prints and
    compares like a plain trace line; ``kind`` adds the structure tools need
    (``ray_dispatch.tools.explain`` renders it as a table column):

    - ``middleware``: a middleware hook the message passed (consume or publish);
    - ``router``: a decision the router reported through ``explain``, or its
      refusal when the return-route memory then routed the event anyway;
    - ``return_route``: an event was sent back to the application that sent its message;
    - ``publish``: the message was delivered to an endpoint;
    - ``drop``: the message, or its copy for one endpoint, was dropped on purpose;
    - ``failure``: the message, or its copy for one endpoint, became a failure record.
    """

    kind: str

    def __new__(cls, text: str, kind: str = "router") -> TraceStep:
        step = super().__new__(cls, text)
        step.kind = kind
        return step


TRACE_KINDS = ("middleware", "router", "return_route", "publish", "drop", "failure")


@dataclass
class Delivery:
    """One message handed to the outbox, with the receipt the outbox returned.

    Attributes:
        direction: ``inbound``, ``event`` or ``outbound``.
        endpoint: the destination.
        message: the copy handed over.
        receipt: settles when the destination confirmed the copy (may be shared
            by the deliveries of one destination batch).
        failure: the failure record, once ``Dispatcher.settle`` found the receipt refused.
    """

    direction: Direction
    endpoint: str
    message: Message
    receipt: Receipt = CONFIRMED
    failure: FailureRecord | None = None


@dataclass
class DispatchOutcome:
    """What became of one dispatched message: deliveries, failures, a drop, a trace.

    ``trace`` is None unless the message was dispatched with ``trace=True``;
    then it lists ``TraceStep`` lines (each a ``str`` with a ``kind``) in order.
    ``settled`` turns True when ``Dispatcher.settle`` takes the outcome; from
    then on, ``failures`` also holds the deliveries that were refused after
    hand-over (stage ``deliver``), and each such ``Delivery`` has its ``failure``.
    ``generation`` is the config generation that routed it (``Dispatcher.generation``).
    """

    direction: Direction
    endpoint: str
    deliveries: list[Delivery] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)
    dropped: str | None = None
    trace: list[str] | None = None
    settled: bool = False
    generation: int | None = None

    @property
    def destinations(self) -> list[str]:
        """The endpoints the message was delivered to, in order."""
        return [d.endpoint for d in self.deliveries]


@dataclass
class ForwardedRun:
    """A run of messages routed to be forwarded as they arrived (``Dispatcher.route_whole``, ``route_grouped``).

    Attributes:
        direction: the messages' direction (they are published in the one they arrived in).
        endpoint: where they arrived.
        destinations: the endpoint each message goes to, in order.
        generation: the config generation that routed them.
    """

    direction: Direction
    endpoint: str
    destinations: list[str]
    generation: int

    @property
    def count(self) -> int:
        """How many messages."""
        return len(self.destinations)


@dataclass
class _Context:
    direction: Direction
    endpoint: str
    trace: list[str] | None
    publishes: list[tuple[Direction, str, Message]] = field(default_factory=list)
    dropped: str | None = None
    closed: bool = False


def _independent(publishes: list[tuple[Direction, str, Message]]) -> list[tuple[Direction, str, Message]]:
    """Give every publish its own message: an object published more than once is copied for the earlier ones."""
    if len(publishes) < 2:
        return publishes
    seen: set[int] = set()
    result = []
    for direction, endpoint, msg in reversed(publishes):
        if id(msg) in seen:
            msg = msg.copy()
        seen.add(id(msg))
        result.append((direction, endpoint, msg))
    result.reverse()
    return result


_current: ContextVar[_Context | None] = ContextVar("ray_dispatch_context", default=None)


def _reason(exc: BaseException) -> str:
    """A failure record's reason for an error raised while routing: our own errors speak for themselves."""
    if isinstance(exc, (NoRoute, InvalidMessage, UnknownEndpoint, RoutingLoop)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Decision:
    """What the router did with one message, to be done again with messages it routes alike (batch routing)."""

    publishes: list[tuple[Direction, str]]
    changes: dict[str, Any]
    dropped: str | None
    error: BaseException | None
    drop_raised: bool = False  # DropMessage raised (not ``drop`` called): an event's return route does not win


def _nested(msg: Message) -> list[Any]:
    """The parts of ``msg`` a router could change in place: its metadata dicts and its unknown fields."""
    fields = msg.__dict__
    return [fields["helper_metadata"], fields["routing_metadata"], fields["transport_metadata"], msg.extra_fields]


_NOT_ASKED = object()
_ROUTER_REFUSALS = (NoRoute, NotImplementedError)
"""What a router may raise for an event whose return route then decides (``Dispatcher._route``)."""


@dataclass
class DispatcherStats:
    """Counters: messages received and published per (direction, endpoint), failures, drops.

    ``return_routes_not_stored`` counts outbound messages routed while the
    routing store was unavailable: their return route was not written, so
    their events go where the router sends events. ``forwarded_as_arrived``
    counts the messages routed in runs forwarded as they arrived
    (``Dispatcher.route_whole`` and ``route_grouped``).
    """

    received: Counter[tuple[str, str]] = field(default_factory=Counter)
    published: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: Counter[tuple[str, str]] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    return_routes_not_stored: int = 0
    forwarded_as_arrived: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-friendly counters keyed ``"direction:endpoint"``."""

        def flat(counter: Counter[tuple[str, str]]) -> dict[str, int]:
            return {f"{d}:{e}": n for (d, e), n in sorted(counter.items())}

        return {
            "received": flat(self.received),
            "published": flat(self.published),
            "failed": flat(self.failed),
            "dropped": dict(self.dropped),
            "return_routes_not_stored": self.return_routes_not_stored,
            "forwarded_as_arrived": self.forwarded_as_arrived,
        }


class _RouterView:
    """The narrow face of a dispatcher that routers and middleware see."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.transport_names = dispatcher.transport_names
        self.exposed_names = dispatcher.exposed_names
        self.store = dispatcher.store
        self.publish_inbound_message = dispatcher.publish_inbound_message
        self.publish_inbound_event = dispatcher.publish_inbound_event
        self.publish_outbound_message = dispatcher.publish_outbound_message
        self.current_endpoint = dispatcher.current_endpoint
        self.drop = dispatcher.drop
        self.explain = dispatcher.explain

    @property
    def tracing(self) -> bool:
        ctx = _current.get()
        return ctx is not None and ctx.trace is not None


def build_store(config: DispatcherConfig, key: str = "store", allowed: Sequence[str] | None = None) -> Any:
    """Instantiate the store the config's ``store:`` (or ``failure_store:``) block names.

    Raises:
        ConfigError: the class cannot be used, or refuses the block's other keys (names them).
    """
    spec = getattr(config, key)
    base = RoutingStore if key == "store" else FailureStore
    cls = resolve_class(spec.class_path, f"{key}.class", base, allowed)
    options = spec.__pydantic_extra__ or {}
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {spec.class_path} refused the options {sorted(options)}: {exc}") from None


class Dispatcher:
    """Routes messages between transport and application endpoints (no Ray).

    Args:
        config: a dict, a YAML path or a ``DispatcherConfig``.
        outbox: receives every routed message.
        store: routing store (default: built from the config's ``store:`` block).
        failures: failure store (default: built from the ``failure_store:`` block, in-memory).
        allowed_class_prefixes: if given, router, middleware and store classes must
            live under one of these module prefixes.
        hops_in_envelope: messages routed keep the ``routing_metadata["hops"]``
            they arrived with (the limit ``max_hops`` is still checked) and
            whoever receives them adds the hop: the Ray shell's endpoints do,
            from the batch's envelope, so that a batch can be forwarded as it
            arrived (``route_whole``). Off, the dispatcher writes the hop into
            each message (in-process use: the harness hands over the objects).

    Raises:
        ConfigError: the config, router config or a middleware config is invalid.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | str | Path | DispatcherConfig,
        outbox: Outbox,
        *,
        store: RoutingStore | None = None,
        failures: FailureStore | None = None,
        allowed_class_prefixes: Sequence[str] | None = None,
        hops_in_envelope: bool = False,
    ) -> None:
        self.config = load_config(config)
        self.hops_in_envelope = hops_in_envelope
        self.transport_names: list[str] = list(self.config.transport_names)
        self.exposed_names: list[str] = list(self.config.exposed_names)
        self._transports = frozenset(self.transport_names)
        self._exposed = frozenset(self.exposed_names)
        self.outbox = outbox
        self.stats = DispatcherStats()
        try:  # every ConfigError names the config file, when there is one
            self.store = store if store is not None else build_store(self.config, "store", allowed_class_prefixes)
            self.failures: FailureStore = (
                failures if failures is not None else build_store(self.config, "failure_store", allowed_class_prefixes)
            )
            self.view = _RouterView(self)
            router_cls = resolve_class(
                self.config.router_class, "router_class", BaseDispatchRouter, allowed_class_prefixes
            )
            self.router: BaseDispatchRouter = router_cls(self.view, self.config.raw)
            self.router.validate_config()
            self.middleware = MiddlewareStack(
                [self._build_middleware(spec, allowed_class_prefixes) for spec in self.config.middleware]
            )
        except ConfigError as exc:
            raise self.config.located(exc) from None
        self._hooks = {
            "inbound": self.router.dispatch_inbound_message,
            "event": self.router.dispatch_inbound_event,
            "outbound": self.router.dispatch_outbound_message,
        }
        self._batch_fields: dict[str, tuple[str, ...] | None] = {
            direction: None if self.middleware.touches_messages() else self.router.batch_decision_fields(direction)
            for direction in _KIND
        }
        self.started = False
        self._return_routes_failing = False  # a return route could not be written; logged once per outage
        self.generation = 1  # the config generation (``ray_dispatch.core.generations``); set by who applies it

    def _build_middleware(self, spec: Any, allowed: Sequence[str] | None) -> BaseMiddleware:
        cls = resolve_class(spec.class_path, f"middleware.{spec.name}", BaseMiddleware, allowed)
        block = self.config.middleware_config(spec.name)
        block.update(consume_priority=spec.consume_priority, publish_priority=spec.publish_priority)
        return cls(spec.name, block, self.view)  # type: ignore[no-any-return]

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Set up middleware, then the router (``setup_routing``).

        Raises:
            ConfigError: a middleware or the router refused its config at setup (names the file, if any).
        """
        try:
            await self.middleware.setup()
            result = self.router.setup_routing()
            if inspect.isawaitable(result):
                await result
        except ConfigError as exc:
            raise self.config.located(exc) from None
        self.started = True

    async def stop(self) -> None:
        """Tear down the router, then middleware, then close the routing and failure stores."""
        await self.retire(None)

    def successor(self, config: Mapping[str, Any] | DispatcherConfig, generation: int, **kw: Any) -> Dispatcher:
        """A dispatcher for generation ``generation`` of the config, to take over from this one (not started).

        It shares this one's outbox and counters, and its routing and failure
        stores when ``config`` keeps their blocks, so routing state (return
        routes, user groups, routing memory) carries over. ``kw`` as for ``Dispatcher``.

        Raises:
            ConfigError: the config, router config or a middleware config is invalid.
        """
        loaded = load_config(config)
        same_store = loaded.store.model_dump(by_alias=True) == self.config.store.model_dump(by_alias=True)
        same_failures = loaded.failure_store.model_dump(by_alias=True) == self.config.failure_store.model_dump(
            by_alias=True
        )
        successor = Dispatcher(
            loaded,
            self.outbox,
            store=self.store if same_store else None,
            failures=self.failures if same_failures else None,
            **{"hops_in_envelope": self.hops_in_envelope, **kw},
        )
        successor.stats = self.stats
        successor.generation = generation
        return successor

    async def retire(self, successor: Dispatcher | None) -> None:
        """Tear down the router and middleware; close the stores ``successor`` does not share (all when None)."""
        if not self.started:
            return
        self.started = False
        result = self.router.teardown_routing()
        if inspect.isawaitable(result):
            await result
        await self.middleware.teardown()
        if successor is None or successor.store is not self.store:
            await self.store.close()
        if successor is None or successor.failures is not self.failures:
            await self.failures.close()

    # -- entry points ---------------------------------------------------------

    async def dispatch_inbound_message(
        self, msg: Message | dict[str, Any], endpoint: str | None = None, *, trace: bool = False
    ) -> DispatchOutcome:
        """Route a user message that arrived from transport ``endpoint`` (default its ``transport_name``); settle it."""
        return await self.dispatch("inbound", msg, endpoint, trace=trace)

    async def dispatch_inbound_event(
        self, event: Message | dict[str, Any], endpoint: str | None = None, *, trace: bool = False
    ) -> DispatchOutcome:
        """Route an event that arrived from transport ``endpoint`` (default its ``transport_name``); settle it."""
        return await self.dispatch("event", event, endpoint, trace=trace)

    async def dispatch_outbound_message(
        self, msg: Message | dict[str, Any], endpoint: str, *, trace: bool = False
    ) -> DispatchOutcome:
        """Route a user message that arrived from application ``endpoint``; settle it."""
        return await self.dispatch("outbound", msg, endpoint, trace=trace)

    async def dispatch(
        self, direction: Direction, msg: Message | dict[str, Any], endpoint: str | None, *, trace: bool = False
    ) -> DispatchOutcome:
        """Route a message by direction name (``inbound``, ``event`` or ``outbound``), then ``settle`` it.

        Returns once every copy is confirmed or has become a failure record.
        """
        outcome = await self._dispatch(direction, msg, endpoint, trace)
        if outcome.deliveries:
            await self.settle(outcome)
        else:
            outcome.settled = True
        return outcome

    async def route(
        self, direction: Direction, msg: Message | dict[str, Any], endpoint: str | None, *, trace: bool = False
    ) -> DispatchOutcome:
        """Route a message and hand its copies to the outbox, without waiting for their receipts.

        For a caller that routes many messages before it waits (the Ray shell
        settles a whole batch at once). The outcome is not settled: pass it to
        ``settle``, which counts what was published and records what was refused.
        """
        return await self._dispatch(direction, msg, endpoint, trace)

    async def route_batch(self, endpoint: str, items: Sequence[tuple[Direction, Any]]) -> list[DispatchOutcome]:
        """Route a batch of ``(direction, message)`` that arrived on ``endpoint``, in order, without settling.

        The outcomes, failure records and counters are those of ``route`` for
        each item. Where the router allows it (``batch_decision_fields``) and no
        middleware touches messages, the router is asked once per distinct
        decision in the batch and the other messages follow that decision;
        anything else (a payload still to validate, an unknown endpoint, a
        decision that cannot be repeated) is routed on its own.
        """
        outcomes: list[DispatchOutcome] = []
        decisions: dict[tuple[Any, ...], Any] = {}
        contexts: dict[str, _Context] = {}
        for direction, payload in items:
            fields = self._batch_fields.get(direction)
            decision: Any = None
            if fields is not None and isinstance(payload, _KIND[direction]) and self._known_source(direction, endpoint):
                values = payload.__dict__
                key = (direction, *[values.get(name) for name in fields])
                try:
                    decision = decisions.get(key, _NOT_ASKED)
                    if decision is _NOT_ASKED:
                        decision = decisions[key] = await self._decide(direction, payload, endpoint)
                except TypeError:  # an unhashable field value: route it on its own
                    decision = None
            if decision is None:
                outcomes.append(await self._dispatch(direction, payload, endpoint, False))
                continue
            ctx = contexts.get(direction)
            if ctx is None:
                ctx = contexts[direction] = _Context(direction, endpoint, None, closed=True)
            outcomes.append(await self._follow(decision, ctx, payload))
        return outcomes

    async def route_whole(
        self,
        direction: Direction,
        endpoint: str,
        sample: Message,
        values: Callable[[str], list[Any]],
        highest_hops: int,
        deliverable: Callable[[str], bool],
    ) -> ForwardedRun | None:
        """Route a run of valid, new ``direction`` messages from ``endpoint`` with ONE decision, if it can be.

        It can when the router decides per batch (``batch_decision_fields``),
        every message has the same value of each decision field
        (``values(name)`` lists them, in order), the router's decision for
        ``sample`` (one of the messages) is one publish, in the same
        direction, that changes nothing (or, for events, their return routes
        all agree), no message would pass ``max_hops`` (``highest_hops`` is the
        largest count they arrived with), and ``deliverable(destination)``
        says the outbox can take them. Then outbound return routes are
        written (one ``set_many``), the run is counted as received and
        returned: the caller forwards every message as it arrived and settles
        with ``settle_whole``. None: nothing was done or counted (try
        ``route_grouped``).
        """
        fields = self._batch_fields.get(direction)
        if fields is None or not self._known_source(direction, endpoint) or highest_hops >= self.config.max_hops:
            return None
        for name in fields:
            found = values(name)
            first = found[0]
            if any(value != first for value in found):
                return None
        decision = await self._decide(direction, sample, endpoint)
        if decision is None or decision.changes:
            return None
        destination = await self._whole_destination(direction, decision, values)
        if destination is None or not deliverable(destination):
            return None
        return await self._forwarding(direction, endpoint, [destination] * len(values("message_type")), values)

    async def route_grouped(
        self,
        direction: Direction,
        endpoint: str,
        messages: Sequence[Message],
        values: Callable[[str], list[Any]],
        highest_hops: int,
        deliverable: Callable[[str], bool],
    ) -> ForwardedRun | list[DispatchOutcome] | None:
        """Route a run of valid, new ``direction`` messages from ``endpoint``, a decision each, grouped by destination.

        For routers that decide message by message (or whose decision fields
        differ within the run): the router is asked about each message (once
        per distinct decision where ``batch_decision_fields`` allows). When
        every decision is one publish, in the same direction, that changes
        nothing, to an endpoint ``deliverable`` says the outbox can take (an
        event following its return route instead, as ``route`` does), the run
        is returned as a ``ForwardedRun`` (outbound return routes written in
        one ``set_many``): the caller forwards each message as it arrived to its
        destination and settles with ``settle_whole``. Otherwise each message
        follows its decision as ``route_batch`` does and the outcomes (not
        settled) are returned. None: nothing was done (middleware touches
        messages, an unknown endpoint, or a message would pass ``max_hops``).
        """
        if (
            self.middleware.touches_messages()
            or not self._known_source(direction, endpoint)
            or highest_hops >= self.config.max_hops
        ):
            return None
        fields = self._batch_fields.get(direction)
        asked: dict[tuple[Any, ...], _Decision | None] = {}
        decisions: list[_Decision | None] = []
        for msg in messages:
            key = None if fields is None else (*[msg.__dict__.get(name) for name in fields],)
            try:
                if key is not None and key in asked:
                    decisions.append(asked[key])
                    continue
            except TypeError:  # an unhashable field value
                key = None
            decision = await self._decide(direction, msg, endpoint)
            if key is not None:
                asked[key] = decision
            decisions.append(decision)
        senders: list[Any] = [None] * len(messages)
        if direction == "event":
            try:
                senders = await self.store.get_many([RETURN_ROUTE_PREFIX + i for i in values("user_message_id")])
            except Exception:
                senders = []  # each event looks its return route up again on the way below
        destinations = [
            self._forwarded_to(direction, decision, sender) if decision is not None else None
            for decision, sender in zip(decisions, senders or [None] * len(messages), strict=True)
        ]
        if senders and all(d is not None and deliverable(d) for d in destinations):
            forwarded = await self._forwarding(direction, endpoint, destinations, values)  # type: ignore[arg-type]
            if forwarded is not None:
                return forwarded
        ctx = _Context(direction, endpoint, None, closed=True)
        return [
            await self._follow(decision, ctx, msg)
            if decision is not None
            else await self._dispatch(direction, msg, endpoint, False)
            for msg, decision in zip(messages, decisions, strict=True)
        ]

    def _forwarded_to(self, direction: Direction, decision: _Decision, sender: Any) -> str | None:
        """Where one message goes as it arrived: its return route (an event), else the decision's one publish."""
        if decision.changes:
            return None
        if sender in self._exposed and direction == "event":
            refused = decision.error is not None and not isinstance(decision.error, _ROUTER_REFUSALS)
            return None if decision.drop_raised or refused else str(sender)
        if decision.error is not None or decision.dropped is not None:
            return None
        if len(decision.publishes) != 1 or decision.publishes[0][0] != direction:
            return None  # items carry their direction: they are forwarded in the one they arrived in
        destination = decision.publishes[0][1]
        return destination if destination in (self._transports if direction == "outbound" else self._exposed) else None

    async def _forwarding(
        self, direction: Direction, endpoint: str, destinations: list[str], values: Callable[[str], list[Any]]
    ) -> ForwardedRun | None:
        """Write an outbound run's return routes (one ``set_many``), count the run as received; return it.

        None when the store refused the write for another reason than being
        unavailable: nothing is counted, and the messages take the per-message
        path, where each such failure becomes its own record.
        """
        count = len(destinations)
        if direction == "outbound":
            routes = dict.fromkeys((RETURN_ROUTE_PREFIX + i for i in values("message_id")), endpoint)
            try:
                await self.store.set_many(routes, ttl=self.config.return_route_ttl)
            except StoreUnavailable as exc:
                self._return_routes_not_stored(count, exc)
            except Exception:
                return None
            else:
                self._return_routes_stored()
        self.stats.received[direction, endpoint] += count  # type: ignore[index]
        self.stats.forwarded_as_arrived += count
        return ForwardedRun(direction, endpoint, destinations, self.generation)

    async def _whole_destination(
        self, direction: Direction, decision: _Decision, values: Callable[[str], list[Any]]
    ) -> str | None:
        """Where a whole run goes: an event run's one return route, else the decision's one publish."""
        sender = None
        if direction == "event":
            try:
                senders = await self.store.get_many([RETURN_ROUTE_PREFIX + i for i in values("user_message_id")])
            except Exception:
                return None  # message by message, each failure recorded
            sender = senders[0]
            if any(found != sender for found in senders):
                return None
        return self._forwarded_to(direction, decision, sender)

    async def settle_whole(
        self, run: ForwardedRun, receipt: BatchReceipt, message_at: Callable[[int], Any]
    ) -> dict[int, FailureRecord]:
        """Wait for a forwarded run's receipt (slot ``i`` is message ``i``); count and record what it says.

        Confirmed messages count as published; each refused one becomes a
        failure record at stage ``deliver`` (``message_at(index)`` gives the
        message). Returns the records by index.
        """
        await receipt
        records: dict[int, FailureRecord] = {}
        published = Counter(run.destinations)
        for index, error in sorted(receipt.failed_slots().items()):
            destination = run.destinations[index]
            published[destination] -= 1
            records[index] = await self.record_failure(
                str(error) or type(error).__name__,
                run.direction,
                run.endpoint,
                message_at(index),
                error=error,
                stage="deliver",
                destination=destination,
                generation=run.generation,
            )
        for destination, count in published.items():
            self.stats.published[run.direction, destination] += count
        return records

    def _known_source(self, direction: str, endpoint: str) -> bool:
        return endpoint in (self._exposed if direction == "outbound" else self._transports)

    async def _decide(self, direction: Direction, msg: Message, endpoint: str) -> _Decision | None:
        """Ask the router about ``msg`` without delivering anything; None if what it did cannot be repeated."""
        ctx = _Context(direction, endpoint, None)
        before = dict(msg.__dict__)
        nested = _nested(msg)
        nested_before = clone_json(nested) if any(nested) else None  # all empty (the usual case): nothing to copy
        error: BaseException | None = None
        drop_raised = False
        token = _current.set(ctx)
        try:
            result = self._hooks[direction](msg)
            if inspect.isawaitable(result):
                await result
        except DropMessage as exc:
            ctx.dropped = str(exc) or type(exc).__name__
            drop_raised = True
        except Exception as exc:
            error = exc
        finally:
            _current.reset(token)
            ctx.closed = True
        after = msg.__dict__
        if (
            any(published is not msg for _, _, published in ctx.publishes)
            or after.keys() != before.keys()
            or after["routing_metadata"] is not before["routing_metadata"]
            or (any(_nested(msg)) if nested_before is None else _nested(msg) != nested_before)  # changed in place
        ):
            return None
        changes = {name: value for name, value in after.items() if before[name] is not value}
        return _Decision([(d, e) for d, e, _ in ctx.publishes], changes, ctx.dropped, error, drop_raised)

    async def _follow(self, decision: _Decision, ctx: _Context, msg: Message) -> DispatchOutcome:
        """Route ``msg`` as the router decided for another message it routes alike (see ``route_batch``)."""
        direction, endpoint = ctx.direction, ctx.endpoint
        outcome = DispatchOutcome(direction, endpoint, generation=self.generation)
        self.stats.received[direction, endpoint] += 1  # type: ignore[index]
        stage = "validate"
        try:
            self._count_hop(msg)
            stage = "route"
            for name, value in decision.changes.items():
                msg[name] = value
            sender = None
            if direction == "outbound":
                await self._remember_sender(ctx, msg)
            elif direction == "event":
                sender = await self.store.get(RETURN_ROUTE_PREFIX + msg["user_message_id"])
                if sender not in self._exposed:
                    sender = None
        except Exception as exc:
            outcome.failures.append(
                await self.record_failure(_reason(exc), direction, endpoint, msg, error=exc, stage=stage)
            )
            return outcome
        error, publishes, dropped = decision.error, decision.publishes, decision.dropped
        if sender is not None and not decision.drop_raised and (error is None or isinstance(error, _ROUTER_REFUSALS)):
            error, publishes, dropped = None, [("event", sender)], None  # the return route wins, as in _route
        elif error is None and not publishes and dropped is None:
            error = NoRoute(
                f"{type(self.router).__name__} found no destination for this {direction} message from {endpoint!r}"
            )
        if error is not None:
            outcome.failures.append(
                await self.record_failure(_reason(error), direction, endpoint, msg, error=error, stage="route")
            )
            return outcome
        if dropped is not None:
            outcome.dropped = dropped
            self.stats.dropped[dropped] += 1
        try:
            copies = [*(msg.copy() for _ in publishes[1:]), msg] if publishes else []  # the last gets msg
        except Exception as exc:  # as in _dispatch: a message that cannot be copied for fan-out
            reason = f"{type(exc).__name__}: cannot copy the message for {len(publishes)} destinations ({exc})"
            outcome.failures.append(
                await self.record_failure(reason, direction, endpoint, msg, error=exc, stage="publish")
            )
            return outcome
        for (pub_direction, destination), copy in zip(publishes, copies, strict=True):
            await self._publish(outcome, ctx, pub_direction, destination, copy, middleware=False)
        return outcome

    async def settle(self, *outcomes: DispatchOutcome) -> list[FailureRecord]:
        """Await the receipts of the outcomes' deliveries; count and record what they say.

        Each confirmed copy counts once in ``stats.published``; each refused one
        becomes a failure record at stage ``deliver`` (its reason the receipt's
        error), added to the outcome's ``failures``, to its ``Delivery.failure``
        and to the failure store. An outcome is settled once: settling it again
        does nothing. A receipt shared by several deliveries is awaited for each.

        Returns:
            The failure records made for refused deliveries, in order.
        """
        records: list[FailureRecord] = []
        published = self.stats.published
        for outcome in outcomes:
            if outcome.settled:
                continue
            outcome.settled = True
            for delivery in outcome.deliveries:
                receipt = delivery.receipt
                if type(receipt) is Slot:  # one receipt per destination batch: wait for it once
                    batch = receipt.batch
                    if not batch.done:
                        if not batch.submitted:
                            await self.flush()
                        await batch
                    error = batch.failure(receipt.index)
                    if error is not None:
                        records.append(await self._refused(outcome, delivery, error))
                        continue
                elif receipt is not CONFIRMED:
                    try:
                        await receipt
                    except asyncio.CancelledError as exc:
                        task = asyncio.current_task()
                        if task is not None and task.cancelling():
                            raise  # this settle is being cancelled, not the receipt
                        records.append(await self._refused(outcome, delivery, exc))
                        continue
                    except Exception as exc:
                        records.append(await self._refused(outcome, delivery, exc))
                        continue
                published[delivery.direction, delivery.endpoint] += 1
        return records

    async def flush(self) -> None:
        """Hand the outbox's collected destination batches over, if it collects any (``BatchingOutbox``)."""
        flush = getattr(self.outbox, "flush", None)
        if flush is not None:
            await flush()

    async def _refused(self, outcome: DispatchOutcome, delivery: Delivery, error: BaseException) -> FailureRecord:
        """Record a delivery whose receipt failed, on the outcome and in the failure store."""
        reason = str(error) or type(error).__name__
        record = await self.record_failure(
            reason,
            delivery.direction,
            outcome.endpoint,
            delivery.message,
            error=error,
            stage="deliver",
            destination=delivery.endpoint,
            generation=outcome.generation,
        )
        delivery.failure = record
        outcome.failures.append(record)
        if outcome.trace is not None:
            outcome.trace.append(TraceStep(f"failure delivering to {delivery.endpoint!r}: {reason}", "failure"))
        return record

    # -- the router-facing interface -----------------------------------------

    def publish_inbound_message(self, endpoint: str, msg: TransportUserMessage) -> None:
        """Queue ``msg`` for application ``endpoint`` (router API; see ``BaseDispatchRouter`` on copies)."""
        self._queue("inbound", endpoint, msg)

    def publish_inbound_event(self, endpoint: str, event: TransportEvent) -> None:
        """Queue ``event`` for application ``endpoint`` (router API; see ``BaseDispatchRouter`` on copies)."""
        self._queue("event", endpoint, event)

    def publish_outbound_message(self, endpoint: str, msg: TransportUserMessage) -> None:
        """Queue ``msg`` for transport ``endpoint`` (router API; see ``BaseDispatchRouter`` on copies)."""
        self._queue("outbound", endpoint, msg)

    def current_endpoint(self) -> str | None:
        """Return the endpoint the message now being dispatched arrived on."""
        ctx = _current.get()
        return None if ctx is None else ctx.endpoint

    def drop(self, reason: str) -> None:
        """Mark the message being dispatched as dropped on purpose (router API)."""
        ctx = self._context("drop")
        ctx.dropped = reason

    def explain(self, text: str) -> None:
        """Append ``text`` to the current trace, if tracing (router API)."""
        ctx = _current.get()
        if ctx is not None and ctx.trace is not None:
            ctx.trace.append(TraceStep(text, "router"))

    def _context(self, what: str) -> _Context:
        ctx = _current.get()
        if ctx is None or ctx.closed:
            raise RuntimeError(f"{what} called outside dispatch_*: routers may only publish while routing a message")
        return ctx

    def _queue(self, direction: Direction, endpoint: str, msg: Message) -> None:
        ctx = self._context(f"publish ({direction} to {endpoint!r})")
        expected = _KIND[direction]
        if not isinstance(msg, expected):
            raise TypeError(
                f"{_PUBLISH_METHOD[direction]} to {endpoint!r} needs a {expected.__name__}, got {type(msg).__name__}"
            )
        ctx.publishes.append((direction, endpoint, msg))

    # -- failures -------------------------------------------------------------

    async def record_failure(
        self,
        reason: str,
        direction: Direction,
        endpoint: str | None,
        message: Any,
        *,
        error: BaseException | None = None,
        stage: str = "route",
        destination: str | None = None,
        generation: int | None = None,
    ) -> FailureRecord:
        """Add a failure record (of ``generation``, default this one's) and count it; return the record."""
        record = FailureRecord(
            reason=reason,
            direction=direction,
            endpoint=endpoint,
            message=message,
            error_type=type(error).__name__ if error is not None else None,
            stage=stage,
            destination=destination,
            generation=self.generation if generation is None else generation,
        )
        await self.failures.add(record)
        where = record.failed_at
        known = where in self._transports or where in self._exposed
        self.stats.failed[direction, where if known else "(unknown endpoint)"] += 1  # type: ignore[index]
        return record

    # -- the pipeline ---------------------------------------------------------

    def _coerce(self, direction: Direction, payload: Any) -> Message:
        expected = _KIND[direction]
        if isinstance(payload, expected):
            return payload
        if isinstance(payload, Message):
            raise InvalidMessage(f"expected a {expected.KIND} for {direction}, got a {payload.KIND}")
        return expected.from_dict(payload)

    def _check_source(self, direction: Direction, endpoint: Any) -> None:
        names = self._exposed if direction == "outbound" else self._transports
        if endpoint not in names:
            side = "exposed_names" if direction == "outbound" else "transport_names"
            raise UnknownEndpoint(
                f"{direction} message arrived on {endpoint!r}, which is not in {side} {sorted(names)}"
            )

    def _count_hop(self, msg: Message) -> None:
        hops = msg.routing_metadata.get("hops", 0)
        hops = (hops if isinstance(hops, int) else 0) + 1
        self._check_hops(hops)
        if self.hops_in_envelope:
            return  # the receiver adds the hop (see ``Dispatcher``)
        # A new dict, not an update in place: payloads unpickled from one batch may share
        # their metadata dicts, and one message's hop must not count for the others.
        msg.routing_metadata = {**msg.routing_metadata, "hops": hops}

    def _check_hops(self, hops: int) -> None:
        if hops > self.config.max_hops:
            raise RoutingLoop(
                f"routing loop: message passed through the dispatcher {hops} times (max_hops {self.config.max_hops})"
            )

    async def _dispatch(self, direction: Direction, payload: Any, endpoint: str | None, trace: bool) -> DispatchOutcome:
        if endpoint is None and isinstance(payload, (Message, dict)):
            name = payload.get("transport_name")
            endpoint = name if isinstance(name, str) else None
        source = str(endpoint)
        outcome = DispatchOutcome(direction, source, trace=[] if trace else None, generation=self.generation)
        ctx = _Context(direction, source, outcome.trace)
        stage = "validate"
        msg: Any = payload
        try:
            msg = self._coerce(direction, payload)
            self._check_source(direction, endpoint)
            self.stats.received[direction, source] += 1
            self._count_hop(msg)
            stage = "middleware"
            msg = await self.middleware.apply("consume", direction, msg, source, ctx.trace)
            stage = "route"
            await self._route(ctx, msg)
        except DropMessage as exc:
            ctx.dropped = str(exc) or type(exc).__name__
        except Exception as exc:
            reason = _reason(exc)
            outcome.failures.append(await self.record_failure(reason, direction, endpoint, msg, error=exc, stage=stage))
            self._trace(ctx, f"failure at {stage}: {reason}", "failure")
            return self._tag_middleware_steps(outcome)
        if ctx.dropped is not None:
            outcome.dropped = ctx.dropped
            self.stats.dropped[ctx.dropped] += 1
            self._trace(ctx, f"dropped: {ctx.dropped}", "drop")
        try:
            publishes = _independent(ctx.publishes)
        except Exception as exc:  # a message that cannot be copied for fan-out (too deep, uncopyable values)
            reason = f"{type(exc).__name__}: cannot copy the message for {len(ctx.publishes)} destinations ({exc})"
            outcome.failures.append(
                await self.record_failure(reason, direction, endpoint, msg, error=exc, stage="publish")
            )
            self._trace(ctx, f"failure at publish: {reason}", "failure")
            return self._tag_middleware_steps(outcome)
        for pub_direction, destination, copy in publishes:
            await self._publish(outcome, ctx, pub_direction, destination, copy)
        return self._tag_middleware_steps(outcome)

    async def _route(self, ctx: _Context, msg: Message) -> None:
        sender = None
        if ctx.direction == "outbound":
            await self._remember_sender(ctx, msg)
        elif ctx.direction == "event":
            sender = await self.store.get(RETURN_ROUTE_PREFIX + msg["user_message_id"])
            if sender not in self._exposed:
                sender = None
        token = _current.set(ctx)
        try:
            result = self._hooks[ctx.direction](msg)
            if inspect.isawaitable(result):
                await result
        except _ROUTER_REFUSALS as exc:
            if sender is None:
                raise
            self._trace(ctx, f"router: {exc}", "router")
        finally:
            _current.reset(token)
            ctx.closed = True
        if sender is not None:
            ctx.dropped = None  # the sender is known: the event is delivered even if the router would drop it
            event = ctx.publishes[0][2] if ctx.publishes else msg
            ctx.publishes = [("event", sender, event)]
            self._trace(
                ctx,
                f"return route: event about {msg['user_message_id']} goes back to {sender!r}, which sent it",
                "return_route",
            )
        elif not ctx.publishes and ctx.dropped is None:
            raise NoRoute(
                f"{type(self.router).__name__} found no destination"
                f" for this {ctx.direction} message from {ctx.endpoint!r}"
            )

    async def _remember_sender(self, ctx: _Context, msg: Message) -> None:
        """Write the outbound message's return route; if the store is unavailable, count it and go on.

        The message is routed either way: its events can be routed without
        the return route (by the router), whereas holding the message back
        would stop every outbound message for as long as the store is down.
        """
        try:
            await self.store.set(
                RETURN_ROUTE_PREFIX + msg["message_id"], ctx.endpoint, ttl=self.config.return_route_ttl
            )
        except StoreUnavailable as exc:
            self._return_routes_not_stored(1, exc)
            self._trace(ctx, f"return route not stored, events will follow the router: {exc}", "return_route")
            return
        self._return_routes_stored()

    def _return_routes_not_stored(self, count: int, exc: StoreUnavailable) -> None:
        self.stats.return_routes_not_stored += count
        if not self._return_routes_failing:
            logger.warning(
                "routing outbound messages without their return routes while the routing store is"
                " unavailable (counted in return_routes_not_stored; their events go where the router"
                " sends events): %s",
                exc,
            )
        self._return_routes_failing = True

    def _return_routes_stored(self) -> None:
        if self._return_routes_failing:
            self._return_routes_failing = False
            logger.warning("routing store is back: return routes are stored again")

    async def _publish(
        self,
        outcome: DispatchOutcome,
        ctx: _Context,
        direction: Direction,
        destination: str,
        msg: Message,
        *,
        middleware: bool = True,
    ) -> None:
        stage = "publish"
        try:
            names = self._transports if direction == "outbound" else self._exposed
            if destination not in names:
                side = "transport_names" if direction == "outbound" else "exposed_names"
                raise UnknownEndpoint(
                    f"router published {direction} to {destination!r}, which is not in {side} {sorted(names)}"
                )
            if middleware:
                msg = await self.middleware.apply("publish", direction, msg, destination, ctx.trace)
            stage = "deliver"
            receipt = await self.outbox.deliver(direction, destination, msg)
        except DropMessage as exc:
            reason = str(exc) or type(exc).__name__
            self.stats.dropped[reason] += 1
            if outcome.dropped is None:
                outcome.dropped = reason
            self._trace(ctx, f"dropped before {destination!r}: {reason}", "drop")
            return
        except Exception as exc:
            reason = str(exc) if isinstance(exc, UnknownEndpoint) else f"{type(exc).__name__}: {exc}"
            record = await self.record_failure(
                reason, direction, ctx.endpoint, msg, error=exc, stage=stage, destination=destination
            )
            outcome.failures.append(record)
            self._trace(ctx, f"failure publishing to {destination!r}: {reason}", "failure")
            return
        outcome.deliveries.append(Delivery(direction, destination, msg, CONFIRMED if receipt is None else receipt))
        self._trace(ctx, f"published {direction} to {destination!r}", "publish")

    @staticmethod
    def _trace(ctx: _Context, text: str, kind: str) -> None:
        if ctx.trace is not None:
            ctx.trace.append(TraceStep(text, kind))

    @staticmethod
    def _tag_middleware_steps(outcome: DispatchOutcome) -> DispatchOutcome:
        # MiddlewareStack.apply appends plain strings; every other trace line is a TraceStep.
        trace = outcome.trace
        if trace is not None:
            trace[:] = [s if isinstance(s, TraceStep) else TraceStep(s, "middleware") for s in trace]
        return outcome

    # -- replay ---------------------------------------------------------------

    async def replay_failure(self, failure_id: str, endpoint: str | None = None) -> DispatchOutcome:
        """Try a failed message again; its record is replaced by the outcome.

        A message that was routed but could not be delivered (stage
        ``deliver``) is sent again to its destination only, or to ``endpoint``
        when given (a name of the same side) -- not to every destination of a
        fan-out again. Any other failure is re-dispatched as if it arrived on
        ``endpoint`` (default: where it first arrived). The old record is
        removed; if the message fails again, the new records carry
        ``attempts`` one higher, so repeated replays never pile up duplicates.
        The outcome is settled: this returns once every copy is confirmed or recorded.

        Raises:
            KeyError: no failure record has that id.
        """
        record = await self.failures.get(failure_id)
        message = record.message.copy() if isinstance(record.message, Message) else record.message
        if record.stage == "deliver" and record.destination is not None and isinstance(message, Message):
            source = str(record.endpoint)
            outcome = DispatchOutcome(record.direction, source, generation=self.generation)
            await self._publish(
                outcome,
                _Context(record.direction, source, None, closed=True),
                record.direction,
                endpoint or record.destination,
                message,
                middleware=False,
            )
        else:
            if isinstance(message, Message):
                message.routing_metadata.pop("hops", None)
            outcome = await self._dispatch(record.direction, message, endpoint or record.endpoint, False)
        await self.settle(outcome)
        await self.failures.remove([failure_id])
        for new in outcome.failures:
            new.attempts = record.attempts + 1
            await self.failures.add(new)  # stored again so a durable store keeps the new count
        return outcome
