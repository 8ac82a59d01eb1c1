"""Adaptive batching with in-flight tracking: one ``BatchSender`` per destination.

The measured cost of an actor call (~0.5-1 ms whatever it carries) means one
message per call caps a hop at ~1k msg/s, while 100-1000 per call reach
50-130k. So a sender:

- sends at once when nothing is in flight to its destination (low latency);
- while calls are in flight, coalesces messages into the next batch, up to
  ``max_batch`` items or ``max_wait`` seconds after the oldest one queued;
- keeps at most ``max_in_flight`` calls outstanding and ``max_queued`` items
  waiting; ``send`` blocks beyond that (backpressure, bounded memory);
- keeps every item until the receiver confirms it; a failed call is retried
  with backoff when the error is transient, handed to ``on_dead`` when the
  receiver is gone (or still unreachable after ``retry.max_attempts``), and failed
  (the item's future raises ``DeliveryError``) otherwise.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from ray_dispatch.core.batching import BatchingOptions as SenderOptions  # declared once, with the config
from ray_dispatch.core.errors import DeliveryError

ErrorKind = Literal["transient", "dead", "permanent"]


@dataclass
class Pending:
    """One item waiting for confirmation, with the future its sender awaits."""

    item: Any
    future: asyncio.Future[Any]
    queued_at: float
    key: str | None = None


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

    Args:
        name: destination name, used in errors.
        call: sends one batch (see ``Call``).
        options: batching and retry settings.
        classify: sorts a call's exception into transient, dead or permanent.
        on_dead: receives the unconfirmed items when the destination is gone;
            without it they fail with ``DeliveryError``.
        clock: monotonic clock (injectable).
    """

    def __init__(
        self,
        name: str,
        call: Call,
        options: SenderOptions | None = None,
        *,
        classify: Callable[[BaseException], ErrorKind] = lambda exc: "permanent",
        on_dead: Callable[[list[Pending], BaseException], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.sender_id = uuid.uuid4().hex
        self.options = options or SenderOptions()
        self._call = call
        self._classify = classify
        self._on_dead = on_dead
        self._clock = clock
        self._queue: deque[Pending] = deque()
        self._in_flight = 0
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

    async def send(self, item: Any, key: str | None = None) -> asyncio.Future[Any]:
        """Queue ``item``; return a future that resolves when the receiver confirms it.

        Waits while ``max_queued`` items are already waiting (backpressure).

        Raises:
            DeliveryError: the sender is closed or its destination is dead.
        """
        while len(self._queue) >= self.options.max_queued and not self._closed:
            self._space.clear()
            await self._space.wait()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.enqueue(Pending(item, future, self._clock(), key))
        return future

    def enqueue(self, pending: Pending) -> None:
        """Queue an already-built ``Pending`` (used to hand items over between senders).

        Raises:
            DeliveryError: the sender is closed or its destination is dead.
        """
        if self._closed or self.dead:
            raise DeliveryError(f"sender to {self.name!r} is {'dead' if self.dead else 'closed'}")
        self._queue.append(pending)
        self._unconfirmed += 1
        self._idle.clear()
        if self._pump_task is None:
            self._pump_task = asyncio.get_running_loop().create_task(self._pump(), name=f"sender:{self.name}")
        if len(self._queue) == 1 or len(self._queue) >= self.options.max_batch:
            self._wake.set()

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
        self._fail(list(self._queue), DeliveryError(f"sender to {self.name!r} closed before delivery"))
        self._queue.clear()

    def take_queued(self) -> list[Pending]:
        """Remove and return the items not yet sent (for handing to another sender)."""
        items = list(self._queue)
        self._queue.clear()
        self._unconfirmed -= len(items)
        self._space.set()
        self._check_idle()
        return items

    # -- internals ----------------------------------------------------------------

    async def _pump(self) -> None:
        opts = self.options
        while not self._closed:
            if not self._queue or self._in_flight >= opts.max_in_flight:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._in_flight and len(self._queue) < opts.max_batch:
                remaining = self._queue[0].queued_at + opts.max_wait - self._clock()
                if remaining > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), remaining)
                    if self._in_flight >= opts.max_in_flight or not self._queue:
                        continue
            size = min(len(self._queue), opts.max_batch)
            batch = [self._queue.popleft() for _ in range(size)]
            if _batch_observer is not None:
                _batch_observer(self.name, size, len(self._queue))
            self._space.set()
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._fly(batch))
            self._flights.add(task)
            task.add_done_callback(self._flights.discard)

    async def _fly(self, batch: list[Pending]) -> None:
        retry = self.options.retry
        attempt = 0
        seq = next(self._seq)
        self._flying_seqs.add(seq)
        try:
            while True:
                attempt += 1
                try:
                    order = (self.sender_id, seq, min(self._flying_seqs))
                    rejected = await self._call([p.item for p in batch], order)
                except asyncio.CancelledError:
                    self._settle(batch, DeliveryError(f"sender to {self.name!r} closed before confirmation"))
                    raise
                except Exception as exc:
                    kind = self._classify(exc)
                    if kind == "transient" and retry.gives_up_after(attempt):
                        kind = "dead"  # unreachable for too long: let the others take over
                    if kind == "dead" and self._on_dead is not None:
                        self.dead = True
                        self._unconfirmed -= len(batch)
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
                self.sent_items += len(batch)
                self._settle(batch, None, rejected or ())
                return
        finally:
            self._flying_seqs.discard(seq)
            self._in_flight -= 1
            self._wake.set()
            self._check_idle()

    def _settle(self, batch: list[Pending], error: BaseException | None, rejected: Any = ()) -> None:
        reasons = dict(rejected)
        for index, pending in enumerate(batch):
            if pending.future.done():
                continue
            if error is not None:
                pending.future.set_exception(error)
            elif index in reasons:
                pending.future.set_exception(EndpointRejected(f"{self.name!r} refused it: {reasons[index]}"))
            else:
                pending.future.set_result(True)
        self._unconfirmed -= len(batch)

    def _fail(self, items: list[Pending], error: BaseException) -> None:
        for pending in items:
            if not pending.future.done():
                pending.future.set_exception(error)
        self._unconfirmed -= len(items)
        self._check_idle()

    def _check_idle(self) -> None:
        if self._unconfirmed <= 0 and not self._queue:
            self._idle.set()
