"""Replica pools: one endpoint name backed by N receivers, picked per message.

Policies:
    round_robin (default): each message to the next replica (a batch is cut
        into equal runs, one per replica, starting with the next one).
    sticky: one user's messages always reach the same replica (rendezvous
        hashing, so adding or removing a replica moves only its own users);
        ``sticky_key`` says who a message's user is.
    least_loaded: the replica with the fewest unconfirmed messages (one pick per batch).

A batch (``queue_batch``) is split by replica once and each part queued as one
chunk with the batch's one receipt; a user's messages keep their order
because each part keeps the batch's order and a replica's sender keeps the
order of its chunks.

When a replica is found dead, its unconfirmed messages are sent again, in
their original order, to the replicas that remain. This module imports no
Ray: each replica's send call is built by an injected factory.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from actors.sender import BatchSender, Chunk, ErrorKind, Order, SenderOptions
from actors.throttle import TokenBucket
from ray_dispatch.core.errors import DeliveryError
from ray_dispatch.core.message import Message
from ray_dispatch.core.receipts import BatchReceipt

Policy = Literal["round_robin", "sticky", "least_loaded"]
POLICIES: tuple[Policy, ...] = ("round_robin", "sticky", "least_loaded")


STICKY_FIELDS: dict[str, str] = {"inbound": "from_addr", "event": "user_message_id", "outbound": "to_addr"}
"""The field that says who a message's user is, by direction (see ``sticky_key``)."""


def sticky_key(direction: str, message: Message) -> str | None:
    """The key that keeps a message with its user's other messages under the ``sticky`` policy.

    Inbound messages go by the sender (``from_addr``), outbound ones by the
    recipient (``to_addr``), events by the message they are about
    (``user_message_id``). None (no such string field) lets the policy pick freely.
    """
    key = message.get(STICKY_FIELDS.get(direction, "to_addr"))
    return key if isinstance(key, str) else None


def _weight(key: str, replica_id: str) -> int:
    digest = hashlib.blake2b(f"{key}|{replica_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Replica:
    """One receiver of a pool: an id, the object to call, and its sender."""

    def __init__(self, replica_id: str, target: Any, sender: BatchSender) -> None:
        self.replica_id = replica_id
        self.target = target
        self.sender = sender
        self.draining = False


class ReplicaPool:
    """Picks a replica per message by policy and keeps messages through replica deaths.

    Args:
        name: the endpoint name.
        make_call: builds the batch-send call for a replica's target.
        policy: ``round_robin``, ``sticky`` or ``least_loaded``.
        options: sender settings for every replica.
        classify: sorts call errors (see ``BatchSender``).
        on_replica_dead: told when a replica is removed because it died.
        rate_limit: at most this many messages per second to the endpoint (all replicas).
    """

    def __init__(
        self,
        name: str,
        make_call: Callable[[Any], Callable[[list[Any], Order], Awaitable[Any]]],
        policy: Policy = "round_robin",
        options: SenderOptions | None = None,
        *,
        classify: Callable[[BaseException], ErrorKind] = lambda exc: "permanent",
        on_replica_dead: Callable[[str, str, BaseException], None] | None = None,
        rate_limit: float | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"endpoint {name!r}: unknown replica policy {policy!r} (choose from {list(POLICIES)})")
        self.name = name
        self.policy = policy
        self.options = options or SenderOptions()
        self._make_call = make_call
        self._classify = classify
        self._on_replica_dead = on_replica_dead
        self._replicas: list[Replica] = []
        self._counter = itertools.count()
        self._throttle = TokenBucket(rate_limit) if rate_limit else None
        self._homes: dict[str, Replica] = {}  # sticky key -> replica, for the live set below
        self._homes_for: tuple[str, ...] = ()

    # -- membership ---------------------------------------------------------------

    @property
    def replicas(self) -> list[Replica]:
        """Replicas that take new messages (not draining)."""
        return [r for r in self._replicas if not r.draining]

    def add(self, replica_id: str, target: Any) -> Replica:
        """Add a replica; it takes new messages at once. Adding a known id returns the existing one."""
        for existing in self._replicas:
            if existing.replica_id == replica_id:
                return existing
        sender = BatchSender(
            f"{self.name}[{replica_id}]",
            self._make_call(target),
            self.options,
            classify=self._classify,
            on_dead=lambda batch, exc: self.evict(replica_id, exc, batch),
            throttle=self._throttle,
        )
        replica = Replica(replica_id, target, sender)
        self._replicas.append(replica)
        return replica

    async def remove(self, replica_id: str, timeout: float | None = 30.0) -> bool:
        """Stop giving a replica new messages, wait for its unconfirmed ones, then drop it.

        Returns False if they were not confirmed within ``timeout``; those are
        then moved to the remaining replicas, so none is lost.

        Raises:
            KeyError: no replica has that id.
        """
        replica = self._find(replica_id)
        replica.draining = True
        drained = await replica.sender.drain(timeout)
        if not drained:
            leftovers = replica.sender.take_queued()
            self._requeue(leftovers)
        await replica.sender.close()
        self._replicas.remove(replica)
        return drained

    def _find(self, replica_id: str) -> Replica:
        for replica in self._replicas:
            if replica.replica_id == replica_id:
                return replica
        raise KeyError(f"endpoint {self.name!r} has no replica {replica_id!r}")

    # -- sending ------------------------------------------------------------------

    def pick(self, key: str | None) -> Replica:
        """Choose the replica for a message with user ``key``.

        Raises:
            DeliveryError: the endpoint has no live replica.
        """
        live = self.replicas
        if not live:
            raise DeliveryError(f"endpoint {self.name!r} has no replicas to deliver to")
        if len(live) == 1:
            return live[0]
        if self.policy == "sticky" and key is not None:
            return max(live, key=lambda r: _weight(key, r.replica_id))
        if self.policy == "least_loaded":
            return min(live, key=lambda r: r.sender.pending)
        return live[next(self._counter) % len(live)]

    async def send(self, item: Any, key: str | None = None) -> asyncio.Future[Any]:
        """Send ``item`` to a replica chosen by policy, once it has room; the future resolves on confirmation.

        Raises:
            DeliveryError: the endpoint has no live replica.
        """
        await self.wait_for_room(key)
        return self.queue(item, key)

    async def wait_for_room(self, key: str | None = None) -> None:
        """Return once the replica a message with user ``key`` goes to has fewer than ``max_queued`` waiting.

        Raises:
            DeliveryError: the endpoint has no live replica.
        """
        limit = self.options.max_queued
        if any(r.sender.queued >= limit for r in self._replicas):  # else every replica has room: no pick
            await self.pick(key).sender.wait_for_space()

    def queue(self, item: Any, key: str | None = None) -> asyncio.Future[Any]:
        """Queue ``item`` for a replica chosen by policy at once, whatever its queue holds; see ``send``.

        Raises:
            DeliveryError: the endpoint has no live replica, or its sender is closed.
        """
        return self.pick(key).sender.queue(item, key)

    def queue_batch(
        self,
        items: list[Any],
        keys: list[str | None] | None,
        receipt: BatchReceipt,
        slots: Sequence[int] | None = None,
    ) -> None:
        """Queue ``items`` (``slots`` of ``receipt``, default 0..) in order for replicas chosen by policy, a chunk each.

        Never waits for room: the dispatcher queues its copies at once so that
        one slow or rate-limited endpoint never holds up routing to the
        others (its queues are bounded by what its sources have in flight,
        since it confirms a batch only once its copies were delivered), and
        an endpoint's link waits for room before it takes a message
        (``wait_for_room``), not when it hands a batch over. The receipt
        settles as the replicas confirm; ``keys`` are the items' user keys.
        Never raises for delivery: items no replica can take (none left, or
        its sender closed) fail in the receipt with ``DeliveryError``.
        """
        chunk = Chunk(items, keys, receipt, range(len(items)) if slots is None else slots, time.monotonic())
        try:
            parts = self._split(chunk)
        except DeliveryError as exc:
            chunk.settle(exc)
            return
        for replica, part in parts:
            try:
                replica.sender.enqueue(part)
            except DeliveryError:
                self._requeue([part])  # that replica's sender is closed or dead

    def _split(self, chunk: Chunk) -> list[tuple[Replica, Chunk]]:
        """Cut ``chunk`` into one part per replica the policy chooses, each in the chunk's order.

        Raises:
            DeliveryError: the endpoint has no live replica.
        """
        live = self.replicas
        if not live:
            raise DeliveryError(f"endpoint {self.name!r} has no replicas to deliver to")
        if len(live) == 1 or (len(chunk.items) == 1 and chunk.keys is None):
            return [(self.pick(None) if len(live) > 1 else live[0], chunk)]
        if self.policy == "sticky" and chunk.keys is not None:
            return self._split_by_key(chunk, live)
        if self.policy == "least_loaded":
            return [(min(live, key=lambda r: r.sender.pending), chunk)]
        first = next(self._counter)
        parts, size, start = [], len(chunk.items), 0
        for turn in range(len(live)):
            end = start + (size - start) // (len(live) - turn)
            if end > start:
                part, chunk = chunk.split(end - start)
                parts.append((live[(first + turn) % len(live)], part))
                start = end
        return parts

    def _split_by_key(self, chunk: Chunk, live: list[Replica]) -> list[tuple[Replica, Chunk]]:
        ids = tuple(r.replica_id for r in live)
        if ids != self._homes_for or len(self._homes) > 100_000:
            self._homes, self._homes_for = {}, ids
        homes = self._homes
        keys = chunk.keys or []
        free = live[next(self._counter) % len(live)]  # items without a key go together
        groups: dict[str, tuple[Replica, list[Any], list[str | None], list[int]]] = {}
        for item, key, slot in zip(chunk.items, keys, chunk.slots, strict=True):
            if key is None:
                home = free
            else:
                home = homes.get(key)  # type: ignore[assignment]
                if home is None:
                    home = homes[key] = max(live, key=lambda r: _weight(key, r.replica_id))
            group = groups.get(home.replica_id)
            if group is None:
                group = groups[home.replica_id] = (home, [], [], [])
            group[1].append(item)
            group[2].append(key)
            group[3].append(slot)
        if len(groups) == 1:
            return [(next(iter(groups.values()))[0], chunk)]
        receipt, queued_at = chunk.receipt, chunk.queued_at
        return [(home, Chunk(items, k, receipt, slots, queued_at)) for home, items, k, slots in groups.values()]

    async def evict(self, replica_id: str, exc: BaseException, unconfirmed: list[Chunk] | None = None) -> None:
        """Remove a dead replica and send its unconfirmed messages, in order, to the others."""
        leftovers = list(unconfirmed or [])
        try:
            replica = self._find(replica_id)
        except KeyError:
            replica = None
        if replica is not None:
            self._replicas.remove(replica)
            replica.sender.dead = True
            leftovers += replica.sender.take_queued()
            if self._on_replica_dead is not None:
                self._on_replica_dead(self.name, replica_id, exc)
        self._requeue(leftovers)

    def _requeue(self, chunks: list[Chunk]) -> None:
        """Queue unsettled ``chunks`` again, in order, for the replicas the policy picks now (what none takes fails)."""
        for chunk in chunks:
            if chunk.settled:
                continue
            try:
                for replica, part in self._split(chunk):
                    replica.sender.enqueue(part)
            except DeliveryError as exc:
                chunk.settle(exc)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every replica has confirmed what it was sent."""
        results = await asyncio.gather(*(r.sender.drain(timeout) for r in self._replicas))
        return all(results)

    async def close(self) -> None:
        """Close every replica's sender."""
        for replica in self._replicas:
            await replica.sender.close()

    def stats(self) -> dict[str, Any]:
        """Per-replica counters: pending, in flight, batches and items sent, retries."""
        return {
            r.replica_id: {
                "pending": r.sender.pending,
                "in_flight": r.sender.in_flight,
                "batches": r.sender.sent_batches,
                "items": r.sender.sent_items,
                "retries": r.sender.retries,
                "draining": r.draining,
            }
            for r in self._replicas
        }
