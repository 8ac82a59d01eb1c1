"""Test tools for delivery on Ray: a ``Ledger`` actor and applications that report to it.

To check "nothing lost, nothing reordered" across crashes, the record of what
arrived must outlive the receivers. ``LedgerApplication`` reports the ids of
each batch it handled to a named ``Ledger`` actor *before* confirming the
batch, so every confirmed message is in the ledger even if the application
replica is killed right after.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from typing import Any, ClassVar

import ray

from actors.endpoint import ApplicationActor, EndpointConfig
from ray_dispatch.core.message import Message, TransportEvent


class Ledger:
    """Remembers which message ids arrived where, in arrival order (a plain class; run it with ``ray.remote``)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, str, str, str | None]] = []
        self.arrived_at: list[float] = []  # time.time() of each arrival, in step with ``arrivals``

    def record(self, replica: str, items: list[tuple[str, str, str | None]]) -> None:
        """Add ``(direction, message_id, user)`` items handled by ``replica``."""
        self.arrivals.extend((replica, d, mid, user) for d, mid, user in items)
        self.arrived_at.extend(itertools.repeat(time.time(), len(items)))

    def longest_pause(self, since: float, per_user: bool = False) -> float:
        """Longest stretch of wall-clock seconds without an arrival, counted from ``since`` (a ``time.time()``).

        The stretch from ``since`` to the first arrival after it counts too, so a
        stream that stalls right after ``since`` shows the whole stall. With
        ``per_user``, the longest such stretch of any one user's messages (each
        user's stretch ends at that user's last arrival).
        """
        streams: dict[str | None, list[float]] = defaultdict(lambda: [since])
        for (_, _, _, user), at in zip(self.arrivals, self.arrived_at, strict=True):
            if at > since:
                streams[user if per_user else None].append(at)
        gaps = (b - a for times in streams.values() for a, b in itertools.pairwise(sorted(times)))
        return max(gaps, default=0.0)

    def ids(self, direction: str = "inbound") -> list[str]:
        """Every id that arrived in ``direction``, with repeats, in arrival order."""
        return [mid for _, d, mid, _ in self.arrivals if d == direction]

    def by_user(self, direction: str = "inbound") -> dict[str, list[str]]:
        """Ids per user, in arrival order (duplicates kept)."""
        result: dict[str, list[str]] = defaultdict(list)
        for _, d, mid, user in self.arrivals:
            if d == direction and user is not None:
                result[user].append(mid)
        return dict(result)

    def replicas(self) -> dict[str, int]:
        """How many messages each replica handled."""
        counts: dict[str, int] = defaultdict(int)
        for replica, *_ in self.arrivals:
            counts[replica] += 1
        return dict(counts)

    def clear(self) -> None:
        """Forget everything."""
        self.arrivals.clear()
        self.arrived_at.clear()


class LedgerApplicationConfig(EndpointConfig):
    """Config of ``LedgerApplication``.

    Attributes:
        ledger: name of the ``Ledger`` actor to report to.
        namespace: its Ray namespace (default: the application's).
        delay: seconds to sleep per batch (a slow consumer).
    """

    ledger: str
    namespace: str | None = None
    delay: float = 0.0


class LedgerApplication(ApplicationActor):
    """Reports every batch it handled to a ``Ledger`` before confirming it; replies to nothing."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = LedgerApplicationConfig

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self._ledger_handle: Any = None

    async def after_batch(self, messages: list[Message]) -> None:
        """Record the batch's handled messages in the ledger (so confirmed implies recorded)."""
        if self.config.delay:
            await asyncio.sleep(self.config.delay)
        items = [
            ("event", m["event_id"], None)
            if isinstance(m, TransportEvent)
            else ("inbound", m["message_id"], m.get("from_addr"))
            for m in messages
        ]
        await self._ledger().record.remote(f"{self.endpoint_name}:{self.replica_id}", items)

    def _ledger(self) -> Any:
        if self._ledger_handle is None:
            self._ledger_handle = ray.get_actor(self.config.ledger, namespace=self.config.namespace)
        return self._ledger_handle
