"""Garbage-collector settings for the actors on the data path.

Python's cyclic collector runs a young-generation pass every 700 container
allocations and, now and then, a full pass over every tracked object of the
process — in a Ray worker, hundreds of thousands of them (Ray's own modules
and state). Routing one message allocates dozens of containers, so with the
defaults the collector took ~15-20% of the dispatcher's CPU at full load
here (py-spy and ``/proc/<pid>/stat`` CPU per message, Ray 2.60, 2 cores).

``tune_gc_for_throughput`` moves everything alive after startup into the
permanent generation (``gc.freeze``), so full passes skip it, and makes
passes rarer. Reference counting still frees almost every message at once;
the collector only matters for cycles, which the data path does not create.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""Container allocations between young-generation passes (Python's default: 700)."""

_tuned = False


def tune_gc_for_throughput() -> bool:
    """Freeze the objects alive now and raise the collection thresholds, once per process.

    Returns whether this call changed anything (False if already tuned).
    """
    global _tuned
    if _tuned:
        return False
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 100)
    _tuned = True
    return True
