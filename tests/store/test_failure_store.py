"""Failure stores: the shared contract (memory and Redis), records' round trip, Redis durability."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer

from ray_dispatch.core.errors import StoreUnavailable
from ray_dispatch.core.message import TransportUserMessage
from ray_dispatch.core.stores.failures import Direction, FailureRecord, FailureStore, MemoryFailureStore
from ray_dispatch.core.stores.redis_failures import RedisFailureStore
from ray_dispatch.testing import check_failure_store, make_inbound


def record(direction: str = "inbound", endpoint: str | None = "sms", **fields: Any) -> FailureRecord:
    message = fields.pop("message", None) or make_inbound("hi", transport_name=endpoint or "sms")
    return FailureRecord(reason="no route", direction=direction, endpoint=endpoint, message=message, **fields)  # type: ignore[arg-type]


# -- the contract (ray_dispatch.testing.check_failure_store), both implementations ---


async def test_memory_failure_store_keeps_the_contract() -> None:
    await check_failure_store(lambda: MemoryFailureStore(max_records=5), max_records=5)


async def test_redis_failure_store_keeps_the_contract(redis_server: RedisServer) -> None:
    await check_failure_store(
        lambda: RedisFailureStore(redis_server.url, prefix=f"test-{uuid.uuid4().hex[:12]}", max_records=5),
        max_records=5,
    )


async def test_the_bound_counts_what_it_dropped(failure_store: FailureStore) -> None:
    for _ in range(7):  # the fixtures keep 5
        await failure_store.add(record())
    if isinstance(failure_store, MemoryFailureStore):
        assert failure_store.dropped == 2
    else:
        assert isinstance(failure_store, RedisFailureStore)
        assert await failure_store.dropped() == 2


async def test_counts_per_endpoint_are_of_the_records_kept_now(failure_store: FailureStore) -> None:
    """Where each failed (destination, else arrival endpoint); purged and removed records no longer count."""
    kept = [
        await failure_store.add(record()),
        await failure_store.add(record(destination="app")),
        await failure_store.add(record(destination="app")),
        await failure_store.add(record("outbound", "app", destination="sms")),
    ]
    assert await failure_store.count_by_endpoint() == {"inbound:sms": 1, "inbound:app": 2, "outbound:sms": 1}
    await failure_store.remove([kept[1].failure_id])
    assert await failure_store.count_by_endpoint() == {"inbound:sms": 1, "inbound:app": 1, "outbound:sms": 1}
    await failure_store.purge()
    assert await failure_store.count_by_endpoint() == {}


class IgnoresFilters(MemoryFailureStore):
    """Lists every record, whatever was asked."""

    async def list(
        self, direction: Direction | None = None, endpoint: str | None = None, *, limit: int | None = None
    ) -> list[FailureRecord]:
        return await super().list()


async def test_a_failure_store_that_ignores_list_filters_is_named() -> None:
    with pytest.raises(AssertionError) as info:
        await check_failure_store(IgnoresFilters)
    assert str(info.value).startswith(
        "1 of 7 failure store rules broken: list is oldest first and filters: list(direction='inbound'): expected"
    )


async def test_a_failure_store_without_its_bound_is_named() -> None:
    with pytest.raises(AssertionError, match=r"bound drops the oldest: list after 7 adds to a store of 5: expected"):
        await check_failure_store(lambda: MemoryFailureStore(max_records=10), max_records=5)


# -- records -------------------------------------------------------------------


def test_record_round_trips_through_json() -> None:
    msg = make_inbound("hi", helper_metadata={"deep": {"er": [1, 2]}}, custom_field="kept")
    original = record(message=msg, destination="app1", stage="deliver", error_type="DeliveryError", attempts=4)
    again = FailureRecord.from_dict(json.loads(json.dumps(original.to_dict())))
    assert again.to_dict() == original.to_dict()
    assert isinstance(again.message, TransportUserMessage)
    assert again.message.to_dict() == msg.to_dict()
    assert again.message["custom_field"] == "kept"
    assert again.timestamp == original.timestamp


def test_deeply_nested_message_still_serialises() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["d"] = {}
        node = node["d"]
    msg = make_inbound("hi")
    msg.helper_metadata = deep  # attribute assignment is not validated; a record must still serialise
    data = record(message=msg).to_dict()
    assert data["message_kind"] == "user_message"
    assert "cut" in json.dumps(data)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"reason": "r", "direction": "inbound", "timestamp": "2024-01-01 00:00:00"}, "'failure_id'"),
        ({"failure_id": "f", "reason": "r", "direction": "sideways", "timestamp": "2024-01-01"}, "'direction'"),
        ({"failure_id": "f", "reason": "r", "direction": "event", "timestamp": "yesterday"}, "'timestamp'"),
    ],
)
def test_from_dict_names_the_bad_field(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        FailureRecord.from_dict(data)


# -- Redis: shared, durable, and never losing a record while Redis is down -------


def count_redis_calls(store: RedisFailureStore) -> list[str]:
    """Make ``store`` note every command it sends to Redis (its name) in the returned list."""
    calls: list[str] = []
    run = store.connection.run

    async def counting(command: str, key: str | None, call: Any) -> Any:
        calls.append(command)
        return await run(command, key, call)

    store.connection.run = counting  # type: ignore[method-assign]
    return calls


async def test_redis_failures_are_shared_and_survive_a_new_store(redis_server: RedisServer, prefix: str) -> None:
    first = RedisFailureStore(redis_server.url, prefix=prefix)
    added = await first.add(record())
    await first.close()
    second, other = (
        RedisFailureStore(redis_server.url, prefix=prefix),
        RedisFailureStore(redis_server.url, prefix + "x"),
    )
    try:
        assert [r.failure_id for r in await second.list()] == [added.failure_id]
        assert await other.list() == []
    finally:
        await second.close()
        await other.close()


async def test_redis_add_keeps_records_while_redis_is_down(own_redis: RedisServer, prefix: str) -> None:
    store = RedisFailureStore(own_redis.url, prefix=prefix, retry_interval=3600)
    tries = count_redis_calls(store)
    try:
        before = await store.add(record())
        own_redis.stop(keep_dir=True)
        during = [await store.add(record("outbound", "app1")) for _ in range(20)]
        assert len(tries) == 2, tries  # the write before, one failed try: no waiting on Redis for every record
        assert store.pending == 20
        assert (await store.get(during[0].failure_id)).endpoint == "app1"
        with pytest.raises(StoreUnavailable, match=r"failure store at redis://127\.0\.0\.1"):
            await store.list()
        own_redis.restart()  # persistence is off: the record written before is gone with the old server
        listed = await store.list()
        assert [r.failure_id for r in listed] == [r.failure_id for r in during]
        assert store.pending == 0
        assert before.failure_id not in {r.failure_id for r in listed}
    finally:
        await store.close()


async def test_redis_add_keeps_records_while_redis_refuses_writes(
    redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisFailureStore(redis_server.url, prefix=prefix, retry_interval=0)
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        await admin.config_set("maxmemory", 1)  # with the default noeviction policy every write is refused (OOM)
        try:
            with caplog.at_level(logging.WARNING, logger="ray_dispatch.core.stores.redis_failures"):
                refused = [await store.add(record()) for _ in range(3)]
            assert store.pending == 3
            assert store.last_error is not None and "OutOfMemoryError" in store.last_error
            assert len([r for r in caplog.records if "keeping failure records" in r.getMessage()]) == 1
        finally:
            await admin.config_set("maxmemory", 0)
        accepted = await store.add(record())
        assert store.last_error is None and store.pending == 0
        assert [r.failure_id for r in await store.list()] == [r.failure_id for r in [*refused, accepted]]
    finally:
        await admin.aclose()
        await store.close()
