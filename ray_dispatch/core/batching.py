"""The ``batching:`` options of a destination, declared once (used by the config and by ``actors.sender``).

They appear under ``endpoints.<name>.batching`` (the dispatcher -> that
endpoint) and ``dispatcher.batching`` (every endpoint -> the dispatchers), and
are checked with the rest of the config, before anything starts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ray_dispatch.core.retry import OldKeys, RetryPolicy, fill_retry_block

RAY_INLINE_LIMIT = 1 << 20
"""The Ray ``max_direct_call_object_size`` (bytes) ray_dispatch recommends and sets on the Ray it starts.

A call argument up to this size travels inline with the call; a larger one is
put in the object store first (Ray's default limit is 100 KiB). Measured here
(README, "Batch blobs and Ray's inline limit"), a batch blob inline costs about
half the CPU per message of the same blob through the object store, and a batch
of 4000 inline is the cheapest per message. ``cluster.yaml`` sets it on the head
(``ray start --system-config``, which every node and driver takes from there);
``ray_dispatch.api.ensure_ray`` sets it on a local Ray it starts.
"""

RAY_SYSTEM_CONFIG: dict[str, int] = {"max_direct_call_object_size": RAY_INLINE_LIMIT}
"""Ray system settings of a Ray ray_dispatch starts (``ray.init(_system_config=...)``); cluster.yaml sets them too."""

BLOB_HEADROOM = 4096
"""Bytes kept free under ``RAY_INLINE_LIMIT`` for the blob's msgpack header and Ray's own framing of the argument."""

SENDER_RETRY = RetryPolicy(initial_delay=0.05, max_delay=2.0, max_attempts=8)
"""A sender's retries unless ``batching: {retry: ...}`` says otherwise (about 5 s of waiting in all)."""

OLD_RETRY_KEYS: OldKeys = {"max_attempts": "max_attempts", "backoff": "initial_delay", "backoff_max": "max_delay"}
"""The flat ``batching`` retry keys from before ``retry:`` (same meaning, new names)."""


class BatchingOptions(BaseModel):
    """Batching, backpressure and retry settings of one destination; unknown keys are refused.

    A sender sends at once when nothing is in flight (light load: no added
    latency); while calls are in flight it coalesces what arrives, so batches
    grow with the load, up to ``max_batch`` items and ``max_batch_bytes``.

    Attributes:
        max_batch: most items per call (default 1000: as fast as 4000 in the
            bench, with half the queueing delay under overload).
        max_batch_bytes: most bytes per call, counted from the encoded items
            (``len`` of each; an item without one counts 0); an item larger
            than this goes alone. The default keeps a batch blob under
            ``RAY_INLINE_LIMIT``, so it travels inline with the call when Ray
            runs with the recommended setting.
        max_wait: seconds an item may wait to be coalesced while a call is in flight.
        max_in_flight: most outstanding calls.
        max_in_flight_items: most items those calls carry together (a call
            waits for room). Under saturation the queue holds ``max_queued``
            items, so a sender makes fewer, larger calls (2 of 2000 rather
            than 4 of 1000 with the defaults) instead of putting more traffic
            in flight: the batch grows with the load while the delay a
            message queues for stays bounded.
        max_queued: most items waiting to be sent; ``send`` blocks beyond it.
        retry: tries per batch for transient errors and the waits between them
            (``RetryPolicy``; default 8 tries, 0.05 s doubling up to 2 s). The
            old flat keys ``max_attempts``, ``backoff`` and ``backoff_max`` still
            work, with a warning.
    """

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(1000, ge=1)
    max_batch_bytes: int = Field(RAY_INLINE_LIMIT - BLOB_HEADROOM, ge=1)
    max_wait: float = Field(0.002, ge=0)
    max_in_flight: int = Field(4, ge=1)
    max_in_flight_items: int = Field(4_000, ge=1)
    max_queued: int = Field(2_000, ge=1)
    retry: RetryPolicy = SENDER_RETRY

    @model_validator(mode="before")
    @classmethod
    def _complete_retry_block(cls, data: Any) -> Any:
        return fill_retry_block(data, SENDER_RETRY, "batching", OLD_RETRY_KEYS)
