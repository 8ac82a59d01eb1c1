"""On Ray: Vumi's StoringMiddleware (with TaggingMiddleware) in a deployment keeps messages and events in Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import ray

import ray_dispatch
from ray_dispatch.core.stores.redis_routing import RedisStore
from ray_dispatch.middleware import MessageStoreReader, StoredMessage
from tests.vumi.test_middleware import TAGGER

pytestmark = pytest.mark.ray


def _config(url: str) -> dict[str, Any]:
    return {
        "router_class": "vumi.dispatchers.SimpleDispatchRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app"],
        "route_mappings": {"sms": "app"},
        "store": {"class": "ray_dispatch.redis_store.RedisStore", "url": url, "prefix": "vumi-mw"},
        "middleware": [
            {"tagger": "vumi.middleware.tagger.TaggingMiddleware"},
            {"storing": "vumi.middleware.message_storing.StoringMiddleware"},
        ],
        "tagger": TAGGER,
        "storing": {"store_prefix": "message_store"},
        "endpoints": {
            "sms": {"class": "actors.builtin.MemoryTransport"},
            "app": {"class": "actors.builtin.EchoApplication"},
        },
    }


async def _stored_with_events(reader: MessageStoreReader, message_id: str, events: int) -> StoredMessage | None:
    """Wait (bounded, 30 s) until message ``message_id`` is stored with ``events`` events."""
    deadline = time.monotonic() + 30
    stored = await reader.message(message_id)
    while (stored is None or len(stored.events) < events) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        stored = await reader.message(message_id)
    return stored


def test_storing_middleware_on_ray_keeps_the_reply_and_its_ack(ray_session: None, redis_url: str) -> None:
    dep = ray_dispatch.deploy(_config(redis_url), name="vumi-storing-test", health_interval=0.5)
    try:
        inbound = ray.get(dep.endpoint("sms").inject.remote("hello", to_addr="123456", from_addr="+27820000001"))
        deadline = time.monotonic() + 30
        sent: list[dict[str, Any]] = []
        while not sent and time.monotonic() < deadline:
            sent = ray.get(dep.endpoint("sms").sent.remote())
            time.sleep(0.05)
        assert [m["in_reply_to"] for m in sent] == [inbound["message_id"]]

        async def read() -> tuple[StoredMessage | None, StoredMessage | None, list[str]]:
            store = RedisStore(redis_url, prefix="vumi-mw")
            try:
                reader = MessageStoreReader(store)
                reply = await _stored_with_events(reader, sent[0]["message_id"], 1)
                return await reader.message(inbound["message_id"]), reply, await reader.batch("pool1:mytag-456")
            finally:
                await store.close()

        stored_in, stored_reply, batch = asyncio.run(read())
    finally:
        dep.shutdown()
    assert stored_in is not None and stored_in.direction == "inbound" and stored_in.message["content"] == "hello"
    assert stored_reply is not None and stored_reply.direction == "outbound"
    assert stored_reply.message["from_addr"] == "1234*456"  # the tagger's msg_template, applied on Ray
    assert [e["event_type"] for e in stored_reply.events] == ["ack"]
    assert batch == [inbound["message_id"], sent[0]["message_id"]]
