"""``ray-dispatch bench``: throughput, latency and overload, side by side with raw Ray.

Every scenario runs in one process on one Ray instance (started with
``num_cpus=2``, no dashboard and ``core.batching.RAY_SYSTEM_CONFIG`` unless
this process is already connected),
because the machine is shared and noisy: only numbers from the same run
compare. The result is one JSON object.

Scenarios:

a. ``baseline``: a hand-written two-hop forwarder on raw Ray (source actor ->
   forwarder actor -> sink actor), batches of 100 and of 1000, at most
   ``IN_FLIGHT`` calls outstanding, each call returning only once the next hop
   confirmed it — the dispatcher's confirmation pattern. The source builds the
   same wire payloads as ``LoadTransport``; the sink counts them by id. Also
   the same chain shipping ONE msgpack blob (``msgspec.msgpack``) per batch of
   1000, which the sink decodes: the fair ceiling (``baseline_blob_msgs_per_s``).
b. ``dispatch``: ``LoadTransport`` -> ``DispatcherActor`` (SimpleDispatchRouter)
   -> ``SinkApplication``, which replies to every message; the reply goes
   back through the dispatcher to the transport, which acks it; the ack comes
   back through the dispatcher to the application by the return-route memory.
   So each generated message causes three routed messages (inbound, outbound,
   event), each a two-hop trip (endpoint -> dispatcher -> endpoint) confirmed
   by its receiver, like one baseline message. ``dispatch_msgs_per_s`` counts
   all three; the run ends when the last ack reached the application. Also
   measured: the same deployment with replies off (``inbound_only``).
c. ``keyword``: the same with ContentKeywordRouter (two applications chosen by
   first word; replies leave by ``transport_mappings``; acks return by the
   router's routing memory).
d. ``light_load``: 100 msg/s offered, replies off; transport -> application
   latency from the ``sent_at`` stamp to the application's hook.
e. ``overload``: a fresh deployment; transports asked to send ten times the
   inbound rate measured in (b) for a while; peak RSS of the dispatcher and
   endpoint processes (sampled, and the kernel's high-water mark); messages
   lost = handed to the dispatcher link minus distinct ids the application got;
   queueing delay = ``sent_at`` (the transport accepting the message) to the
   application's hook.
f. ``latency_under_load``: inbound only, paced at 50 % and 80 % of the
   inbound-only capacity measured in (b); transport -> application latency.
g. ``dispatcher_replicas``: (b) with replies and acks on one and on two
   dispatcher replicas (``dispatcher.replicas: 2``), rounds alternating.

CPU: around every flow of (b), (c) and (g), user + system CPU of the
transport, dispatcher and application processes (``/proc/<pid>/stat``),
divided by the routed messages (``cpu_us_per_msg``); from it the scale-out
model (``bench/scale_model.py``). Every scenario says ``complete``,
``missing`` and ``duplicates`` and gives no rate, latency or CPU figure when
it did not deliver every message exactly once.

    python bench/run_bench.py [--quick] [--out FILE]     (or: ray-dispatch bench)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
import ray

if __package__ in (None, ""):  # run as a script (``ray-dispatch bench``): import siblings from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.loadgen import SENT_AT, IdCounter, LoadTransportConfig, build_templates, stamped
from actors.metrics import LatencyReservoir
from bench.procstat import CpuMeter
from bench.scale_model import scale_out_model
from ray_dispatch.api import Deployment, deploy
from ray_dispatch.core.batching import RAY_SYSTEM_CONFIG

NAMESPACE = "ray_dispatch_bench"
IN_FLIGHT = 4  # SenderOptions.max_in_flight's default: the dispatcher's senders keep this many calls outstanding
LOAD_FRACTIONS = (0.5, 0.8)  # latency under load: these fractions of the measured inbound-only capacity


@dataclass
class BenchSizes:
    """How much each scenario sends (``full``, ``quick`` and ``tiny`` presets)."""

    baseline_messages: int
    baseline_batches: tuple[int, ...]
    dispatch_messages: int
    keyword_messages: int
    light_rate: float
    light_seconds: float
    overload_seconds: float
    overload_factor: float = 10.0
    overload_transports: int = 2
    rounds: int = 2
    load_seconds: float = 10.0
    replicas_messages: int = 40_000
    blob_batch: int = 1000

    @classmethod
    def full(cls) -> BenchSizes:
        """The reported run (about four to five minutes on a quiet 2-core machine)."""
        return cls(200_000, (100, 1000), 40_000, 20_000, 100.0, 10.0, 30.0)

    @classmethod
    def quick(cls) -> BenchSizes:
        """Under two minutes on this machine."""
        return cls(
            40_000, (100, 1000), 10_000, 5_000, 100.0, 2.5, 8.0, rounds=1, load_seconds=3.0, replicas_messages=10_000
        )

    @classmethod
    def tiny(cls) -> BenchSizes:
        """Seconds: for tests of the benchmark itself (the numbers mean nothing)."""
        return cls(
            2_000,
            (100, 1000),
            300,
            200,
            100.0,
            0.3,
            1.0,
            overload_factor=2.0,
            rounds=1,
            load_seconds=0.3,
            replicas_messages=300,
        )


# -- (a) the raw-Ray baseline ------------------------------------------------------------


class ProcessId:
    """Lets the driver find a baseline actor's process (for its CPU time)."""

    async def pid(self) -> int:
        """This actor's process id."""
        return os.getpid()


class BaselineSink(ProcessId):
    """Last hop of the baseline: counts payloads by message id, confirms by returning.

    A batch is a list of ``(direction, payload)`` pairs, or one msgpack blob of
    such a list (the blob baseline), which the sink decodes to count it.
    """

    def __init__(self) -> None:
        self.ids = IdCounter()
        self.latency = LatencyReservoir(20_000)
        self.decoder = msgspec.msgpack.Decoder()
        self.blob_bytes = 0

    async def receive(self, source: str, batch: list[Any] | bytes) -> list[tuple[int, str]]:
        """Count a batch (and, for batches of one, the latency since ``sent_at``); return no rejections."""
        if isinstance(batch, bytes):
            self.blob_bytes += len(batch)
            items = self.decoder.decode(batch)
        else:
            items = batch
        for _direction, payload in items:
            self.ids.add(payload["message_id"])
        if len(items) == 1:
            self.latency.add(time.time() - items[0][1]["transport_metadata"][SENT_AT])
        return []

    async def latency_summary(self, clear: bool = False) -> dict[str, Any]:
        """Latencies of single-message batches so far (milliseconds)."""
        summary = self.latency.summary()
        if clear:
            self.latency.clear()
        return summary

    async def counts(self) -> dict[str, int]:
        """Distinct message ids received (``unique``), repeats (``duplicates``), bytes of blobs received."""
        return {"unique": self.ids.unique, "duplicates": self.ids.duplicates, "blob_bytes": self.blob_bytes}


class BaselineForwarder(ProcessId):
    """Middle hop of the baseline: hands each batch on and returns once the sink confirmed it."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    async def receive(self, source: str, batch: list[Any] | bytes) -> list[tuple[int, str]]:
        """Forward ``batch`` (untouched) to the sink; return its answer."""
        return await self.sink.receive.remote("forwarder", batch)  # type: ignore[no-any-return]


class BaselineSource(ProcessId):
    """First hop of the baseline: builds ``LoadTransport``'s payloads and sends them in batches."""

    def __init__(self) -> None:
        self.templates = build_templates("load", LoadTransportConfig())
        self.encoder = msgspec.msgpack.Encoder()

    async def run(
        self, forwarder: Any, count: int, batch_size: int, in_flight: int, run: str, blob: bool = False
    ) -> float:
        """Send ``count`` messages in batches, ``in_flight`` calls at a time; return the seconds taken.

        With ``blob`` each batch goes as one msgpack-encoded bytes object.
        """
        gate = asyncio.Semaphore(in_flight)
        templates = self.templates
        calls = []
        started = time.monotonic()
        for first in range(0, count, batch_size):
            await gate.acquire()
            batch = [
                ("inbound", stamped(templates[seq % len(templates)], f"{run}-{seq}"))
                for seq in range(first, min(count, first + batch_size))
            ]
            shipped = self.encoder.encode(batch) if blob else batch
            call = asyncio.ensure_future(forwarder.receive.remote("source", shipped))
            call.add_done_callback(lambda _: gate.release())
            calls.append(call)
        await asyncio.gather(*calls)
        return time.monotonic() - started

    async def run_paced(self, forwarder: Any, count: int, rate: float, run: str) -> float:
        """Send ``count`` messages one per call at ``rate`` per second, each after the last returned."""
        started = time.monotonic()
        for seq in range(count):
            delay = started + seq / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            payload = stamped(self.templates[seq % len(self.templates)], f"{run}-{seq}")
            await forwarder.receive.remote("source", [("inbound", payload)])
        return time.monotonic() - started


def _actor(cls: type, *args: Any) -> Any:
    remote: Any = ray.remote(cls)
    return remote.options(num_cpus=0).remote(*args)


def account_delivery(sent: int, before: dict[str, int], after: dict[str, int]) -> dict[str, Any]:
    """Whether a baseline run delivered its ``sent`` messages exactly once (sink ``counts`` before and after)."""
    unique = after["unique"] - before["unique"]
    duplicates = after["duplicates"] - before["duplicates"]
    missing = max(0, sent - unique)
    return {"complete": missing == 0 and duplicates == 0, "missing": missing, "duplicates": duplicates}


def _baseline_rounds(
    chain: dict[str, Any], pids: dict[str, list[int]], sizes: BenchSizes, batch: int, blob: bool
) -> dict[str, Any]:
    """``rounds`` timed runs of the chain at one batch size; the best complete round's rate and CPU per message."""
    source, forwarder, sink = chain["source"], chain["forwarder"], chain["sink"]
    rounds: list[float | None] = []
    cpu: list[dict[str, float] | None] = []
    accounts = []
    start_bytes = ray.get(sink.counts.remote())["blob_bytes"]
    for round_ in range(sizes.rounds):
        before = ray.get(sink.counts.remote())
        run = f"{'blob' if blob else 'b'}{batch}r{round_}"
        with CpuMeter(pids) as meter:
            call = source.run.remote(forwarder, sizes.baseline_messages, batch, IN_FLIGHT, run, blob)
            seconds: float = ray.get(call)
        account = account_delivery(sizes.baseline_messages, before, ray.get(sink.counts.remote()))
        accounts.append(account)
        rounds.append(sizes.baseline_messages / seconds if account["complete"] else None)
        cpu.append(meter.per_message(sizes.baseline_messages) if account["complete"] else None)
    rates = [r for r in rounds if r is not None]
    best = rounds.index(max(rates)) if rates else None
    shipped = ray.get(sink.counts.remote())["blob_bytes"] - start_bytes
    return {
        "blob_bytes_per_msg": round(shipped / (sizes.baseline_messages * sizes.rounds), 1) if blob else None,
        "msgs_per_s": round(max(rates)) if rates else None,
        "rounds": [None if r is None else round(r) for r in rounds],
        "complete": all(a["complete"] for a in accounts),
        "missing": sum(a["missing"] for a in accounts),
        "duplicates": sum(a["duplicates"] for a in accounts),
        "cpu_us_per_msg": None if best is None else cpu[best],
    }


def run_baseline(sizes: BenchSizes) -> dict[str, Any]:
    """Scenario (a): messages per second through the raw two-hop forwarder, per batch size, and as blobs."""
    sink: Any = _actor(BaselineSink)
    forwarder: Any = _actor(BaselineForwarder, sink)
    source: Any = _actor(BaselineSource)
    chain = {"source": source, "forwarder": forwarder, "sink": sink}
    results: dict[str, Any] = {}
    try:
        pids = {role: [ray.get(handle.pid.remote())] for role, handle in chain.items()}
        ray.get(source.run.remote(forwarder, 100, 100, IN_FLIGHT, "warmup"))
        ray.get(source.run.remote(forwarder, 100, 100, IN_FLIGHT, "warmup-blob", True))
        for batch in sizes.baseline_batches:
            results[str(batch)] = _baseline_rounds(chain, pids, sizes, batch, blob=False)
        results["blob"] = {str(sizes.blob_batch): _baseline_rounds(chain, pids, sizes, sizes.blob_batch, True)}
        counts = ray.get(sink.counts.remote())
        results["received_unique"] = counts["unique"]
        results["duplicates"] = counts["duplicates"]
        results["sent"] = 200 + sizes.baseline_messages * sizes.rounds * (len(sizes.baseline_batches) + 1)
        ray.get(sink.latency_summary.remote(True))
        count = max(1, round(sizes.light_rate * sizes.light_seconds))
        before = ray.get(sink.counts.remote())
        ray.get(source.run_paced.remote(forwarder, count, sizes.light_rate, "paced"))
        paced = account_delivery(count, before, ray.get(sink.counts.remote()))
        latency = ray.get(sink.latency_summary.remote())
        results["light_load"] = paced
        results["light_load_latency_ms"] = latency if paced["complete"] else _no_latency(latency)
        results["light_load_note"] = f"{count} messages, one per call, {sizes.light_rate:g} msg/s, sent_at -> sink"
    finally:
        for handle in (source, forwarder, sink):
            ray.kill(handle)
    results["complete"] = results["received_unique"] == results["sent"] and results["duplicates"] == 0
    results["complete"] = results["complete"] and results["light_load"]["complete"]
    return results


def _no_latency(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with its percentiles blanked: a run that lost or repeated messages gives no latency."""
    return {**summary, **dict.fromkeys(("p50", "p90", "p99", "mean", "max"))}


# -- deployments ---------------------------------------------------------------------------


def simple_config(reply: bool, transports: int = 1, dispatchers: int = 1) -> dict[str, Any]:
    """SimpleDispatchRouter: transport ``load`` -> application ``sink``; replies go back by transport_name."""
    return {
        "router_class": "routers.simple.SimpleDispatchRouter",
        "transport_names": ["load"],
        "exposed_names": ["sink"],
        "route_mappings": {"load": "sink"},
        "dispatcher": {"replicas": dispatchers},
        "endpoints": {
            "load": {"class": "actors.loadgen.LoadTransport", "replicas": transports},
            "sink": {"class": "actors.loadgen.SinkApplication", "config": {"reply": reply}},
        },
    }


def keyword_config() -> dict[str, Any]:
    """ContentKeywordRouter: ``alpha ...`` -> app_a, ``beta ...`` -> app_b; replies leave by from_addr."""
    return {
        "router_class": "routers.content_keyword.ContentKeywordRouter",
        "transport_names": ["load"],
        "exposed_names": ["app_a", "app_b"],
        "keyword_mappings": {"app_a": "alpha", "app_b": "beta"},
        "transport_mappings": {"12345": "load"},
        "endpoints": {
            "load": {"class": "actors.loadgen.LoadTransport", "config": {"keywords": ["alpha", "beta"]}},
            "app_a": {"class": "actors.loadgen.SinkApplication", "config": {"reply": True}},
            "app_b": {"class": "actors.loadgen.SinkApplication", "config": {"reply": True}},
        },
    }


def _replicas(dep: Deployment, endpoint: str) -> list[Any]:
    return [dep.endpoint(endpoint, rid) for rid in dep.replica_ids(endpoint)]


def process_pids(dep: Deployment, transports: list[str], apps: list[str]) -> dict[str, list[int]]:
    """Process ids of the deployment's actors by role, from each actor's own ``ping`` (``os.getpid()``)."""

    def pids(handles: list[Any]) -> list[int]:
        return [int(info["pid"]) for info in ray.get([h.ping.remote() for h in handles], timeout=60)]

    return {
        "transport": pids([h for name in transports for h in _replicas(dep, name)]),
        "dispatcher": pids(list(dep.dispatchers)),
        "application": pids([h for name in apps for h in _replicas(dep, name)]),
    }


def _flow(dep: Deployment, transport: str, apps: list[str], count: int, replies: bool, run: str) -> dict[str, Any]:
    """Generate ``count`` messages on one transport; wait (bounded) until every app got them (and every ack).

    The CPU the transport, dispatcher and application processes used meanwhile
    is reported per routed message (``cpu_us_per_msg``; None unless complete).
    """
    sinks = [s for app in apps for s in _replicas(dep, app)]
    ray.get([s.reset.remote() for s in sinks])
    ray.get([s.configure.remote(replies) for s in sinks])
    load = dep.endpoint(transport)
    with CpuMeter(process_pids(dep, [transport], apps)) as cpu:
        generated = ray.get(load.generate.remote(count, run=run), timeout=600)
        deadline = time.monotonic() + 60
        while True:
            results = ray.get([s.results.remote() for s in sinks])
            unique = sum(r["unique"] for r in results)
            acks = sum(r["acks_unique"] for r in results)
            if (unique >= count and (acks >= count or not replies)) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    last = max(r["last_at"] or 0.0 for r in results)
    seconds = max(last - generated["started_at"], 1e-9)
    dispatcher = ray.get(dep.dispatchers[0].status.remote())["metrics"]
    account = account_flow(count, replies, results, seconds)
    return {
        **account,
        "cpu_us_per_msg": cpu.per_message(account["routed"]) if account["complete"] else None,
        "cpu_seconds": {role: round(value, 3) for role, value in cpu.seconds.items()},
        "received_unique": unique,
        "acks": acks,
        "confirmed": generated["confirmed"],
        "failed": generated["failed"],
        "inbound_latency_ms": _merge_latency([r["latency_ms"] for r in results]),
        "inbound_to_ack_ms": _merge_latency([r["ack_latency_ms"] for r in results]) if replies else None,
        "dispatcher_mean_batch": dispatcher["mean_batch"],
        "dispatcher_batch_latency_ms": dispatcher["batch_latency_ms"],
    }


def account_flow(count: int, replies: bool, results: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Whether a flow delivered every message exactly once; its rates only if it did (None otherwise).

    ``results`` are the sinks' ``results()``. ``missing`` counts generated
    messages no application handled, and with ``replies`` also replies whose
    ack never reached the application; ``duplicates`` counts messages and acks
    an application's hook saw more than once (past the endpoints' dedupe). A
    run that stopped at its deadline, lost or repeated anything is
    ``complete: false`` and reports no rate, so it cannot overstate one.
    """
    unique = sum(r["unique"] for r in results)
    duplicates = sum(r["duplicates"] for r in results)
    missing = max(0, count - unique)
    if replies:
        missing += max(0, count - sum(r["acks_unique"] for r in results))
        duplicates += sum(r["ack_duplicates"] for r in results)
    complete = missing == 0 and duplicates == 0
    routed = count * 3 if replies else count
    return {
        "messages": count,
        "complete": complete,
        "missing": missing,
        "duplicates": duplicates,
        "routed": routed if complete else None,
        "seconds": round(seconds, 3),
        "routed_msgs_per_s": round(routed / seconds) if complete else None,
        "conversations_per_s": round(count / seconds) if complete else None,
    }


def best_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest complete round, with every round's rate (None for an incomplete one) in ``rounds_msgs_per_s``.

    When no round is complete, the first is returned (it says ``complete: false`` and has no rate).
    """
    complete = [r for r in rounds if r["complete"]]
    best = max(complete, key=lambda r: r["routed_msgs_per_s"]) if complete else rounds[0]
    return {**best, "rounds_msgs_per_s": [r["routed_msgs_per_s"] for r in rounds]}


def _merge_latency(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary with most samples (replicas see the same traffic mix); None fields when empty."""
    return max(summaries, key=lambda s: s.get("count") or 0) if summaries else {}


def run_dispatch(sizes: BenchSizes) -> dict[str, Any]:
    """Scenario (b) with replies and acks, then inbound only; the best of ``rounds`` each."""
    dep = deploy(simple_config(reply=True), name="bench-simple", namespace=NAMESPACE)
    try:
        _flow(dep, "load", ["sink"], min(500, sizes.dispatch_messages), True, "warmup")
        acks = [_flow(dep, "load", ["sink"], sizes.dispatch_messages, True, f"acks{r}") for r in range(sizes.rounds)]
        inbound = [
            _flow(dep, "load", ["sink"], sizes.dispatch_messages, False, f"inbound{r}") for r in range(sizes.rounds)
        ]
    finally:
        dep.shutdown()
    return {"with_acks": best_round(acks), "inbound_only": best_round(inbound)}


def run_keyword(sizes: BenchSizes) -> dict[str, Any]:
    """Scenario (c): ContentKeywordRouter with replies and acks returned by routing memory."""
    dep = deploy(keyword_config(), name="bench-keyword", namespace=NAMESPACE)
    try:
        _flow(dep, "load", ["app_a", "app_b"], min(200, sizes.keyword_messages), True, "warmup")
        result = _flow(dep, "load", ["app_a", "app_b"], sizes.keyword_messages, True, "keyword")
        per_app = {app: ray.get(dep.endpoint(app).results.remote())["unique"] for app in ("app_a", "app_b")}
        failures = sum(ray.get(d.status.remote())["failures"] for d in dep.dispatchers)
    finally:
        dep.shutdown()
    return {**result, "per_app": per_app, "failure_records": failures}


def account_sink(expected: int, result: dict[str, Any]) -> dict[str, Any]:
    """Whether one application received ``expected`` messages exactly once (its ``results()``)."""
    missing = max(0, expected - result["unique"])
    return {
        "complete": missing == 0 and result["duplicates"] == 0,
        "missing": missing,
        "duplicates": result["duplicates"],
    }


def _paced(dep: Deployment, count: int, rate: float, run: str, timeout: float = 60.0) -> dict[str, Any]:
    """Send ``count`` messages from ``load`` at ``rate`` msg/s (replies off); latency transport -> application.

    The latency and achieved rate are None when the application did not get
    every message exactly once.
    """
    sink, load = dep.endpoint("sink"), dep.endpoint("load")
    ray.get(sink.reset.remote())
    generated = ray.get(load.generate.remote(count, rate=rate, run=run), timeout=count / rate + 300)
    result = ray.get(sink.wait_for.remote(count, 0, timeout), timeout=timeout + 60)
    dispatcher = ray.get(dep.dispatchers[0].status.remote())["metrics"]
    account = account_sink(count, result)
    achieved = round(count / max(generated["send_elapsed"], 1e-9), 1)
    return {
        "offered_rate": round(rate, 1),
        "messages": count,
        **account,
        "achieved_rate": achieved if account["complete"] else None,
        "received_unique": result["unique"],
        "latency_ms": result["latency_ms"] if account["complete"] else _no_latency(result["latency_ms"]),
        "dispatcher_batch_latency_ms": dispatcher["batch_latency_ms"],
        "dispatcher_mean_batch": dispatcher["mean_batch"],
    }


def run_light_load(sizes: BenchSizes) -> dict[str, Any]:
    """Scenario (d): ``light_rate`` msg/s for ``light_seconds``; latency transport -> application."""
    dep = deploy(simple_config(reply=False), name="bench-light", namespace=NAMESPACE)
    try:
        ray.get(dep.endpoint("load").generate.remote(20, rate=sizes.light_rate, run="warmup"))
        count = max(1, round(sizes.light_rate * sizes.light_seconds))
        return _paced(dep, count, sizes.light_rate, "light", timeout=30)
    finally:
        dep.shutdown()


def run_latency_under_load(sizes: BenchSizes, capacity: float) -> dict[str, Any]:
    """Scenario (f): latency transport -> application paced at ``LOAD_FRACTIONS`` of ``capacity`` (inbound only)."""
    dep = deploy(simple_config(reply=False), name="bench-loaded", namespace=NAMESPACE)
    results: dict[str, Any] = {"capacity_msgs_per_s": round(capacity)}
    try:
        ray.get(dep.endpoint("load").generate.remote(min(2000, round(capacity)), run="warmup"), timeout=300)
        for fraction in LOAD_FRACTIONS:
            rate = capacity * fraction
            count = max(1, round(rate * sizes.load_seconds))
            results[load_key(fraction)] = _paced(dep, count, rate, f"load{round(fraction * 100)}")
    finally:
        dep.shutdown()
    return results


def load_key(fraction: float) -> str:
    """The JSON key of one load level of scenario (f): ``"50%"``."""
    return f"{round(fraction * 100)}%"


# -- (e) overload ------------------------------------------------------------------------------


def read_rss_mb(pid: int) -> tuple[float, float]:
    """``(current RSS, peak RSS)`` of a process in MiB (``/proc``; psutil where there is no ``/proc``)."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        fields = {}
        for line in status.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)
    import psutil

    rss = psutil.Process(pid).memory_info().rss / 2**20
    return rss, rss


class RssSampler:
    """Samples the RSS of some processes every ``interval`` seconds in a thread; keeps the maximum."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        self.pids = pids
        self.interval = interval
        self.peak: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        """Take one sample of every process."""
        for name, pid in self.pids.items():
            try:
                rss, _ = read_rss_mb(pid)
            except (OSError, ValueError):
                continue
            self.peak[name] = max(self.peak[name], rss)
        self.samples += 1

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def run_overload(sizes: BenchSizes, capacity: float) -> dict[str, Any]:
    """Scenario (e): ask the transports for ``overload_factor`` x ``capacity`` msg/s; memory and losses."""
    transports = sizes.overload_transports
    dep = deploy(simple_config(reply=False, transports=transports), name="bench-overload", namespace=NAMESPACE)
    try:
        loads, sink = _replicas(dep, "load"), dep.endpoint("sink")
        pids = {"dispatcher": ray.get(dep.dispatchers[0].ping.remote())["pid"]}
        pids["sink"] = ray.get(sink.ping.remote())["pid"]
        for index, load in enumerate(loads):
            pids[f"load[{index}]"] = ray.get(load.ping.remote())["pid"]
        before = {name: round(read_rss_mb(pid)[0], 1) for name, pid in pids.items()}
        target = capacity * sizes.overload_factor
        per_transport = target / transports
        with RssSampler(pids) as sampler:
            runs = [
                load.generate.remote(duration=sizes.overload_seconds, rate=per_transport, run=f"over{index}")
                for index, load in enumerate(loads)
            ]
            generated = ray.get(runs, timeout=sizes.overload_seconds + 300)
            offered = sum(g["offered"] for g in generated)
            result = ray.get(sink.wait_for.remote(offered, 0, 60))
            sampler.sample()
        high_water = {name: round(read_rss_mb(pid)[1], 1) for name, pid in pids.items()}
        failures = sum(ray.get(d.status.remote())["failures"] for d in dep.dispatchers)
    finally:
        dep.shutdown()
    per_prefix = result["per_prefix"]
    lost = sum(max(0, g["offered"] - per_prefix.get(g["prefix"], 0)) for g in generated)
    account = account_sink(offered, result)
    seconds = max(g["send_elapsed"] for g in generated)
    peak = {name: round(value, 1) for name, value in sampler.peak.items()}
    return {
        "seconds": sizes.overload_seconds,
        "capacity_msgs_per_s": round(capacity),
        "offered_target_msgs_per_s": round(target),
        "accepted_msgs_per_s": round(offered / max(seconds, 1e-9)),
        "held_back_by_backpressure": max(0, round(target * seconds) - offered),
        "sent": offered,
        "confirmed": sum(g["confirmed"] for g in generated),
        "send_failed": sum(g["failed"] for g in generated),
        "received_unique": result["unique"],
        **account,
        "lost": lost,
        "failure_records": failures,
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "high_water_rss_mb": high_water,
        "rss_samples": sampler.samples,
        "latency_under_overload_ms": result["latency_ms"],
        "queueing_delay_ms": result["latency_ms"] if account["complete"] else _no_latency(result["latency_ms"]),
    }


# -- (g) one vs two dispatchers --------------------------------------------------------------


def run_dispatcher_replicas(sizes: BenchSizes) -> dict[str, Any]:
    """Scenario (g): (b) with replies and acks on one and on two dispatcher replicas, rounds alternating."""
    deps = {
        n: deploy(simple_config(reply=True, dispatchers=n), name=f"bench-dispatchers-{n}", namespace=NAMESPACE)
        for n in (1, 2)
    }
    rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in deps}
    try:
        for dep in deps.values():
            _flow(dep, "load", ["sink"], min(500, sizes.replicas_messages), True, "warmup")
        for round_ in range(sizes.rounds):
            for n, dep in deps.items():
                rounds[n].append(_flow(dep, "load", ["sink"], sizes.replicas_messages, True, f"d{n}r{round_}"))
    finally:
        for dep in deps.values():
            dep.shutdown()
    best = {str(n): best_round(r) for n, r in rounds.items()}
    one, two = best["1"]["routed_msgs_per_s"], best["2"]["routed_msgs_per_s"]
    return {**best, "two_over_one": round(two / one, 3) if one and two else None}


# -- the whole run ----------------------------------------------------------------------------


NOTES = {
    "baseline": (
        "raw Ray, source -> forwarder -> sink actors, async, batches of the given size, "
        f"{IN_FLIGHT} calls in flight; each call returns when the next hop returned (confirmation); "
        "payloads are LoadTransport's wire dicts; baseline_msgs_per_s is the batch of 1000 "
        "(the dispatcher's max_batch)"
    ),
    "baseline_blob_msgs_per_s": (
        "the same chain shipping ONE msgpack blob (msgspec.msgpack) per batch of 1000: the source encodes "
        "the batch, the forwarder forwards the bytes untouched, the sink decodes them and counts every id; "
        "the fair ceiling for a batch-native path (payloads are LoadTransport's wire dicts, encoded as maps: "
        "blob_bytes_per_msg says how big). ratio_to_blob = dispatch_msgs_per_s / it. Each baseline "
        "variant has cpu_us_per_msg of its source, forwarder (the dispatcher's counterpart) and sink"
    ),
    "dispatch_msgs_per_s": (
        "scenario b with acks flowing back: for each generated inbound message the application replies, "
        "the reply (outbound) goes through the dispatcher to LoadTransport, which acks it, and the ack "
        "(event) goes through the dispatcher back to the application by the return-route memory. "
        "All three routed messages are counted: each is one two-hop trip endpoint -> dispatcher -> endpoint "
        "confirmed by its receiver, the unit the baseline measures. Time: first send to the last ack "
        "reaching the application. conversations_per_s = generated messages per second"
    ),
    "cpu_us_per_msg": (
        "user + system CPU (/proc/<pid>/stat utime + stime, every thread) of the transport, dispatcher and "
        "application processes from just before the flow started to its last arrival, divided by the routed "
        "messages; from b's best round with replies and acks (every flow of b, c and g has its own). Pids "
        "from each actor's ping(); Ray's raylet/GCS and the driver are not counted; each process's idle background "
        "(Ray's threads) is, which only shows when a flow is slow (a loaded machine)"
    ),
    "latency": (
        "scenario d: time from LoadTransport handing the message to its link to SinkApplication's hook; "
        "a_baseline.light_load_latency_ms is the same offered load over the raw two-hop forwarder"
    ),
    "latency_under_load": (
        "scenario f: inbound only, LoadTransport paced at 50 % and 80 % of the inbound-only capacity "
        "measured in b (inbound_only_msgs_per_s), load_seconds each; latency transport -> application as in d"
    ),
    "overload": (
        "scenario e: transports asked for overload_factor x the inbound-only capacity measured in b; "
        "backpressure makes them hold messages back (held_back_by_backpressure) instead of queueing; "
        "lost = sent (handed to the dispatcher link) - distinct ids the application received after the drain; "
        "overload_peak_rss_mb is the largest RSS of the dispatcher and endpoint processes: sampled every 0.25 s,"
        " or the kernel's high-water mark (VmHWM) of these fresh processes, whichever is larger; "
        "queueing delay = from the transport accepting a message (sent_at, stamped before the link takes it, "
        "so waiting for the link's space counts) to its arrival at the application"
    ),
    "dispatchers_1_vs_2": (
        "scenario g: b with replies and acks on a deployment with dispatcher.replicas 1 and one with 2 "
        "(the transport's link spreads users over them), rounds alternating; routed msg/s of the best round each"
    ),
    "scale_out_model": (
        "from cpu_us_per_msg: predicted routed msg/s with N busy cores = N * 1e6 / (CPU us per routed message "
        "summed over transport, dispatcher and application); one process of a role tops out near 1e6 / its us; "
        "replicas_needed says how many of each role the prediction needs. An upper bound: Ray's own processes "
        "are left out (model_check compares the 2-core prediction with this run)"
    ),
    "complete": (
        "every scenario says complete: true only if every message it sent (and with replies every ack) "
        "reached its receiver exactly once before its deadline; otherwise it gives missing and duplicates "
        "and its rates, latencies and CPU per message are null (e and f are skipped when b's inbound-only "
        "capacity is unknown)"
    ),
    "metrics": "ray.util.metrics is a silent no-op with plain ray (export needs ray[default])",
}


def machine_info() -> dict[str, Any]:
    """CPU count, load, versions and date of this run."""
    return {
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def run_bench(sizes: BenchSizes, *, quick: bool = False) -> dict[str, Any]:
    """Run every scenario on the connected (or a new local) Ray instance; return the JSON object."""
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            namespace=NAMESPACE,
            log_to_driver=False,
            _system_config=dict(RAY_SYSTEM_CONFIG),  # as ray_dispatch's own local Ray and cluster.yaml
        )
    started = time.monotonic()
    machine = machine_info()
    baseline = _step("a baseline", run_baseline, sizes)
    dispatch = _step("b dispatch", run_dispatch, sizes)
    keyword = _step("c keyword", run_keyword, sizes)
    light = _step("d light load", run_light_load, sizes)
    capacity = dispatch["inbound_only"]["routed_msgs_per_s"]
    if capacity is None:  # no complete inbound-only round: fractions or multiples of an unknown rate test nothing
        skipped = {"skipped": "no inbound-only round delivered every message exactly once", "complete": False}
        overload = {**skipped, "lost": None, "peak_rss_mb": {}, "high_water_rss_mb": {}, "queueing_delay_ms": {}}
        loaded: dict[str, Any] = dict(skipped)
    else:
        loaded = _step("f latency under load", run_latency_under_load, sizes, capacity)
        overload = _step("e overload", run_overload, sizes, capacity)
    replicas = _step("g one vs two dispatchers", run_dispatcher_replicas, sizes)
    result = summarize(sizes, baseline, dispatch, keyword, light, overload, loaded, replicas)
    result.update(
        {
            "machine": machine,
            "mode": "quick" if quick else "full",
            "sizes": asdict(sizes),
            "scenarios": {
                "a_baseline": baseline,
                "b_dispatch": dispatch,
                "c_keyword": keyword,
                "d_light_load": light,
                "e_overload": overload,
                "f_latency_under_load": loaded,
                "g_dispatcher_replicas": replicas,
            },
            "notes": NOTES,
            "bench_seconds": round(time.monotonic() - started, 1),
        }
    )
    return result


def summarize(
    sizes: BenchSizes,
    baseline: dict[str, Any],
    dispatch: dict[str, Any],
    keyword: dict[str, Any],
    light: dict[str, Any],
    overload: dict[str, Any],
    loaded: dict[str, Any],
    replicas: dict[str, Any],
) -> dict[str, Any]:
    """The JSON's top-level keys and ``targets`` from the scenarios' results."""
    baseline_rate = baseline[str(max(sizes.baseline_batches))]["msgs_per_s"]
    blob_rate = baseline.get("blob", {}).get(str(sizes.blob_batch), {}).get("msgs_per_s")
    dispatch_rate = dispatch["with_acks"]["routed_msgs_per_s"]
    capacity = dispatch["inbound_only"]["routed_msgs_per_s"]
    peak_rss = [*overload["peak_rss_mb"].values(), *overload["high_water_rss_mb"].values()]
    cpu = dispatch["with_acks"].get("cpu_us_per_msg")
    queueing = overload.get("queueing_delay_ms") or {}
    under_load = {load_key(f): _load_summary(loaded.get(load_key(f))) for f in LOAD_FRACTIONS}
    one, two = (replicas.get(n, {}).get("routed_msgs_per_s") for n in ("1", "2"))
    parts = (
        dispatch["with_acks"],
        dispatch["inbound_only"],
        keyword,
        light,
        baseline,
        overload,
        loaded,
        *(v for v in loaded.values() if isinstance(v, dict)),
        *(replicas.get(n, {"complete": False}) for n in ("1", "2")),
    )
    result: dict[str, Any] = {
        "complete": all(part.get("complete", True) for part in parts) and overload["lost"] == 0,
        "baseline_msgs_per_s": baseline_rate,
        "baseline_blob_msgs_per_s": blob_rate,
        "dispatch_msgs_per_s": dispatch_rate,
        "ratio": _ratio(dispatch_rate, baseline_rate),
        "ratio_to_blob": _ratio(dispatch_rate, blob_rate),
        "latency_p50_ms": light["latency_ms"]["p50"],
        "latency_p99_ms": light["latency_ms"]["p99"],
        "baseline_latency_p50_ms": baseline["light_load_latency_ms"]["p50"],
        "baseline_latency_p99_ms": baseline["light_load_latency_ms"]["p99"],
        "latency_under_load": under_load,
        "overload_peak_rss_mb": max(peak_rss) if peak_rss else None,
        "overload_lost": overload["lost"],
        "overload_queueing_delay_p50_ms": queueing.get("p50"),
        "overload_queueing_delay_p99_ms": queueing.get("p99"),
        "keyword_msgs_per_s": keyword["routed_msgs_per_s"],
        "inbound_only_msgs_per_s": capacity,
        "cpu_us_per_msg": cpu,
        "dispatchers_1_vs_2": {"1": one, "2": two, "two_over_one": _ratio(two, one)},
        "scale_out_model": scale_out_model(cpu, dispatch_rate, os.cpu_count()),
    }
    result["targets"] = targets(result)
    return result


def _load_summary(level: dict[str, Any] | None) -> dict[str, Any]:
    """One load level of scenario (f) for the top level: offered rate, p50/p99 (None when incomplete)."""
    if not level:
        return {"offered_rate": None, "complete": False, "p50_ms": None, "p99_ms": None}
    latency = level["latency_ms"]
    return {
        "offered_rate": level["offered_rate"],
        "achieved_rate": level["achieved_rate"],
        "complete": level["complete"],
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
    }


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 11's targets against this run's top-level figures: ``{key: {target, met}}``."""
    blob = result["baseline_blob_msgs_per_s"]
    cpu = result["cpu_us_per_msg"] or {}
    raw_p50 = result["baseline_latency_p50_ms"]
    at_80 = result["latency_under_load"].get("80%", {})
    checks: dict[str, tuple[str, bool]] = {
        "dispatch_msgs_per_s": (">= 100000", _at_least(result["dispatch_msgs_per_s"], 100_000)),
        "ratio_to_blob": (">= 0.7", _at_least(result["ratio_to_blob"], 0.7)),
        "ratio": (">= 1.4", _at_least(result["ratio"], 1.4)),
        "inbound_only_msgs_per_s": (
            ">= 0.8 x baseline_blob_msgs_per_s",
            blob is not None and _at_least(result["inbound_only_msgs_per_s"], 0.8 * blob),
        ),
        "keyword_msgs_per_s": (
            ">= 0.5 x baseline_blob_msgs_per_s",
            blob is not None and _at_least(result["keyword_msgs_per_s"], 0.5 * blob),
        ),
        "dispatcher_cpu_us_per_msg": ("<= 5", _at_most(cpu.get("dispatcher"), 5.0)),
        "latency_p50_ms": (
            "<= 1.15 x baseline_latency_p50_ms",
            raw_p50 is not None and _at_most(result["latency_p50_ms"], 1.15 * raw_p50),
        ),
        "latency_p99_ms": ("<= 10", _at_most(result["latency_p99_ms"], 10.0)),
        "latency_under_load_80_p99_ms": ("<= 50", _at_most(at_80.get("p99_ms"), 50.0)),
        "overload_peak_rss_mb": ("< 1024", _below(result["overload_peak_rss_mb"], 1024)),
        "overload_lost": ("0", result["overload_lost"] == 0),
        "overload_queueing_delay_p99_ms": ("<= 1000", _at_most(result["overload_queueing_delay_p99_ms"], 1000.0)),
    }
    return {key: {"target": target, "met": met} for key, (target, met) in checks.items()}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator is not None and denominator else None


def _step(name: str, scenario: Any, *args: Any) -> dict[str, Any]:
    """Run one scenario, telling stderr how long it took (stdout carries only the JSON)."""
    started = time.monotonic()
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    result: dict[str, Any] = scenario(*args)
    print(f"bench: {name} done in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return result


def _at_most(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def _at_least(value: float | None, limit: float) -> bool:
    return value is not None and value >= limit


def _below(value: float | None, limit: float) -> bool:
    return value is not None and value < limit


def main(quick: bool = False, out: str | None = None) -> dict[str, Any]:
    """Run the benchmark, print the JSON object on stdout, and write it to ``out`` if given."""
    result = run_bench(BenchSizes.quick() if quick else BenchSizes.full(), quick=quick)
    text = json.dumps(result, indent=2)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return result


def _cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller scenarios: under two minutes")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)


if __name__ == "__main__":
    _cli()
