"""Metrics of the data path, through ``ray.util.metrics``, and latency summaries for ``status``.

What is recorded (metric names as Ray exports them, with an extra ``ray_`` prefix):

- ``ray_dispatch_messages_total`` (counter; ``deployment``, ``endpoint``,
  ``direction``, ``stage``): messages the dispatcher ``received`` from an
  endpoint, ``published`` to one, and ``failed`` (failure records);
- ``ray_dispatch_endpoint_messages_total`` (counter; ``endpoint``, ``role``,
  ``outcome``): what endpoint replicas did with the batches they got:
  ``handled``, ``refused``, ``duplicate``;
- ``ray_dispatch_batch_size`` (histogram; ``destination``): items per batch
  each sender sends (every hop, both directions);
- ``ray_dispatch_queue_depth`` (gauge; ``destination``): items left waiting in
  a sender when it formed a batch; ``ray_dispatch_pending`` (gauge;
  ``deployment``, ``endpoint``): items a dispatcher has not had confirmed yet;
- ``ray_dispatch_connection_state`` (gauge; ``endpoint``, ``replica``,
  ``connection``, ``state``): 1 for the state each transport connection is in
  (``bound``, ``refused``, ``down``, ... see ``actors.connection``), 0 for the others;
- ``ray_dispatch_batch_latency_ms`` (histogram; ``deployment``, ``source``):
  from a batch reaching the dispatcher to every delivery it caused being confirmed;
- ``ray_dispatch_e2e_latency_ms`` (histogram; ``deployment``, ``direction``):
  the first message of each batch: from its ``timestamp`` (set when the
  endpoint created it) to its delivery being confirmed.

Everything is recorded once per batch, never per message: a metric call
costs ~2.5-3.5 µs here. Message counts are taken from the dispatcher core's
counters, pushed as deltas at most once per ``interval``.

Export: ``ray.util.metrics`` only reaches Prometheus when Ray's metrics agent
runs, which needs ``ray[default]`` (and the dashboard/metrics export enabled).
With plain ``ray`` — what this project installs — every call is a silent
no-op. ``ray-dispatch status`` does not depend on export: each dispatcher
keeps rates and recent latencies itself (``DispatcherMetrics.snapshot``), and
cumulative histogram buckets (``BucketCounts``) from which
``ray_dispatch.console.prometheus`` renders ``/metrics`` with the names above.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from actors import sender as _sender
from actors.connection import STATES
from ray_dispatch.core.message import utcnow

BATCH_SIZE_BOUNDARIES: list[float] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
LATENCY_BOUNDARIES_MS: list[float] = [0.5, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]


# -- latency summaries ------------------------------------------------------------------


def percentile(ordered: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of an ascending list.

    Raises:
        ValueError: the list is empty.
    """
    if not ordered:
        raise ValueError("percentile of no samples")
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered) - 1e-9)))
    return ordered[rank - 1]


def latency_summary(samples: list[float], count: int | None = None, maximum: float | None = None) -> dict[str, Any]:
    """Summarise latencies given in seconds, in milliseconds: count, p50, p90, p99, mean, max."""
    if not samples:
        return {"count": count or 0, "p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    ordered = sorted(samples)
    top = maximum if maximum is not None else ordered[-1]
    return {
        "count": count if count is not None else len(ordered),
        "p50": round(percentile(ordered, 0.50) * 1000, 3),
        "p90": round(percentile(ordered, 0.90) * 1000, 3),
        "p99": round(percentile(ordered, 0.99) * 1000, 3),
        "mean": round(sum(ordered) / len(ordered) * 1000, 3),
        "max": round(top * 1000, 3),
    }


class LatencyReservoir:
    """A uniform sample of at most ``capacity`` latencies (Algorithm R), with count and max.

    Args:
        capacity: most samples kept.
        seed: seed of the sampling random generator.

    Raises:
        ValueError: ``capacity`` is not positive.
    """

    def __init__(self, capacity: int = 10_000, seed: int = 1) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive (got {capacity!r})")
        self.capacity = capacity
        self.samples: list[float] = []
        self.count = 0
        self.max = 0.0
        self._random = random.Random(seed)

    def add(self, value: float) -> None:
        """Offer one latency (seconds)."""
        self.count += 1
        if value > self.max:
            self.max = value
        if len(self.samples) < self.capacity:
            self.samples.append(value)
            return
        slot = self._random.randrange(self.count)
        if slot < self.capacity:
            self.samples[slot] = value

    def clear(self) -> None:
        """Forget every sample."""
        self.samples.clear()
        self.count = 0
        self.max = 0.0

    def summary(self) -> dict[str, Any]:
        """``count`` and ``p50``/``p90``/``p99``/``mean``/``max`` in milliseconds (None when empty)."""
        return latency_summary(self.samples, self.count, self.max)


class RecentLatencies:
    """The last ``window`` latencies (seconds): what ``status`` shows as current p50/p99."""

    def __init__(self, window: int = 4096) -> None:
        self._values: deque[float] = deque(maxlen=window)
        self.count = 0

    def add(self, value: float) -> None:
        """Record one latency (seconds)."""
        self._values.append(value)
        self.count += 1

    def summary(self) -> dict[str, Any]:
        """Summary of the recent window (see ``latency_summary``); ``count`` is the total ever recorded."""
        summary = latency_summary(list(self._values))
        summary["count"] = self.count
        summary["window"] = len(self._values)
        return summary


class BucketCounts:
    """Cumulative histogram counts over fixed upper bounds (Prometheus ``le`` buckets), with count and sum.

    What ``/metrics`` exports as a histogram (``ray_dispatch.console.prometheus``):
    unlike the reservoirs above it never forgets, so a scraper can take rates of it.

    Args:
        boundaries: the buckets' inclusive upper bounds, ascending (``+Inf`` is implied).
    """

    def __init__(self, boundaries: list[float]) -> None:
        self.boundaries = list(boundaries)
        self._per_bucket = [0] * len(self.boundaries)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one value in the first bucket whose bound is at least ``value``."""
        self.count += 1
        self.sum += value
        slot = bisect.bisect_left(self.boundaries, value)
        if slot < len(self._per_bucket):
            self._per_bucket[slot] += 1

    def add(self, other: BucketCounts) -> None:
        """Add ``other``'s counts (same boundaries) to these."""
        self.count += other.count
        self.sum += other.sum
        self._per_bucket = [a + b for a, b in zip(self._per_bucket, other._per_bucket, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """``buckets``: ``[bound, values <= bound]`` pairs (cumulative); ``count`` (the ``+Inf`` bucket); ``sum``."""
        cumulative, running = [], 0
        for bound, n in zip(self.boundaries, self._per_bucket, strict=True):
            running += n
            cumulative.append([bound, running])
        return {"buckets": cumulative, "count": self.count, "sum": round(self.sum, 6)}


def _observe_into(table: dict[str, BucketCounts], key: str, value: float, boundaries: list[float]) -> None:
    counts = table.get(key)
    if counts is None:
        counts = table[key] = BucketCounts(boundaries)
    counts.observe(value)


# -- Ray instruments ------------------------------------------------------------------------


class _Instruments:
    """This process's ``ray.util.metrics`` objects (created once, on first use)."""

    def __init__(self) -> None:
        from ray.util import metrics

        self.messages = metrics.Counter(
            "ray_dispatch_messages_total",
            "Messages the dispatcher received from, published to, or failed for an endpoint.",
            tag_keys=("deployment", "endpoint", "direction", "stage"),
        )
        self.endpoint_messages = metrics.Counter(
            "ray_dispatch_endpoint_messages_total",
            "Messages endpoint replicas handled, refused, dropped as duplicates, or ignored (kinds they do not carry).",
            tag_keys=("endpoint", "role", "outcome"),
        )
        self.batch_size = metrics.Histogram(
            "ray_dispatch_batch_size",
            "Items per batch sent to a destination.",
            boundaries=BATCH_SIZE_BOUNDARIES,
            tag_keys=("destination",),
        )
        self.queue_depth = metrics.Gauge(
            "ray_dispatch_queue_depth",
            "Items waiting in a sender when it formed its last batch.",
            tag_keys=("destination",),
        )
        self.pending = metrics.Gauge(
            "ray_dispatch_pending",
            "Items the dispatcher sent to an endpoint that are not confirmed yet.",
            tag_keys=("deployment", "endpoint"),
        )
        self.connection_state = metrics.Gauge(
            "ray_dispatch_connection_state",
            "1 for the state each transport replica's connection to its peer is in, 0 for the others.",
            tag_keys=("endpoint", "replica", "connection", "state"),
        )
        self.batch_latency = metrics.Histogram(
            "ray_dispatch_batch_latency_ms",
            "From a batch reaching the dispatcher to all its deliveries being confirmed.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("deployment", "source"),
        )
        self.e2e_latency = metrics.Histogram(
            "ray_dispatch_e2e_latency_ms",
            "From a message's timestamp to its delivery being confirmed (first message of each batch).",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("deployment", "direction"),
        )


_instruments: _Instruments | None = None
_disabled = False


def instruments() -> _Instruments | None:
    """This process's instruments, or None outside a Ray worker/driver (then nothing is recorded).

    The first call also makes every ``BatchSender`` of the process report its batches.
    """
    global _instruments, _disabled
    if _instruments is None and not _disabled:
        try:
            import ray

            if not ray.is_initialized():
                return None
            _instruments = _Instruments()
        except Exception:  # metrics must never break the data path
            _disabled = True
            return None
        _sender.set_batch_observer(_observe_sender_batch)
    return _instruments


_sent_batch_sizes: dict[str, BucketCounts] = {}
"""Batch sizes of every sender of this process, by sender name (``endpoint[replica]``), for ``status``."""
_sent_queue_depth: dict[str, int] = {}
"""Items left queued in each sender of this process when it formed its last batch, by sender name."""


def _observe_sender_batch(destination: str, size: int, queued: int) -> None:
    _observe_into(_sent_batch_sizes, destination, size, BATCH_SIZE_BOUNDARIES)
    _sent_queue_depth[destination] = queued
    inst = _instruments
    if inst is not None:
        tags = {"destination": destination}
        inst.batch_size.observe(size, tags=tags)
        inst.queue_depth.set(queued, tags=tags)


def record_endpoint_batch(endpoint: str, role: str, size: int, refused: int, duplicates: int) -> None:
    """Count one batch an endpoint replica received: handled, refused and duplicate items."""
    inst = instruments()
    if inst is None:
        return
    handled = size - refused - duplicates
    for outcome, count in (("handled", handled), ("refused", refused), ("duplicate", duplicates)):
        if count > 0:
            inst.endpoint_messages.inc(count, tags={"endpoint": endpoint, "role": role, "outcome": outcome})


def record_endpoint_ignored(endpoint: str, role: str, kind: str) -> None:
    """Count one inbound message an endpoint replica does not carry (outcome ``ignored_<kind>``)."""
    inst = instruments()
    if inst is not None:
        inst.endpoint_messages.inc(1, tags={"endpoint": endpoint, "role": role, "outcome": f"ignored_{kind}"})


def record_connection_state(endpoint: str, replica: str, connection: str, state: str) -> None:
    """Set the connection-state gauge of one transport connection: 1 for ``state``, 0 for every other state."""
    inst = instruments()
    if inst is None:
        return
    for known in STATES:
        tags = {"endpoint": endpoint, "replica": replica, "connection": connection, "state": known}
        inst.connection_state.set(1 if known == state else 0, tags=tags)


# -- the dispatcher's view ------------------------------------------------------------------


class DispatcherMetrics:
    """Per-batch latency and batch-size bookkeeping, rates per endpoint, and metric export.

    Args:
        deployment: the deployment name (a metric tag).
        stats: the core's ``DispatcherStats`` (its counters are read, never changed).
        pending: returns the unconfirmed items per endpoint name.
        interval: least seconds between two samples of the counters.
        window: how many recent latencies ``snapshot`` summarises.
        clock: monotonic clock (injectable).
    """

    def __init__(
        self,
        deployment: str,
        stats: Any,
        pending: Callable[[], Mapping[str, int]],
        *,
        interval: float = 1.0,
        window: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deployment = deployment
        self._stats = stats
        self._pending = pending
        self.interval = interval
        self._clock = clock
        self.batch_latency = RecentLatencies(window)
        self.e2e_latency: dict[str, RecentLatencies] = {}
        self._window = window
        self.batches = 0
        self.items = 0
        self._sampled_at = clock()
        self._last_counts: dict[tuple[str, str, str], int] = {}
        self.rates: dict[str, dict[str, float]] = {"received": {}, "published": {}, "failed": {}}
        self.rate_interval = 0.0
        self.batch_latency_buckets: dict[str, BucketCounts] = {}  # by source endpoint, ms
        self.e2e_latency_buckets: dict[str, BucketCounts] = {}  # by direction, ms
        self.received_batch_sizes: dict[str, BucketCounts] = {}  # by source endpoint
        _sender.set_batch_observer(_observe_sender_batch)  # the pools' batch sizes, even without Ray export

    def batch_done(self, source: str, batch: Sequence[Any], started: float) -> None:
        """Record a batch from ``source`` that was routed and confirmed; ``started`` is ``clock()`` at arrival."""
        now = self._clock()
        elapsed = now - started
        self.batches += 1
        self.items += len(batch)
        self.batch_latency.add(elapsed)
        _observe_into(self.batch_latency_buckets, source, elapsed * 1000, LATENCY_BOUNDARIES_MS)
        _observe_into(self.received_batch_sizes, source, len(batch), BATCH_SIZE_BOUNDARIES)
        age = self._age_of_first(batch)
        inst = instruments()
        if inst is not None:
            inst.batch_latency.observe(elapsed * 1000, tags={"deployment": self.deployment, "source": source})
            if age is not None:
                inst.e2e_latency.observe(age[1] * 1000, tags={"deployment": self.deployment, "direction": age[0]})
        if age is not None:
            recent = self.e2e_latency.get(age[0])
            if recent is None:
                recent = self.e2e_latency[age[0]] = RecentLatencies(self._window)
            recent.add(age[1])
            _observe_into(self.e2e_latency_buckets, age[0], age[1] * 1000, LATENCY_BOUNDARIES_MS)
        if now - self._sampled_at >= self.interval:
            self.sample()

    @staticmethod
    def _age_of_first(batch: Sequence[Any]) -> tuple[str, float] | None:
        try:
            direction, payload = batch[0]
            stamp = payload.get("timestamp")
        except (IndexError, TypeError, ValueError, AttributeError):
            return None
        if not isinstance(stamp, datetime) or stamp.tzinfo is not None:
            return None
        return str(direction), max(0.0, (utcnow() - stamp).total_seconds())

    def sample(self) -> None:
        """Push counter deltas to Ray, recompute rates over the time since the last sample, set gauges."""
        now = self._clock()
        elapsed = now - self._sampled_at
        if elapsed <= 0:
            return
        inst = instruments()
        rates: dict[str, dict[str, float]] = {"received": {}, "published": {}, "failed": {}}
        for stage, counter in (
            ("received", self._stats.received),
            ("published", self._stats.published),
            ("failed", self._stats.failed),
        ):
            for (direction, endpoint), total in list(counter.items()):
                key = (stage, direction, endpoint)
                delta = total - self._last_counts.get(key, 0)
                self._last_counts[key] = total
                rates[stage][f"{direction}:{endpoint}"] = round(delta / elapsed, 1)
                if inst is not None and delta > 0:
                    tags = {"deployment": self.deployment, "endpoint": endpoint, "direction": direction, "stage": stage}
                    inst.messages.inc(delta, tags=tags)
        if inst is not None:
            for endpoint, pending in self._pending().items():
                inst.pending.set(pending, tags={"deployment": self.deployment, "endpoint": endpoint})
        self.rates = rates
        self.rate_interval = round(elapsed, 3)
        self._sampled_at = now

    def histograms(self, endpoints: list[str]) -> dict[str, Any]:
        """Cumulative bucket counts (``BucketCounts.to_dict``) since start, and queue depths, for ``/metrics``.

        ``batch_latency_ms`` by source endpoint, ``e2e_latency_ms`` by direction,
        ``batch_size`` by ``received`` (source endpoint) and ``published``
        (destination endpoint, its replicas' senders added up); ``queue_depth``
        per destination endpoint: items its senders left queued at their last batch.
        """
        published: dict[str, BucketCounts] = {}
        queued: dict[str, int] = {}
        for sender_name, counts in list(_sent_batch_sizes.items()):
            endpoint = sender_name.rpartition("[")[0] if sender_name.endswith("]") else sender_name
            if endpoint not in endpoints:
                continue
            published.setdefault(endpoint, BucketCounts(BATCH_SIZE_BOUNDARIES)).add(counts)
            queued[endpoint] = queued.get(endpoint, 0) + _sent_queue_depth.get(sender_name, 0)

        def dump(table: dict[str, BucketCounts]) -> dict[str, Any]:
            return {key: counts.to_dict() for key, counts in sorted(table.items())}

        return {
            "batch_latency_ms": dump(self.batch_latency_buckets),
            "e2e_latency_ms": dump(self.e2e_latency_buckets),
            "batch_size": {"received": dump(self.received_batch_sizes), "published": dump(published)},
            "queue_depth": dict(sorted(queued.items())),
        }

    def snapshot(self) -> dict[str, Any]:
        """Rates (msgs/s per ``direction:endpoint`` over the last interval), latencies (ms), batches, pending.

        ``histograms`` has the cumulative counts ``/metrics`` exports (see ``histograms``).
        """
        if self._clock() - self._sampled_at >= min(self.interval, 0.2):
            self.sample()
        pending = dict(self._pending())
        return {
            "interval_s": self.rate_interval,
            "rates": self.rates,
            "batch_latency_ms": self.batch_latency.summary(),
            "e2e_latency_ms": {d: r.summary() for d, r in sorted(self.e2e_latency.items())},
            "batches": self.batches,
            "mean_batch": round(self.items / self.batches, 1) if self.batches else None,
            "pending": pending,
            "histograms": self.histograms(list(pending)),
        }
