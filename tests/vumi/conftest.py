"""Fixtures for the Vumi-compatibility tests, shared with the fault and transport tests.

``redis_url``: a per-test redis-server; ``link``: a recording dispatcher link;
``smsc``: the test SMSC peer in its own process.
"""

from tests.faults.conftest import redis_url
from tests.transports.conftest import link
from tests.transports.test_smpp import smsc

__all__ = ["link", "redis_url", "smsc"]
