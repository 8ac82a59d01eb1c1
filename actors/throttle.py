"""Token-bucket rate limits: at most ``rate`` messages per second to an endpoint.

An SMSC typically allows N submits per second per bind (its TPS limit);
sending faster gets throttling errors. One ``TokenBucket`` per endpoint is
shared by the senders to its replicas (``actors.sender.BatchSender``): each
sizes its next call to the tokens available (``available``, then ``spend``)
and waits ``delay`` seconds when there are none. So the wait happens where the
messages queue, not in whoever handed them over: the dispatcher goes on
routing other endpoints' traffic meanwhile. It still reaches the sources as
backpressure, since their calls are confirmed only once their copies were
delivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Allows ``rate`` messages per second on average, in bursts of at most ``burst``.

    Args:
        rate: tokens added per second (> 0).
        burst: bucket size (default: one second's worth, at least 1).
        clock: monotonic clock, injectable for tests.

    Raises:
        ValueError: ``rate`` or ``burst`` is not positive.
    """

    def __init__(self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive (got {rate!r})")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1 (got {burst!r})")
        self._clock = clock
        self._tokens = self.burst
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def available(self) -> int:
        """Whole tokens that can be taken now (none is taken)."""
        self._refill()
        return int(self._tokens)

    def spend(self, count: int) -> None:
        """Take ``count`` tokens (at most ``available()``: the caller sized its call to them)."""
        self._tokens -= count

    def delay(self) -> float:
        """Seconds until one whole token is available (0 when one is now)."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)
