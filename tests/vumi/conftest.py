"""Fixtures for the Vumi-compatibility tests, shared with the fault and transport tests.

``redis_url``: a per-test redis-server; ``link``: a recording dispatcher link;
``smsc``: the test SMSC peer in its own process.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from peers.smsc import SmscPeer

from tests.faults.conftest import redis_url
from tests.transports.conftest import link

__all__ = ["link", "redis_url", "smsc"]


@pytest.fixture
def smsc(tmp_path: Path) -> Iterator[SmscPeer]:
    """A test SMSC on free loopback ports, stopped after the test."""
    with SmscPeer.running(tmp_path) as peer:
        yield peer
