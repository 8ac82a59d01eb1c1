"""The RoutingStore contract (``ray_dispatch.testing.check_routing_store``): MemoryStore and RedisStore keep it,
and the check names what a broken store breaks."""

from __future__ import annotations

import uuid

import pytest
from redis_server import RedisServer

from ray_dispatch.core.stores.redis_routing import RedisStore
from ray_dispatch.core.stores.routing import JSONValue, MemoryStore, RoutingStore
from ray_dispatch.testing import check_routing_store


class FakeClock:
    """A clock the check moves forward (no real waiting, no race with the machine's load)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def test_memory_store_keeps_the_contract() -> None:
    clock = FakeClock()
    await check_routing_store(lambda: MemoryStore(clock), advance=clock.advance)


async def test_redis_store_keeps_the_contract(redis_server: RedisServer) -> None:
    await check_routing_store(lambda: RedisStore(redis_server.url, prefix=f"test-{uuid.uuid4().hex[:12]}"))


class OneAtATime(MemoryStore):
    """A store that implements only the abstract methods: ``get_many``/``set_many`` are the base class's."""

    get_many = RoutingStore.get_many
    set_many = RoutingStore.set_many


async def test_the_base_class_gives_a_store_get_many_and_set_many_that_keep_the_contract() -> None:
    clock = FakeClock()
    await check_routing_store(lambda: OneAtATime(clock), advance=clock.advance)


class ForgetsTtl(MemoryStore):
    """Keeps every value forever."""

    async def set(self, key: str, value: JSONValue, ttl: float | None = None) -> None:
        await super().set(key, value, None if ttl is None or ttl > 0 else ttl)


class SharesValues(MemoryStore):
    """Hands out the stored objects themselves."""

    async def get(self, key: str, default: JSONValue = None) -> JSONValue:
        item = self._live(key)
        return default if item is None else item[0]


async def test_a_store_that_forgets_ttls_is_named_for_each_ttl_rule() -> None:
    clock = FakeClock()
    with pytest.raises(AssertionError) as info:
        await check_routing_store(lambda: ForgetsTtl(clock), advance=clock.advance, wait_limit=5)
    assert str(info.value) == (
        "3 of 15 routing store rules broken:"
        " ttl expires the value: 'short' is still there long after its ttl of 1.0 s;"
        " set without ttl removes an earlier ttl: 'sentinel' is still there long after its ttl of 1.0 s;"
        " incr keeps the ttl: 'n' is still there long after its ttl of 1.0 s"
    )


async def test_a_store_that_shares_its_values_with_callers_is_named() -> None:
    with pytest.raises(AssertionError, match=r"^1 of 15 .*values are copies: stored value after the caller changed"):
        clock = FakeClock()
        await check_routing_store(lambda: SharesValues(clock), advance=clock.advance)


async def test_a_store_that_raises_is_reported_with_the_exception_and_an_async_factory_works() -> None:
    class NoIncr(MemoryStore):
        async def incr(self, key: str, amount: int = 1) -> int:
            raise NotImplementedError("incr is not done yet")

    async def make() -> MemoryStore:
        return NoIncr()

    with pytest.raises(AssertionError) as info:
        await check_routing_store(make, ttl=0.05)
    assert "incr counts from zero: raised NotImplementedError: incr is not done yet" in str(info.value)
    assert "4 of 15" in str(info.value) and "incr is atomic: raised NotImplementedError" in str(info.value)
