"""``/metrics``: a deployment status snapshot in the Prometheus text exposition format.

``render_metrics(deployment.status())`` returns the bytes a scraper reads and
their content type. Everything comes from the snapshot (``Deployment.status``):
the dispatchers' counters, pool stats, histogram buckets (``actors.metrics``)
and failure counts, and each endpoint replica's counters and connections. A
fresh ``CollectorRegistry`` is built per call: no state outlives a scrape, and
counters are whatever the dispatchers and replicas counted since they started
(Prometheus's ``rate()`` copes with a restarted one resetting to zero).

Every metric has the ``deployment`` label. Those a dispatcher counts also have
``dispatcher`` (its index): each counts what it routed, so sum over it.

Why ``prometheus_client`` and not Ray's exporter: ``ray.util.metrics`` reaches
Prometheus only through the metrics agent of Ray's dashboard agent, which the
plain ``ray`` install (this project's) starts with ``--minimal`` because
``ray.dashboard.optional_deps`` cannot be imported (no ``aiohttp_cors``,
``opencensus``, ``opentelemetry``): the session's ``metrics_export_port`` file
then holds ``-1``. Ray would also export per node, with its own ``ray_``
prefix, where this is one endpoint per deployment, tested against a real
Prometheus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from actors.connection import STATES
from ray_dispatch.core.errors import one_line

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The text exposition format every Prometheus 2.x and 3.x reads (what ``generate_latest`` writes)."""


@dataclass(frozen=True)
class Family:
    """One metric family ``render_metrics`` writes: name, type, label names, help text.

    A histogram adds ``_bucket`` (with ``le``), ``_count`` and ``_sum`` series.
    """

    name: str
    kind: str
    labels: tuple[str, ...]
    help: str


FAMILIES: list[Family] = []
"""Every family ``render_metrics`` writes, in the order it writes them (filled by ``@_family`` below)."""

Labels = list[str]
Series = tuple[Labels, Any]
"""Label values (in the family's order) and a value: a number, or bucket counts for a histogram."""

SeriesSource = Callable[["StatusCollector"], Iterator[Series]]

_SOURCES: dict[str, SeriesSource] = {}
_FAMILY_CLASSES: dict[str, Any] = {
    "counter": CounterMetricFamily,
    "gauge": GaugeMetricFamily,
    "histogram": HistogramMetricFamily,
}
_DISPATCHER = ("deployment", "dispatcher")  # labels of what each dispatcher counts


def _family(name: str, kind: str, *labels: str) -> Callable[[SeriesSource], SeriesSource]:
    """Declare the family a ``StatusCollector`` method yields the series of; its docstring is the help text."""

    def register(source: SeriesSource) -> SeriesSource:
        FAMILIES.append(Family(name, kind, labels, " ".join((source.__doc__ or "").split())))
        _SOURCES[name] = source
        return source

    return register


STAGES = ("received", "published", "failed")
"""``stage`` of ``ray_dispatch_messages_total``: the dispatcher's counters of the same names."""

DIRECTIONS = ("inbound", "outbound", "event")
"""Directions an endpoint replica counts ``<direction>_received`` / ``<direction>_refused`` for."""


def render_metrics(status: dict[str, Any]) -> tuple[bytes, str]:
    """The exposition text of a ``Deployment.status()`` snapshot, and its content type (text format 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return generate_latest(registry), CONTENT_TYPE


class StatusCollector(Collector):
    """The families of ``FAMILIES`` read from one status snapshot; see the module docstring.

    Args:
        status: what ``Deployment.status()`` returned.
    """

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        self.deployment = str(status.get("name", ""))
        self.live = [d for d in status.get("dispatchers", []) if d.get("alive", True)]

    def collect(self) -> Iterator[Metric]:
        """Yield every family of ``FAMILIES``, each with the series the snapshot has (possibly none)."""
        for spec in FAMILIES:
            family = _FAMILY_CLASSES[spec.kind](spec.name, spec.help, labels=list(spec.labels))
            for values, value in _SOURCES[spec.name](self):
                if spec.kind == "histogram":
                    family.add_metric(values, *_histogram(value))
                else:
                    family.add_metric(values, value)
            yield family

    # -- what dispatchers count -------------------------------------------------------------

    @_family("ray_dispatch_messages_total", "counter", *_DISPATCHER, "endpoint", "direction", "stage")
    def _messages(self) -> Iterator[Series]:
        """Messages a dispatcher received from, published to, or failed (failure records) for an endpoint."""
        for info in self.live:
            stats = info.get("stats") or {}
            for stage in STAGES:
                for key, count in sorted((stats.get(stage) or {}).items()):
                    direction, _, endpoint = key.partition(":")
                    yield [self.deployment, _index(info), endpoint, direction, stage], count

    @_family("ray_dispatch_batch_size", "histogram", *_DISPATCHER, "endpoint", "stage")
    def _batch_sizes(self) -> Iterator[Series]:
        """Items per batch: received by the dispatcher from an endpoint, or published by it to one."""
        for info in self.live:
            sizes = _histograms(info).get("batch_size") or {}
            for stage in ("received", "published"):
                for endpoint, counts in sorted((sizes.get(stage) or {}).items()):
                    yield [self.deployment, _index(info), endpoint, stage], counts

    @_family("ray_dispatch_queue_depth", "gauge", *_DISPATCHER, "endpoint")
    def _queue_depth(self) -> Iterator[Series]:
        """Items the dispatcher's senders to an endpoint left queued when they formed their last batch."""
        return self._by_key(lambda info: _histograms(info).get("queue_depth"))

    @_family("ray_dispatch_pending", "gauge", *_DISPATCHER, "endpoint")
    def _pending(self) -> Iterator[Series]:
        """Items the dispatcher sent to an endpoint that are not confirmed yet."""
        return self._by_key(lambda info: (info.get("metrics") or {}).get("pending"))

    @_family("ray_dispatch_batch_latency_ms", "histogram", *_DISPATCHER, "source")
    def _batch_latency(self) -> Iterator[Series]:
        """From a batch reaching the dispatcher to every delivery it caused being confirmed (ms)."""
        return self._by_key(lambda info: _histograms(info).get("batch_latency_ms"))

    @_family("ray_dispatch_e2e_latency_ms", "histogram", *_DISPATCHER, "direction")
    def _e2e_latency(self) -> Iterator[Series]:
        """From a message's timestamp to its delivery being confirmed, first message of each batch (ms)."""
        return self._by_key(lambda info: _histograms(info).get("e2e_latency_ms"))

    def _by_key(self, values_of: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Iterator[Series]:
        for info in self.live:
            for key, value in sorted((values_of(info) or {}).items()):
                yield [self.deployment, _index(info), key], value

    @_family("ray_dispatch_failure_records", "gauge", *_DISPATCHER)
    def _failure_records(self) -> Iterator[Series]:
        """Failure records in the failure store as each dispatcher counts them (a shared store: the same total)."""
        for info in self.live:
            if info.get("failures") is not None:  # None: the store cannot be reached
                yield [self.deployment, _index(info)], info["failures"]

    @_family("ray_dispatch_dispatcher_up", "gauge", *_DISPATCHER)
    def _dispatchers_up(self) -> Iterator[Series]:
        """1 when the dispatcher answered the status call, 0 when not."""
        for index, info in enumerate(self.status.get("dispatchers", [])):
            yield [self.deployment, str(info.get("dispatcher", index))], 1 if info.get("alive", True) else 0

    # -- what endpoints report --------------------------------------------------------------

    def _replica_items(self) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
        for endpoint, info in sorted((self.status.get("endpoints") or {}).items()):
            for replica, about in sorted((info.get("replicas") or {}).items()):
                yield endpoint, str(info.get("role", "")), replica, about

    @_family("ray_dispatch_endpoint_messages_total", "counter", "deployment", "endpoint", "role", "replica", "outcome")
    def _endpoint_messages(self) -> Iterator[Series]:
        """Messages endpoint replicas handled, refused, or dropped as duplicates."""
        for endpoint, role, replica, about in self._replica_items():
            if not about.get("alive"):
                continue
            counters = about.get("counters") or {}
            outcomes = {
                "handled": sum(counters.get(f"{d}_received", 0) for d in DIRECTIONS),
                "refused": sum(counters.get(f"{d}_refused", 0) for d in DIRECTIONS),
                "duplicate": counters.get("duplicates_dropped", 0),
            }
            for outcome, count in outcomes.items():
                yield [self.deployment, endpoint, role, replica, outcome], count

    @_family("ray_dispatch_connection_state", "gauge", "deployment", "endpoint", "replica", "connection", "state")
    def _connection_states(self) -> Iterator[Series]:
        """1 for the state each transport connection to its peer is in, 0 for the other states."""
        for endpoint, _role, replica, about in self._replica_items():
            for connection in about.get("connections") or []:
                current = str(connection.get("state"))
                for state in (*STATES, *([current] if current not in STATES else [])):
                    labels = [self.deployment, endpoint, replica, str(connection.get("name", "")), state]
                    yield labels, 1 if state == current else 0

    @_family("ray_dispatch_replicas", "gauge", "deployment", "endpoint", "role", "state")
    def _replicas(self) -> Iterator[Series]:
        """Replicas of each endpoint: alive (answered the status call) or dead."""
        for endpoint, info in sorted((self.status.get("endpoints") or {}).items()):
            replicas = list((info.get("replicas") or {}).values())
            alive = sum(1 for about in replicas if about.get("alive"))
            role = str(info.get("role", ""))
            for state, count in (("alive", alive), ("dead", len(replicas) - alive)):
                yield [self.deployment, endpoint, role, state], count

    @_family("ray_dispatch_autoscaling_replicas", "gauge", "deployment", "endpoint", "kind")
    def _autoscaling(self) -> Iterator[Series]:
        """Autoscaled endpoints: replicas ``current``, ``target`` (what the load asks for), ``min`` and ``max``."""
        for endpoint, info in sorted((self.status.get("endpoints") or {}).items()):
            scaling = info.get("autoscaling") or {}
            for kind, key in (
                ("current", "current"),
                ("target", "target"),
                ("min", "min_replicas"),
                ("max", "max_replicas"),
            ):
                if isinstance(scaling.get(key), int):
                    yield [self.deployment, endpoint, kind], scaling[key]


METRIC_NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)
"""The names of ``FAMILIES``, in the order they are written."""


def _index(dispatcher: dict[str, Any]) -> str:
    return str(dispatcher.get("dispatcher", ""))


def _histograms(dispatcher: dict[str, Any]) -> dict[str, Any]:
    return (dispatcher.get("metrics") or {}).get("histograms") or {}


def _histogram(counts: dict[str, Any]) -> tuple[list[tuple[str, float]], float]:
    """Buckets (with ``+Inf``) and sum from ``actors.metrics.BucketCounts.to_dict`` (cumulative pairs)."""
    buckets = [(str(float(bound)), float(n)) for bound, n in counts.get("buckets", [])]
    buckets.append(("+Inf", float(counts.get("count", 0))))
    return buckets, float(counts.get("sum", 0.0))


# -- a standalone server ----------------------------------------------------------------------


async def metrics_response(status: Callable[[], Awaitable[dict[str, Any]]]) -> web.Response:
    """The ``/metrics`` answer from a fresh ``status()``; 503 with one line saying why when that fails."""
    try:
        snapshot = await status()
    except Exception as exc:  # the scraper sees the target down, with the reason
        return web.Response(status=503, text=f"deployment status failed: {one_line(exc)}\n")
    body, content_type = render_metrics(snapshot)
    return web.Response(body=body, headers={"Content-Type": content_type})


async def serve_metrics(deployment: Any, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve ``GET /metrics`` for ``deployment`` (a ``Deployment``) on ``host:port``; return the runner and port.

    Each scrape takes a fresh ``deployment.status()`` (in a worker thread: it
    waits on Ray); when that fails the answer is 503 with one line saying why.
    ``port`` 0 picks a free one. Stop with ``await runner.cleanup()``.
    The console serves the same at its own ``/metrics``; this is for a
    deployment without a console (and for tests).
    """

    async def metrics(_request: web.Request) -> web.Response:
        return await metrics_response(lambda: asyncio.get_running_loop().run_in_executor(None, deployment.status))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])
