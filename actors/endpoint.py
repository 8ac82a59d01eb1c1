"""Endpoint actor base classes: ``TransportActor`` and ``ApplicationActor``.

An endpoint is a plain class; the runtime makes it a Ray actor with
``ray.remote`` and the options its config gives. It talks to the
dispatcher(s) through a ``DispatcherLink`` (batched, confirmed, retried;
what it sends without waiting is confirmed per batch, with no future per
message, and what no dispatcher took becomes an undeliverable record), and
receives batches from the dispatcher in ``receive``, which drops duplicates by
message id (bounded window) and runs the author's hooks in order.

Backpressure without a loop: a message an endpoint takes from outside (a
transport's peer, an application's timer) waits while the dispatcher's queue
is full; a message it publishes while handling a received batch (a reply, an
ack) does not. Waiting there could deadlock: the transport's link full of
calls waiting for the application, the application waiting for room for its
replies, the dispatcher waiting for the transport to take them, the
transport waiting for room for its acks. What a batch produces is bounded by
the batch, so these answers need no bound of their own. (Tasks an endpoint
starts while handling a batch inherit that, as context variables go.)

Transport authors implement ``setup_transport``, ``teardown_transport`` and
``handle_outbound_message``, and call ``publish_message`` / ``publish_ack`` /
``publish_nack`` / ``publish_delivery_report``.

Application authors implement ``consume_user_message`` (and optionally
``new_session``, ``close_session``, ``consume_ack``, ``consume_nack``,
``consume_delivery_report``) and call ``reply_to`` / ``send_to``.

Without Ray (unit tests), give an endpoint any object with the
``DispatcherLink`` methods through ``use_link``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from actors import metrics
from actors.connection import ConnectionState, replica_connected
from actors.gc_tuning import tune_gc_for_throughput
from actors.ordering import SeenIds, SenderOrder
from actors.pool import ReplicaPool, sticky_key
from actors.sender import Order, SenderOptions
from actors.wire import decode_batch, encode_item, message_key
from ray_dispatch.core.errors import ConfigError, DeliveryError, InvalidMessage
from ray_dispatch.core.message import Message, TransportEvent, TransportUserMessage, message_from_dict
from ray_dispatch.core.receipts import BatchReceipt
from ray_dispatch.core.router import format_validation_error
from ray_dispatch.core.stores.failures import Direction, FailureRecord, json_safe

log = logging.getLogger(__name__)

DEFAULT_DEDUPE_WINDOW = 100_000
DEFAULT_UNDELIVERABLE_KEPT = 10_000
"""How many undeliverable messages an endpoint keeps (oldest forgotten first, counted)."""


_RESPONDING: ContextVar[bool] = ContextVar("ray_dispatch_responding", default=False)
"""True while an endpoint handles a batch in ``receive``: what it publishes then answers it (no wait for room)."""

Unsent = Callable[[Direction, Message, BaseException], None]
"""Told ``(direction, message, why)`` for each message published without waiting that no dispatcher took."""


class DispatcherLink(Protocol):
    """How an endpoint hands messages to the dispatcher(s).

    A link may also have ``publish`` (see ``BatchingDispatcherLink``): then
    what an endpoint sends without waiting goes through it, confirmed per
    batch; a link without it gets every message through ``send``.
    """

    async def send(self, direction: Direction, message: Message) -> asyncio.Future[Any]:
        """Queue ``message``; the future resolves when the dispatcher has routed it."""

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything sent is confirmed."""

    async def close(self) -> None:
        """Stop sending."""


class BatchingDispatcherLink(DispatcherLink, Protocol):
    """A ``DispatcherLink`` that also takes messages nobody waits for into batches confirmed as a whole."""

    async def publish(self, direction: Direction, message: Message, unsent: Unsent) -> None:
        """Add ``message`` to the open batch (no future); ``unsent`` is told if no dispatcher takes it.

        Waits while the link is full (backpressure), unless the message
        answers a batch being received. Keeps the order of everything given
        to ``publish`` and ``send``; ``drain`` covers both.

        Raises:
            DeliveryError: no dispatcher can take messages now (nothing is queued).
        """


class RayDispatcherLink:
    """A ``DispatcherLink`` over one or more dispatcher actors (sticky per user).

    Keeping one user's messages on one dispatcher keeps their order. A
    dispatcher the link gives up on (dead, or unreachable past the retry
    budget, as in a partition) is pinged with backoff until it
    answers; then it takes messages again and ``on_rejoin`` runs. Pinging
    stops when Ray says the actor is gone for good, or the link closes.

    Args:
        endpoint_name: the endpoint this link sends for.
        dispatchers: the dispatcher actor handles.
        options: batching and retry settings (the pings back off like retries).
        on_rejoin: awaited each time a dispatcher is taken back.
        ping_timeout: seconds one ping may take before it counts as unanswered.
    """

    def __init__(
        self,
        endpoint_name: str,
        dispatchers: list[Any],
        options: SenderOptions,
        on_rejoin: Callable[[], Awaitable[None]] | None = None,
        ping_timeout: float = 5.0,
    ) -> None:
        from actors.ray_calls import classify_ray_error, receive_call

        self.name = f"dispatcher (from {endpoint_name})"
        self.pool = ReplicaPool(
            self.name,
            receive_call(endpoint_name),
            "sticky",
            options,
            classify=classify_ray_error,
            on_replica_dead=self._lost,
        )
        self._classify = classify_ray_error
        self._options = options
        self._on_rejoin = on_rejoin
        self._ping_timeout = ping_timeout
        self._handles = {f"dispatcher-{index}": handle for index, handle in enumerate(dispatchers)}
        self._pinging: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self._open_items: list[bytes] = []
        self._open_keys: list[str | None] = []
        self._open_sent: list[tuple[Direction, Message, Unsent]] = []
        self._flush_scheduled = False
        self._settling: set[asyncio.Task[None]] = set()
        for replica_id, handle in self._handles.items():
            self.pool.add(replica_id, handle)

    async def send(self, direction: Direction, message: Message) -> asyncio.Future[Any]:
        """Queue ``message`` for a dispatcher chosen by its user (``sticky_key``), after what was published before.

        Waits for room first, unless it answers a batch being received (``responding``).
        """
        item, key = encode_item(direction, message), sticky_key(direction, message)
        if not _RESPONDING.get():
            await self.pool.wait_for_room(key)
        self._hand_over_open()  # what was published before goes first
        return self.pool.queue(item, key)

    async def publish(self, direction: Direction, message: Message, unsent: Unsent) -> None:
        """Add ``message`` to the open batch; it is handed over as one chunk with one receipt (no future).

        Waits while the dispatcher's queue is full (``max_queued``), unless
        the message answers a batch being received (``responding``): waiting
        there could close a loop of full queues (see the module docstring).
        The batch goes to the pool once the event loop runs (at the latest
        when the current ``receive`` returns) or, when it reaches
        ``max_batch``, at once. When the batch settles, ``unsent`` is told
        about each of its messages no dispatcher took.

        Raises:
            DeliveryError: the link is closed, or no dispatcher is left when a new batch
                opens (nothing is queued); one lost later fails the batch in its receipt.
        """
        if not self._open_items or self._closed:  # looked up once per batch
            self._check_open()
        item, key = encode_item(direction, message), sticky_key(direction, message)  # a snapshot, as send's
        if not _RESPONDING.get():
            await self.pool.wait_for_room(key)
            if self._closed:
                self._check_open()
        self._open_items.append(item)
        self._open_keys.append(key)
        self._open_sent.append((direction, message, unsent))
        if len(self._open_items) >= self._options.max_batch:
            self._hand_over_open()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._hand_over_open)

    def _check_open(self) -> None:
        """Raise ``DeliveryError`` when the link is closed or has no dispatcher left."""
        if self._closed or not self.pool.replicas:
            why = "closed" if self._closed else "has no replicas to deliver to"
            raise DeliveryError(f"endpoint {self.name!r} {why}")

    async def flush(self) -> None:
        """Hand the open batch to the pool now (it never waits: room was waited for as messages came)."""
        self._hand_over_open()

    @property
    def unconfirmed(self) -> int:
        """Messages given to this link that no dispatcher confirmed or refused yet (open batch included)."""
        return len(self._open_items) + sum(r.sender.pending for r in self.pool.replicas)

    async def drain(self, timeout: float | None = None) -> bool:
        """Hand over the open batch, wait until the dispatchers confirmed everything, then report what failed.

        Returns False when that took longer than ``timeout`` (nothing is dropped then).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self._hand_over_open()
        drained = await self.pool.drain(timeout)
        if self._settling:
            await asyncio.wait(
                set(self._settling), timeout=None if deadline is None else max(0.0, deadline - loop.time())
            )
        return drained

    async def close(self) -> None:
        """Close the senders and stop pinging; messages still in the open batch are unsent."""
        self._closed = True
        self._fail_open(DeliveryError(f"{self.name!r} closed before handing it over"))
        for task in self._pinging.values():
            task.cancel()
        await asyncio.gather(*self._pinging.values(), return_exceptions=True)
        await self.pool.close()

    def _hand_over_open(self) -> None:
        """Queue the open batch in the pool as one chunk, at once; watch its receipt."""
        self._flush_scheduled = False
        if not self._open_items:
            return
        items, keys, sent = self._open_items, self._open_keys, self._open_sent
        self._open_items, self._open_keys, self._open_sent = [], [], []
        receipt = BatchReceipt()
        receipt.add_many(len(sent))
        receipt.submitted = True
        self.pool.queue_batch(items, keys, receipt)
        if receipt.done:
            _report_unsent(sent, receipt)
        else:
            task = asyncio.get_running_loop().create_task(_settle(sent, receipt))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    def _fail_open(self, error: BaseException) -> None:
        """Report every message of the open batch as unsent (the link is closing)."""
        sent = self._open_sent
        self._open_items, self._open_keys, self._open_sent = [], [], []
        for direction, message, unsent in sent:
            unsent(direction, message, error)

    def _lost(self, pool: str, replica_id: str, error: BaseException) -> None:
        if self._closed or replica_id in self._pinging:
            return
        log.warning("%s: gave up on %s (%s: %s); pinging it", self.name, replica_id, type(error).__name__, error)
        task = asyncio.get_running_loop().create_task(self._ping_until_back(replica_id))
        self._pinging[replica_id] = task
        task.add_done_callback(lambda _: self._pinging.pop(replica_id, None))

    async def _ping_until_back(self, replica_id: str) -> None:
        handle = self._handles[replica_id]
        backoff = self._options.retry.start()  # pings go on past max_attempts: only the waits apply
        while not self._closed:
            await asyncio.sleep(backoff.next_delay())
            try:
                await asyncio.wait_for(handle.ping.remote(), self._ping_timeout)
            except Exception as exc:
                if self._classify(exc) == "dead":
                    log.error("%s: %s is gone for good (%s)", self.name, replica_id, type(exc).__name__)
                    return
                continue
            self.pool.add(replica_id, handle)
            log.warning("%s: %s answers again; sending to it", self.name, replica_id)
            if self._on_rejoin is not None:
                try:
                    await self._on_rejoin()
                except Exception:
                    log.exception("%s: handling the return of %s failed", self.name, replica_id)
            return


async def _settle(sent: list[tuple[Direction, Message, Unsent]], receipt: BatchReceipt) -> None:
    """Wait for a published batch's receipt, then report its messages no dispatcher took."""
    await receipt
    _report_unsent(sent, receipt)


def _report_unsent(sent: list[tuple[Direction, Message, Unsent]], receipt: BatchReceipt) -> None:
    """Tell each failed slot's ``unsent`` handler why its message was not taken (one look per batch)."""
    if not receipt.failures:
        return
    for slot, (direction, message, unsent) in enumerate(sent):
        error = receipt.failure(slot)
        if error is not None:
            unsent(direction, message, error)


class EndpointConfig(BaseModel):
    """Base of an endpoint's own config model; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class EndpointActor:
    """Common base of transports and applications (see the module docstring).

    Args:
        endpoint_name: the transport or exposed name this endpoint serves.
        config: the endpoint's own config (validated by ``CONFIG_CLASS``).
        replica_id: which replica of the endpoint this is.
        dedupe_window: how many recent message ids to remember for dropping duplicates.
        undeliverable_kept: how many messages no dispatcher took to keep as failure
            records (``undeliverable``); older ones are forgotten and counted.
        sender: batching options of the link to the dispatcher (``SenderOptions`` fields).
        deployment: the deployment's name; given, the endpoint finds its
            dispatcher actors by name and starts itself on first use (also
            after Ray restarts it).
        namespace: the deployment's Ray namespace.

    Raises:
        ConfigError: ``config`` is invalid; the text names the key.
    """

    CONFIG_CLASS: ClassVar[type[BaseModel]] = EndpointConfig
    ROLE: ClassVar[str] = "endpoint"

    def __init__(
        self,
        endpoint_name: str,
        config: Mapping[str, Any] | None = None,
        *,
        replica_id: str = "0",
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
        undeliverable_kept: int = DEFAULT_UNDELIVERABLE_KEPT,
        sender: Mapping[str, Any] | None = None,
        deployment: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self.endpoint_name = endpoint_name
        self._deployment = deployment
        self._namespace = namespace
        self.replica_id = replica_id
        try:
            self.config: Any = self.CONFIG_CLASS.model_validate(dict(config or {}))
            self._sender_options = SenderOptions.model_validate(dict(sender or {}))
        except ValidationError as exc:
            what = f"config of {self.ROLE} endpoint {endpoint_name!r} ({type(self).__name__})"
            raise ConfigError(format_validation_error(exc, what)) from None
        self._seen = SeenIds(dedupe_window)
        self._receive_lock = asyncio.Lock()
        self._order = SenderOrder()
        self._start_lock = asyncio.Lock()
        self._link: DispatcherLink | None = None
        self.counters: Counter[str] = Counter()
        self._undeliverable: deque[FailureRecord] = deque(maxlen=max(1, undeliverable_kept))
        self.started = False

    # -- lifecycle (called by the runtime) ---------------------------------------

    async def attach(self, dispatchers: list[Any]) -> None:
        """Connect to the dispatcher actor(s); replaces any earlier link."""
        if self._link is not None:
            await self._link.close()
        self._link = RayDispatcherLink(
            self.endpoint_name, list(dispatchers), self._sender_options, on_rejoin=self._resend_undeliverable
        )
        metrics.instruments()  # this process's senders report their batches from now on

    def use_link(self, link: DispatcherLink) -> None:
        """Connect to a dispatcher through ``link`` (tests and embedding without Ray)."""
        self._link = link

    async def start(self) -> None:
        """Attach to the deployment's dispatchers (if one was given) and run the setup hook, once."""
        async with self._start_lock:
            if self._link is None and self._deployment is not None:
                from actors.dispatcher import find_dispatchers

                dispatchers = find_dispatchers(self._deployment, self._namespace)
                if not dispatchers:
                    raise RuntimeError(f"deployment {self._deployment!r} has no dispatcher actors running")
                await self.attach(dispatchers)
            if not self.started:
                await self._setup()
                self.started = True
                tune_gc_for_throughput()

    async def stop(self, timeout: float = 10.0) -> bool:
        """Wait (bounded) for unconfirmed messages, then run the teardown hook.

        Returns whether everything sent was confirmed.
        """
        drained = True
        if self._link is not None:
            drained = await self._link.drain(timeout)
        if self.started:
            await self._teardown()
            self.started = False
        return drained

    async def ping(self) -> dict[str, Any]:
        """Describe this replica: name, role, replica id, node, pid, counters and undeliverable count."""
        from actors.ray_calls import current_node_id

        await self.start()
        return {
            "endpoint": self.endpoint_name,
            "role": self.ROLE,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "replica_id": self.replica_id,
            "node_id": current_node_id(),
            "pid": os.getpid(),
            "counters": dict(self.counters),
            "undeliverable": len(self._undeliverable),
        }

    async def undeliverable(self, clear: bool = False) -> list[dict[str, Any]]:
        """Messages sent without waiting that no dispatcher took, as failure record dicts, oldest first.

        A message lands here when the link to the dispatcher(s) gave up on it
        (every dispatcher dead, or unreachable past the retry budget). When a
        dispatcher answers again they are sent again and leave this list. At
        most ``undeliverable_kept`` are kept; ``counters["undeliverable_forgotten"]``
        counts the older ones pushed out. With ``clear`` the list is emptied.
        """
        records = [record.to_dict() for record in self._undeliverable]
        if clear:
            self._undeliverable.clear()
        return records

    async def _resend_undeliverable(self) -> None:
        """A dispatcher is back: hand over again, oldest first, the messages no dispatcher took.

        Only those that failed at the hand-over (``stage == "handoff"``); what a
        peer sent that was invalid stays a record. A message that fails again
        is kept again; duplicates of any the dispatcher did get are dropped there.
        """
        self.counters["dispatcher_rejoined"] += 1
        again = [r for r in self._undeliverable if r.stage == "handoff" and isinstance(r.message, Message)]
        if not again:
            return
        resending = {id(r) for r in again}
        kept = [r for r in self._undeliverable if id(r) not in resending]
        self._undeliverable.clear()
        self._undeliverable.extend(kept)
        for index, record in enumerate(again):
            try:
                await self._publish(record.direction, record.message, wait=False)
            except DeliveryError:
                self._undeliverable.extend(again[index:])  # no dispatcher left again: keep the rest
                return
            self.counters["undeliverable_resent"] += 1
        log.warning("%s %r: sent %d undeliverable message(s) again", self.ROLE, self.endpoint_name, len(again))

    # -- receiving from the dispatcher --------------------------------------------

    async def receive(
        self, source: str, batch: bytes | list[Any], order: Order | None = None, hops: int = 0
    ) -> list[tuple[int, str]]:
        """Handle a batch from the dispatcher, in order; return the items refused.

        ``batch`` is a blob from ``actors.wire.encode_batch`` (or a list of
        ``(direction, payload dict)`` items); an item that does not decode into
        a valid message is refused with the reason, the others are handled.
        ``hops`` is the batch's envelope: the dispatcher passes its items on as
        they arrived and says 1, which is added to each message's
        ``routing_metadata["hops"]`` (``actors.wire.decode_batch``).
        Batches of one sender are handled in their sequence order (``order``).
        Duplicates (a message id seen within the window) are confirmed without
        being handled again. An item whose hook raises is refused with the
        reason; the others in the batch are still handled. Then
        ``after_batch`` sees the handled messages; if it raises, they are all
        refused (and will not count as seen).
        """
        received, refused = decode_batch(batch, hops)
        size = len(received) + len(refused)
        rejected = [(item.position, item.reason) for item in refused]
        if refused:
            self.counters["malformed_refused"] += len(refused)
            log.warning(
                "%s %r refused %d malformed item(s): %s", self.ROLE, self.endpoint_name, len(refused), rejected[0][1]
            )
        handled: list[tuple[int, str, Message]] = []
        await self.start()
        responding = _RESPONDING.set(True)  # what the hooks publish now answers this batch
        try:
            async with self._order.turn(order), self._receive_lock:
                for index, (direction, message) in zip(_indexes_of(size, rejected), received):
                    key = message_key(direction, message)
                    if key in self._seen:
                        self.counters["duplicates_dropped"] += 1
                        continue
                    try:
                        await self._handle(direction, message)
                    except Exception as exc:
                        self.counters[f"{direction}_refused"] += 1
                        rejected.append((index, f"{type(exc).__name__}: {exc}"))
                        log.warning("%s %r refused a %s message: %s", self.ROLE, self.endpoint_name, direction, exc)
                        continue
                    self.counters[f"{direction}_received"] += 1
                    handled.append((index, key, message))
                try:
                    await self.after_batch([message for _, _, message in handled])
                except Exception as exc:
                    reason = f"after_batch failed: {type(exc).__name__}: {exc}"
                    return rejected + [(index, reason) for index, _, _ in handled]
                self._seen.add_many([key for _, key, _ in handled])
        finally:
            _RESPONDING.reset(responding)
        duplicates = size - len(rejected) - len(handled)
        metrics.record_endpoint_batch(self.endpoint_name, self.ROLE, size, len(rejected), duplicates)
        return rejected

    async def after_batch(self, messages: list[Message]) -> None:
        """Called after each batch with the messages handled in it (not duplicates or refused ones).

        Override to commit work per batch (a database transaction, a ledger
        entry): the dispatcher counts the batch as delivered only after this
        returns. The default does nothing.
        """

    # -- sending to the dispatcher ------------------------------------------------

    async def _publish(self, direction: Direction, message: Message, wait: bool) -> Message:
        """Hand ``message`` to the link: with ``wait`` until a dispatcher confirmed it, else into the open batch.

        Without ``wait`` nobody is told if no dispatcher takes it, so it
        becomes an undeliverable failure record (``_unsent``).

        Raises:
            RuntimeError: not attached to a dispatcher.
            DeliveryError: no dispatcher can take it (or, with ``wait``, none took it).
        """
        link = self._link
        if link is None:
            raise RuntimeError(f"{self.ROLE} {self.endpoint_name!r} is not attached to a dispatcher")
        publish = None if wait else getattr(link, "publish", None)
        if publish is not None:  # confirmed per batch, no future per message
            await publish(direction, message, self._unsent)
            self.counters[f"{direction}_sent"] += 1
            return message
        future = await link.send(direction, message)
        self.counters[f"{direction}_sent"] += 1
        if wait:
            await future
        else:
            future.add_done_callback(lambda done: self._keep_undeliverable(done, direction, message))
        return message

    def _keep_undeliverable(self, future: asyncio.Future[Any], direction: Direction, message: Message) -> None:
        """A link's future for a message nobody waited for settled: keep it if no dispatcher took it."""
        if future.cancelled():
            self._unsent(direction, message, asyncio.CancelledError("the link was closed before a dispatcher took it"))
        elif future.exception() is not None:
            self._unsent(direction, message, future.exception())  # type: ignore[arg-type]

    def _unsent(self, direction: Direction, message: Message, error: BaseException) -> None:
        """Keep a message nobody waited for and no dispatcher took as a failure record (never only a log line)."""
        self.counters["send_failed"] += 1
        self._record_undeliverable(
            f"{self.ROLE} {self.endpoint_name!r} could not hand this {direction} message"
            f" to a dispatcher: {type(error).__name__}: {error}",
            direction,
            message,
            error,
            "handoff",
        )

    def _record_undeliverable(
        self, reason: str, direction: Direction, message: Any, error: BaseException, stage: str
    ) -> FailureRecord:
        """Keep a message that never reached a dispatcher as a failure record (``undeliverable()``)."""
        if len(self._undeliverable) == self._undeliverable.maxlen:
            self.counters["undeliverable_forgotten"] += 1
        record = FailureRecord(
            reason=reason,
            direction=direction,
            endpoint=self.endpoint_name,
            message=message,
            error_type=type(error).__name__,
            stage=stage,
            destination="dispatcher",
        )
        self._undeliverable.append(record)
        log.error("%s; kept as undeliverable failure record %s", record.reason, record.failure_id)
        return record

    # -- hooks for subclasses ------------------------------------------------------

    async def _setup(self) -> None:
        raise NotImplementedError

    async def _teardown(self) -> None:
        raise NotImplementedError

    async def _handle(self, direction: Direction, message: Message) -> None:
        raise NotImplementedError


class TransportActor(EndpointActor):
    """Base for transports: the outside world on one side, the dispatcher on the other.

    Override ``setup_transport``, ``teardown_transport`` and
    ``handle_outbound_message``. Set ``TRANSPORT_TYPE`` (``sms``, ``xmpp``, ...).
    A transport with a peer keeps each connection's state in a
    ``ConnectionState`` from ``track_connection`` (or a ``ConnectionSupervisor``
    given one): status and metrics show it. Without any, status shows no peer (n/a).
    """

    ROLE: ClassVar[str] = "transport"
    TRANSPORT_TYPE: ClassVar[str] = "sms"

    def __init__(self, endpoint_name: str, config: Mapping[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self._peer_connections: dict[str, ConnectionState] = {}

    def track_connection(self, name: str, state: str = "connecting") -> ConnectionState:
        """The ``ConnectionState`` of this transport's connection ``name`` (created on first call, in ``state``).

        Move it with ``enter``; ``connection_state()``, status and the
        ``ray_dispatch_connection_state`` metric follow it.
        """
        if name not in self._peer_connections:
            tracked = ConnectionState(name, state, observer=self._connection_changed)
            self._peer_connections[name] = tracked
            self._connection_changed(tracked)
        return self._peer_connections[name]

    def connection_state(self) -> list[dict[str, Any]]:
        """Each tracked connection's state (see ``actors.connection``); empty when there is no peer."""
        return [tracked.to_dict() for tracked in self._peer_connections.values()]

    def _connection_changed(self, tracked: ConnectionState) -> None:
        metrics.record_connection_state(self.endpoint_name, self.replica_id, tracked.name, tracked.state)

    async def ping(self) -> dict[str, Any]:
        """Describe this replica (see ``EndpointActor.ping``), with its ``connections`` and whether all are up.

        ``connected`` is None when the transport has no peer connection to report.
        """
        info = await super().ping()
        info["connections"] = self.connection_state()
        info["connected"] = replica_connected(info["connections"])
        return info

    async def setup_transport(self) -> None:
        """Connect to the outside world (may do I/O). The default does nothing."""

    async def teardown_transport(self) -> None:
        """Disconnect from the outside world. The default does nothing."""

    async def handle_outbound_message(self, message: TransportUserMessage) -> None:
        """Send ``message`` to the outside world; raise to refuse it (it becomes a failure record)."""
        raise NotImplementedError(f"{type(self).__name__} does not send outbound messages")

    async def _setup(self) -> None:
        await self.setup_transport()

    async def _teardown(self) -> None:
        await self.teardown_transport()

    async def _handle(self, direction: Direction, message: Message) -> None:
        if direction != "outbound" or not isinstance(message, TransportUserMessage):
            raise ValueError(f"transport {self.endpoint_name!r} only takes outbound user messages, got {direction}")
        await self.handle_outbound_message(message)

    async def publish_message(self, *, wait: bool = False, **fields: Any) -> TransportUserMessage:
        """Validate a user message from the outside world and hand it to the dispatcher.

        ``transport_name`` and ``transport_type`` default to this endpoint's.
        With ``wait`` the call returns only once the dispatcher has routed it.

        Raises:
            InvalidMessage: a field is missing or invalid (nothing is sent).
        """
        fields.setdefault("transport_name", self.endpoint_name)
        fields.setdefault("transport_type", self.TRANSPORT_TYPE)
        fields.setdefault("message_type", "user_message")
        message = message_from_dict(fields)
        if not isinstance(message, TransportUserMessage):  # an event must not travel as an inbound message
            raise InvalidMessage(f"field 'message_type': expected 'user_message', got {fields['message_type']!r:.200}")
        await self._publish("inbound", message, wait)
        return message  # type: ignore[return-value]

    async def publish_from_peer(self, **fields: Any) -> TransportUserMessage | None:
        """Hand the dispatcher a message the outside world sent, without raising.

        For code driven by a peer (a socket, a stream), where no caller can be
        told: a message that is invalid, or that cannot be handed over, is kept
        as an undeliverable failure record (``undeliverable()``) and None is
        returned.
        """
        try:
            return await self.publish_message(**fields)
        except (InvalidMessage, RuntimeError, DeliveryError) as exc:
            stage = "validate" if isinstance(exc, InvalidMessage) else "handoff"
            reason = f"{self.ROLE} {self.endpoint_name!r} got a message from its peer it could not pass on: {exc}"
            self._record_undeliverable(reason, "inbound", json_safe(fields), exc, stage)
            return None

    async def publish_event(self, *, wait: bool = False, **fields: Any) -> TransportEvent:
        """Validate an event and hand it to the dispatcher.

        Raises:
            InvalidMessage: a field is missing or invalid (nothing is sent).
        """
        fields.setdefault("transport_name", self.endpoint_name)
        fields.setdefault("transport_type", self.TRANSPORT_TYPE)
        fields["message_type"] = "event"
        event = message_from_dict(fields)
        await self._publish("event", event, wait)
        return event  # type: ignore[return-value]

    async def publish_ack(self, user_message_id: str, sent_message_id: str, **fields: Any) -> TransportEvent:
        """Tell the sender its message was accepted by the outside world."""
        return await self.publish_event(
            event_type="ack", user_message_id=user_message_id, sent_message_id=sent_message_id, **fields
        )

    async def publish_nack(self, user_message_id: str, nack_reason: str, **fields: Any) -> TransportEvent:
        """Tell the sender its message was refused, and why."""
        return await self.publish_event(
            event_type="nack", user_message_id=user_message_id, nack_reason=nack_reason, **fields
        )

    async def publish_delivery_report(
        self, user_message_id: str, delivery_status: str, **fields: Any
    ) -> TransportEvent:
        """Tell the sender what became of its message: ``pending``, ``failed`` or ``delivered``."""
        return await self.publish_event(
            event_type="delivery_report", user_message_id=user_message_id, delivery_status=delivery_status, **fields
        )


class ApplicationActor(EndpointActor):
    """Base for applications: receives user messages and events, replies and sends.

    Override ``consume_user_message`` and any event hook. ``new_session`` and
    ``close_session`` receive messages whose ``session_event`` is ``new`` or
    ``close`` (both default to ``consume_user_message``).
    """

    ROLE: ClassVar[str] = "application"

    async def setup_application(self) -> None:
        """Prepare the application (may do I/O). The default does nothing."""

    async def teardown_application(self) -> None:
        """Release resources. The default does nothing."""

    async def consume_user_message(self, message: TransportUserMessage) -> None:
        """Handle a user message. The default ignores it."""

    async def new_session(self, message: TransportUserMessage) -> None:
        """Handle the first message of a session. Defaults to ``consume_user_message``."""
        await self.consume_user_message(message)

    async def close_session(self, message: TransportUserMessage) -> None:
        """Handle the message that closes a session. Defaults to ``consume_user_message``."""
        await self.consume_user_message(message)

    async def consume_ack(self, event: TransportEvent) -> None:
        """Handle an ack for a message this application sent. The default ignores it."""

    async def consume_nack(self, event: TransportEvent) -> None:
        """Handle a nack for a message this application sent. The default ignores it."""

    async def consume_delivery_report(self, event: TransportEvent) -> None:
        """Handle a delivery report for a message this application sent. The default ignores it."""

    async def _setup(self) -> None:
        await self.setup_application()

    async def _teardown(self) -> None:
        await self.teardown_application()

    async def _handle(self, direction: Direction, message: Message) -> None:
        if direction == "inbound" and isinstance(message, TransportUserMessage):
            if message.session_event == "new":
                await self.new_session(message)
            elif message.session_event == "close":
                await self.close_session(message)
            else:
                await self.consume_user_message(message)
        elif direction == "event" and isinstance(message, TransportEvent):
            hook = {"ack": self.consume_ack, "nack": self.consume_nack}.get(
                message.event_type, self.consume_delivery_report
            )
            await hook(message)
        else:
            raise ValueError(f"application {self.endpoint_name!r} does not take {direction} messages")

    async def reply_to(
        self, message: TransportUserMessage, content: str | None, continue_session: bool = True, **kw: Any
    ) -> TransportUserMessage:
        """Reply to ``message`` (Vumi's ``reply`` semantics) and send it.

        Raises:
            TypeError: ``kw`` overrides an address or transport field.
        """
        reply = message.reply(content, continue_session, **kw)
        await self._publish("outbound", reply, wait=False)
        return reply

    async def send_to(
        self,
        to_addr: str,
        content: str | None,
        transport_name: str | None = None,
        *,
        from_addr: str | None = None,
        transport_type: str = "sms",
        **kw: Any,
    ) -> TransportUserMessage:
        """Start a new conversation: send ``content`` to ``to_addr``.

        ``transport_name`` names the transport (or a ``transport_mappings``
        alias); it defaults to this application's endpoint name, as in Vumi.

        Raises:
            InvalidMessage: a field is invalid (nothing is sent).
        """
        message = TransportUserMessage(
            to_addr=to_addr,
            from_addr=from_addr,
            content=content,
            transport_name=transport_name or self.endpoint_name,
            transport_type=transport_type,
            **kw,
        )
        await self._publish("outbound", message, wait=False)
        return message


def _indexes_of(size: int, refused: list[tuple[int, str]]) -> range | list[int]:
    """The batch positions of the decoded messages: all of ``range(size)`` but the refused ones."""
    if not refused:
        return range(size)
    skipped = {index for index, _ in refused}
    return [index for index in range(size) if index not in skipped]
