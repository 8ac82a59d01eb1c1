"""Fixtures shared by the fault tests: a Ledger actor per test and a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import ray

from actors.testing import Ledger
from tests.redis_server import RedisServer, redis_server_available


@pytest.fixture
def ledger_name(request: pytest.FixtureRequest) -> str:
    """The actor name of this test module's ledger (what LedgerApplication configs point at)."""
    return f"ledger-{request.module.__name__.rpartition('.')[2]}"


@pytest.fixture
def ledger(ray_session: None, ledger_name: str) -> Iterator[Any]:
    """A fresh ``Ledger`` actor, named ``ledger_name`` in the session's namespace; killed afterwards."""
    handle: Any = ray.remote(Ledger).options(name=ledger_name).remote()
    yield handle
    ray.kill(handle)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """URL of a redis-server started for one test (persistence off, free loopback port)."""
    if not redis_server_available():
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server.url
