"""Per-message cost of the dispatcher's ring of recent outcomes (explain by message id).

``DispatcherActor`` calls ``RecentOutcomes.add`` once per routed message. This
measures, in one process and without Ray, the loop the actor runs per message
(rebuild from the wire, ``Dispatcher.dispatch`` through SimpleDispatchRouter,
then ``add``) with the ring at 10,000 entries, with it off (``recent_outcomes: 0``)
and without the call at all, and reports per-iteration medians. Medians of
single iterations resist a shared machine's noise (descheduling hits a few
iterations, not the middle); variants are interleaved in rounds so drifting
load hits them alike. Also reports the ``add`` call alone and the memory one
remembered message holds.

    python bench/recent_outcomes_bench.py [--messages 20000] [--rounds 7]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

from actors.wire import from_wire, to_wire
from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.core.harness import make_inbound
from ray_dispatch.core.stores.failures import MemoryFailureStore
from ray_dispatch.tools.recent import RecentOutcomes
from ray_dispatch.tools.replay import DiscardOutbox

SEED = Path(__file__).resolve().parents[1] / "examples" / "seed.yaml"
VARIANTS = ("no_ring", "ring_off", "ring_10k")


def fresh(wire: dict[str, Any]) -> Any:
    """A message rebuilt from the wire as the actor does (own nested dicts, so the hop count is its own)."""
    return from_wire(dict(wire, helper_metadata={}, routing_metadata={}, transport_metadata={}))


async def one_round(core: Dispatcher, wires: list[dict[str, Any]], ring: RecentOutcomes | None) -> tuple[int, int]:
    """Median ns per message of the whole loop body, and of the ``add`` call alone."""
    clock = time.perf_counter_ns
    dispatch = core.dispatch
    whole: list[int] = []
    adds: list[int] = []
    for wire in wires:
        t0 = clock()
        message = fresh(wire)
        outcome = await dispatch("inbound", message, "smpp_transport")
        t1 = clock()
        if ring is not None:
            ring.add("inbound", "smpp_transport", message, outcome)
        t2 = clock()
        del message, outcome  # without the ring, both are freed here, as in the actor
        t3 = clock()
        whole.append(t3 - t0)
        adds.append(t2 - t1)
    return int(statistics.median(whole)), int(statistics.median(adds))


def memory_per_entry(wires: list[dict[str, Any]], core: Dispatcher) -> float:
    """Bytes one remembered message keeps alive (message, outcome, ring entry)."""

    async def fill(ring: RecentOutcomes) -> None:
        for wire in wires[:5000]:
            message = fresh(wire)
            ring.add("inbound", "smpp_transport", message, await core.dispatch("inbound", message, "smpp_transport"))

    ring = RecentOutcomes(5000)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    asyncio.run(fill(ring))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / len(ring)


async def measure(messages: int, rounds: int) -> dict[str, Any]:
    core = Dispatcher(SEED, DiscardOutbox(), failures=MemoryFailureStore(max_records=10))
    await core.start()
    wires = [to_wire(make_inbound(f"message {i}", transport_name="smpp_transport")) for i in range(messages)]
    rings: dict[str, RecentOutcomes | None] = {
        "no_ring": None,
        "ring_off": RecentOutcomes(0),
        "ring_10k": RecentOutcomes(10_000),
    }
    await one_round(core, wires[:2000], rings["ring_10k"])  # warm up; the 10k ring starts partly full
    whole: dict[str, list[int]] = {v: [] for v in VARIANTS}
    adds: dict[str, list[int]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            w, a = await one_round(core, wires, rings[variant])
            whole[variant].append(w)
            adds[variant].append(a)
    await core.stop()
    med = {v: statistics.median(whole[v]) for v in VARIANTS}

    def extra(variant: str) -> dict[str, float]:
        """Per round, the variant's median minus no_ring's in the same round: median and range over rounds."""
        diffs = [w - base for w, base in zip(whole[variant], whole["no_ring"])]
        return {"median": statistics.median(diffs), "min": min(diffs), "max": max(diffs)}

    return {
        "messages_per_round": messages,
        "rounds": rounds,
        "loop_ns_per_message_median": med,
        "ring_10k_extra_ns_per_message": extra("ring_10k"),
        "ring_off_extra_ns_per_message": extra("ring_off"),
        "add_call_ns_median": {v: statistics.median(adds[v]) for v in VARIANTS},
        "note": (
            "extra = whole loop (rebuild, dispatch, add, free) against no add at all, paired per round;"
            " the add call alone includes freeing the evicted message, which the actor frees anyway"
            " without the ring; no_ring's add is the empty timer pair (the floor)"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    result = asyncio.run(measure(args.messages, args.rounds))
    core = Dispatcher(SEED, DiscardOutbox(), failures=MemoryFailureStore(max_records=10))
    asyncio.run(core.start())
    wires = [to_wire(make_inbound(f"m{i}", transport_name="smpp_transport")) for i in range(5000)]
    result["bytes_per_remembered_message"] = round(memory_per_entry(wires, core))
    result["load_average_1m"] = round(__import__("os").getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
