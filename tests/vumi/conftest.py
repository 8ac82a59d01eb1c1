"""Fixtures for the Vumi-compatibility tests: a per-test redis-server, shared with the fault tests."""

from tests.faults.conftest import redis_url

__all__ = ["redis_url"]
