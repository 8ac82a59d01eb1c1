"""Endpoint autoscaling: the ``autoscaling:`` config block and the Ray-free scaling decision.

An endpoint with an ``autoscaling:`` block gets as many replicas as its load
asks for, between ``min_replicas`` and ``max_replicas``::

    endpoints:
      app:
        class: my_app.Replier
        autoscaling:
          min_replicas: 1
          max_replicas: 4
          target_pending_per_replica: 200   # unconfirmed messages per replica
          upscale_delay_s: 5
          downscale_delay_s: 60

The load signal is what the dispatchers already know: the messages sent to the
endpoint's replicas and not yet confirmed (``pending``), summed over every
dispatcher replica. Like Ray Serve's ``target_ongoing_requests``, the wanted
replica count is ``ceil(pending / target_pending_per_replica)``, clamped to
``[min_replicas, max_replicas]``. A change is made only once the wanted count
has stayed above the current one for ``upscale_delay_s`` (or below it for
``downscale_delay_s``), so a burst or a lull shorter than that moves nothing.
A replica count outside ``[min, max]`` (a replica died, someone scaled by hand)
is brought back at once.

``AutoscalePolicy`` holds only those timers; it takes the clock as an argument,
so it is tested without sleeping and rebuilt from nothing after a restart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AutoscalingSpec(BaseModel):
    """An endpoint's ``autoscaling:`` block (names follow Ray Serve's ``autoscaling_config`` where they mean the same).

    Attributes:
        min_replicas: never fewer replicas than this (also the count it starts with
            when ``replicas`` is not given).
        max_replicas: never more than this.
        target_pending_per_replica: unconfirmed messages per replica the scaler aims at.
        upscale_delay_s: how long the load must ask for more replicas before it adds them.
        downscale_delay_s: how long the load must ask for fewer before it removes some
            (each removed replica is drained first: nothing is lost).
        interval_s: how often the load is looked at.
    """

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(..., ge=1)
    target_pending_per_replica: float = Field(100.0, gt=0)
    upscale_delay_s: float = Field(5.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)
    interval_s: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is more than max_replicas ({self.max_replicas})")
        return self

    def wanted(self, pending: int) -> int:
        """The replica count the load ``pending`` asks for, within ``[min_replicas, max_replicas]``."""
        asked = math.ceil(pending / self.target_pending_per_replica)
        return max(self.min_replicas, min(self.max_replicas, asked))


@dataclass(frozen=True)
class ScalingDecision:
    """One change of an endpoint's replica count and why it was made."""

    endpoint: str
    current: int
    target: int
    pending: int
    reason: str
    at: float

    def to_dict(self) -> dict[str, object]:
        """The decision as plain data (for status and logs)."""
        return asdict(self)


class AutoscalePolicy:
    """Decides one endpoint's replica count from its pending messages over time (see the module docstring)."""

    def __init__(self, endpoint: str, spec: AutoscalingSpec) -> None:
        self.endpoint = endpoint
        self.spec = spec
        self._up_since: float | None = None
        self._down_since: float | None = None

    def observe(self, now: float, replicas: int, pending: int) -> ScalingDecision | None:
        """Look at the load once; return a decision when the replica count should change now."""
        spec = self.spec
        if replicas < spec.min_replicas or replicas > spec.max_replicas:
            self._up_since = self._down_since = None
            target = max(spec.min_replicas, min(spec.max_replicas, replicas))
            bound = "min_replicas" if replicas < spec.min_replicas else "max_replicas"
            return self._decide(now, replicas, target, pending, f"{replicas} replicas is outside {bound}")
        wanted = spec.wanted(pending)
        if wanted > replicas:
            self._down_since = None
            self._up_since = now if self._up_since is None else self._up_since
            if now - self._up_since >= spec.upscale_delay_s:
                why = self._why(pending, replicas, "above", spec.upscale_delay_s)
                return self._decide(now, replicas, wanted, pending, why)
        elif wanted < replicas:
            self._up_since = None
            self._down_since = now if self._down_since is None else self._down_since
            if now - self._down_since >= spec.downscale_delay_s:
                why = self._why(pending, replicas, "below", spec.downscale_delay_s)
                return self._decide(now, replicas, wanted, pending, why)
        else:
            self._up_since = self._down_since = None
        return None

    def _why(self, pending: int, replicas: int, side: str, delay: float) -> str:
        per_replica = pending / replicas if replicas else float(pending)
        return (
            f"{per_replica:.0f} pending per replica stayed {side} the target "
            f"{self.spec.target_pending_per_replica:g} for {delay:g} s"
        )

    def _decide(self, now: float, current: int, target: int, pending: int, reason: str) -> ScalingDecision:
        self._up_since = self._down_since = None
        return ScalingDecision(self.endpoint, current, target, pending, reason, now)
