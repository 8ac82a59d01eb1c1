"""Routing store: async key/value state that outlives one message.

Routers keep return routes (message id -> sender) and user-group assignments
here. ``MemoryStore`` is the embedded default; a durable shared store (Redis)
implements the same ``RoutingStore`` interface.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ray_dispatch.core.message import clone_json

JSONValue = Any
"""Values must be JSON-serialisable (str, int, float, bool, None, lists, dicts)."""

UNKNOWN_STATE: dict[str, Any] = {"state": "unknown", "detail": "this store does not report its state"}
"""``state()`` of a store that does not track whether its server is reachable."""

IN_PROCESS_STATE: dict[str, Any] = {"state": "ok", "detail": "in this process"}
"""``state()`` of a store kept in the dispatcher's own memory."""


class RoutingStore(ABC):
    """Async key/value store with per-key TTL and atomic increment.

    Keys are strings; values are JSON-serialisable. A TTL is in seconds; a
    key without one lives until deleted.
    """

    @abstractmethod
    async def get(self, key: str, default: JSONValue = None) -> JSONValue:
        """Return the value under ``key``, or ``default`` if absent or expired."""

    @abstractmethod
    async def set(self, key: str, value: JSONValue, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, expiring after ``ttl`` seconds if given."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it existed."""

    @abstractmethod
    async def incr(self, key: str, amount: int = 1) -> int:
        """Atomically add ``amount`` to the integer under ``key`` (absent counts as 0).

        Raises:
            TypeError: the stored value, or ``amount``, is not an integer.
        """

    async def get_many(self, keys: Sequence[str]) -> list[JSONValue]:
        """Return the value under each of ``keys`` (None where absent or expired), in order.

        The default asks ``get`` for each; stores that can fetch many at once override it.
        """
        return [await self.get(key) for key in keys]

    async def set_many(self, values: Mapping[str, JSONValue], ttl: float | None = None) -> None:
        """Store every ``key: value`` of ``values``, each expiring after ``ttl`` seconds if given.

        The default calls ``set`` for each; stores that can write many at once override it.
        """
        for key, value in values.items():
            await self.set(key, value, ttl)

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. The default does nothing."""

    def state(self) -> dict[str, Any]:
        """Whether the store's server is reachable, as far as the store knows, without asking it.

        Returns a JSON-friendly dict whose ``state`` is ``ok``, ``open`` (the
        server is down: operations fail at once), ``half-open`` (a probe is
        due or under way) or ``unknown`` (this default, for stores that do
        not track it); stores may add ``detail`` (one line), ``url``, ``since``, ...
        """
        return dict(UNKNOWN_STATE)


class MemoryStore(RoutingStore):
    """In-process ``RoutingStore``: the default for the harness and single dispatchers.

    Expired keys are dropped lazily on access and by ``purge_expired``.
    ``clock`` is injectable for tests (defaults to ``time.monotonic``).
    Values are copied on the way in and out, so, as with a store that
    serialises them, mutating a value after ``set`` or ``get`` changes nothing stored.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, tuple[JSONValue, float | None]] = {}

    def _live(self, key: str) -> tuple[JSONValue, float | None] | None:
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] <= self._clock():
            del self._data[key]
            return None
        return item

    async def get(self, key: str, default: JSONValue = None) -> JSONValue:
        item = self._live(key)
        return default if item is None else clone_json(item[0])

    async def set(self, key: str, value: JSONValue, ttl: float | None = None) -> None:
        self._data[key] = (clone_json(value), None if ttl is None else self._clock() + ttl)

    async def get_many(self, keys: Sequence[str]) -> list[JSONValue]:
        found = [self._live(key) for key in keys]
        return [None if item is None else clone_json(item[0]) for item in found]

    async def set_many(self, values: Mapping[str, JSONValue], ttl: float | None = None) -> None:
        expiry = None if ttl is None else self._clock() + ttl
        self._data.update((key, (clone_json(value), expiry)) for key, value in values.items())

    async def delete(self, key: str) -> bool:
        return self._live(key) is not None and self._data.pop(key, None) is not None

    async def incr(self, key: str, amount: int = 1) -> int:
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise TypeError(f"routing store incr of {key!r}: amount must be an integer (got {amount!r})")
        item = self._live(key)
        current, expiry = (0, None) if item is None else item
        if not isinstance(current, int) or isinstance(current, bool):
            raise TypeError(f"routing store key {key!r} holds {type(current).__name__}, not an integer")
        self._data[key] = (current + amount, expiry)
        return current + amount

    def state(self) -> dict[str, Any]:
        """Always ``{"state": "ok"}``: the store is this process."""
        return dict(IN_PROCESS_STATE)

    def purge_expired(self) -> int:
        """Drop every expired key now; return how many were dropped."""
        now = self._clock()
        dead = [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]
        for key in dead:
            del self._data[key]
        return len(dead)

    def __len__(self) -> int:
        return len(self._data)
