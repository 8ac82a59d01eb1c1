"""``DispatcherActor``: the core ``Dispatcher`` on Ray, forwarding by actor handle.

Data path: endpoint actors send batches to ``receive(source, batch)``. A
valid blob is cut into runs of one direction; a run the core can route
without a message per item (``Dispatcher.route_whole``: one router decision
for the run; ``route_grouped``: one per message, grouped by destination) is
forwarded as it arrived: each item's bytes go to the replica pool of its
destination untouched, one chunk per destination under one receipt. Any
other run, and any batch with an item that does not decode, is rebuilt
message by message and run through the core (middleware, router, return
routes, failure records), each routed copy handed to its destination's pool.
A pool batches, paces (``rate_limit``), confirms and retries; its confirmation is the receipt.
The dispatcher queues its copies without waiting for room, so a slow or
rate-limited endpoint holds up only its own traffic; the queue is bounded by
what the sources have in flight, since a batch is confirmed to its source
only once its copies were delivered.
The hop count travels in the envelope of the dispatcher's calls
(``receive(..., hops=1)``): the receiving endpoint adds it to each message. Once the whole batch is routed,
the core settles it (``Dispatcher.settle``: counts what was confirmed, records
what was refused), so ``receive`` returns only when every resulting delivery
is confirmed or has become a failure record: a sender that got no answer
(dispatcher died) sends again and nothing is lost; receivers drop the duplicates.

The actor finds its endpoint replicas by name (``<deployment>:<endpoint>:<replica>``
named actors in its namespace) when it starts, when told to ``refresh``, and
after it is restarted; it pings them periodically and drops the dead ones, and
its ``ReplicaWatchdog`` gives up on a replica whose calls hang (a lost node)
once it has not answered a probe (``actors.watchdog``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from actors.gc_tuning import tune_gc_for_throughput
from actors.generation_switch import GenerationSwitch
from actors.metrics import DispatcherMetrics
from actors.naming import dispatcher_actor_name as dispatcher_actor_name  # re-exported: their old home
from actors.naming import endpoint_actor_name as endpoint_actor_name
from actors.naming import find_dispatchers as find_dispatchers
from actors.ordering import SeenIds, SenderOrder
from actors.pool import STICKY_FIELDS, ReplicaPool, sticky_key
from actors.ray_calls import classify_ray_error, current_node_id, probe_replica, receive_call
from actors.sender import Order, SenderOptions
from actors.watchdog import ReplicaWatchdog
from actors.wire import Received, Refused, Run, decode_batch, encode_item, valid_batch
from ray_dispatch.core.config import EndpointSpec
from ray_dispatch.core.deployment import deployment_spec
from ray_dispatch.core.dispatcher import Dispatcher, DispatchOutcome, ForwardedRun
from ray_dispatch.core.errors import DeliveryError, InvalidMessage, StoreError
from ray_dispatch.core.message import Message, message_from_dict
from ray_dispatch.core.receipts import BatchReceipt, Receipt
from ray_dispatch.core.recent import BatchRecord, RecentOutcomes
from ray_dispatch.core.stores.failures import DIRECTIONS, Direction
from ray_dispatch.tools.recent import LiveExplanation, explain_recorded

log = logging.getLogger(__name__)

DISPATCHER_SOURCE = "dispatcher"


class RayOutbox:
    """The core's ``Outbox`` on Ray: routed copies go to replica pools, one receipt per destination batch.

    ``deliver`` adds a copy to the open batch of its destination and returns
    its ``Slot`` of the batch's ``BatchReceipt``; ``flush`` queues every open
    batch in its pool as one chunk (the dispatcher flushes once per routed
    batch, in arrival order, so one user's messages keep their order). It
    never waits for room: a full or rate-limited endpoint holds up its own
    copies, not the routing of everything else.
    """

    def __init__(self, pools: dict[str, ReplicaPool]) -> None:
        self.pools = pools
        self._open: dict[str, tuple[list[Any], list[str | None], BatchReceipt]] = {}

    async def deliver(self, direction: Direction, endpoint: str, message: Message) -> Receipt:
        """Add ``message`` to the open batch for ``endpoint``; return its receipt (settled once flushed and confirmed).

        The receipt fails when the pool gives up on the copy (``DeliveryError``)
        or the replica refused it.

        Raises:
            DeliveryError: the endpoint has no replicas.
        """
        batch = self._open.get(endpoint)
        if batch is None:
            if not self.pools[endpoint].replicas:
                raise DeliveryError(f"endpoint {endpoint!r} has no replicas to deliver to")
            batch = self._open[endpoint] = ([], [], BatchReceipt())
        batch[0].append(encode_item(direction, message))
        batch[1].append(sticky_key(direction, message))
        return batch[2].add()

    async def flush(self) -> None:
        """Queue every open batch in its pool, at once (what no replica takes fails in its receipt)."""
        while self._open:
            endpoint = next(iter(self._open))
            items, keys, receipt = self._open.pop(endpoint)
            receipt.submitted = True
            self.pools[endpoint].queue_batch(items, keys, receipt)


_Forwarded = tuple[Run, ForwardedRun, BatchReceipt, BatchRecord | None]
"""A run forwarded as it arrived: the run, where each item went, its receipt (a slot per item), its record."""


class _Routed:
    """What routing one arriving batch did, to settle outside the routing lock."""

    def __init__(self, received: Sequence[Received]) -> None:
        self.received = received
        self.forwarded: list[_Forwarded] = []
        self.outcomes: list[DispatchOutcome] = []
        self.records: list[BatchRecord] = []


class DispatcherActor(GenerationSwitch):
    """Holds the router and forwards messages to endpoint actors (see the module docstring).

    Args:
        config: the dispatcher config (a dict, as loaded from YAML).
        deployment: the deployment's name (prefix of its actor names).
        dispatcher_index: which dispatcher replica this is.
        allowed_class_prefixes: if given, classes must live under these module prefixes.
        health_interval: seconds between endpoint health checks (0 disables them).
        dedupe_window: how many recent message ids to remember (redelivered batches).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        deployment: str = "default",
        dispatcher_index: int = 0,
        *,
        allowed_class_prefixes: Sequence[str] | None = None,
        health_interval: float = 2.0,
        dedupe_window: int = 100_000,
    ) -> None:
        self.deployment = deployment
        self.index = dispatcher_index
        self.pools: dict[str, ReplicaPool] = {}
        self._allowed_class_prefixes = allowed_class_prefixes
        self.core = Dispatcher(
            config, RayOutbox(self.pools), allowed_class_prefixes=allowed_class_prefixes, hops_in_envelope=True
        )
        self.spec = deployment_spec(self.core.config)
        section = self.core.config.dispatcher
        self.watchdog = ReplicaWatchdog(
            self.pools,
            probe_replica,
            call_deadline=section.call_deadline,
            probe_timeout=section.probe_timeout,
            classify=classify_ray_error,
        )
        self.applied_at = time.time()
        for name, endpoint in self.spec.endpoints.items():
            self.pools[name] = self._new_pool(name, endpoint)
        self._health_interval = health_interval
        self._health_task: asyncio.Task[None] | None = None
        self._watchdog_task: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._removed: set[tuple[str, str]] = set()
        self._route_lock = asyncio.Lock()
        self._order = SenderOrder()
        self._seen = SeenIds(dedupe_window)
        self.dead_replicas: list[dict[str, str]] = []
        self.recent = RecentOutcomes(self.core.config.recent_outcomes)  # for explain_message
        self.metrics = DispatcherMetrics(deployment, self.core.stats, self._pending_per_endpoint)

    def _new_pool(self, name: str, endpoint: EndpointSpec) -> ReplicaPool:
        """The replica pool that sends to endpoint ``name`` (no replicas yet)."""
        return ReplicaPool(
            name,
            self.watchdog.watched(receive_call(DISPATCHER_SOURCE, hops=1)),
            endpoint.policy,
            SenderOptions.model_validate(endpoint.batching),
            classify=classify_ray_error,
            on_replica_dead=self._replica_dead,
            rate_limit=endpoint.rate_limit,
        )

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> dict[str, Any]:
        """Set up the router and middleware, find endpoint replicas, start health checks."""
        async with self._start_lock:
            if not self.core.started:
                await self.adopt_current_generation()  # a restarted dispatcher: the config in force now
                await self.core.start()
                await self.refresh()
                tune_gc_for_throughput()
                if self._health_interval > 0:
                    self._health_task = asyncio.get_running_loop().create_task(self._health_loop())
                if self.watchdog.call_deadline > 0:
                    interval = min(0.25, self.watchdog.call_deadline / 4)
                    self._watchdog_task = asyncio.get_running_loop().create_task(self.watchdog.run(interval))
        return await self.status()

    async def _ready(self) -> None:
        if not self.core.started:
            await self.start()

    async def refresh(self) -> dict[str, list[str]]:
        """Find this deployment's endpoint replicas by actor name; add the new ones to the pools."""
        found: dict[str, list[str]] = {}
        for entry in ray.util.list_named_actors(all_namespaces=True):
            name, namespace = entry["name"], entry["namespace"]
            parts = name.split(":")
            if len(parts) != 3 or parts[0] != self.deployment or parts[1] not in self.pools:
                continue
            endpoint, replica_id = parts[1], parts[2]
            pool = self.pools[endpoint]
            if (endpoint, replica_id) in self._removed:
                continue  # being stopped: its name lingers until it is killed
            if self.watchdog.suspected(endpoint, replica_id):
                continue  # evicted for not answering: the watchdog adds it back when it answers
            if all(r.replica_id != replica_id for r in pool.replicas):
                try:
                    handle = ray.get_actor(name, namespace=namespace)
                except ValueError:
                    continue
                pool.add(replica_id, handle)
            found.setdefault(endpoint, []).append(replica_id)
        return found

    async def add_replica(self, endpoint: str, replica_id: str, handle: Any) -> None:
        """Start sending to a new replica of ``endpoint``.

        Raises:
            KeyError: ``endpoint`` is not one of this dispatcher's endpoints.
        """
        self._removed.discard((endpoint, replica_id))
        self.watchdog.forget(endpoint, replica_id)  # a new actor under that name: no longer suspected
        self._pool(endpoint).add(replica_id, handle)

    async def remove_replica(self, endpoint: str, replica_id: str, timeout: float = 30.0) -> bool:
        """Stop sending to a replica once it has confirmed what it was sent (none is lost).

        Raises:
            KeyError: unknown endpoint or replica.
        """
        self._removed.add((endpoint, replica_id))
        self.watchdog.forget(endpoint, replica_id)
        return await self._pool(endpoint).remove(replica_id, timeout)

    def _pool(self, endpoint: str) -> ReplicaPool:
        try:
            return self.pools[endpoint]
        except KeyError:
            raise KeyError(f"unknown endpoint {endpoint!r}; this dispatcher has {sorted(self.pools)}") from None

    async def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every endpoint confirmed what it was sent."""
        results = await asyncio.gather(*(pool.drain(timeout) for pool in self.pools.values()))
        return all(results)

    async def stop(self, timeout: float = 30.0) -> bool:
        """Drain (bounded), stop health checks, tear down the router; return whether all was confirmed."""
        drained = await self.drain(timeout)
        for task in (self._health_task, self._watchdog_task):
            if task is not None:
                task.cancel()
        await self.core.stop()
        for pool in self.pools.values():
            await pool.close()
        return drained

    # -- the data path ------------------------------------------------------------------

    async def receive(self, source: str, batch: bytes | list[Any], order: Order | None = None) -> list[tuple[int, str]]:
        """Route a batch from endpoint ``source``; return when every delivery is confirmed or recorded.

        ``batch`` is a blob from ``actors.wire.encode_batch`` (or a list of
        ``(direction, payload dict)`` items from a caller that is not one of
        our senders). Items are never refused here: what does not decode,
        cannot be routed or cannot be delivered becomes a failure record.
        Batches of one sender are routed in their sequence order (``order``),
        one batch at a time.
        """
        await self._ready()
        started = time.monotonic()
        async with self._order.turn(order), self._route_lock:
            routed = await self._route_batch(source, batch)
        # Settled outside the lock: the next batch is routed meanwhile.
        for run, forwarded, receipt, record in routed.forwarded:
            failures = await self.core.settle_whole(forwarded, receipt, run.message)
            if failures and record is not None:
                record.add_failures(failures)
        await self.core.settle(*routed.outcomes)
        for record in routed.records:
            record.compact()  # keep what happened, not the outcomes
        self.metrics.batch_done(source, routed.received, started)
        return []

    async def _route_batch(self, source: str, batch: Any) -> _Routed:
        """Route ``batch`` and hand its copies over; return what is left to settle.

        A valid blob is cut into runs of one direction, and each run is routed
        without a message per item when it can be (``_route_run``), else
        message by message (``_route_messages``), in order. Anything else is decoded item by item;
        an item that does not decode takes ``_route_refused``.
        """
        valid = valid_batch(batch)
        if valid is None:
            return await self._route_checked(source, batch)
        routed = _Routed(valid)
        for run in valid.runs():
            if not await self._route_run(source, run, routed):
                await self._route_messages(source, list(run), routed)
        return routed

    async def _route_checked(self, source: str, batch: Any) -> _Routed:
        """Route a batch that is not a valid blob: what decodes is routed, the rest recorded."""
        try:
            received, refused = decode_batch(batch)
        except InvalidMessage as exc:
            head = bytes(batch[:256]) if isinstance(batch, (bytes, bytearray, memoryview)) else batch
            guessed = self._guess_direction(source)
            await self.core.record_failure(str(exc), guessed, str(source), head, error=exc, stage="validate")
            return _Routed([])
        routed = _Routed(received)
        await self._route_messages(source, received, routed, refused)
        return routed

    async def _route_messages(
        self, source: str, received: list[Received], routed: _Routed, refused: Sequence[Refused] = ()
    ) -> None:
        """Route decoded messages one by one (dropping ids seen before, checked at once); flush their copies.

        Their outcomes (not yet settled) and recent-outcomes record go to ``routed``.
        """
        keys = [self._dedupe_key(direction, message) for direction, message in received]
        items, fresh = self._new_items(received, keys)
        outcomes = await self.core.route_batch(source, items)
        record = self.recent.add_batch([d for d, _ in items], source, [m for _, m in items], outcomes)
        self._seen.add_many(fresh)
        for item in refused:
            await self._route_refused(source, item, outcomes)
        await self.core.flush()  # one chunk per destination, queued before the next run is routed
        routed.outcomes.extend(outcomes)
        if record is not None:
            routed.records.append(record)

    async def _route_run(self, source: str, run: Run, routed: _Routed) -> bool:
        """Route a run of one direction without a message per item where the core allows it; False: not done.

        None of its ids may have been seen. The core first tries one decision
        for the whole run (``route_whole``), then a decision per message
        grouped by destination (``route_grouped``); a run routed either way
        is forwarded as it arrived: each item's bytes go to its destination
        untouched, one chunk per destination, under one receipt (a slot per
        item). When ``route_grouped`` decided but could not group, its
        per-message outcomes join ``routed`` as ``route_batch``'s would.
        """
        direction = run.direction
        ids = run.values("event_id" if direction == "event" else "message_id")
        keys = [f"{direction}:{found}" for found in ids]
        if self._seen.any_of(keys) or len(set(keys)) != len(keys):
            return False
        hops = run.highest_hops()
        forwarded = await self.core.route_whole(direction, source, run.message(0), run.values, hops, self._deliverable)
        if forwarded is None:
            messages = [message for _, message in run]
            result = await self.core.route_grouped(direction, source, messages, run.values, hops, self._deliverable)
            if result is None:
                return False
            if isinstance(result, list):  # decided message by message, delivered through the outbox
                self._seen.add_many(keys)
                record = self.recent.add_batch(direction, source, messages, result)
                await self.core.flush()
                routed.outcomes.extend(result)
                if record is not None:
                    routed.records.append(record)
                return True
            forwarded = result
        receipt = BatchReceipt()
        receipt.add_many(forwarded.count)
        receipt.submitted = True
        users = [key if isinstance(key, str) else None for key in run.values(STICKY_FIELDS[direction])]
        raw = run.raw_items()
        for destination, slots in _by_destination(forwarded.destinations):
            pool = self.pools[destination]
            if slots is None:
                pool.queue_batch(raw, users, receipt)
            else:
                pool.queue_batch([raw[i] for i in slots], [users[i] for i in slots], receipt, slots)
        self._seen.add_many(keys)
        record = self.recent.add_whole(
            direction, source, run.messages(), ids, forwarded.destinations, forwarded.generation
        )
        routed.forwarded.append((run, forwarded, receipt, record))
        return True

    def _deliverable(self, endpoint: str) -> bool:
        pool = self.pools.get(endpoint)
        return pool is not None and bool(pool.replicas)

    async def _route_refused(self, source: str, refused: Refused, outcomes: list[DispatchOutcome]) -> None:
        """An item that did not decode: a ``(direction, payload)`` pair goes to the core, whose validation
        names the bad field in a failure record; anything else is recorded as malformed."""
        item = refused.item
        if isinstance(item, (tuple, list)) and len(item) == 2 and item[0] in DIRECTIONS:
            outcomes.append(await self.core.route(item[0], item[1], source))
        else:
            await self._record_malformed(source, item)

    def _new_items(
        self, items: list[tuple[Direction, Message]], keys: list[str | None]
    ) -> tuple[list[tuple[Direction, Message]], list[str]]:
        """The items whose id was not seen before (nor earlier in the batch), and their ids."""
        present = [key for key in keys if key is not None]
        if not self._seen.any_of(present) and len(set(present)) == len(present):
            return items, present  # the usual case: nothing seen, one set operation
        new: list[tuple[Direction, Message]] = []
        fresh: dict[str, None] = {}  # in arrival order
        for item, key in zip(items, keys, strict=True):
            if key is not None:
                if key in self._seen or key in fresh:
                    continue
                fresh[key] = None
            new.append(item)
        return new, list(fresh)

    @staticmethod
    def _dedupe_key(direction: str, payload: Any) -> str | None:
        """``direction:id`` of a message or payload that carries its id as a string; None (no dedupe) otherwise."""
        if not isinstance(payload, (dict, Message)):
            return None
        found = payload.get("event_id" if direction == "event" else "message_id")
        return f"{direction}:{found}" if isinstance(found, str) else None

    def _guess_direction(self, source: str) -> Direction:
        return "outbound" if source in self.core.exposed_names else "inbound"

    async def _record_malformed(self, source: str, item: Any) -> None:
        """Record a batch item that is not a ``(direction, payload)`` pair with a known direction."""
        if isinstance(item, (tuple, list)) and len(item) == 2:
            reason = f"unknown direction {item[0]!r} (expected one of {list(DIRECTIONS)})"
        else:
            reason = f"batch item is not a (direction, payload) pair: got {type(item).__name__}"
        await self.core.record_failure(reason, self._guess_direction(source), str(source), item, stage="validate")

    async def inject(
        self, direction: Direction, endpoint: str, payload: dict[str, Any], trace: bool = False
    ) -> dict[str, Any]:
        """Route one message given as a dict, as if it arrived on ``endpoint``; report where it went.

        Returns ``{"message_id", "destinations", "failures", "dropped", "trace"}``
        after the destinations confirmed it.

        Raises:
            InvalidMessage: the payload is not a valid message (nothing is routed).
        """
        await self._ready()
        if direction not in ("inbound", "event", "outbound"):
            raise InvalidMessage(f"direction must be inbound, event or outbound (got {direction!r})")
        message = message_from_dict(payload)
        outcome = await self.core.route(direction, message, endpoint, trace=trace)
        record = self.recent.add_batch(direction, endpoint, [message], [outcome])
        await self.core.settle(outcome)
        if record is not None:
            record.compact()
        return {
            "message_id": message.get("message_id") or message.get("event_id"),
            "destinations": _confirmed_destinations(outcome),
            "failures": [{"failure_id": f.failure_id, "reason": f.reason, "stage": f.stage} for f in outcome.failures],
            "dropped": outcome.dropped,
            "trace": outcome.trace,
        }

    # -- observation ----------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """Counters, replicas per endpoint, failure count and the stores' states.

        ``store`` and ``failure_store`` are the stores' ``state()``; while the
        failure store cannot be reached, ``failures`` is None.
        """
        try:
            failures: int | None = await self.core.failures.count()
        except StoreError:
            failures = None
        return {
            "deployment": self.deployment,
            "dispatcher": self.index,
            "node_id": current_node_id(),
            "router": type(self.core.router).__name__,
            **self.generation_info(),
            "started": self.core.started,
            "stats": self.core.stats.to_dict(),
            "endpoints": {name: pool.stats() for name, pool in self.pools.items()},
            "failures": failures,
            "store": self.core.store.state(),
            "failure_store": self.core.failures.state(),
            "dead_replicas": list(self.dead_replicas),
            "metrics": self.metrics.snapshot(),
        }

    async def pending(self) -> dict[str, int]:
        """Messages sent to each endpoint's replicas and not yet confirmed (the autoscaler's load signal)."""
        return self._pending_per_endpoint()

    async def failure_counts(self) -> dict[str, int]:
        """Failure records kept now, per ``"direction:endpoint"`` where they failed (what ``failures list`` shows).

        Unlike ``stats["failed"]``, which counts every failure ever recorded, this
        drops when records are replayed or purged.

        Raises:
            StoreUnavailable: the failure store cannot be reached.
        """
        return await self.core.failures.count_by_endpoint()

    def _pending_per_endpoint(self) -> dict[str, int]:
        return {name: sum(r["pending"] for r in pool.stats().values()) for name, pool in self.pools.items()}

    async def failures(self, direction: str | None = None, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Failure records as dicts, oldest first, optionally filtered."""
        return [r.to_dict() for r in await self.core.failures.list(direction, endpoint)]  # type: ignore[arg-type]

    async def failure(self, failure_id: str) -> dict[str, Any]:
        """One failure record.

        Raises:
            KeyError: no record has that id.
        """
        return (await self.core.failures.get(failure_id)).to_dict()

    async def replay_failure(self, failure_id: str, endpoint: str | None = None) -> dict[str, Any]:
        """Route a failed message again (from its endpoint, or as if it arrived on ``endpoint``).

        Raises:
            KeyError: no record has that id.
        """
        outcome = await self.core.replay_failure(failure_id, endpoint)  # settled: confirmed or recorded
        return {"destinations": _confirmed_destinations(outcome), "failures": [f.reason for f in outcome.failures]}

    async def purge_failures(self, failure_ids: list[str] | None = None) -> int:
        """Remove the given failure records (all when None); return how many were removed."""
        if failure_ids is None:
            return await self.core.failures.purge()
        return await self.core.failures.remove(failure_ids)

    async def raw_config(self) -> dict[str, Any]:
        """The config this dispatcher was started with, as given."""
        return dict(self.core.config.raw)

    async def explain_message(self, message_id: str) -> LiveExplanation:
        """What this dispatcher did with a recent message, next to a traced re-run of it with its config.

        The re-run reads this dispatcher's routing store and never writes to it
        (see ``ray_dispatch.tools.recent``).

        Raises:
            KeyError: the id is not among the last ``recent_outcomes`` messages routed here.
        """
        recorded = self.recent.get(message_id)
        if recorded is None:
            raise self.recent.not_found(message_id, f"dispatcher {self.index} of deployment {self.deployment!r}")
        return await explain_recorded(
            self.core.config, recorded, live_store=self.core.store, deployment=self.deployment, dispatcher=self.index
        )

    async def ping(self) -> dict[str, Any]:
        """Liveness check (with the actor's process id)."""
        return {
            "deployment": self.deployment,
            "dispatcher": self.index,
            "started": self.core.started,
            "pid": os.getpid(),
        }

    # -- health -------------------------------------------------------------------------

    def _replica_dead(self, endpoint: str, replica_id: str, exc: BaseException) -> None:
        log.warning("endpoint %r replica %r is dead (%s); its messages go to the others", endpoint, replica_id, exc)
        self.dead_replicas.append({"endpoint": endpoint, "replica_id": replica_id, "error": str(exc)})

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval)
            await self.refresh()  # re-adds replicas Ray restarted after we gave up on them
            for _name, pool in self.pools.items():
                for replica in list(pool.replicas):
                    try:
                        await asyncio.wait_for(replica.target.ping.remote(), timeout=self._health_interval * 5)
                    except Exception as exc:
                        if classify_ray_error(exc) == "dead":
                            await pool.evict(replica.replica_id, exc)


def _by_destination(destinations: list[str]) -> list[tuple[str, list[int] | None]]:
    """Each destination with the positions that go to it (None: all of them), in order of first appearance."""
    first = destinations[0]
    if destinations.count(first) == len(destinations):
        return [(first, None)]
    groups: dict[str, list[int]] = {}
    for index, destination in enumerate(destinations):
        groups.setdefault(destination, []).append(index)
    return list(groups.items())


def _confirmed_destinations(outcome: DispatchOutcome) -> list[str]:
    """``"direction:endpoint"`` of the settled outcome's deliveries that were confirmed."""
    return [f"{d.direction}:{d.endpoint}" for d in outcome.deliveries if d.failure is None]
