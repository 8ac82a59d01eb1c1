"""The RoutingStore contract, run against MemoryStore and RedisStore alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ray_dispatch.core.stores.routing import RoutingStore

JSON_VALUES: list[Any] = [
    "sms-app",
    "",
    "ünïcødé ✓",
    0,
    -17,
    2**62,
    3.25,
    True,
    False,
    [1, "two", [3.0], {"four": None}],
    {"nested": {"list": [1, 2], "flag": False}, "empty": {}},
]


async def wait_until_absent(store: RoutingStore, key: str, limit: float = 10.0) -> float:
    """Poll until ``key`` is gone; return how long it took (fail after ``limit`` seconds)."""
    start = time.monotonic()
    while await store.get(key, "absent") != "absent":
        if time.monotonic() - start > limit:
            pytest.fail(f"key {key!r} still present after {limit} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def set_then_before_expiry(
    store: RoutingStore, value: Any, ttl: float, then: Callable[[str], Awaitable[Any]], tries: int = 5
) -> tuple[str, Any]:
    """Set a fresh key to ``value`` with ``ttl``, then run ``then(key)``; return the key and its result.

    Only a try that finished within ``ttl`` of starting counts (its ``then``
    certainly ran before the key could expire); a slower one, on a loaded
    machine, is tried again with another key.
    """
    for attempt in range(tries):
        key = f"ttl-{attempt}"
        started = time.monotonic()
        await store.set(key, value, ttl=ttl)
        result = await then(key)
        if time.monotonic() - started < ttl:
            return key, result
    pytest.fail(f"no set followed by another operation finished within {ttl} s in {tries} tries")


async def test_absent_key_gives_default(routing_store: RoutingStore) -> None:
    assert await routing_store.get("nothing") is None
    assert await routing_store.get("nothing", "fallback") == "fallback"


@pytest.mark.parametrize("value", JSON_VALUES, ids=repr)
async def test_values_round_trip(routing_store: RoutingStore, value: Any) -> None:
    await routing_store.set("k", value)
    assert await routing_store.get("k") == value
    assert type(await routing_store.get("k")) is type(value)


async def test_stored_none_is_not_the_default(routing_store: RoutingStore) -> None:
    await routing_store.set("k", None)
    assert await routing_store.get("k", "fallback") is None


async def test_set_overwrites(routing_store: RoutingStore) -> None:
    await routing_store.set("k", "first")
    await routing_store.set("k", {"second": 2})
    assert await routing_store.get("k") == {"second": 2}


async def test_values_are_independent_of_the_caller_objects(routing_store: RoutingStore) -> None:
    value = {"groups": ["a"]}
    await routing_store.set("k", value)
    value["groups"].append("mutated after set")
    read = await routing_store.get("k")
    read["groups"].append("mutated after get")
    assert await routing_store.get("k") == {"groups": ["a"]}


async def test_delete_reports_whether_key_existed(routing_store: RoutingStore) -> None:
    await routing_store.set("k", 1)
    assert await routing_store.delete("k") is True
    assert await routing_store.get("k", "gone") == "gone"
    assert await routing_store.delete("k") is False


@pytest.mark.parametrize("key", ["a:b:c", "with space", "glob*?[x]", "ключ", "return_route:" + "f" * 32])
async def test_keys_with_unusual_characters(routing_store: RoutingStore, key: str) -> None:
    await routing_store.set(key, key)
    await routing_store.set(key + "-other", "other")
    assert await routing_store.get(key) == key
    assert await routing_store.delete(key) is True
    assert await routing_store.get(key + "-other") == "other"


async def test_ttl_expires_value(routing_store: RoutingStore) -> None:
    await routing_store.set("long", "v", ttl=60)
    short, read = await set_then_before_expiry(routing_store, "v", 0.2, routing_store.get)
    assert read == "v"
    await wait_until_absent(routing_store, short)
    assert await routing_store.get("long") == "v"


async def test_set_without_ttl_removes_an_earlier_ttl(routing_store: RoutingStore) -> None:
    await routing_store.set("k", "expiring", ttl=0.15)
    await routing_store.set("k", "kept")
    await asyncio.sleep(0.3)
    assert await routing_store.get("k") == "kept"


@pytest.mark.parametrize("ttl", [0, -1.5])
async def test_non_positive_ttl_removes_value_at_once(routing_store: RoutingStore, ttl: float) -> None:
    await routing_store.set("k", "old")
    await routing_store.set("k", "new", ttl=ttl)
    assert await routing_store.get("k", "gone") == "gone"


async def test_incr_of_absent_key_starts_at_zero(routing_store: RoutingStore) -> None:
    assert await routing_store.incr("n") == 1
    assert await routing_store.incr("n", 10) == 11
    assert await routing_store.incr("n", -12) == -1
    assert await routing_store.get("n") == -1


async def test_incr_continues_a_set_integer(routing_store: RoutingStore) -> None:
    await routing_store.set("n", 41)
    assert await routing_store.incr("n") == 42


async def test_incr_keeps_the_ttl(routing_store: RoutingStore) -> None:
    n, incremented = await set_then_before_expiry(routing_store, 5, 0.25, routing_store.incr)
    assert incremented == 6
    await wait_until_absent(routing_store, n)
    assert await routing_store.incr(n) == 1  # starts over, now without a TTL
    await asyncio.sleep(0.3)
    assert await routing_store.get(n) == 1


@pytest.mark.parametrize("value", ["5", 2.5, True, [1], {"n": 1}, None])
async def test_incr_of_non_integer_raises_type_error(routing_store: RoutingStore, value: Any) -> None:
    await routing_store.set("k", value)
    with pytest.raises(TypeError, match="'k'"):
        await routing_store.incr("k")
    assert await routing_store.get("k") == value


@pytest.mark.parametrize("amount", ["1", 1.5, True])
async def test_incr_by_non_integer_amount_raises_type_error(routing_store: RoutingStore, amount: Any) -> None:
    with pytest.raises(TypeError, match="amount"):
        await routing_store.incr("k", amount)
    assert await routing_store.get("k") is None


async def test_incr_is_atomic_under_concurrent_tasks(routing_store: RoutingStore) -> None:
    tasks, per_task = 50, 20

    async def bump() -> list[int]:
        return [await routing_store.incr("counter") for _ in range(per_task)]

    results = await asyncio.gather(*(bump() for _ in range(tasks)))
    seen = sorted(n for batch in results for n in batch)
    assert seen == list(range(1, tasks * per_task + 1))  # every value handed out exactly once
    assert await routing_store.get("counter") == tasks * per_task
