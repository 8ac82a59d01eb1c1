"""``state()`` of the store contracts, and the stores' line in ``ray-dispatch status``."""

from __future__ import annotations

from typing import Any

import pytest
from redis_server import free_port

import actors.dispatcher
from ray_dispatch.cli import _print_status
from ray_dispatch.core.stores.failures import MemoryFailureStore
from ray_dispatch.core.stores.routing import JSONValue, MemoryStore, RoutingStore


class _NoStateStore(RoutingStore):
    """A user store that implements only the abstract methods."""

    async def get(self, key: str, default: JSONValue = None) -> JSONValue:
        return default

    async def set(self, key: str, value: JSONValue, ttl: float | None = None) -> None:
        return None

    async def delete(self, key: str) -> bool:
        return False

    async def incr(self, key: str, amount: int = 1) -> int:
        return amount


def test_a_store_that_does_not_track_its_server_says_unknown_and_in_memory_stores_say_ok() -> None:
    assert _NoStateStore().state()["state"] == "unknown"
    assert MemoryStore().state()["state"] == "ok"
    assert MemoryFailureStore().state()["state"] == "ok"


def status(store: dict[str, Any], failure_store: dict[str, Any]) -> dict[str, Any]:
    dispatcher = {
        "dispatcher": 0,
        "router": "SimpleDispatchRouter",
        "node_id": "abcdef0123456789",
        "failures": None,
        "store": store,
        "failure_store": failure_store,
    }
    return {"name": "d", "namespace": "n", "dispatchers": [dispatcher], "endpoints": {}}


def test_status_prints_one_line_with_each_stores_state(capsys: pytest.CaptureFixture[str]) -> None:
    detail = "circuit open since 2027-01-15T08:00:00Z, next probe in 1.5s (3 failures in a row; last: ...)"
    _print_status(status({"state": "open", "detail": detail}, {"state": "ok", "detail": "fine"}))
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if "stores:" in line] == [f"    stores: routing open ({detail}); failures ok"]


async def test_dispatcher_status_shows_the_stores_state_and_survives_an_unreachable_failure_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(actors.dispatcher, "current_node_id", lambda: "node-0")  # no Ray needed for status
    dead = free_port()  # nothing listens there
    config = {
        "router_class": "routers.SimpleDispatchRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app"],
        "route_mappings": {"sms": "app"},
        "failure_store": {
            "class": "ray_dispatch.redis_failures.RedisFailureStore",
            "url": f"redis://127.0.0.1:{dead}/0",
            "breaker": {"failure_threshold": 1},
        },
        "endpoints": {
            "sms": {"class": "actors.builtin.MemoryTransport"},
            "app": {"class": "actors.builtin.EchoApplication"},
        },
    }
    actor = actors.dispatcher.DispatcherActor(config)
    info = await actor.status()
    assert info["failures"] is None  # the failure store cannot count: status says so instead of failing
    assert info["store"]["state"] == "ok"
    failure_store = info["failure_store"]
    assert (failure_store["state"], failure_store["url"], failure_store["pending"]) == (
        "open",
        f"redis://127.0.0.1:{dead}/0",
        0,
    )
    assert failure_store["detail"].startswith("circuit open since ")
    assert "1 failure in a row; last: ConnectionError" in failure_store["detail"]
