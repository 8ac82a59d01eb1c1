"""Failure stores: the shared contract (memory and Redis), records' round trip, Redis durability."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer

from ray_dispatch.core.errors import StoreUnavailable
from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.stores.failures import FailureRecord, FailureStore, MemoryFailureStore
from ray_dispatch.core.stores.redis_failures import RedisFailureStore
from ray_dispatch.testing import make_ack, make_inbound


def record(direction: str = "inbound", endpoint: str | None = "sms", **fields: Any) -> FailureRecord:
    message = fields.pop("message", None) or make_inbound("hi", transport_name=endpoint or "sms")
    return FailureRecord(reason="no route", direction=direction, endpoint=endpoint, message=message, **fields)  # type: ignore[arg-type]


# -- the contract, both implementations ----------------------------------------


async def test_add_get_and_count(failure_store: FailureStore) -> None:
    added = await failure_store.add(record(error_type="NoRoute", stage="route"))
    got = await failure_store.get(added.failure_id)
    assert got.to_dict() == added.to_dict()
    assert isinstance(got.message, TransportUserMessage)
    assert got.message.message_id == added.message.message_id
    assert await failure_store.count() == 1


async def test_get_of_unknown_id_raises_key_error(failure_store: FailureStore) -> None:
    with pytest.raises(KeyError, match="no failure record with id 'nope'"):
        await failure_store.get("nope")


async def test_list_is_oldest_first_and_filters(failure_store: FailureStore) -> None:
    a = await failure_store.add(record("inbound", "sms"))
    b = await failure_store.add(record("outbound", "app1"))
    c = await failure_store.add(record("inbound", "ussd"))
    d = await failure_store.add(record("event", "sms", message=make_ack("m1")))
    ids = lambda records: [r.failure_id for r in records]  # noqa: E731
    assert ids(await failure_store.list()) == ids([a, b, c, d])
    assert ids(await failure_store.list(direction="inbound")) == ids([a, c])
    assert ids(await failure_store.list(endpoint="sms")) == ids([a, d])
    assert ids(await failure_store.list(direction="inbound", endpoint="sms")) == ids([a])
    assert ids(await failure_store.list(limit=2)) == ids([a, b])
    assert await failure_store.list(direction="outbound", endpoint="sms") == []
    assert isinstance((await failure_store.list(direction="event"))[0].message, TransportEvent)


async def test_adding_the_same_id_replaces_in_place(failure_store: FailureStore) -> None:
    first = await failure_store.add(record())
    second = await failure_store.add(record())
    first.attempts = 3
    await failure_store.add(first)
    listed = await failure_store.list()
    assert [(r.failure_id, r.attempts) for r in listed] == [(first.failure_id, 3), (second.failure_id, 1)]


async def test_remove_and_purge(failure_store: FailureStore) -> None:
    kept = [await failure_store.add(record()) for _ in range(4)]
    assert await failure_store.remove([kept[0].failure_id, kept[2].failure_id, "unknown"]) == 2
    assert [r.failure_id for r in await failure_store.list()] == [kept[1].failure_id, kept[3].failure_id]
    assert await failure_store.remove([]) == 0
    assert await failure_store.purge() == 2
    assert await failure_store.list() == []
    assert await failure_store.count() == 0


async def test_bound_drops_the_oldest(failure_store: FailureStore) -> None:
    added = [await failure_store.add(record()) for _ in range(7)]  # the fixtures keep 5
    assert [r.failure_id for r in await failure_store.list()] == [r.failure_id for r in added[2:]]
    if isinstance(failure_store, MemoryFailureStore):
        assert failure_store.dropped == 2
    else:
        assert isinstance(failure_store, RedisFailureStore)
        assert await failure_store.dropped() == 2


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe not utf-8",
        {1: "int key", (2, 3): "tuple key", "ok": float("nan")},
        ["a", "list", None],
        "x" * 100_000,
        12345,
    ],
    ids=["bytes", "odd-keys", "list", "long-str", "int"],
)
async def test_hostile_raw_payloads_are_kept_inspectable(failure_store: FailureStore, payload: Any) -> None:
    added = await failure_store.add(record(message=payload, stage="validate"))
    got = await failure_store.get(added.failure_id)
    assert got.to_dict()["message_kind"] == "raw"
    assert json.dumps(got.to_dict())  # JSON all the way down
    assert got.to_dict()["message"] == added.to_dict()["message"]


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
