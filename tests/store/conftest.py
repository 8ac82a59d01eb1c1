"""Fixtures for the store tests: a real redis-server per module, stores of both kinds.

``redis_server`` is shared by a module's tests (each test uses its own key
prefix); tests that stop or restart Redis take ``own_redis`` instead.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis_server import RedisServer, redis_server_available

from ray_dispatch.core.stores.failures import FailureStore, MemoryFailureStore
from ray_dispatch.core.stores.redis_failures import RedisFailureStore
from ray_dispatch.core.stores.redis_routing import RedisStore
from ray_dispatch.core.stores.routing import MemoryStore, RoutingStore

STORE_KINDS = ["memory", "redis"]
UNHURRIED = {"connect_timeout": 10.0, "socket_timeout": 10.0, "pool_timeout": 30.0, "operation_timeout": 30.0}
"""Redis client timeouts for the contract tests: a loaded machine must not turn a slow answer into a failure
(50 concurrent INCRs on 32 pooled connections waited past the default 2 s ``pool_timeout`` here)."""


def _require_redis() -> None:
    if not redis_server_available():
        pytest.fail("redis-server is not on PATH: install the Debian package redis-server (.ci/run does)")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free loopback port, shared by the module's tests."""
    _require_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for one test only (it may stop, kill or restart it)."""
    _require_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=STORE_KINDS)
async def routing_store(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[RoutingStore]:
    """A ``MemoryStore`` and a ``RedisStore``, in turn."""
    store: RoutingStore
    if request.param == "memory":
        store = MemoryStore()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisStore(server.url, prefix=prefix, **UNHURRIED)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=STORE_KINDS)
async def failure_store(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[FailureStore]:
    """A ``MemoryFailureStore`` and a ``RedisFailureStore``, in turn (both bounded at 5 records)."""
    store: FailureStore
    if request.param == "memory":
        store = MemoryFailureStore(max_records=5)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisFailureStore(server.url, prefix=prefix, max_records=5)
    try:
        yield store
    finally:
        await store.close()
