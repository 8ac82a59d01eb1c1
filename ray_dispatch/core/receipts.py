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
- any object whose ``__await__`` may be called more than once, so that the
  deliveries of one destination batch can share one receipt (a bare
  coroutine is not: it can be awaited only once).

An outbox whose ``deliver`` returns None is taken to have confirmed the copy
by returning (the contract before receipts).
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
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
