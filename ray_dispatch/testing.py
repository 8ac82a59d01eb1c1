"""Test tools for users: the in-process ``RouterHarness``, message factories and store checks.

The harness engine lives in ``ray_dispatch.core.harness``; this is its public
home (``from ray_dispatch.testing import RouterHarness, make_inbound``).
``check_routing_store`` / ``check_failure_store`` check your own store class
against the store contracts in one call (``ray_dispatch.core.stores.checks``).
"""

from ray_dispatch.core.harness import *  # noqa: F403
from ray_dispatch.core.harness import (
    MemoryOutbox,
    RouterHarness,
    make_ack,
    make_delivery_report,
    make_inbound,
    make_nack,
)
from ray_dispatch.core.stores.checks import check_failure_store, check_routing_store

__all__ = [
    "MemoryOutbox",
    "RouterHarness",
    "check_failure_store",
    "check_routing_store",
    "make_ack",
    "make_delivery_report",
    "make_inbound",
    "make_nack",
]
