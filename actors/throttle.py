"""Token-bucket rate limits: at most ``rate`` messages per second to an endpoint.

An SMSC typically allows N submits per second per bind (its TPS limit);
sending faster gets throttling errors. A ``TokenBucket`` in front of an
endpoint's replica pool spaces messages out so that never happens, and the
wait propagates back to the senders as backpressure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """Allows ``rate`` acquisitions per second on average, in bursts of at most ``burst``.

    Args:
        rate: tokens added per second (> 0).
        burst: bucket size (default: one second's worth, at least 1).
        clock: monotonic clock, injectable for tests.
        sleep: async sleep, injectable for tests.

    Raises:
        ValueError: ``rate`` or ``burst`` is not positive.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive (got {rate!r})")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1 (got {burst!r})")
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        """Wait until a token is available, then take it (first come, first served)."""
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                await self._sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1
