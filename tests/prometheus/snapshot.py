"""A fixed ``Deployment.status()`` snapshot with every kind of series ``/metrics`` renders.

Two dispatchers (one does not answer), a transport with one SMPP bind up and
one refused, an application with a dead replica, histogram buckets, a failure
store count and one that cannot be reached.
"""

from __future__ import annotations

from typing import Any


def buckets(bounds: list[float], cumulative: list[int], count: int, total: float) -> dict[str, Any]:
    """A ``BucketCounts.to_dict`` value."""
    return {"buckets": [[b, n] for b, n in zip(bounds, cumulative, strict=True)], "count": count, "sum": total}


SIZE_BOUNDS = [1, 2, 5]
LATENCY_BOUNDS = [1, 10, 100]


def _dispatcher(index: int, scale: int, failures: int | None) -> dict[str, Any]:
    return {
        "deployment": "shop",
        "dispatcher": index,
        "alive": True,
        "stats": {
            "received": {"inbound:sms": 10 * scale, "outbound:app": 7 * scale, "event:sms": 4 * scale},
            "published": {"inbound:app": 9 * scale, "outbound:sms": 7 * scale, "event:app": 4 * scale},
            "failed": {"inbound:app": 1 * scale},
            "dropped": {},
            "return_routes_not_stored": 0,
        },
        "failures": failures,
        "metrics": {
            "pending": {"app": 3 * scale, "sms": 0},
            "histograms": {
                "batch_latency_ms": {"sms": buckets(LATENCY_BOUNDS, [2, 5, 6], 6 * scale, 120.5)},
                "e2e_latency_ms": {"inbound": buckets(LATENCY_BOUNDS, [0, 4, 5], 5, 260.25)},
                "batch_size": {
                    "received": {"sms": buckets(SIZE_BOUNDS, [3, 4, 6], 6, 14.0)},
                    "published": {"app": buckets(SIZE_BOUNDS, [1, 1, 2], 3, 16.0)},
                },
                "queue_depth": {"app": 12 * scale},
            },
        },
    }


STATUS: dict[str, Any] = {
    "name": "shop",
    "namespace": "ns",
    "dispatchers": [
        _dispatcher(0, 1, failures=5),
        _dispatcher(1, 2, failures=None),  # its failure store cannot be reached
        {"dispatcher": 2, "alive": False, "error": "RayActorError: the actor died"},
    ],
    "endpoints": {
        "sms": {
            "role": "transport",
            "replicas": {
                "0": {
                    "alive": True,
                    "counters": {"outbound_received": 14, "outbound_refused": 2, "event_sent": 3, "inbound_sent": 30},
                    "connections": [
                        {"name": "bind-0", "state": "bound", "reason": None},
                        {"name": "bind-1", "state": "refused", "reason": "ESME_RINVPASWD"},
                    ],
                    "connected": False,
                },
            },
        },
        "app": {
            "role": "application",
            "replicas": {
                "0": {
                    "alive": True,
                    "counters": {"inbound_received": 20, "event_received": 8, "duplicates_dropped": 1},
                },
                "1": {"alive": False, "error": "RayActorError: the actor died"},
            },
            "autoscaling": {"current": 2, "target": 3, "min_replicas": 1, "max_replicas": 4, "pending": 250},
        },
    },
}
