"""A circuit breaker for calls to a store's server: stop waiting on a server that is down.

States:

- ``closed``: calls go through; ``failure_threshold`` failures in a row open it.
- ``open``: calls fail at once (``before_call`` raises ``CircuitOpen``) for
  ``reset_timeout`` seconds after the last failure.
- ``half-open``: after that cool-down, one call goes through as a probe (the
  others still fail at once); its success closes the breaker, its failure
  opens it again for another ``reset_timeout``.

Only failures to reach the server count (the caller decides which): a server
that answers, even with a refusal, is up. Clocks are injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BreakerPolicy", "BreakerState", "CircuitBreaker", "CircuitOpen"]

BreakerState = Literal["closed", "open", "half-open"]


class BreakerPolicy(BaseModel):
    """When a breaker opens and how long it stays open (config block ``breaker:``).

    Attributes:
        failure_threshold: failures in a row that open the breaker (default 3).
        reset_timeout: seconds the breaker stays open before a probe (default 2).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_threshold: int = Field(3, ge=1)
    reset_timeout: float = Field(2.0, gt=0)


class CircuitOpen(Exception):
    """A call was refused without trying: the breaker is open (or a probe is under way)."""


class CircuitBreaker:
    """Counts failures in a row and refuses calls while the server is known to be down.

    Use: ``before_call()`` (raises ``CircuitOpen``), then the call, then
    ``succeeded()``, ``failed(reason)`` or ``abandoned()``.

    Args:
        policy: threshold and cool-down.
        clock: monotonic seconds (``time.monotonic`` unless a test fixes it).
        wall_clock: epoch seconds, only to show when the breaker opened (``time.time``).
    """

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._wall_clock = wall_clock
        self.state: BreakerState = "closed"
        self.failures_in_a_row = 0
        self.last_error: str | None = None
        self._opened_at = 0.0  # clock() of the failure that (re)opened it
        self._open_since: float | None = None  # wall_clock() when it first opened in this outage
        self._probing = False

    def before_call(self) -> None:
        """Let a call through, or raise ``CircuitOpen`` saying since when and when the next probe is.

        After the cool-down the first call becomes the probe (state ``half-open``).
        """
        if self.state == "closed":
            return
        if self.state == "open" and self.next_probe_in() <= 0:
            self.state = "half-open"
        if self.state == "half-open" and not self._probing:
            self._probing = True
            return
        raise CircuitOpen(self.describe())

    def succeeded(self) -> None:
        """Record a call that reached the server: the breaker closes."""
        self.state = "closed"
        self.failures_in_a_row = 0
        self.last_error = None
        self._open_since = None
        self._probing = False

    def failed(self, reason: str) -> None:
        """Record a call that could not reach the server (``reason`` is kept for ``describe``)."""
        self.failures_in_a_row += 1
        self.last_error = reason
        self._probing = False
        if self.state != "closed" or self.failures_in_a_row >= self.policy.failure_threshold:
            self.state = "open"
            self._opened_at = self._clock()
            if self._open_since is None:
                self._open_since = self._wall_clock()

    def abandoned(self) -> None:
        """Record a call that ended without saying whether the server is up (cancelled, or not a server error).

        A probe that ends so lets the next call probe again.
        """
        self._probing = False

    def next_probe_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when one may go now, or not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._opened_at + self.policy.reset_timeout - self._clock())

    def describe(self) -> str:
        """One line: ``circuit open since <UTC time>, next probe in <s>s (<N> failures in a row; last: ...)``."""
        if self.state == "closed":
            return "circuit closed" + (
                f" ({_failures(self.failures_in_a_row)} in a row)" if self.failures_in_a_row else ""
            )
        since = _utc(self._open_since) if self._open_since is not None else "?"
        when = "probe under way" if self.state == "half-open" else f"next probe in {self.next_probe_in():.1f}s"
        return (
            f"circuit {self.state} since {since}, {when}"
            f" ({_failures(self.failures_in_a_row)} in a row; last: {self.last_error})"
        )

    def snapshot(self) -> dict[str, Any]:
        """JSON-friendly: ``state``, ``since`` (UTC), ``next_probe_in``, ``failures_in_a_row``, ``last_error``."""
        return {
            "state": self.state,
            "since": None if self._open_since is None else _utc(self._open_since),
            "next_probe_in": round(self.next_probe_in(), 3) if self.state == "open" else None,
            "failures_in_a_row": self.failures_in_a_row,
            "last_error": self.last_error,
        }


def _failures(count: int) -> str:
    """``1 failure``, ``3 failures``."""
    return f"{count} failure" + ("" if count == 1 else "s")


def _utc(epoch: float) -> str:
    """``epoch`` as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
