"""Test tools for users: the in-process ``RouterHarness`` and message factories.

The harness engine lives in ``ray_dispatch.core.harness``; this is its public
home (``from ray_dispatch.testing import RouterHarness, make_inbound``).
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

__all__ = ["MemoryOutbox", "RouterHarness", "make_ack", "make_delivery_report", "make_inbound", "make_nack"]
