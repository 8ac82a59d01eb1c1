"""The ``batching:`` options of a destination, declared once (used by the config and by ``actors.sender``).

They appear under ``endpoints.<name>.batching`` (the dispatcher -> that
endpoint) and ``dispatcher.batching`` (every endpoint -> the dispatchers), and
are checked with the rest of the config, before anything starts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BatchingOptions(BaseModel):
    """Batching, backpressure and retry settings of one destination; unknown keys are refused.

    Attributes:
        max_batch: most items per call.
        max_wait: seconds an item may wait to be coalesced while a call is in flight.
        max_in_flight: most outstanding calls.
        max_queued: most items waiting to be sent; ``send`` blocks beyond it.
        max_attempts: tries per batch for transient errors before giving up.
        backoff: first retry delay in seconds (doubles each time).
        backoff_max: longest retry delay in seconds.
    """

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(1000, ge=1)
    max_wait: float = Field(0.002, ge=0)
    max_in_flight: int = Field(4, ge=1)
    max_queued: int = Field(20_000, ge=1)
    max_attempts: int = Field(8, ge=1)
    backoff: float = Field(0.05, gt=0)
    backoff_max: float = Field(2.0, gt=0)
