"""MemoryStore: async get/set/delete, TTL on an injected clock, atomic incr."""

from __future__ import annotations

import asyncio

import pytest

from ray_dispatch.core.stores.routing import MemoryStore, RoutingStore

from .helpers import FakeClock


async def test_get_of_a_missing_key_returns_the_default() -> None:
    store = MemoryStore()
    assert await store.get("nope") is None
    assert await store.get("nope", "fallback") == "fallback"


async def test_set_then_get_and_overwrite() -> None:
    store = MemoryStore()
    await store.set("user:+27", {"group": "g1", "seen": [1, 2]})
    assert await store.get("user:+27") == {"group": "g1", "seen": [1, 2]}

    await store.set("user:+27", "g2")
    assert await store.get("user:+27") == "g2"
    assert len(store) == 1


async def test_falsy_values_are_values_not_absence() -> None:
    store = MemoryStore()
    for value in (0, "", [], {}, False):
        await store.set("k", value)
        assert await store.get("k", "default") == value


async def test_ttl_expires_on_the_injected_clock(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    await store.set("route", "app1", ttl=60)
    await store.set("forever", "x")

    clock.advance(59.9)
    assert await store.get("route") == "app1"
    clock.advance(0.1)
    assert await store.get("route") is None
    assert await store.get("route", "gone") == "gone"

    clock.advance(10**9)
    assert await store.get("forever") == "x"


async def test_set_again_replaces_the_ttl(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    await store.set("k", 1, ttl=10)
    await store.set("k", 2)  # no TTL now
    clock.advance(100)
    assert await store.get("k") == 2

    await store.set("k", 3, ttl=5)
    clock.advance(5)
    assert await store.get("k") is None


async def test_delete_reports_whether_the_key_existed(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    await store.set("k", 1)
    assert await store.delete("k") is True
    assert await store.get("k") is None
    assert await store.delete("k") is False

    await store.set("short", 1, ttl=1)
    clock.advance(1)
    assert await store.delete("short") is False  # already expired


async def test_incr_counts_from_zero_and_by_any_amount() -> None:
    store = MemoryStore()
    assert await store.incr("n") == 1
    assert await store.incr("n") == 2
    assert await store.incr("n", 10) == 12
    assert await store.incr("n", -12) == 0
    assert await store.get("n") == 0


async def test_incr_keeps_the_ttl_and_restarts_after_expiry(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    await store.set("n", 5, ttl=30)
    clock.advance(20)
    assert await store.incr("n") == 6
    clock.advance(10)  # 30 s after set: expired although incremented in between
    assert await store.get("n") is None
    assert await store.incr("n") == 1


async def test_incr_is_atomic_under_concurrency() -> None:
    store = MemoryStore()

    async def bump() -> int:
        await asyncio.sleep(0)
        return await store.incr("counter")

    results = await asyncio.gather(*(bump() for _ in range(500)))
    assert await store.get("counter") == 500
    assert sorted(results) == list(range(1, 501))  # every caller saw a distinct value


@pytest.mark.parametrize("stored", ["7", 1.5, True, None, [1], {"n": 1}])
async def test_incr_of_a_non_integer_raises_type_error_naming_the_key(stored: object) -> None:
    store = MemoryStore()
    await store.set("weird", stored)
    with pytest.raises(TypeError, match="'weird'"):
        await store.incr("weird")
    assert await store.get("weird") == stored  # unchanged


@pytest.mark.parametrize("amount", [1.5, "1", True, None])
async def test_incr_by_a_non_integer_amount_raises_type_error(amount: object) -> None:
    store = MemoryStore()
    with pytest.raises(TypeError, match="amount must be an integer"):
        await store.incr("n", amount)  # type: ignore[arg-type]
    assert await store.get("n") is None


async def test_values_are_isolated_from_the_caller() -> None:
    store = MemoryStore()
    value = {"names": ["a"]}
    await store.set("k", value)
    value["names"].append("mutated after set")
    assert await store.get("k") == {"names": ["a"]}

    got = await store.get("k")
    got["names"].append("mutated after get")
    assert await store.get("k") == {"names": ["a"]}


async def test_purge_expired_drops_only_expired_keys(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    await store.set("a", 1, ttl=1)
    await store.set("b", 2, ttl=100)
    await store.set("c", 3)
    clock.advance(2)

    assert store.purge_expired() == 1
    assert len(store) == 2
    assert await store.get("b") == 2 and await store.get("c") == 3


async def test_close_is_harmless_and_the_interface_is_abstract() -> None:
    store = MemoryStore()
    await store.set("k", 1)
    await store.close()
    with pytest.raises(TypeError):
        RoutingStore()  # type: ignore[abstract]
    assert isinstance(store, RoutingStore)
