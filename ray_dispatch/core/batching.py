"""The ``batching:`` options of a destination, declared once (used by the config and by ``actors.sender``).

They appear under ``endpoints.<name>.batching`` (the dispatcher -> that
endpoint) and ``dispatcher.batching`` (every endpoint -> the dispatchers), and
are checked with the rest of the config, before anything starts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ray_dispatch.core.retry import OldKeys, RetryPolicy, fill_retry_block

SENDER_RETRY = RetryPolicy(initial_delay=0.05, max_delay=2.0, max_attempts=8)
"""A sender's retries unless ``batching: {retry: ...}`` says otherwise (about 5 s of waiting in all)."""

OLD_RETRY_KEYS: OldKeys = {"max_attempts": "max_attempts", "backoff": "initial_delay", "backoff_max": "max_delay"}
"""The flat ``batching`` retry keys from before ``retry:`` (same meaning, new names)."""


class BatchingOptions(BaseModel):
    """Batching, backpressure and retry settings of one destination; unknown keys are refused.

    Attributes:
        max_batch: most items per call.
        max_wait: seconds an item may wait to be coalesced while a call is in flight.
        max_in_flight: most outstanding calls.
        max_queued: most items waiting to be sent; ``send`` blocks beyond it.
        retry: tries per batch for transient errors and the waits between them
            (``RetryPolicy``; default 8 tries, 0.05 s doubling up to 2 s). The
            old flat keys ``max_attempts``, ``backoff`` and ``backoff_max`` still
            work, with a warning.
    """

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(1000, ge=1)
    max_wait: float = Field(0.002, ge=0)
    max_in_flight: int = Field(4, ge=1)
    max_queued: int = Field(4_000, ge=1)
    retry: RetryPolicy = SENDER_RETRY

    @model_validator(mode="before")
    @classmethod
    def _complete_retry_block(cls, data: Any) -> Any:
        return fill_retry_block(data, SENDER_RETRY, "batching", OLD_RETRY_KEYS)
