"""Adaptive batching with in-flight tracking: one ``BatchSender`` per destination.

The measured cost of an actor call (~0.5-1 ms whatever it carries) means one
message per call caps a hop at ~1k msg/s, while 100-1000 per call reach
50-130k. So a sender:

- sends at once when nothing is in flight to its destination (low latency);
- while calls are in flight, coalesces messages into the next batch, up to
  ``max_batch`` items, ``max_batch_bytes`` bytes (so the blob stays inline in
  Ray's call, see ``core.batching.RAY_INLINE_LIMIT``) or ``max_wait`` seconds
  after the oldest one queued: batches grow with the load, to thousands;
- sizes each call to the endpoint's rate limit when it has one (``actors.throttle``);
- keeps at most ``max_in_flight`` calls outstanding, carrying at most
  ``max_in_flight_items`` items together (under saturation: fewer, larger
  calls, and a bounded amount of traffic in flight), and ``max_queued`` items
  waiting; ``send`` blocks beyond that (backpressure, bounded memory);
- keeps every item until the receiver confirms it; a failed call is retried
  with backoff when the error is transient, handed to ``on_dead`` when the
  receiver is gone (or still unreachable after ``retry.max_attempts``), and failed
  (its receipt fails with ``DeliveryError``) otherwise.

Confirmation is per chunk, not per item: the dispatcher queues each
destination batch, and an endpoint's link each batch it publishes, as one
``Chunk`` with one ``BatchReceipt`` (an asyncio future per message cost
~3.3 µs, more than routing it); ``send`` still gives a lone item its own
future (a caller that waits for that one message).

This module imports no Ray: the call and the error classifier are injected,
so the logic is tested with plain coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from actors.throttle import TokenBucket
from ray_dispatch.core.batching import BatchingOptions as SenderOptions  # declared once, with the config
from ray_dispatch.core.errors import DeliveryError
from ray_dispatch.core.receipts import BatchReceipt

ErrorKind = Literal["transient", "dead", "permanent"]


def _sizes(items: Sequence[Any]) -> list[int]:
    """Each item's size for ``max_batch_bytes``: its ``len`` (an encoded item's bytes), 0 for one without."""
    try:
        return list(map(len, items))
    except TypeError:
        return [len(item) if hasattr(item, "__len__") else 0 for item in items]


def size_of(items: Sequence[Any]) -> int:
    """Bytes ``items`` hold for ``max_batch_bytes`` (the sum of ``_sizes``)."""
    try:
        return sum(map(len, items))
    except TypeError:
        return sum(_sizes(items))


class Chunk:
    """Items queued together for one destination and confirmed together (one receipt, not one future each).

    Attributes:
        items: what is sent, in order.
        keys: each item's user key (``actors.pool.sticky_key``), or None when no item has one.
        receipt: a ``BatchReceipt`` whose ``slots`` these items fill, or (one item sent
            on its own, ``BatchSender.send``) the future its sender awaits.
        slots: each item's slot in ``receipt``.
        queued_at: when the chunk was queued (``max_wait`` counts from the oldest).
        nbytes: the items' size (``size_of``), counted once; computed when not given.
    """

    __slots__ = ("items", "keys", "nbytes", "queued_at", "receipt", "settled", "slots")

    def __init__(
        self,
        items: list[Any],
        keys: list[str | None] | None,
        receipt: BatchReceipt | asyncio.Future[Any],
        slots: Sequence[int],
        queued_at: float,
        nbytes: int | None = None,
    ) -> None:
        self.items = items
        self.keys = keys
        self.receipt = receipt
        self.slots = slots
        self.queued_at = queued_at
        self.nbytes = size_of(items) if nbytes is None else nbytes
        self.settled = False

    def __len__(self) -> int:
        return len(self.items)

    def split(self, count: int) -> tuple[Chunk, Chunk]:
        """The first ``count`` items and the rest, as two chunks of the same receipt."""
        keys, items, slots, queued_at = self.keys, self.items, self.slots, self.queued_at
        head_items = items[:count]
        head_bytes = size_of(head_items)
        head_keys, tail_keys = (None, None) if keys is None else (keys[:count], keys[count:])
        head = Chunk(head_items, head_keys, self.receipt, slots[:count], queued_at, head_bytes)
        tail = Chunk(items[count:], tail_keys, self.receipt, slots[count:], queued_at, self.nbytes - head_bytes)
        return head, tail

    def fitting(self, max_items: int, max_bytes: int) -> int:
        """How many of the first items fit in ``max_items`` items and ``max_bytes`` bytes."""
        if len(self.items) <= max_items and self.nbytes <= max_bytes:
            return len(self.items)
        count = total = 0
        for size in _sizes(self.items[:max_items]):
            total += size
            if total > max_bytes:
                break
            count += 1
        return count

    def settle(self, error: BaseException | None = None, refused: Mapping[int, BaseException] | None = None) -> None:
        """Confirm the chunk's items, or fail them all with ``error``; ``refused`` (by position) fail alone. Once."""
        if self.settled:
            return
        self.settled = True
        receipt = self.receipt
        if isinstance(receipt, BatchReceipt):
            slots = self.slots
            receipt.settle(slots, error, {slots[i]: why for i, why in refused.items()} if refused else None)
        elif not receipt.done():
            why = error if error is not None else (refused or {}).get(0)
            if why is None:
                receipt.set_result(True)
            else:
                receipt.set_exception(why)


Pending = Chunk
"""The name a chunk had when every item was queued alone (kept for callers of ``on_dead``)."""


Order = tuple[str, int, int]
"""``(sender_id, seq, floor)``: who sent a batch, its number, and the sender's oldest unconfirmed number."""

Call = Callable[[list[Any], Order], Awaitable[Any]]
"""Sends ``(batch, order)``; returns the receiver's rejections: a list of (index, reason), or None.

``order`` lets the receiver restore the order of batches (see ``actors.ordering``).
"""

BatchObserver = Callable[[str, int, int], None]
"""Told ``(destination, batch size, items still queued)`` for every batch a sender forms."""

_batch_observer: BatchObserver | None = None


def set_batch_observer(observer: BatchObserver | None) -> None:
    """Make every sender of this process report its batches to ``observer`` (``actors.metrics``); None stops it."""
    global _batch_observer
    _batch_observer = observer


class EndpointRejected(DeliveryError):
    """The receiving endpoint took the batch but refused this item (its reason attached)."""


class BatchSender:
    """Sends items to one destination in adaptive batches and keeps them until confirmed.

    Items come alone (``send``/``queue``: a future each) or as chunks sharing
    one ``BatchReceipt`` (``enqueue``: the dispatcher's destination batches,
    an endpoint link's open batch).
    A chunk may be split across calls, and calls may carry several chunks;
    each chunk is settled once, as a whole, when its call is answered.

    Args:
        name: destination name, used in errors.
        call: sends one batch (see ``Call``).
        options: batching and retry settings.
        classify: sorts a call's exception into transient, dead or permanent.
        on_dead: receives the unconfirmed chunks when the destination is gone;
            without it they fail with ``DeliveryError``.
        throttle: a rate limit (shared with the senders to the endpoint's other
            replicas): each call carries at most the tokens available, and the
            sender waits for one when there are none.
        clock: monotonic clock (injectable).
    """

    def __init__(
        self,
        name: str,
        call: Call,
        options: SenderOptions | None = None,
        *,
        classify: Callable[[BaseException], ErrorKind] = lambda exc: "permanent",
        on_dead: Callable[[list[Chunk], BaseException], Awaitable[None]] | None = None,
        throttle: TokenBucket | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.sender_id = uuid.uuid4().hex
        self.options = options or SenderOptions()
        self._call = call
        self._classify = classify
        self._on_dead = on_dead
        self._throttle = throttle
        self._clock = clock
        self._queue: deque[Chunk] = deque()
        self._queued = 0  # items in _queue
        self._queued_bytes = 0  # their size (``size_of``)
        self._in_flight = 0
        self._items_in_flight = 0
        self._seq = itertools.count()
        self._flying_seqs: set[int] = set()
        self._unconfirmed = 0
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flights: set[asyncio.Task[None]] = set()
        self._pump_task: asyncio.Task[None] | None = None
        self._closed = False
        self.dead = False
        self.sent_batches = 0
        self.sent_items = 0
        self.retries = 0

    # -- public API ---------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Items queued or in flight (not yet confirmed)."""
        return self._unconfirmed

    @property
    def in_flight(self) -> int:
        """Calls now outstanding."""
        return self._in_flight

    @property
    def queued(self) -> int:
        """Items waiting to be sent."""
        return self._queued

    async def send(self, item: Any, key: str | None = None) -> asyncio.Future[Any]:
        """Queue ``item``; return a future that resolves when the receiver confirms it.

        Waits while ``max_queued`` items are already waiting (backpressure).

        Raises:
            DeliveryError: the sender is closed or its destination is dead.
        """
        await self.wait_for_space()
        return self.queue(item, key)

    def queue(self, item: Any, key: str | None = None) -> asyncio.Future[Any]:
        """Queue ``item`` at once, whatever the queue holds; return the future its confirmation resolves.

        Raises:
            DeliveryError: the sender is closed or its destination is dead.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.enqueue(Chunk([item], None if key is None else [key], future, (0,), self._clock()))
        return future

    async def wait_for_space(self) -> None:
        """Return once fewer than ``max_queued`` items wait (or the sender is closed)."""
        while self._queued >= self.options.max_queued and not self._closed:
            self._space.clear()
            await self._space.wait()

    def enqueue(self, chunk: Chunk) -> None:
        """Queue a chunk at once, whatever the queue holds (its receipt settles when the receiver answers).

        Callers that must respect ``max_queued`` first ``await wait_for_space()``.

        Raises:
            DeliveryError: the sender is closed or its destination is dead.
        """
        if self._closed or self.dead:
            raise DeliveryError(f"sender to {self.name!r} is {'dead' if self.dead else 'closed'}")
        size = len(chunk.items)
        if not size:
            chunk.settle()
            return
        self._queue.append(chunk)
        self._queued += size
        self._queued_bytes += chunk.nbytes
        self._unconfirmed += size
        self._idle.clear()
        if self._pump_task is None:
            self._pump_task = asyncio.get_running_loop().create_task(self._pump(), name=f"sender:{self.name}")
        if self._queued == size or self._batch_ready():
            self._wake.set()

    def _batch_ready(self) -> bool:
        """A full batch waits: ``max_batch`` items or ``max_batch_bytes`` bytes."""
        opts = self.options
        return self._queued >= opts.max_batch or self._queued_bytes >= opts.max_batch_bytes

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every item sent so far is confirmed or failed; return False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop the pump; items still queued fail with ``DeliveryError``."""
        self._closed = True
        self._wake.set()
        self._space.set()
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        for task in list(self._flights):
            task.cancel()
        await asyncio.gather(*self._flights, return_exceptions=True)
        queued = self.take_queued()
        self._unconfirmed += sum(len(chunk) for chunk in queued)
        self._fail(queued, DeliveryError(f"sender to {self.name!r} closed before delivery"))

    def take_queued(self) -> list[Chunk]:
        """Remove and return the chunks not yet sent (for handing to another sender)."""
        chunks = list(self._queue)
        self._queue.clear()
        self._unconfirmed -= self._queued
        self._queued = 0
        self._queued_bytes = 0
        self._space.set()
        self._check_idle()
        return chunks

    # -- internals ----------------------------------------------------------------

    async def _pump(self) -> None:
        opts = self.options
        while not self._closed:
            if not self._queue or self._in_flight >= opts.max_in_flight:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._in_flight and not self._batch_ready():
                remaining = self._queue[0].queued_at + opts.max_wait - self._clock()
                if remaining > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), remaining)
                    if self._in_flight >= opts.max_in_flight or not self._queue:
                        continue
            room = opts.max_in_flight_items - self._items_in_flight
            if room <= 0:  # the calls in flight carry enough: the next goes when one returns
                self._wake.clear()
                await self._wake.wait()
                continue
            limit = min(opts.max_batch, room)
            throttle = self._throttle
            if throttle is not None:
                allowed = throttle.available()
                if allowed <= 0:  # the rate limit is reached: wait for the next token
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), throttle.delay())
                    continue
                limit = min(limit, allowed)
            batch = self._take_batch(limit, opts.max_batch_bytes)
            if throttle is not None:
                throttle.spend(sum(len(chunk) for chunk in batch))
            if _batch_observer is not None:
                _batch_observer(self.name, sum(len(chunk) for chunk in batch), self._queued)
            self._space.set()
            self._in_flight += 1
            self._items_in_flight += sum(len(chunk) for chunk in batch)
            task = asyncio.get_running_loop().create_task(self._fly(batch))
            self._flights.add(task)
            task.add_done_callback(self._flights.discard)

    def _take_batch(self, limit: int, byte_limit: int) -> list[Chunk]:
        """Pop chunks from the queue up to ``limit`` items and ``byte_limit`` bytes, splitting the
        last chunk where it stops fitting; an item larger than ``byte_limit`` goes alone."""
        batch: list[Chunk] = []
        size = nbytes = 0
        queue = self._queue
        while queue and size < limit:
            chunk = queue[0]
            fits = chunk.fitting(limit - size, byte_limit - nbytes)
            if not fits:
                if batch:
                    break
                fits = 1
            whole = fits == len(chunk.items)
            if whole:
                queue.popleft()
            else:
                chunk, queue[0] = chunk.split(fits)
            batch.append(chunk)
            size += fits
            nbytes += chunk.nbytes
            if not whole:
                break
        self._queued -= size
        self._queued_bytes -= nbytes
        return batch

    async def _fly(self, batch: list[Chunk]) -> None:
        retry = self.options.retry
        attempt = 0
        seq = next(self._seq)
        self._flying_seqs.add(seq)
        items = batch[0].items if len(batch) == 1 else [item for chunk in batch for item in chunk.items]
        try:
            while True:
                attempt += 1
                try:
                    order = (self.sender_id, seq, min(self._flying_seqs))
                    rejected = await self._call(items, order)
                except asyncio.CancelledError:
                    self._settle(batch, DeliveryError(f"sender to {self.name!r} closed before confirmation"))
                    raise
                except Exception as exc:
                    kind = self._classify(exc)
                    if kind == "transient" and retry.gives_up_after(attempt):
                        kind = "dead"  # unreachable for too long: let the others take over
                    if kind == "dead" and self._on_dead is not None:
                        self.dead = True
                        self._unconfirmed -= len(items)
                        await self._on_dead(batch, exc)
                        return
                    if kind == "transient" and not retry.gives_up_after(attempt):
                        self.retries += 1
                        await asyncio.sleep(retry.delay(attempt))
                        continue
                    why = f"{type(exc).__name__}: {exc}"
                    self._settle(
                        batch, DeliveryError(f"delivery to {self.name!r} failed after {attempt} attempt(s): {why}")
                    )
                    return
                self.sent_batches += 1
                self.sent_items += len(items)
                self._settle(batch, None, rejected or ())
                return
        finally:
            self._flying_seqs.discard(seq)
            self._in_flight -= 1
            self._items_in_flight -= len(items)
            self._wake.set()
            self._check_idle()

    def _settle(self, batch: list[Chunk], error: BaseException | None, rejected: Any = ()) -> None:
        """Settle each chunk of an answered (or failed) call; ``rejected`` holds (index in the call, reason)."""
        reasons = dict(rejected)
        offset = 0
        for chunk in batch:
            size = len(chunk.items)
            refused = None
            if reasons:
                refused = {
                    index - offset: EndpointRejected(f"{self.name!r} refused it: {why}")
                    for index, why in reasons.items()
                    if offset <= index < offset + size
                }
            chunk.settle(error, refused)
            offset += size
        self._unconfirmed -= offset

    def _fail(self, chunks: list[Chunk], error: BaseException) -> None:
        for chunk in chunks:
            chunk.settle(error)
        self._unconfirmed -= sum(len(chunk) for chunk in chunks)
        self._check_idle()

    def _check_idle(self) -> None:
        if self._unconfirmed <= 0 and not self._queue:
            self._idle.set()
