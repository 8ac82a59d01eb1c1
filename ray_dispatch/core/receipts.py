"""Receipts: a delivery's confirmation, as a value.

``Outbox.deliver`` hands a routed copy over and returns a *receipt*: an
awaitable that returns once the destination confirmed the copy and raises
once it is known that it will not (the exception says why). The core keeps
each receipt on its ``Delivery`` and ``Dispatcher.settle`` awaits them: a
confirmed copy counts as published, a failed one becomes a failure record at
stage ``deliver``.

What can be a receipt:

- ``CONFIRMED``, a receipt that has already settled well (in-process outboxes:
  the harness's ``MemoryOutbox``, the replay tools' ``DiscardOutbox``);
- ``Refused(error)``, one that has already settled as failed;
- an ``asyncio.Future`` resolved by whoever waits for the destination (on Ray,
  the replica pool's sender);
- a ``Slot`` of a ``BatchReceipt``: one receipt for a whole destination
  batch, settled by whoever delivers the batch, each delivery holding its
  place in it (one object per batch to wait on, not one future per message);
- any object whose ``__await__`` may be called more than once, so that the
  deliveries of one destination batch can share one receipt (a bare
  coroutine is not: it can be awaited only once).

An outbox whose ``deliver`` returns None is taken to have confirmed the copy
by returning (the contract before receipts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator, Mapping, Sequence
from typing import Any

Receipt = Awaitable[Any]
"""Settles when the destination confirmed a delivery; raises when it did not (see the module docstring)."""


class Confirmed:
    """A receipt that has already settled: the destination has the copy. Use the ``CONFIRMED`` instance."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        """Return at once, without suspending."""
        return
        yield  # a generator that never yields: awaiting it does not suspend

    def __repr__(self) -> str:
        return "CONFIRMED"


CONFIRMED = Confirmed()
"""The already-confirmed receipt (``Dispatcher.settle`` recognises it without awaiting)."""


class Refused:
    """A receipt that has already settled as failed: awaiting it raises ``error``.

    Args:
        error: why the destination did not take the copy.
    """

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __await__(self) -> Generator[Any, None, None]:
        """Raise ``error`` at once.

        Raises:
            BaseException: the ``error`` this receipt was made with.
        """
        raise self.error
        yield  # a generator that never yields: awaiting it does not suspend

    def __repr__(self) -> str:
        return f"Refused({self.error!r})"


class BatchReceipt:
    """One receipt for the deliveries of one destination batch; each delivery holds a ``Slot`` of it.

    The outbox adds a slot per delivery (``add``) and hands the batch over;
    whoever delivers it settles slots as the destination answers
    (``settle``). Awaiting the receipt returns once every slot has settled,
    and never raises: ``failure(slot)`` then says whether that slot's delivery
    failed, and why. ``submitted`` tells the core whether the batch was handed
    over yet (``Dispatcher.settle`` flushes the outbox first when it was not).
    """

    __slots__ = ("_failures", "_left", "_waiter", "size", "submitted")

    def __init__(self) -> None:
        self.size = 0
        self.submitted = False
        self._left = 0
        self._failures: dict[int, BaseException] = {}
        self._waiter: asyncio.Future[None] | None = None

    def add(self) -> Slot:
        """Reserve the next slot for one delivery; return it (it is that delivery's receipt)."""
        slot = Slot(self, self.size)
        self.size += 1
        self._left += 1
        return slot

    @property
    def done(self) -> bool:
        """Whether every slot has settled."""
        return self._left <= 0

    def settle(
        self,
        slots: Sequence[int],
        error: BaseException | None = None,
        refused: Mapping[int, BaseException] | None = None,
    ) -> None:
        """Settle ``slots``: failed with ``error`` when given, else confirmed except those ``refused`` names.

        Each slot must be settled once (the sender owns each slot until it settles it).
        """
        if error is not None:
            for slot in slots:
                self._failures[slot] = error
        elif refused:
            self._failures.update(refused)
        self._left -= len(slots)
        if self._left <= 0 and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def failure(self, slot: int) -> BaseException | None:
        """Why ``slot``'s delivery failed, or None when the destination confirmed it."""
        return self._failures.get(slot) if self._failures else None

    def failed_slots(self) -> dict[int, BaseException]:
        """Every slot that failed so far, with why (a copy)."""
        return dict(self._failures)

    def add_many(self, count: int) -> range:
        """Reserve the next ``count`` slots (one per delivery, in order); return their indexes."""
        start = self.size
        self.size += count
        self._left += count
        return range(start, self.size)

    @property
    def failures(self) -> int:
        """How many slots failed so far."""
        return len(self._failures)

    def __await__(self) -> Generator[Any, None, BatchReceipt]:
        """Wait until every slot has settled; return the receipt itself."""
        if self._left > 0:
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            yield from self._waiter
        return self

    def __repr__(self) -> str:
        return f"<BatchReceipt {self.size} slot(s), {self._left} unsettled, {len(self._failures)} failed>"


class Slot:
    """One delivery's place in a ``BatchReceipt``: awaiting it returns once the batch settled, raising its failure.

    Args:
        batch: the shared receipt.
        index: this delivery's slot in it.
    """

    __slots__ = ("batch", "index")

    def __init__(self, batch: BatchReceipt, index: int) -> None:
        self.batch = batch
        self.index = index

    def __await__(self) -> Generator[Any, None, None]:
        """Wait for the batch; then return, or raise why this delivery failed.

        Raises:
            BaseException: the failure the batch recorded for this slot.
        """
        yield from self.batch.__await__()
        error = self.batch.failure(self.index)
        if error is not None:
            raise error

    def __repr__(self) -> str:
        return f"<Slot {self.index} of {self.batch!r}>"
